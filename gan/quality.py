"""How good is a generator? KID between its faces and held-out real faces, read against two anchors.

KID (Binkowski et al. 2018: unbiased MMD^2 with a cubic polynomial kernel, averaged over subsets, with the
spread over subsets) is printed beside
  floor    real training faces vs the same held-out real faces: what a perfect generator would score;
  ceiling  the step-0 (untrained) generator's faces: where training started,
all in one feature space, so "x closer" = (ceiling - floor) / (generator - floor) says how much of the way
from noise to real faces the generator went. Held-out reals are the validation split's real faces, which
the GAN never trains on.

Feature spaces: an ImageNet InceptionV3 (the standard FID/KID network) when its weights are on this
machine (Keras's model cache or --inception-weights); otherwise, said in one line, the baseline detector's
penultimate layer (a network this kit trained, so NOT comparable with published FID/KID), or a fixed
random CNN where the experiment has no baseline yet.
"""
import os

import keras
from keras import layers
import numpy as np
import tensorflow as tf

from classifiers.backbones import keras_cache_dir
from classifiers.layers import load_model_safely
from data.runs import BrokenRun, experiment_dir, read_run
from gan.dcgan import to_uint8

SAMPLES = 256
MAX_REALS = 2000  # of each side's real faces: KID draws 20 subsets of 100, so more only costs time and memory
KID_SUBSETS = 20
KID_SUBSET_SIZE = 100
INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299


def kid(a, b, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """(mean, sd) of the unbiased MMD^2 (cubic polynomial kernel) over random subsets of a and b."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def closer(generator, floor, ceiling):
    """How many times closer to the floor than the step-0 generator; inf when at or below the floor."""
    gap = generator - floor
    return float("inf") if gap <= 0 else float((ceiling - floor) / gap)


def _random_features(image_size, seed):
    init = keras.initializers.HeNormal(seed=seed)
    x = inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    for f in (32, 64, 128):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", kernel_initializer=init)(x)
    return keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def _resize(imgs, size):
    if imgs.shape[1] == size:
        return imgs.astype("float32")

    return tf.image.resize(imgs.astype("float32"), (size, size), antialias=True).numpy()


def inception_weights(path=None):
    """(path of local InceptionV3 no-top weights or None, why not)."""
    if path:
        if not os.path.isfile(path):
            return None, f"--inception-weights {path} is not a file"
        return path, ""

    cached = os.path.join(keras_cache_dir(), INCEPTION_FILE)
    if os.path.isfile(cached):
        return cached, ""
    return None, f"no ImageNet InceptionV3 weights here ({cached} or --inception-weights PATH)"


def inception_features(path):
    net = keras.applications.InceptionV3(include_top=False, weights=path, pooling="avg",
                                         input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))

    def features(imgs):
        out = []
        for i in range(0, len(imgs), 32):  # resized in batches: 256 images at 299 px are 270 MB in float32
            x = _resize(imgs[i:i + 32], INCEPTION_SIZE) / 127.5 - 1.0
            out.append(net.predict(x, verbose=0))
        return np.concatenate(out)

    return features


def kit_feature_space(runs_dir, experiment, image_size, seed=0):
    """(features(uint8 images) -> array, name of the space, baseline model and run.json or None)."""
    folder = os.path.join(experiment_dir(runs_dir, experiment), "baseline")
    try:
        info = read_run(folder)
        model = load_model_safely(os.path.join(folder, "model.keras"))
    except BrokenRun:
        net = _random_features(image_size, seed)
        return (lambda imgs: net.predict(imgs.astype("float32"), verbose=0)), "random CNN (seeded)", None, None
    net = keras.Model(model.input, model.get_layer("p_fake").input)
    size = int(info["image_size"])
    return (lambda imgs: net.predict(_resize(imgs, size), verbose=0)), "baseline detector's penultimate layer", model, info


def sample(generator, latent_dim, n=SAMPLES, seed=0):
    z = np.random.default_rng(seed).normal(size=(n, latent_dim)).astype("float32")
    return to_uint8(generator.predict(z, batch_size=64, verbose=0))


def at_most(images, n, seed):
    """All the images in memory, or n of them drawn by the seed (a decode cache reads just those)."""
    if len(images) <= n:
        return images[np.arange(len(images))]
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


class QualityJudge:
    """KID of generated faces against held-out reals, with the floor, in each feature space available.

    Held-out features and the floor are computed once; `kid_of(images)` is then cheap enough to run
    during training (the kit's own space only, `spaces=("kit",)`)."""

    def __init__(self, runs_dir, experiment, train_reals, heldout_reals, seed=0, inception=None, log=print):
        self.seed = seed
        train_reals, heldout_reals = at_most(train_reals, MAX_REALS, seed), at_most(heldout_reals, MAX_REALS, seed)
        size = heldout_reals.shape[1]
        kit_fn, kit_name, self.baseline, self.baseline_info = kit_feature_space(runs_dir, experiment, size, seed)
        self.spaces = {"kit": (kit_name, kit_fn)}
        path, why = inception_weights(inception)
        if path:
            self.spaces["inception"] = ("ImageNet InceptionV3 pool features (standard KID)", inception_features(path))
        else:
            log(f"quality: {why}; KID in the {kit_name} instead (not comparable with published KID)")
        self.inception_missing = why
        self.heldout = {k: fn(heldout_reals) for k, (_, fn) in self.spaces.items()}
        self.floor = {k: self._kid(k, fn(train_reals)) for k, (_, fn) in self.spaces.items()}

    def _kid(self, space, features):
        return kid(features, self.heldout[space], seed=self.seed)

    def kid_of(self, images, spaces=None):
        """{space: (mean, sd)} for these generated faces."""
        return {k: self._kid(k, fn(images)) for k, (_, fn) in self.spaces.items() if spaces is None or k in spaces}

    def summary(self, images, ceiling):
        """run.json's quality figures: generator, floor and ceiling KID per space, and the baseline's verdict."""
        out = {"samples": int(len(images)), "heldout_reals": int(len(next(iter(self.heldout.values())))),
               "kid_subsets": KID_SUBSETS, "spaces": {}}
        for space, figure in self.kid_of(images).items():
            floor, top = self.floor[space], ceiling[space]
            out["spaces"][space] = {"feature_space": self.spaces[space][0], "generator": list(figure),
                                    "floor": list(floor), "ceiling": list(top),
                                    "times_closer_than_step0": closer(figure[0], floor[0], top[0])}
        if self.inception_missing:
            out["inception"] = self.inception_missing
        if self.baseline is not None:
            p = self.baseline.predict(_resize(images, int(self.baseline_info["image_size"])), verbose=0).reshape(-1)
            out["baseline_calls_fake"] = float(np.mean(p >= float(self.baseline_info.get("threshold") or 0.5)))
        return out


def describe(quality):
    """One line per feature space: 'KID 0.012 +- 0.002 (floor ..., step 0 ...): 9.1x closer, <space>'."""
    lines = []
    for s in quality["spaces"].values():
        g, f, c = s["generator"], s["floor"], s["ceiling"]
        lines.append(f"KID {g[0]:.4f} +- {g[1]:.4f} (real-vs-real floor {f[0]:.4f} +- {f[1]:.4f}, step-0 generator "
                     f"{c[0]:.4f} +- {c[1]:.4f}): {s['times_closer_than_step0']:.1f}x closer to the floor than at "
                     f"step 0; {s['feature_space']}")
    return lines
