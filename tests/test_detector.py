"""The detector (models/detector.py), its losses and its training batches: decoding against a numpy reference and
hand-made heads, the focal and L1 losses against hand-computed values, CenterNet targets, box-aware augmentation,
and tiny detectors that train (TensorFlow and JAX) and export to ONNX with the decoding inside."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.config import load_config
from edgelabels.data.boxes import iou_matrix
from edgelabels.data.dataset import Box, Sample
from edgelabels.errors import UserError

LABELS = ["blue", "red"]
COLOURS = {"blue": (40, 60, 230), "red": (230, 40, 40)}


def make_squares(folder: Path, n: int = 16, width: int = 96, height: int = 80, seed: int = 0) -> list[Sample]:
    """n images (width x height, so stretching to the model input matters), each with one or two coloured squares
    on a dark noisy background; the samples' boxes in pixels. The last image has no square (a negative)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        pixels = rng.integers(0, 40, (height, width, 3)).astype(np.uint8)
        boxes = []
        count = 0 if i == n - 1 else 1 + i % 2
        for j in range(count):
            side = int(rng.integers(18, 30))
            # Two squares go to the left and right halves, so they never overlap.
            half = width // 2 if count == 2 else width
            left = int(rng.integers(0, half - side)) + (j * half if count == 2 else 0)
            top = int(rng.integers(0, height - side))
            label = LABELS[(i + j) % 2]
            pixels[top:top + side, left:left + side] = COLOURS[label]
            boxes.append(Box(label, left, top, side, side))
        path = folder / f"img{i:02d}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(path, tuple(sorted({b.label for b in boxes})), f"g{i}", tuple(boxes)))
    return samples


def detection_config(source: Path, **overrides):
    sets = {"task": "detection", "data.source": str(source), "data.image_size": 64, "model.backbone": "tinycnn",
            "model.weights": "none", "train.batch_size": 4, "train.workers": 1, **overrides}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


def caches_for(config, train, val):
    from edgelabels.models.backbones import get_backbone
    from edgelabels.train.loader import PixelCache

    spec = get_backbone(config.model.backbone).preprocess_spec(*config.image_hw, grayscale=False)
    return PixelCache([s.path for s in train], spec, 1e8), PixelCache([s.path for s in val], spec, 1e8)


class Split:
    def __init__(self, train, val, test=()):
        self.train, self.val, self.test = list(train), list(val), list(test)


# ---------------------------------------------------------------- decoding


def random_heads(rng, n=2, h=8, w=10, classes=3):
    return (rng.uniform(0, 1, (n, h, w, classes)).astype(np.float32),
            rng.uniform(0, 0.5, (n, h, w, 2)).astype(np.float32), rng.uniform(0, 1, (n, h, w, 2)).astype(np.float32))


def test_graph_decoding_equals_the_numpy_reference_on_random_heads():
    from edgelabels.models.detector import decode_layer, decode_numpy

    heads = random_heads(np.random.default_rng(0))
    graph = np.asarray(decode_layer()(25)(list(heads)))
    reference = decode_numpy(*heads, max_detections=25)
    assert graph.shape == (2, 25, 6) and graph.dtype == np.float32
    np.testing.assert_allclose(graph, reference, atol=1e-6)
    assert np.all(np.diff(graph[:, :, 4], axis=1) <= 0)  # sorted by score


def test_decoding_a_hand_made_heatmap_gives_its_boxes():
    from edgelabels.models.detector import decode_layer, decode_numpy

    # A 4x8 grid (rows x columns), two classes. Peaks: class 1 at row 1, column 5 (0.9) with a 0.8 neighbour
    # that is no peak; class 0 at row 3, column 0 (0.6).
    heatmap = np.zeros((1, 4, 8, 2), np.float32)
    heatmap[0, 1, 5, 1], heatmap[0, 1, 6, 1], heatmap[0, 3, 0, 0] = 0.9, 0.8, 0.6
    size = np.zeros((1, 4, 8, 2), np.float32)
    offset = np.zeros((1, 4, 8, 2), np.float32)
    size[0, 1, 5], offset[0, 1, 5] = (0.25, 0.5), (0.5, 0.25)
    size[0, 3, 0], offset[0, 3, 0] = (0.125, 0.25), (0.0, 1.0)
    # centre x = (5 + 0.5) / 8 = 0.6875, y = (1 + 0.25) / 4 = 0.3125 -> left 0.5625, top 0.0625
    # centre x = 0 / 8 = 0, y = (3 + 1) / 4 = 1 -> left -0.0625, top 0.875
    expected = np.array([[0.5625, 0.0625, 0.25, 0.5, 0.9, 1.0], [-0.0625, 0.875, 0.125, 0.25, 0.6, 0.0]], np.float32)
    for decoded in (np.asarray(decode_layer()(5)([heatmap, size, offset])), decode_numpy(heatmap, size, offset, 5)):
        np.testing.assert_allclose(decoded[0, :2], expected, atol=1e-6)
        assert np.all(decoded[0, 2:, 4] == 0)  # the 0.8 neighbour is suppressed; the rest score 0


