"""One registry of backbones: builder, preprocessing and input size travel together.

Adding a backbone is one entry. The classifier head (classifier.py) and the U-Net (unet.py) read the
same spec; the U-Net finds its skip connections by output stride, so no layer names are listed here.
An entry's `sm` says what the segmentation-models package's encoder of that backbone takes (sm_unet.py,
model.implementation: segmentation-models); None where sm has no such encoder.
Backend-agnostic Keras only: nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgelabels.data.preprocess import PreprocessSpec
from edgelabels.errors import UserError

# Our own CNNs train from scratch on a few hundred batches: Keras' default BatchNorm momentum (0.99)
# leaves the moving statistics epochs behind the weights, and inference-mode Dice measured 0.79 where
# training-mode Dice was 0.90 (lung U-Net, epoch 8). 0.9 follows the weights within an epoch.
BN_MOMENTUM = 0.9
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_GOOGLE = "https://storage.googleapis.com/"


@dataclass(frozen=True)
class SmEncoder:
    """What sm's encoder for a backbone takes (in PreprocessSpec's terms, 0-255 units) and its imagenet file."""

    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    imagenet_file: str  # the no-top file sm looks for in KERAS_HOME/models
    imagenet_url: str


@dataclass(frozen=True)
class Int8Scheme:
    """How `export --int8` quantizes a backbone (export/quantize.py reads it): a measured fact of the backbone."""

    pays: bool = True  # False: measured never faster than fp32 here, so export does not even try
    per_channel: bool = False
    op_types: tuple[str, ...] | None = ("Conv", "MatMul", "Gemm")  # None: every op onnxruntime can quantize
    activations_unsigned: bool = True  # uint8 activations x int8 weights: the fast x86 kernel path
    note: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["op_types"] = list(self.op_types) if self.op_types else "all"
        return d


# Measured on this project's 2-core x86 CPU (AVX512-VNNI), 224 px, batch 1, 2 threads, onnxruntime 1.32,
# random-weight backbones with re-estimated BatchNorm, five schemes each (per-tensor/per-channel x
# conv+matmul/all ops x u8/s8 activations), timed interleaved with fp32:
# VGG16 fp32 129 ms -> 49 ms (per-tensor conv, 2.6x; per-channel 57 ms); ResNet50 136 -> 59 ms (2.3x);
# s8 activations were always slower than u8. EfficientNetB0 29 ms -> 29-51 ms, EfficientNetV2B0 83 ->
# 85-220 ms, MobileNetV3Small/Large within +-20% of fp32 run to run, with top-1 agreement 0.81-0.94:
# depthwise convolutions, SiLU/hard-swish and squeeze-excite gain nothing from INT8 here.
INT8_UNMEASURED = Int8Scheme(note="not measured for this backbone: default conv/matmul per-tensor, u8 activations")
_INT8_CONV = Int8Scheme(note="measured: per-tensor Conv/MatMul/Gemm with u8 activations was fastest (2.3-2.6x)")
_INT8_NEVER = Int8Scheme(pays=False, note="measured never clearly faster than fp32 (depthwise/SiLU/squeeze-excite "
                                          "network); fp32 kept")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    application: str | None  # keras.applications constructor name; None for our own CNNs
    default_size: int
    min_size: int = 32
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    imagenet_file: str | None = None  # the no-top weights file keras looks for in ~/.keras/models
    imagenet_url: str | None = None
    blocks: int = 0  # our own CNNs: number of conv blocks
    convs_per_block: int = 1  # our own CNNs: conv-BN-ReLU units per block
    width: int = 16  # our own CNNs: filters in the first block, doubled per block
    sm: SmEncoder | None = None  # segmentation-models' encoder of this backbone, if it has one
    int8: Int8Scheme = INT8_UNMEASURED  # how `export --int8` quantizes it (measured; see above)

    def preprocess_spec(self, height: int, width: int, grayscale: bool, resize: str = "bilinear") -> PreprocessSpec:
        # Every backbone takes three channels; a grayscale image is repeated into them.
        return PreprocessSpec(height=height, width=width, grayscale=grayscale, channels=3, resize=resize,
                              channel_order=self.channel_order, mean=self.mean, std=self.std)


def _caffe(name, application, file, url_dir, sm=None):
    return BackboneSpec(name, application, 224, channel_order="BGR", mean=_CAFFE_MEAN_BGR,
                        imagenet_file=file, imagenet_url=_GOOGLE + url_dir + file, sm=sm, int8=_INT8_CONV)


def _raw(name, application, size, file, url_dir, sm=None):
    # These keras.applications models rescale and normalise 0-255 input inside the graph; all of them are
    # depthwise/SiLU/squeeze-excite networks that INT8 measured never to speed up.
    return BackboneSpec(name, application, size, imagenet_file=file, imagenet_url=_GOOGLE + url_dir + file, sm=sm,
                        int8=_INT8_NEVER)


def _own(name, blocks, size, convs_per_block=1, width=16):
    return BackboneSpec(name, None, size, min_size=16, mean=(127.5,) * 3, std=(127.5,) * 3, blocks=blocks,
                        convs_per_block=convs_per_block, width=width)


# segmentation-models' encoders (qubvel, 1.0.1) come from other packages than keras.applications and
# take their own input scale. keras_applications' VGG16: caffe style, exactly what our entry says.
_SM_VGG16 = SmEncoder("BGR", _CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
                      "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
# image-classifiers' ResNet50: RGB 0-255 (preprocess_input is the identity; its first BatchNorm normalises).
_SM_RESNET50 = SmEncoder("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "resnet50_imagenet_1000_no_top.h5",
                         "https://github.com/qubvel/classification_models/releases/download/0.0.1/"
                         "resnet50_imagenet_1000_no_top.h5")


def _sm_efficientnet(b: int) -> SmEncoder:
    # The efficientnet package's preprocess_input is "torch" mode: (x / 255 - mean) / std on RGB.
    file = f"efficientnet-b{b}_weights_tf_dim_ordering_tf_kernels_autoaugment_notop.h5"
    return SmEncoder("RGB", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), file,
                     "https://github.com/Callidior/keras-applications/releases/download/efficientnet/" + file)


_EFF = "keras-applications/"
_EFF2 = "tensorflow/keras-applications/efficientnet_v2/"
_MNV3 = "tensorflow/keras-applications/mobilenet_v3/"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _caffe("vgg16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "tensorflow/keras-applications/vgg16/", sm=_SM_VGG16),
        _caffe("resnet50", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "tensorflow/keras-applications/resnet/", sm=_SM_RESNET50),
        _raw("efficientnetb0", "EfficientNetB0", 224, "efficientnetb0_notop.h5", _EFF, sm=_sm_efficientnet(0)),
        _raw("efficientnetb1", "EfficientNetB1", 240, "efficientnetb1_notop.h5", _EFF, sm=_sm_efficientnet(1)),
        _raw("efficientnetb2", "EfficientNetB2", 260, "efficientnetb2_notop.h5", _EFF, sm=_sm_efficientnet(2)),
        _raw("efficientnetb3", "EfficientNetB3", 300, "efficientnetb3_notop.h5", _EFF, sm=_sm_efficientnet(3)),
        _raw("efficientnetv2b0", "EfficientNetV2B0", 224, "efficientnetv2-b0_notop.h5", _EFF2),
        _raw("mobilenetv3small", "MobileNetV3Small", 224,
             "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", _MNV3),
        _raw("mobilenetv3large", "MobileNetV3Large", 224,
             "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", _MNV3),
        _own("tinycnn", blocks=2, size=32),  # for tests: seconds to train
        _own("smallcnn", blocks=4, size=128, convs_per_block=2, width=16),  # VGG-style, trained from scratch
        # Deeper (stride 32): a U-Net encoder that sees a whole lung field, trained from scratch.
        _own("deepcnn", blocks=6, size=256, convs_per_block=2, width=16),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UserError(f"model.backbone: unknown backbone {name!r} (choose from {', '.join(BACKBONES)})") from None


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def build_backbone(spec: BackboneSpec, height: int, width: int, weights: str | None):
    """The feature extractor as a Functional model named "backbone".

    weights: "imagenet", None, or a path to a no-top weights file (keras.applications format).
    """
    import keras

    if min(height, width) < spec.min_size:
        raise UserError(f"data.image_size: {spec.name} needs at least {spec.min_size} px, got {height}x{width}")
    if spec.application is None:
        if weights not in (None, "none"):
            raise UserError(f"model.weights: {spec.name} has no pretrained weights; use none or run:RUN_DIR")
        return _own_cnn(spec, height, width)
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise UserError(f"model.weights: {weights}: no such weights file")
    builder = getattr(keras.applications, spec.application)
    try:
        model = builder(include_top=False, weights=weights, input_shape=(height, width, 3))
    except Exception as exc:
        if weights == "imagenet" and "fetch failure" in str(exc):
            # Offline: say exactly which file to place where.
            target = keras_home() / "models" / spec.imagenet_file
            raise UserError(
                f"model.weights: imagenet weights for {spec.name} cannot be downloaded here: download "
                f"{spec.imagenet_url} and place it at {target} (or set model.weights to none, a local file, "
                f"or run:RUN_DIR)") from None
        if isinstance(exc, (ValueError, OSError)):
            raise UserError(f"model.weights: cannot load {weights} into {spec.name}: {exc}") from None
        raise
    return _renamed(model, "backbone")


def _renamed(model, name: str):
    # The classifier and run: initialisation find the backbone by this name.
    import keras

    return keras.Model(model.input, model.output, name=name)


def _own_cnn(spec: BackboneSpec, height: int, width: int):
    import keras
    from keras import layers

    inputs = keras.Input((height, width, 3), name="backbone_input")
    x = inputs
    for i in range(spec.blocks):
        filters = spec.width * 2**i
        for j in range(spec.convs_per_block):
            # The block's last unit keeps the plain names (block2_relu is what the U-Net taps).
            tag = "" if j == spec.convs_per_block - 1 else str(j)
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv{tag}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i + 1}_bn{tag}")(x)
            x = layers.Activation("relu", name=f"block{i + 1}_relu{tag}")(x)
        if i < spec.blocks - 1:
            x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    return keras.Model(inputs, x, name="backbone")
