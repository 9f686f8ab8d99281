"""U-Net shapes for each encoder family; Dice/IoU against hand-computed masks; the ignore value is ignored."""

import numpy as np
import pytest

from edgelabels.errors import UserError
from edgelabels.data.masks import IGNORE, mask_target
from edgelabels.evaluate.metrics import dice_iou
from edgelabels.models.losses import bce_dice_loss


@pytest.mark.slow  # builds a U-Net on each registered backbone
@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "efficientnetb0", "efficientnetv2b0",
                                      "mobilenetv3small", "mobilenetv3large", "smallcnn", "deepcnn", "tinycnn"])
def test_unet_maps_an_image_to_a_mask_of_the_same_size(backbone):
    from edgelabels.models.unet import build_unet

    model = build_unet(backbone, 64, 96, decoder_filters=(16, 16, 8, 8, 8))
    out = model(np.random.default_rng(0).uniform(0, 255, (2, 64, 96, 3)).astype("float32"))
    assert tuple(out.shape) == (2, 64, 96, 1)
    out = np.asarray(out)
    assert out.min() >= 0 and out.max() <= 1


def test_unet_refuses_sizes_not_divisible_by_32():
    from edgelabels.models.unet import build_unet

    with pytest.raises(UserError, match="divisible by 32"):
        build_unet("tinycnn", 48, 64)


def test_encoder_taps_are_found_by_stride_not_by_name():
    from edgelabels.models.backbones import build_backbone, get_backbone
    from edgelabels.models.unet import encoder_taps

    base = build_backbone(get_backbone("vgg16"), 64, 64, None)
    assert encoder_taps(base, 64, 64) == ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3",
                                          "block5_conv3", "block5_pool"]


def test_dice_and_iou_match_hand_counts():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :] = 255  # 8 lung pixels
    predicted = np.zeros((4, 4))
    predicted[:1, :] = 1  # 4 predicted, all inside the lung
    predicted[3, 0] = 1  # 1 false positive
    dice, iou = dice_iou(predicted, truth)
    assert dice == pytest.approx(2 * 4 / (5 + 8))
    assert iou == pytest.approx(4 / 9)
    assert dice_iou(np.zeros((4, 4)), np.zeros((4, 4), np.uint8)) == (1.0, 1.0)


def test_ignored_pixels_change_neither_the_metrics_nor_the_loss():
    import keras

    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 255
    truth[0, :] = IGNORE
    good = (truth == 255).astype(float)
    noisy = good.copy()
    noisy[0, :] = 1  # wrong only where the annotator said "ignore"
    assert dice_iou(noisy, truth) == dice_iou(good, truth) == (1.0, 1.0)

    target = keras.ops.convert_to_tensor(mask_target(truth)[None, :, :, None])
    a = np.clip(good, 0.1, 0.9)[None, :, :, None].astype("float32")
    b = a.copy()
    b[0, 0, :, 0] = 0.9
    loss_a = float(bce_dice_loss(target, keras.ops.convert_to_tensor(a)))
    loss_b = float(bce_dice_loss(target, keras.ops.convert_to_tensor(b)))
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    c = a.copy()
    c[0, 3, 3, 0] = 0.1  # a real mistake inside the lung does count
    assert float(bce_dice_loss(target, keras.ops.convert_to_tensor(c))) > loss_a + 1e-3