def test_inference_model_decodes_the_training_models_heads():
    from edgelabels.models.detector import build_detector, decode_numpy, inference_model

    model = build_detector("tinycnn", 2, 64, 64)
    x = np.random.default_rng(1).normal(size=(3, 64, 64, 3)).astype(np.float32)
    heads = model.predict(x, verbose=0)
    assert heads["heatmap"].shape == (3, 16, 16, 2) and heads["size"].shape == heads["offset"].shape == (3, 16, 16, 2)
    found = inference_model(model, max_detections=7)
    assert found.output.name.startswith("detections") or found.layers[-1].name == "detections"
    np.testing.assert_allclose(found.predict(x, verbose=0), decode_numpy(heads["heatmap"], heads["size"],
                                                                         heads["offset"], 7), atol=1e-5)


def test_the_detector_refuses_sides_its_stride_does_not_divide_and_too_many_detections():
    from edgelabels.models.detector import build_detector, inference_model

    with pytest.raises(UserError, match="divisible by 8"):
        build_detector("tinycnn", 2, 64, 60, stride=8)
    with pytest.raises(UserError, match="model.stride"):
        build_detector("tinycnn", 2, 64, 64, stride=2)
    with pytest.raises(UserError, match="max_detections"):
        inference_model(build_detector("tinycnn", 1, 32, 32, stride=8), max_detections=17)  # 4x4 cells, 1 class


def test_a_stride_8_head_on_a_deep_backbone_uses_its_skips_and_the_backbone_freezes():
    from edgelabels.models.classifier import freeze_backbone, unfreeze_top
    from edgelabels.models.detector import build_detector

    model = build_detector("smallcnn", 1, 64, 64, stride=8)  # smallcnn ends at stride 8: no neck stage needed
    assert model.get_layer("heatmap").output.shape[1:] == (8, 8, 1)
    all_weights = len(model.trainable_weights)
    freeze_backbone(model)
    heads_only = len(model.trainable_weights)
    assert heads_only < all_weights and not model.get_layer("backbone").trainable
    # The top four weighted layers are conv, BN, conv, BN: the two convs (no bias) unfreeze, BatchNorm stays frozen.
    assert unfreeze_top(model, 4) == 2 and len(model.trainable_weights) == heads_only + 2
    deep = build_detector("smallcnn", 1, 64, 64, stride=4)
    assert "neck_concat4" in [layer.name for layer in deep.layers]  # the stride-4 skip joined


# ---------------------------------------------------------------- losses


def test_focal_loss_matches_a_hand_computed_2x2_case():
    from edgelabels.models.detection_losses import heatmap_focal_loss

    y = np.array([[[[1.0], [0.5]], [[0.0], [0.0]]]], np.float32)  # one object (the 1), one splat cell, two empty
    p = np.array([[[[0.8], [0.3]], [[0.1], [0.2]]]], np.float32)
    expected = -((1 - 0.8) ** 2 * math.log(0.8)  # positive: (1-p)^2 log p
                 + (1 - 0.5) ** 4 * 0.3 ** 2 * math.log(1 - 0.3)  # negatives: (1-y)^4 p^2 log(1-p)
                 + 0.1 ** 2 * math.log(0.9) + 0.2 ** 2 * math.log(0.8)) / 1
    assert expected == pytest.approx(0.0209113, abs=1e-6)
    assert float(heatmap_focal_loss(y, p)) == pytest.approx(expected, rel=1e-5)
    # No object: the negatives' sum, undivided.
    assert float(heatmap_focal_loss(np.zeros_like(y), p)) == pytest.approx(
        -sum(v ** 2 * math.log(1 - v) for v in (0.8, 0.3, 0.1, 0.2)), rel=1e-5)


def test_l1_counts_only_centre_cells():
    from edgelabels.models.detection_losses import centre_l1_loss

    target = np.zeros((1, 2, 2, 3), np.float32)
    target[0, 0, 1] = (0.5, 0.25, 1.0)  # the one centre: w 0.5, h 0.25
    pred = np.full((1, 2, 2, 2), 9.0, np.float32)  # far off everywhere else, which must not count
    pred[0, 0, 1] = (0.4, 0.45)
    assert float(centre_l1_loss(target, pred)) == pytest.approx((0.1 + 0.2) / 2, rel=1e-3)
    assert float(centre_l1_loss(np.zeros_like(target), pred)) == 0.0


