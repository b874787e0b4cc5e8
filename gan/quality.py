"""Generator quality offline: KID in the feature space of a network this kit trained (or a fixed random
CNN where none exists), and the share of generated faces the baseline detector calls fake.

No pretrained Inception network can be downloaded here, so these figures are NOT comparable with
published FID / KID numbers; they compare generators within one experiment.
"""
import os

import numpy as np

SAMPLES = 256
KID_SUBSETS = 10
KID_SUBSET_SIZE = 100


def kid(a, b, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """Kernel Inception Distance formula (unbiased MMD^2, cubic polynomial kernel), averaged over subsets."""
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
    return float(np.mean(values))


def _random_features(image_size, seed):
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)
    x = inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    for i, f in enumerate((32, 64, 128)):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", kernel_initializer=init)(x)
    return keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def feature_extractor(runs_dir, experiment, image_size, seed=0):
    """(features(uint8 images) -> array, name of the feature space, baseline model and run.json or None)."""
    import keras

    from data.runs import BrokenRun, experiment_dir, load_model_safely, read_run

    folder = os.path.join(experiment_dir(runs_dir, experiment), "baseline")
    try:
        info = read_run(folder)
        model = load_model_safely(os.path.join(folder, "model.keras"))
    except BrokenRun:
        net = _random_features(image_size, seed)
        return (lambda imgs: net.predict(imgs.astype("float32"), verbose=0)), "random CNN (seeded)", None, None
    head = model.get_layer("p_fake")
    net = keras.Model(model.input, head.input)
    size = int(info["image_size"])

    def features(imgs):
        return net.predict(_resize(imgs, size), verbose=0)

    return features, "baseline detector's penultimate layer", model, info


def _resize(imgs, size):
    if imgs.shape[1] == size:
        return imgs.astype("float32")
    import tensorflow as tf

    return tf.image.resize(imgs.astype("float32"), (size, size), antialias=True).numpy()


def generator_quality(generator, real_images, latent_dim, runs_dir, experiment, seed=0, samples=SAMPLES):
    """Figures for run.json: KID (named feature space) and the baseline's verdict on generated faces."""
    from gan.dcgan import to_uint8

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(samples, latent_dim)).astype("float32")
    fake = to_uint8(generator.predict(z, verbose=0))
    real = real_images[rng.choice(len(real_images), min(samples, len(real_images)), replace=False)]
    features, space, baseline, info = feature_extractor(runs_dir, experiment, fake.shape[1], seed)
    out = {"kid": kid(features(real), features(fake), seed=seed), "kid_feature_space": space,
           "kid_note": "computed in a feature space this kit trained, NOT comparable with Inception FID/KID",
           "samples": samples}
    if baseline is not None:
        p = baseline.predict(_resize(fake, int(info["image_size"])), verbose=0).reshape(-1)
        out["baseline_calls_fake"] = float(np.mean(p >= float(info.get("threshold") or 0.5)))
    return out
