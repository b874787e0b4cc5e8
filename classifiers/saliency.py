"""Where does a detector look? SmoothGrad saliency (Smilkov et al. 2017) for any Keras detector.

The map is the gradient of P(fake) with respect to the input pixels, averaged over a few noisy copies of
the image (plain gradients are speckled; the average keeps what is consistent), its absolute value taken
as the largest over the colour channels, averaged over 3x3 pixels, normalised per image to its 99th
percentile. Unlike Grad-CAM it needs no "last convolution" to be found, so it works the same for a small
CNN, a ResNet, a pretrained backbone or a model with custom layers; the price is a noisier map than
Grad-CAM's coarse one. Bright = changing these pixels would change the verdict most.
"""
import numpy as np
import tensorflow as tf

from data.runs import write_atomic

SMOOTHGRAD_SAMPLES = 8
SMOOTHGRAD_NOISE = 0.10  # standard deviation of the added noise, as a share of the 0-255 range
FACES_PER_KIND = 2  # real correct, real wrong, fake correct, fake wrong


def saliency_maps(model, images, samples=SMOOTHGRAD_SAMPLES, noise=SMOOTHGRAD_NOISE, seed=0):
    """(N, H, W) maps in [0, 1] for uint8-range images (N, H, W, 3) at the model's input size."""
    rng = np.random.default_rng(seed)
    x = np.asarray(images, np.float32)
    total = np.zeros(x.shape, np.float32)
    for _ in range(samples):
        noisy = tf.constant(x + rng.normal(0, noise * 255, x.shape).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            total_p = tf.reduce_sum(tf.cast(model(noisy, training=False), tf.float32))
        total += tape.gradient(total_p, noisy).numpy()
    amount = np.abs(total / samples).max(axis=-1)
    # a 3x3 mean over the map: single-pixel speckle says little at these sizes, regions say where it looks
    padded = np.pad(amount, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = amount.shape[1:]
    amount = sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9
    scale = np.percentile(amount.reshape(len(x), -1), 99, axis=1)[:, None, None]
    return np.clip(amount / np.maximum(scale, 1e-12), 0, 1)


def pick_faces(y, p, threshold, per_kind=FACES_PER_KIND):
    """Indices of a fixed set of test faces: per class, the most confident right and wrong verdicts of
    the reference probabilities p (where a kind has none, more of the other kind of that class)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p)
    picked = []
    for fake in (False, True):
        members = np.flatnonzero(y == fake)
        right = members[(p[members] >= threshold) == fake]
        wrong = members[(p[members] >= threshold) != fake]
        confidence = lambda idx: np.abs(p[idx] - threshold)  # noqa: E731
        right = right[np.argsort(-confidence(right), kind="stable")]
        wrong = wrong[np.argsort(-confidence(wrong), kind="stable")]
        take_wrong = wrong[:per_kind]
        picked += list(right[:2 * per_kind - len(take_wrong)]) + list(take_wrong)
    return [int(i) for i in picked]


def overlay(image, heat):
    """The face, dimmed, with the map on top in red-yellow: one uint8 RGB picture."""
    import matplotlib

    colour = matplotlib.colormaps["inferno"](heat)[..., :3] * 255
    return np.clip(0.45 * np.asarray(image, np.float32) + 0.55 * colour, 0, 255).astype(np.uint8)


def figure(images, maps, captions, title, path):
    """Two rows (faces, saliency over faces), one column per face, captions under each; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n + 0.4, 3.9), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(np.asarray(images[i], np.uint8))
        axes[1, i].imshow(overlay(images[i], maps[i]))
        axes[1, i].set_xlabel(captions[i], fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)
    return path