def test_objectives_compile_and_a_compiled_detector_reads_back(tmp_path):
    import keras

    from edgelabels.models.detection_losses import detection_objectives
    from edgelabels.models.detector import build_detector
    from edgelabels.models.factory import load_model

    model = build_detector("tinycnn", 2, 32, 32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **detection_objectives(None))
    path = tmp_path / "model.keras"
    model.save(path)
    back = load_model(path, compile=True)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(back.predict(x, verbose=0)["heatmap"], model.predict(x, verbose=0)["heatmap"])
    assert back.loss["heatmap"].__name__ == "heatmap_focal_loss"


# ---------------------------------------------------------------- targets and batches


def test_targets_put_1_on_the_class_channel_and_the_size_at_the_centre_cell():
    from edgelabels.train.detection_loader import centernet_targets

    # A box 0.25 x 0.5 of the image, centred at (0.3, 0.55): on a 16x16 grid, cell column 4.8 -> 4, row 8.8 -> 8.
    boxes = np.array([[0.3 - 0.125, 0.55 - 0.25, 0.25, 0.5]], np.float32)
    heatmap, size, offset = centernet_targets(boxes, np.array([1]), 2, 16, 16)
    assert heatmap[8, 4, 1] == 1.0 and np.count_nonzero(heatmap == 1.0) == 1
    assert heatmap[:, :, 0].max() == 0  # the other class's channel stays empty
    assert 0 < heatmap[8, 5, 1] < 1 and 0 < heatmap[9, 4, 1] < 1  # a gaussian splat around it
    np.testing.assert_allclose(size[8, 4], (0.25, 0.5, 1.0))
    np.testing.assert_allclose(offset[8, 4], (0.8, 0.8, 1.0), atol=1e-5)
    assert size[..., 2].sum() == 1 and offset[..., 2].sum() == 1  # the mask marks the one centre


def test_gaussian_radius_follows_centernet():
    from edgelabels.train.detection_loader import gaussian_radius

    # Hand-solved: a 10x10 box, overlap 0.7. Case 3 (both corners inside): 2.8 r^2 - 28 r - 30 = 0 has
    # r = (-(-28) ... ) in CenterNet's form (b3 + sqrt(b3^2 - 4 a3 c3)) / 2 = (-28 + sqrt(784 + 336)) / 2.
    r3 = (-28 + math.sqrt(28 ** 2 + 4 * 2.8 * 30)) / 2
    r1 = (20 + math.sqrt(400 - 4 * 100 * 0.3 / 1.7)) / 2
    r2 = (40 + math.sqrt(1600 - 16 * 30)) / 2
    assert gaussian_radius(10, 10) == pytest.approx(min(r1, r2, r3)) == pytest.approx(2.7332, abs=1e-3)


def test_detection_batches_give_ratio_targets_of_the_displayed_image(tmp_path):
    from edgelabels.train.detection_loader import detection_batches

    samples = make_squares(tmp_path / "squares", n=4)
    config = detection_config(tmp_path / "squares", **{"train.batch_size": 4})
    train, val = detection_batches(config, Split(samples, samples), LABELS, caches_for(config, samples, samples), None)
    x, y = val[0]  # validation: no augmentation, in order
    assert x.shape == (4, 64, 64, 3) and set(y) == {"heatmap", "size", "offset"}
    assert y["heatmap"].shape == (4, 16, 16, 2) and y["size"].shape == (4, 16, 16, 3)
    for i, sample in enumerate(samples):
        assert np.count_nonzero(y["heatmap"][i] == 1.0) == len(sample.boxes)
        for box in sample.boxes:  # pixels of the 96x80 image -> its centre cell on the 16x16 grid
            col, row = int((box.left + box.width / 2) / 96 * 16), int((box.top + box.height / 2) / 80 * 16)
            assert y["heatmap"][i, row, col, LABELS.index(box.label)] == 1.0
            np.testing.assert_allclose(y["size"][i, row, col], (box.width / 96, box.height / 80, 1.0), rtol=1e-5)
    assert y["heatmap"][3].max() == 0 and y["size"][3].max() == 0  # the negative
    assert len(train) == 1 and train[0][1]["heatmap"].shape == (4, 16, 16, 2)


