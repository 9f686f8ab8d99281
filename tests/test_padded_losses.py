"""Issue 25 item 7: under data_parallel the last short batch is padded with copies of its first images, weighted 0
(train/distribute.py). The segmentation and detection losses normalise over the whole batch (valid pixels,
objects), so they must take those weights themselves: a padded batch's loss is its real images', and a validation
epoch over 3 devices scores what one device does."""

from __future__ import annotations

import numpy as np
import pytest

from edgelabels.train.distribute import Processes, for_devices, rows_of

THREE = Processes(count=1, index=0, devices=3)


def _segmentation(images: int, rng):
    """Random images and masks: 1 inside a random rectangle, 0 outside, 0.5 (ignored) on a border strip."""
    x = rng.uniform(-1, 1, (images, 32, 32, 3)).astype(np.float32)
    y = np.zeros((images, 32, 32, 1), np.float32)
    for mask in y:
        top, left = rng.integers(0, 16, 2)
        mask[top:top + rng.integers(4, 16), left:left + rng.integers(4, 16)] = 1.0
        mask[:, :rng.integers(1, 6)] = 0.5
    return x, y


def _detection(images: int, rng):
    """Random images with 1 to 3 boxes each (2 classes), as the loader's CenterNet targets on an 8 x 8 grid."""
    from edgelabels.train.detection_loader import centernet_targets

    x = rng.uniform(-1, 1, (images, 32, 32, 3)).astype(np.float32)
    targets = []
    for _ in range(images):
        count = rng.integers(1, 4)
        corner = rng.uniform(0, 0.6, (count, 2))
        boxes = np.concatenate([corner, rng.uniform(0.15, 0.4, (count, 2))], axis=1).astype(np.float32)
        targets.append(centernet_targets(boxes, rng.integers(0, 2, count), 2, 8, 8))
    heatmap, size, offset = (np.stack(t) for t in zip(*targets))
    return x, {"heatmap": heatmap, "size": size, "offset": offset}


DATA = {"segmentation": _segmentation, "detection": _detection}


def _model(task: str):
    """A tiny U-Net or detector compiled as a data_parallel run compiles it (weighted metrics)."""
    import keras

    from edgelabels.config import load_config
    from edgelabels.models.detector import build_detector
    from edgelabels.models.unet import build_unet
    from edgelabels.train.fit import _compile

    keras.utils.set_random_seed(0)
    model = build_unet("tinycnn", 32, 32, decoder_filters=(8, 8, 8, 8, 8)) if task == "segmentation" \
        else build_detector("tinycnn", 2, 32, 32)
    _compile(model, load_config(None, ["data.source=x", f"task={task}", "train.distribute=data_parallel"]), 1e-3)
    return model


def _rows(batch, rows):
    if isinstance(batch, dict):
        return {k: v[rows] for k, v in batch.items()}
    return batch[rows]


