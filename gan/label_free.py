"""Detectors from the GAN's discriminator that never saw a labelled fake of any family.

Stage 1 teaches the discriminator "a real training face" against "whatever my generator draws", from
real faces alone. Two detectors read that without any fine-tuning on labelled fakes, each an ordinary run
folder (threshold chosen on validation like every detector's), so compare.report and classifiers.predict
judge them like any other:

  dcgan-zero-shot   the discriminator's own verdict: its "real" logit, negated, through a sigmoid.
                    "Looks like my generator's drawings" is not "fake": faces of a better generator can
                    look *more* real to it than real photos do, and then it is inverted.
  dcgan-one-class   how far a face lies from the real training faces: the Mahalanobis distance of the
                    discriminator's block features (each block's activations average-pooled) to theirs,
                    fit on the training split's real faces only. It asks "unlike the reals?", not "like my
                    fakes?", so a generator the GAN never imitated is not pushed towards "real".
"""
import os

import keras
from keras import layers

from classifiers.heads import SHRINKAGE, fit_gaussian, to_gan_range
from classifiers.layers import MahalanobisScore, load_model_safely
from classifiers.predict import outputs
from classifiers.runner import FittedRun
from gan.models import probe_trunk_of

LABEL_FREE_ROLES = ("-zero-shot", "-one-class")  # run names: the GAN's name and the role
ZERO_SHOT, ONE_CLASS = (f"dcgan{role}" for role in LABEL_FREE_ROLES)  # the default GAN's
ONE_CLASS_FEATURES = "pooled"  # gan.models.probe_trunk_of: every block, average-pooled


def zero_shot_detector(discriminator, image_size):
    """[0, 255] faces -> sigmoid(-logit): P(fake) as the discriminator itself would say it."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    logit = discriminator(to_gan_range(inputs))
    not_real = layers.Rescaling(-1.0, name="negate", dtype="float32")(logit)
    outputs = layers.Activation("sigmoid", name="p_fake", dtype="float32")(not_real)
    return keras.Model(inputs, outputs, name="dcgan_zero_shot")


def one_class_detector(discriminator, image_size, real_images, batch_size=64):
    """[0, 255] faces -> P(fake) rising with the distance of their block features from the real faces'.
    real_images: the training split's real faces (uint8), the only faces it is fit on."""
    trunk = probe_trunk_of(discriminator, ONE_CLASS_FEATURES)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = trunk(to_gan_range(inputs))
    score = MahalanobisScore(int(features.shape[-1]), name="p_fake")
    model = keras.Model(inputs, score(features), name="dcgan_one_class")
    extractor = keras.Model(inputs, features)
    fitted = outputs(extractor, real_images, batch_size)  # streamed from a decode cache when it is one
    mean, precision, loc_scale = fit_gaussian(fitted)
    score.set_weights([mean.astype("float32"), precision.astype("float32"), loc_scale.astype("float32")])
    return model


def label_free_runs(gan_dir, gan_info, real_images, gan_name="dcgan"):
    """The Runs of both detectors: fitted as built, no gradient step, a validation threshold like any run."""
    size = int(gan_info["image_size"])
    gan_note = {"gan": {"steps": gan_info.get("steps_completed"), "created": gan_info["created"]},
                "labelled_fakes_seen": 0}

    def discriminator():
        return load_model_safely(os.path.join(gan_dir, "discriminator.keras"))

    zero_shot, one_class = (gan_name + role for role in LABEL_FREE_ROLES)
    return [FittedRun(zero_shot, {"score": "sigmoid(-discriminator logit)", "gan_run": gan_name},
                      lambda: zero_shot_detector(discriminator(), size), extra=gan_note),
            FittedRun(one_class, {"score": "Mahalanobis distance to the real training faces",
                                  "features": ONE_CLASS_FEATURES, "shrinkage": SHRINKAGE,
                                  "fit_on": f"{len(real_images)} real training faces", "gan_run": gan_name},
                      lambda: one_class_detector(discriminator(), size, real_images), extra=gan_note)]