def test_decoding_the_loaders_targets_gives_back_the_boxes(tmp_path):
    from edgelabels.models.detector import decode_numpy
    from edgelabels.train.detection_loader import detection_batches

    samples = make_squares(tmp_path / "squares", n=6)
    config = detection_config(tmp_path / "squares", **{"train.batch_size": 6})
    _, val = detection_batches(config, Split(samples, samples), LABELS, caches_for(config, samples, samples), None)
    _, y = val[0]
    decoded = decode_numpy(y["heatmap"], y["size"][..., :2], y["offset"][..., :2], 4)
    for found, sample in zip(decoded, samples):
        truth = [(LABELS.index(b.label), b.left / 96, b.top / 80, b.width / 96, b.height / 80) for b in sample.boxes]
        peaks = found[found[:, 4] == 1.0][:, [5, 0, 1, 2, 3]]
        truth = np.array(truth).reshape(-1, 5)
        assert len(peaks) == len(truth)
        np.testing.assert_allclose(peaks[np.lexsort(peaks.T[::-1])], truth[np.lexsort(truth.T[::-1])], atol=1e-5)


def test_detection_batches_refuse_an_image_only_augmenter(tmp_path):
    from edgelabels.data.augment import build_augmenter
    from edgelabels.train.detection_loader import detection_batches

    samples = make_squares(tmp_path / "squares", n=2)
    config = detection_config(tmp_path / "squares")
    with pytest.raises(UserError, match="augment.preset"):
        detection_batches(config, Split(samples, samples), LABELS, caches_for(config, samples, samples),
                          build_augmenter("photo", seed=0))


def test_a_box_label_outside_the_runs_labels_is_refused(tmp_path):
    from edgelabels.train.detection_loader import detection_batches

    samples = make_squares(tmp_path / "squares", n=3)  # image 1 holds a red square
    config = detection_config(tmp_path / "squares")
    _, val = detection_batches(config, Split(samples, samples), ["blue"], caches_for(config, samples, samples), None)
    with pytest.raises(UserError, match="not one of the run's labels"):
        val[0]


def white_square_box(pixels: np.ndarray):
    ys, xs = np.nonzero(pixels[:, :, 0] > 128)
    h, w = pixels.shape[:2]
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1 - xs.min()) / w, (ys.max() + 1 - ys.min()) / h])


def test_augmentation_keeps_boxes_on_the_square():
    from edgelabels.train.detection_loader import box_augmenter

    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[8:24, 12:36] = 255  # left half, upper part: a flip moves it to the right
    box = np.array([[12 / 64, 8 / 64, 24 / 64, 16 / 64]], np.float32)
    np.testing.assert_allclose(white_square_box(pixels), box[0])
    augment = box_augmenter(seed=3)
    flipped = 0
    for _ in range(30):
        image, boxes, ids = augment(pixels, box, np.array([1]))
        assert image.shape == pixels.shape and image.dtype == np.uint8
        if not len(boxes):
            continue  # pushed out of the image
        assert ids.tolist() == [1]
        assert iou_matrix(boxes, white_square_box(image)[None])[0, 0] > 0.85
        flipped += boxes[0, 0] + boxes[0, 2] / 2 > 0.5  # centre now in the right half
    assert 3 <= flipped <= 27


def test_vertical_flip_moves_boxes_to_the_other_half_only_when_asked():
    from edgelabels.train.detection_loader import box_augmenter

    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[8:24, 12:36] = 255  # upper part: a vertical flip moves it to the lower half
    box = np.array([[12 / 64, 8 / 64, 24 / 64, 16 / 64]], np.float32)
    for chance, low, high in ((0.0, 0, 0), (0.5, 3, 27)):
        augment, lower = box_augmenter(seed=5, vertical_flip=chance), 0
        for _ in range(30):
            image, boxes, _ = augment(pixels, box, np.array([0]))
            if len(boxes):  # the box still sits on the square (resampled by the scale and shift: a looser bound)
                assert iou_matrix(boxes, white_square_box(image)[None])[0, 0] > 0.75
                lower += boxes[0, 1] + boxes[0, 3] / 2 > 0.5
        assert low <= lower <= high


# ---------------------------------------------------------------- training and export


def tiny_training(folder: Path, epochs: int, augment: bool = False):
    """A tinycnn detector trained on make_squares at 64 px with model.fit: (model, samples, history, config)."""
    import keras

    from edgelabels.models.detection_losses import detection_objectives
    from edgelabels.models.factory import create_model
    from edgelabels.train.detection_loader import DetectionBatches, box_augmenter

    samples = make_squares(folder)
    config = detection_config(folder)
    keras.utils.set_random_seed(0)
    cache, _ = caches_for(config, samples, [])
    batches = DetectionBatches(cache, samples, LABELS, 4, batch_size=4, shuffle=True, workers=1,
                               augmenter=box_augmenter if augment else None)
    model = create_model(config, len(LABELS))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), **detection_objectives(config.train))
    history = model.fit(batches, epochs=epochs, verbose=0)
    return model, samples, history.history, config


