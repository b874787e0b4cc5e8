"""DCGAN generator and discriminator after Radford et al. (2015), sized for a CPU.

Generator: latent -> Dense -> 4x4 -> (Conv2DTranspose 4x4/2, BatchNorm, ReLU) ... -> tanh image.
Discriminator: strided 4x4 convolutions, LeakyReLU 0.2, BatchNorm on all but the first layer (or spectral
normalisation instead), no pooling, one logit. Its convolutional trunk is what stage 2 fine-tunes.
"""
import math

import keras
from keras import layers

from classifiers.heads import discriminator_blocks
from classifiers.models import resnet_features
from classifiers.registry import RESNET

LATENT_DIM = 128
GENERATOR_FILTERS = 256  # at 4x4, halved at every doubling
DISCRIMINATOR_FILTERS = 32  # at the first layer, doubled at every halving
LEAKY_SLOPE = 0.2
WEIGHT_STD = 0.02  # the DCGAN paper's initialisation; Keras's glorot default lets D win at once


def _init(seed=None):
    return keras.initializers.RandomNormal(0.0, WEIGHT_STD, seed=seed)


BN_MOMENTUM = 0.8  # moving statistics must keep up with a generator that changes fast, or samples drawn in
# inference mode (the sample grids, KID) show a network that no longer exists


def _bn(name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name,
                                     gamma_initializer=keras.initializers.RandomNormal(1.0, WEIGHT_STD))


def _doublings(image_size):
    n = int(round(math.log2(image_size / 4)))
    if image_size < 16 or 4 * 2 ** n != image_size:
        raise ValueError(f"DCGAN image size must be a power of two of at least 16, got {image_size}")
    return n


def build_generator(image_size=64, latent_dim=LATENT_DIM, filters=GENERATOR_FILTERS):
    n = _doublings(image_size)
    z = keras.Input((latent_dim,), name="z")
    x = layers.Dense(4 * 4 * filters, use_bias=False, kernel_initializer=_init(), name="project")(z)
    x = layers.Reshape((4, 4, filters))(x)
    x = _bn("project_bn")(x)
    x = layers.ReLU()(x)
    for i in range(n - 1):
        x = layers.Conv2DTranspose(max(filters // 2 ** (i + 1), 16), 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"up{i + 1}")(x)
        x = _bn(f"up{i + 1}_bn")(x)
        x = layers.ReLU()(x)
    image = layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh", dtype="float32",
                                   kernel_initializer=_init(), name="to_rgb")(x)
    return keras.Model(z, image, name="generator")


def build_discriminator_trunk(image_size=64, filters=DISCRIMINATOR_FILTERS, spectral_norm=False):
    """Image in [-1, 1] -> flat features. Down to 4x4 by strided convolutions."""
    n = _doublings(image_size)
    image = keras.Input((image_size, image_size, 3), name="image")
    x = image
    for i in range(n):
        conv = layers.Conv2D(filters * 2 ** i, 4, strides=2, padding="same", kernel_initializer=_init(),
                             name=f"down{i + 1}")
        x = layers.SpectralNormalization(conv, name=f"down{i + 1}_sn")(x) if spectral_norm else conv(x)
        if i > 0 and not spectral_norm:
            x = _bn(f"down{i + 1}_bn")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"down{i + 1}_act")(x)
    features = layers.Flatten(name="features")(x)
    return keras.Model(image, features, name="discriminator_trunk")


def build_resnet_discriminator_trunk(image_size=64):
    """Image in [-1, 1] -> pooled features, through the network of the `resnet` detector recipe
    (classifiers.registry.RESNET: widths, blocks, stem), so its adversarially trained weights can be fine-tuned
    with that very recipe and compared with it from scratch. Its BatchNorm is the recipe's; each block's output
    (stem_relu, stageN_block1_out) is a block a probe or the one-class detector can read."""
    image = keras.Input((image_size, image_size, 3), name="image")
    features = resnet_features(image, RESNET["widths"], RESNET["blocks"], RESNET["stem_stride"], RESNET["head"],
                               head_name="features")
    return keras.Model(image, features, name="discriminator_trunk")


DISCRIMINATORS = ("dcgan", "resnet")  # gan.train --discriminator


def build_trunk(image_size=64, kind="dcgan", spectral_norm=False, filters=DISCRIMINATOR_FILTERS):
    """The discriminator trunk of `kind`: "dcgan" (Radford et al.'s) or "resnet" (the resnet recipe's network)."""
    if kind == "resnet":
        return build_resnet_discriminator_trunk(image_size)
    return build_discriminator_trunk(image_size, filters, spectral_norm)


def build_discriminator(image_size=64, filters=DISCRIMINATOR_FILTERS, spectral_norm=False, kind="dcgan"):
    """The trunk of `kind` (build_trunk) and one logit."""
    trunk = build_trunk(image_size, kind, spectral_norm, filters)
    logit = layers.Dense(1, dtype="float32", kernel_initializer=_init(), name="logit")(trunk.output)
    return keras.Model(trunk.input, logit, name="discriminator")


def trunk_of(discriminator):
    """The discriminator without its logit layer (shares the weights)."""
    return keras.Model(discriminator.input, discriminator.get_layer("features").output, name="discriminator_trunk")


def probe_trunk_of(discriminator, features):
    """What a linear probe reads of a discriminator: "last" (the trunk's flat output), "pooled" (every block's
    activations average-pooled and concatenated) or "blockN" (block N's activations, flattened: an
    intermediate layer, before the last layers specialise in "real vs this generator"). Needs named blocks
    (down1_act ...), which every discriminator trained since pooled probes existed has."""
    if features == "last":
        return trunk_of(discriminator)
    acts = discriminator_blocks(discriminator)
    if not acts:
        raise ValueError("this discriminator has no named blocks (trained before intermediate probes existed)")
    if features == "pooled":
        pooled = [layers.GlobalAveragePooling2D(name=f"pool{i + 1}")(a) for i, a in enumerate(acts)]
        out = layers.Concatenate(name="pooled_features")(pooled)
    else:
        block = int(features.removeprefix("block"))
        if not 1 <= block <= len(acts):
            raise ValueError(f"--probe-features {features}: this discriminator has blocks 1 to {len(acts)}")
        out = layers.Flatten(name=f"block{block}_features")(acts[block - 1])
    return keras.Model(discriminator.input, out, name="discriminator_trunk")