def _array_batches(x, y, batch_size: int):
    """(x, y) in batches: what for_devices needs of a loader (order, batch_size, indexing)."""
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order, self.batch_size = np.arange(len(x)), batch_size

        def __len__(self):
            return -(-len(x) // batch_size)

        def __getitem__(self, i):
            rows = slice(i * batch_size, (i + 1) * batch_size)
            return _rows(x, rows), _rows(y, rows)

    return ArrayBatches()


@pytest.mark.parametrize("task", DATA)
def test_a_padded_training_batch_has_the_loss_of_its_real_images(task):
    """2 images padded to 3 (the copy weighted 0, the real ones 3/2) score what the 2 images alone do."""
    model = _model(task)
    x, y = DATA[task](2, np.random.default_rng(1))
    alone = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    padded = rows_of((x, y), THREE, scale=1.5)
    assert len(padded[2]) == 3 and padded[2][2] == 0
    scores = model.test_on_batch(*padded, return_dict=True)
    for name, value in alone.items():
        assert scores[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize("task", DATA)
def test_validation_over_three_devices_gives_the_one_device_loss(task):
    """7 validation images in batches of 4 on 3 devices: the first batch is padded to 6, the last (3) is not."""
    model = _model(task)
    x, y = DATA[task](7, np.random.default_rng(2))
    one = model.evaluate(_array_batches(x, y, 4), verbose=0, return_dict=True)
    three = model.evaluate(for_devices(_array_batches(x, y, 4), THREE, validation=True), verbose=0,
                           return_dict=True)
    assert set(one) == set(three)
    # Not detection's per-output losses here: on TensorFlow Keras averages them over batches, not images (it weighs
    # each batch by its static length, unknown in a graph); the JAX test below, where data_parallel runs, has them.
    for name in {"loss", "dice", "iou"} & set(one):
        assert three[name] == pytest.approx(one[name], rel=1e-4), name


def test_weights_of_one_leave_the_batch_losses_unchanged_and_twice_the_weight_doubles_them():
    from edgelabels.models.detection_losses import centre_l1_loss, heatmap_focal_loss, size_relative_l1_loss
    from edgelabels.models.losses import bce_dice_loss, row_weighted

    rng = np.random.default_rng(3)
    _, masks = _segmentation(3, rng)
    _, targets = _detection(3, rng)
    ones = np.ones(3, np.float32)
    for loss, target, channels in ((bce_dice_loss, masks, 1), (heatmap_focal_loss, targets["heatmap"], 2),
                                   (size_relative_l1_loss, targets["size"], 2), (centre_l1_loss, targets["offset"], 2)):
        guess = rng.uniform(0.01, 0.99, (*target.shape[:-1], channels)).astype(np.float32)
        bare = float(loss(target, guess))
        assert float(row_weighted(loss)(target, guess, ones)) == pytest.approx(bare, rel=1e-6), loss.__name__
        # as Keras' own per-sample losses do
        assert float(row_weighted(loss)(target, guess, 2 * ones)) == pytest.approx(2 * bare, rel=1e-6), loss.__name__


def test_a_compiled_u_net_reads_back_with_the_weighted_loss_or_the_bare_one_of_earlier_runs(tmp_path):
    from edgelabels.models.factory import load_model
    from edgelabels.models.losses import bce_dice_loss

    model = _model("segmentation")
    model.save(tmp_path / "model.keras")
    back = load_model(tmp_path / "model.keras", compile=True)
    x, y = _segmentation(2, np.random.default_rng(4))
    w = np.array([1.0, 0.0], np.float32)
    assert float(back.loss(y, back.predict(x, verbose=0), w)) == pytest.approx(
        float(model.loss(y, model.predict(x, verbose=0), w)), rel=1e-6)
    model.compile(optimizer="adam", loss=bce_dice_loss)  # how runs before row_weighted saved their checkpoints
    model.save(tmp_path / "earlier.keras")
    assert load_model(tmp_path / "earlier.keras", compile=True).loss is bce_dice_loss


def padded_unet_and_detector(root):
    """A JAX job (helpers/jax_worker.py), run with 1 and with 3 devices: a tiny U-Net and a tiny detector, 2 epochs
    on 12 training images (no padding: a BatchNorm that trains sees its batch) and 4 validation images, padded to 6
    on 3 devices; their histories, split sizes and train logs."""
    from edgelabels.config import load_config
    from edgelabels.train.fit import train
    from helpers.detection import make_box_photos
    from helpers.lungs import make_lung_pairs

    common = ["model.backbone=tinycnn", "model.weights=none", "data.image_size=32", "train.epochs=2",
              "train.fine_tune_epochs=0", "train.batch_size=6", "train.verbose=0", "train.workers=1",
              "augment.preset=none", "train.distribute=data_parallel", "data.val_fraction=0.25",
              "data.test_fraction=0.2"]
    lungs = make_lung_pairs(root / "lungs", n=20, size=32)
    boxes, _ = make_box_photos(root / "boxes", 20, seed=0, size=32)
    answer = {}
    for task, source, extra in (("segmentation", lungs, []), ("detection", boxes, ["train.class_weight=none"])):
        run = root / task
        train(load_config(None, [f"task={task}", f"data.source={source}", *common, *extra]), run)
        rows = [line.split(",") for line in (run / "history.csv").read_text().splitlines()]
        splits = [len((run / "splits" / f"{name}.txt").read_text().splitlines()) for name in ("train", "val")]
        answer[task] = {"history": [dict(zip(rows[0], row)) for row in rows[1:]], "splits": splits,
                        "log": (run / "train.log").read_text()}
    return answer


@pytest.mark.slow
def test_three_jax_devices_with_a_padded_validation_batch_validate_as_one_device(request):
    """Before the losses took the weights, the detector's val_loss was 1.8e-3 off and the U-Net's 1.2e-4 (a lung
    film's copy is much like the other films; the tests above, on random masks, are the sharper check)."""
    from helpers.jax_worker import result

    one, three = (result("test_padded_losses:padded_unet_and_detector", devices, request)
                  for devices in (1, 3))
    assert "data parallel over 3 devices" in three["detection"]["log"]
    assert one["segmentation"]["splits"] == one["detection"]["splits"] == [12, 4]
    assert {"val_heatmap_loss", "val_size_loss", "val_offset_loss"} <= set(one["detection"]["history"][0])
    for task in ("segmentation", "detection"):
        assert len(one[task]["history"]) == len(three[task]["history"]) == 2, task
        for a, b in zip(one[task]["history"], three[task]["history"]):
            for column in [c for c in a if c.startswith("val_")]:
                assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-4), (task, column, a, b)
