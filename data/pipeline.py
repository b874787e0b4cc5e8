"""From a split manifest to tf.data: decode, resize, shuffle, augment, batch, prefetch.

The experiment's splits are decoded once into a cache that every run shares (data.cache); load_split
decodes directly (perturbed test images, other folders).

Images are decoded with the same code that validated them (data.scan), so training never meets a file
it cannot read; a file that disappeared or changed since the split was made is skipped with a warning.
"""
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from data.runtime import UserError, import_tensorflow
from data.scan import BadImage, read_rgb

RESIZE_MODES = ("resize", "crop")  # squash the whole face to the input size, or cut its centre at full detail
RESIZE = RESIZE_MODES[0]  # the default: what a run recorded before the setting existed was made with

AUGMENTATIONS = ("flip", "shift", "jpeg", "blur", "resize")
AUGMENT_PROBABILITY = 0.3  # of each perturbation (flip is always 50 / 50)
JPEG_QUALITY = (50, 95)
BLUR_SIGMA = (0.3, 1.5)
DOWNSCALE = (0.5, 0.9)
SHIFT_FRACTION = 0.125  # of the side: faces are roughly aligned, so small shifts keep the face in view
READ_BATCH = 64  # images read from a decode cache (data.cache) at a time


def resize_mode_of(info):
    """The resize mode a run (its run.json) was trained with."""
    return info.get("resize_mode", RESIZE)


def fit_square(img, size, mode=RESIZE):
    """Centre-crop to a square, then resize (mode 'resize') or cut the central size x size ('crop')."""
    w, h = img.size
    side = min(w, h)
    if mode == "crop" and side >= size:
        left, top = (w - size) // 2, (h - size) // 2
        return img.crop((left, top, left + size, top + size))
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BILINEAR)
    return img


def _load_one(args):
    path, expected_sha, size, mode, transform, aligner = args
    try:
        img, raw = read_rgb(path)
    except BadImage as e:
        return None, str(e)
    sha = hashlib.sha256(raw).hexdigest() if expected_sha or aligner else None
    if expected_sha and sha != expected_sha:
        return None, "changed since the split was made (sha256 differs)"
    original = img
    if transform is not None:
        img = transform(img)
    if aligner is not None:
        try:
            img = aligner(img, sha, original)
        except ValueError as e:  # data.align.NoFace: its message says why
            return None, f"no face to judge: {e}"
    return np.asarray(fit_square(img, size, mode), dtype=np.uint8), None


def load_images(paths, image_size, mode=RESIZE, expected_sha=None, workers=None, transform=None, aligner=None):
    """Decode files to a uint8 array (N, size, size, 3). Returns (array, kept indices, [(path, reason)]).

    transform, if given, is applied to each full-size RGB Pillow image before it is resized (used to
    perturb test images the way the world would: at their own resolution). aligner (data.align.Aligner), if
    given, then frames the face as the run was trained, from the unperturbed file's landmarks."""
    if mode not in RESIZE_MODES:
        raise UserError(f"unknown resize mode {mode!r}; choose {' or '.join(RESIZE_MODES)}")
    expected_sha = expected_sha or [None] * len(paths)
    jobs = [(p, s, image_size, mode, transform, aligner) for p, s in zip(paths, expected_sha)]
    out = np.zeros((len(paths), image_size, image_size, 3), np.uint8)
    kept, failed = [], []
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
        for i, (arr, reason) in enumerate(pool.map(_load_one, jobs)):
            if arr is None:
                failed.append((paths[i], reason))
            else:
                out[len(kept)] = arr
                kept.append(i)
    return out[:len(kept)], kept, failed


def load_split(manifest, split, image_size, mode=RESIZE, transform=None, aligner=None):
    """Images and labels (float32, 1 = fake) of one side of the split, decoded and resized once."""
    files = [f for f in manifest["files"] if f["split"] == split]
    root = manifest["data_dir"]
    x, kept, failed = load_images([os.path.join(root, f["path"]) for f in files], image_size, mode,
                                  [f["sha256"] for f in files], transform=transform, aligner=aligner)
    for path, reason in failed:
        print(f"warning: skipping {path}: {reason}", file=sys.stderr)
    files = [files[i] for i in kept]
    if not files:
        raise UserError(f"the {split} split of {root} has no readable images")
    y = np.array([f["label"] for f in files], np.float32)
    return x, y, [f["path"] for f in files]