@pytest.mark.slow
def test_a_tiny_detector_trains_and_finds_the_squares(tmp_path):
    from edgelabels.data.preprocess import normalise
    from edgelabels.models.detector import inference_model

    model, samples, history, config = tiny_training(tmp_path / "squares", epochs=15)
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]  # measured 3.8 -> 1.05
    found = inference_model(model, config.model.max_detections)
    cache, _ = caches_for(config, samples, [])
    hits = 0
    for i, sample in enumerate(samples[:-1]):
        detections = found.predict(normalise(cache[i][None], cache.spec), verbose=0)[0]
        for box in sample.boxes:
            truth = np.array([[box.left / 96, box.top / 80, box.width / 96, box.height / 80]])
            same_label = detections[(detections[:, 5] == LABELS.index(box.label)) & (detections[:, 4] > 0.3)]
            hits += bool(len(same_label)) and iou_matrix(same_label[:, :4], truth).max() > 0.5
    boxes = sum(len(s.boxes) for s in samples)
    # An untrained detector finds none (its heatmap is a flat 0.1); 15 epochs measured 20 of 22 (CPU, TF).
    assert hits >= boxes / 2, f"{hits} of {boxes} squares found"


def tiny_detector(root):
    """A JAX job (helpers/jax_worker.py): one augmented epoch of tiny_training, and how far the graph decoding of
    the trained heads is from the numpy reference."""
    import keras

    from edgelabels.models.detector import decode_numpy, inference_model

    model, samples, history, config = tiny_training(root / "sq", epochs=1, augment=True)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    heads = model.predict(x, verbose=0)
    decoded = inference_model(model, 10).predict(x, verbose=0)
    gap = np.abs(decoded - decode_numpy(*(heads[k] for k in ("heatmap", "size", "offset")), 10)).max()
    return {"backend": keras.backend.backend(), "loss": float(history["loss"][0]), "decode_gap": float(gap)}


@pytest.mark.slow
def test_a_tiny_detector_trains_under_the_jax_backend(request):
    from helpers.jax_worker import result

    answer = result("test_detector:tiny_detector", 1, request)
    assert answer["backend"] == "jax" and math.isfinite(answer["loss"]), answer
    assert answer["decode_gap"] < 1e-5, answer  # the graph decoding under JAX equals the numpy reference


@pytest.mark.slow
def test_the_decoding_exports_to_onnx_and_matches_keras(tmp_path):
    tf2onnx = pytest.importorskip("tf2onnx")
    import onnxruntime as ort
    import tensorflow as tf

    from edgelabels.models.detector import build_detector, decode_numpy, inference_model

    model = build_detector("tinycnn", 2, 64, 64)
    # A fresh head is a flat 0.1 (CenterNet's init); random output kernels make peaks and distinct scores to compare.
    rng = np.random.default_rng(3)
    for name in ("heatmap", "size", "offset"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([rng.normal(0, 0.3, kernel.shape).astype(np.float32), bias])
    # K = 200 is more than the peaks (about 65 of 512 cells x classes): the rest score exactly 0 and tie, and
    # TensorFlow, onnxruntime and the numpy reference must all break the ties alike (lowest index first).
    found = inference_model(model, max_detections=200)
    signature = [tf.TensorSpec((None, 64, 64, 3), tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(found, input_signature=signature, opset=17)
    ops = {node.op_type for node in proto.graph.node}
    assert {"MaxPool", "TopK"} <= ops and not ops & {"Loop", "NonMaxSuppression"}, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(3, 64, 64, 3)).astype(np.float32)
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    keras_out = found.predict(x, verbose=0)
    assert onnx_out.shape == (3, 200, 6) and onnx_out.dtype == np.float32
    assert keras_out[:, :, 4].std() > 0.01  # scores that differ: the comparison means something
    assert np.all((keras_out[:, :, 4] == 0).sum(axis=1) > 50)  # and many tied rows
    np.testing.assert_allclose(onnx_out, keras_out, atol=1e-4)
    heads = model.predict(x, verbose=0)
    np.testing.assert_allclose(decode_numpy(heads["heatmap"], heads["size"], heads["offset"], 200), keras_out, atol=1e-5)
