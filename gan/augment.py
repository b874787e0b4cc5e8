"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentation for data-efficient GAN training.

The discriminator sees every image, real or generated, only after the same random colour jitter,
translation and cutout, in both the discriminator's and the generator's step. It cannot memorise the few
real training faces, and since every operation is differentiable the generator's gradient passes through
the augmentation unchanged in kind. Images are in [-1, 1]; policies follow the paper's
"color,translation,cutout".
"""
import keras
import tensorflow as tf

POLICY = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the side, zeros (mid-grey) filling in
CUTOUT_RATIO = 0.5  # a square of half the side set to zero


def _uniform(shape, seed_generator, low=0.0, high=1.0):
    return keras.random.uniform(shape, low, high, seed=seed_generator)


def color(x, seed_generator):
    n = tf.shape(x)[0]
    x = x + (_uniform((n, 1, 1, 1), seed_generator) - 0.5)  # brightness
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * (_uniform((n, 1, 1, 1), seed_generator) * 2.0) + mean  # saturation
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (_uniform((n, 1, 1, 1), seed_generator) + 0.5) + mean  # contrast


def translation(x, seed_generator, ratio=TRANSLATION_RATIO):
    """Each image shifted by its own whole-pixel offset; gathers, so gradients flow to the pixels kept."""
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = keras.random.randint((n, 1), -sy, sy + 1, seed=seed_generator)
    tx = keras.random.randint((n, 1), -sx, sx + 1, seed=seed_generator)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])  # the border row / column of zeros fills in
    rows = tf.clip_by_value(tf.range(h)[None, :] + ty + 1, 0, h + 1)
    cols = tf.clip_by_value(tf.range(w)[None, :] + tx + 1, 0, w + 1)
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def cutout(x, seed_generator, ratio=CUTOUT_RATIO):
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = keras.random.randint((n, 1), 0, h + (1 - ch % 2), seed=seed_generator) - ch // 2
    cx = keras.random.randint((n, 1), 0, w + (1 - cw % 2), seed=seed_generator) - cw // 2
    in_rows = (tf.range(h)[None, :] >= cy) & (tf.range(h)[None, :] < cy + ch)
    in_cols = (tf.range(w)[None, :] >= cx) & (tf.range(w)[None, :] < cx + cw)
    hole = tf.cast(in_rows[:, :, None] & in_cols[:, None, :], x.dtype)
    return x * (1.0 - hole)[..., None]


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x, seed_generator, policy=POLICY):
    for name in policy:
        x = OPERATIONS[name](x, seed_generator)
    return x