def _gaussian_blur(tf, image, sigma):
    radius = 3
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    k2 = kernel[:, None] * kernel[None, :]
    k2 = tf.tile(k2[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, k2, [1, 1, 1, 1], "VALID")[0]


def augment_image(image, seed, augment):
    """Random training perturbations of one float32 [0, 255] image, driven by a stateless seed."""
    tf = import_tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, num=8)
    size = tf.shape(image)[:2]

    def maybe(i, fn, img):
        apply = tf.random.stateless_uniform([], seeds[i]) < AUGMENT_PROBABILITY
        return tf.cond(apply, lambda: fn(img), lambda: img)

    if "flip" in augment:
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if "shift" in augment:
        pad = max(1, int(round(image.shape[0] * SHIFT_FRACTION)))
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seeds[7])
    if "resize" in augment:
        factor = tf.random.stateless_uniform([], seeds[1], *DOWNSCALE)

        def down_up(img):
            small = tf.cast(tf.cast(size, tf.float32) * factor, tf.int32)
            return tf.image.resize(tf.image.resize(img, small, antialias=True), size)

        image = maybe(2, down_up, image)
    if "blur" in augment:
        sigma = tf.random.stateless_uniform([], seeds[3], *BLUR_SIGMA)
        image = maybe(4, lambda img: _gaussian_blur(tf, img, sigma), image)
    if "jpeg" in augment:
        def recompress(img):
            img = tf.image.stateless_random_jpeg_quality(img / 255.0, *JPEG_QUALITY, seeds[5]) * 255.0
            return tf.ensure_shape(img, image.shape)

        image = maybe(6, recompress, image)
    return tf.clip_by_value(image, 0.0, 255.0)


def mixup_batch(images, labels, seed, alpha):
    """Mixup (Zhang et al. 2018): each image blended with the batch's reversed order, labels alike."""
    tf = import_tensorflow()
    n = tf.shape(images)[0]
    a = tf.random.stateless_gamma([n], seed, alpha)
    b = tf.random.stateless_gamma([n], seed + 1, alpha)
    lam = a / (a + b)
    images = lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * tf.reverse(images, [0])
    return images, lam * labels + (1 - lam) * tf.reverse(labels, [0])


def select(images, selection):
    """images[selection] (a boolean mask or positions): a decode cache's subset is its rows, nothing read."""
    return images.subset(selection) if hasattr(images, "subset") else images[selection]


def image_elements(x, y, training=False, seed=0):
    """tf.data of (uint8 image, label), shuffled every epoch when training. x: numpy in memory, or a decode
    cache's CachedImages read in batches by position. The shuffle sees only positions, so both give the
    same order for the same seed, and a cache's shuffle buffer holds indices, not images."""
    tf = import_tensorflow()
    if not hasattr(x, "read"):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True) if training else ds
    labels = np.asarray(y, np.float32)
    ds = tf.data.Dataset.range(len(x))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def read(positions):
        images, batch_labels = tf.numpy_function(lambda p: (x.read(p), labels[p]), [positions],
                                                 [tf.uint8, tf.float32], stateful=False)
        return tf.ensure_shape(images, (None,) + x.image_shape), tf.ensure_shape(batch_labels, [None])

    return ds.batch(READ_BATCH).map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def make_dataset(x, y, batch_size, training=False, seed=0, augment=(), mixup=0.0):
    """tf.data over uint8 images (in memory or a decode cache): shuffled every epoch and augmented when
    training. mixup > 0 (training only) blends whole batches with a Beta(mixup, mixup) weight."""
    tf = import_tensorflow()
    unknown = set(augment) - set(AUGMENTATIONS)
    if unknown:
        raise UserError(f"unknown augmentation {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}")
    ds = image_elements(x, y, training, seed)
    to_float = lambda img, label: (tf.cast(img, tf.float32), label)  # noqa: E731
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: (augment_image(tf.cast(pair[0], tf.float32), s, tuple(augment)), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if training and mixup > 0:
        seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda batch, s: mixup_batch(batch[0], batch[1], s, mixup),
                                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
