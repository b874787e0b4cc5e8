"""CNN detectors, built by small functions. Input: float32 RGB in [0, 255]; output: P(fake).

`build_cnn` is the original study's baseline (Conv-BN-Conv-BN-MaxPool blocks, Dropout, Flatten,
Dense sigmoid) widened with the options the search explores: residual shortcuts, global pooling, dropout.
"""
import keras
from keras import layers

from classifiers.layers import FusedBatchNormalization

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
    x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)
    x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(x)
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
    """The CNN below, compiled with Adam at learning_rate (constant or cosine-decayed over decay_steps)."""
    return compile_detector(cnn(image_size, filters, head, dropout, residual, name), learning_rate, schedule,
                            decay_steps)


def cnn(image_size, filters=DEFAULT_FILTERS, head="flatten", dropout=DEFAULT_DROPOUT, residual=False, name="cnn"):
    """Uncompiled: conv blocks of `filters`, dropout, a flatten or global-pooling head, one float32 sigmoid."""
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
    return keras.Model(inputs, outputs, name=name)


def residual_block(x, filters, stride=1, name="res"):
    """A ResNet basic block (He et al. 2016): two 3x3 convolutions, a projection shortcut where the shape changes."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    # zero-initialised last BN: every block starts as the identity, which steadies short runs (Goyal et al. 2017)
    y = FusedBatchNormalization(momentum=BN_MOMENTUM, gamma_initializer="zeros", name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def build_resnet(image_size, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), dropout=0.3, stem_stride=1,
                 head="gap", name="resnet"):
    """A small ResNet for faces: 3x3 stem, one stage per width (stride 2 after the first), global pooling.

    stem_stride 2 halves the resolution at once: a 128px input then costs about what 64px does, but the stem
    still sees the finer detail.

    Uncompiled: the recipe (optimizer, schedule, loss) is the trainer's business."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = resnet_features(x, widths, blocks, stem_stride, head)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet_features(x, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), stem_stride=1, head="gap", head_name=None):
    """The ResNet's layers from an image in [-1, 1] to its pooled (or flattened) features: what build_resnet
    puts between its rescaling and its head, and what a GAN's ResNet discriminator is made of."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    x = layers.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv")(x)
    x = FusedBatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            x = residual_block(x, width, stride, name=f"stage{stage + 1}_block{i + 1}")
    # flatten keeps where in the face a feature is; global pooling forgets it
    if head == "gap":
        return layers.GlobalAveragePooling2D(name=head_name or "gap")(x)
    return layers.Flatten(name=head_name or "flatten")(x)


def compile_recipe(model, learning_rate, decay_steps, warmup_steps=0, weight_decay=0.05, label_smoothing=0.1):
    """AdamW, a linear warm-up then cosine decay to 0, label-smoothed cross-entropy: the strong recipe's optimiser."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else learning_rate, max(1, decay_steps - warmup_steps),
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])  # decay shrinks kernels only
    model.compile(optimizer=optimizer,
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing), metrics=classifier_metrics())
    return model


def inner_model(model):
    """The network nested in a detector as one layer (a backbone, a GAN discriminator's trunk)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"{model.name} nests {len(nested)} networks, not one")
    return nested[0]
