"""CNN detectors, built by small functions. Input: float32 RGB in [0, 255]; output: P(fake).

`build_cnn` is the original study's baseline (Conv-BN-Conv-BN-MaxPool blocks, Dropout, Flatten,
Dense sigmoid) widened with the options the search explores: residual shortcuts, global pooling, dropout.
"""
import keras
from keras import layers

DEFAULT_FILTERS = (32, 64)
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_DROPOUT = 0.2
HEADS = ("flatten", "gap")
SCHEDULES = ("constant", "cosine")  # cosine: decays to 0 over the whole training run
# Keras's default 0.99 needs several hundred steps before the inference statistics match training; short
# CPU runs of a few hundred steps then predict one class at 0.5 on validation although their AUC is fine.
BN_MOMENTUM = 0.9


def conv_block(x, filters, residual=False, name="block"):
    """Conv(3x3) - BN - Conv(3x3) - BN - MaxPool, with an optional 1x1 projection shortcut."""
    shortcut = x
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(x)
    if residual:
        shortcut = layers.Conv2D(filters, 1, padding="same", name=f"{name}_proj")(shortcut)
        x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.MaxPooling2D(name=f"{name}_pool")(x)


def classifier_metrics():
    return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")]


def compile_detector(model, learning_rate=DEFAULT_LEARNING_RATE, schedule="constant", decay_steps=None):
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "cosine":
        if not decay_steps:
            raise ValueError("a cosine schedule needs decay_steps (training steps in the whole run)")
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=classifier_metrics())
    return model


def build_cnn(image_size, filters=DEFAULT_FILTERS, head="flatten", dropout=DEFAULT_DROPOUT, residual=False,
              learning_rate=DEFAULT_LEARNING_RATE, name="cnn", schedule="constant", decay_steps=None):
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, f in enumerate(filters):
        x = conv_block(x, f, residual=residual, name=f"block{i + 1}")
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    # The probability stays float32 under mixed precision: the loss and thresholds need its resolution.
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)
    return compile_detector(keras.Model(inputs, outputs, name=name), learning_rate, schedule, decay_steps)
