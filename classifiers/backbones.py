"""Detectors on ImageNet backbones from keras.applications (`--model backbone --backbone NAME --weights ...`).

The backbone's own preprocessing is inside the model, built from stock layers only, so `predict` and
`compare` feed it [0, 255] RGB like every other detector and it loads in Keras safe mode. Training follows
the usual transfer recipe: the new head alone, then the backbone's top blocks, then everything at a lower
rate (BatchNorm statistics stay frozen: batches of 32 would wreck ImageNet's).

Weights: "imagenet" (Keras downloads them once into its cache; offline, one line says which file to put
where), "none" (random initialisation), or the path of a weights file.
"""
import contextlib
import io
import os
import re

import keras
from keras import layers
import numpy as np

from data.runtime import UserError, import_tensorflow

# name: (keras.applications constructor, preprocessing, smallest input side it accepts)
BACKBONES = {
    "efficientnetb0": ("EfficientNetB0", "built-in", 32),  # Rescaling + Normalization inside the network
    "xception": ("Xception", "tf", 71),
    "resnet50": ("ResNet50", "caffe", 32),
    "mobilenetv3small": ("MobileNetV3Small", "built-in", 32),
}
HEAD_DROPOUT = 0.2
TOP_FRACTION = 0.2  # of the backbone's layers unfrozen in the second phase
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def keras_cache_dir():
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "models")


def preprocessing(kind, name="preprocess"):
    """The backbone's expected input from [0, 255] RGB, in stock layers (safe-mode loadable), or None."""
    if kind == "built-in":
        return None
    if kind == "tf":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name=name)
    # caffe: RGB -> BGR and ImageNet mean subtracted, as a frozen 1x1 convolution kept in float32
    conv = layers.Conv2D(3, 1, name=name, trainable=False, dtype="float32")
    conv.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    conv.set_weights([kernel, -np.array(CAFFE_MEAN_BGR, np.float32)])
    return conv


def load_backbone(name, image_size, weights):
    """The headless backbone with global pooling; a clear UserError where the weights cannot be had."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    constructor, kind, smallest = BACKBONES[name]
    if image_size < smallest:
        raise UserError(f"{name} needs inputs of at least {smallest}px; pass --image-size {smallest} or more")
    if weights not in ("imagenet", "none") and not os.path.isfile(weights):
        raise UserError(f"--weights {weights}: no such file (give 'imagenet', 'none' or a weights file)")
    import_tensorflow()  # quietly, before Keras

    kwargs = {"include_preprocessing": True} if name == "mobilenetv3small" else {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Downloading data from ..." before a failure
            return getattr(keras.applications, constructor)(
                include_top=False, weights=None if weights == "none" else weights,
                input_shape=(image_size, image_size, 3), pooling="avg", **kwargs)
    except Exception as e:  # Keras raises a bare Exception for a failed download
        url = re.search(r"https?://\S+?\.h5", str(e))
        if weights == "imagenet" and url:
            file = url.group(0).rsplit("/", 1)[-1]
            raise UserError(f"cannot download the ImageNet weights of {name} (no network?): put {file} in "
                            f"{keras_cache_dir()}/ or pass --weights PATH_TO/{file}")
        raise UserError(f"cannot load the weights of {name} from {weights}: {str(e).splitlines()[0][:300]}")


def build_backbone_detector(name, image_size, weights="imagenet", dropout=HEAD_DROPOUT):
    """(detector, its backbone): preprocessing, the backbone, dropout, one float32 sigmoid."""
    backbone = load_backbone(name, image_size, weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    prep = preprocessing(BACKBONES[name][1])
    if prep is not None:
        x = prep(x)
    x = backbone(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)
    return keras.Model(inputs, outputs, name=f"backbone-{name}"), backbone


def set_trainable(backbone, phase):
    """phase 'head': backbone frozen; 'top': its last TOP_FRACTION of layers; 'all': every layer. BN stays frozen."""
    backbone.trainable = phase != "head"
    if phase == "head":
        return
    first = int(len(backbone.layers) * (1 - TOP_FRACTION)) if phase == "top" else 0
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= first and not isinstance(layer, layers.BatchNormalization)
