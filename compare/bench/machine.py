"""`python -m compare.bench --machine`: what this machine will take, in about a minute.

The quick preset's GAN training steps per second (its DCGAN, batch and input size, DiffAugment on) and a
detector's training images per second (baseline and resnet at their quick settings, with their augmentation),
each on random faces in memory after a warm-up, beside the CPU's flags, the precision and any oneDNN cap
(ONEDNN_MAX_CPU_ISA); then what the quick GAN would take here. A benchmark: it prints figures, asserts nothing.
"""
import os
import time

import keras
import numpy as np

from classifiers.config import DetectorConfig
from classifiers.registry import DETECTORS, augmentations
from data.pipeline import make_dataset
from data.runtime import ISA_ENV, cpu_flags
from gan import train as gan_train

SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")  # what decides the speed
IMAGES = 256  # random faces the measurements cycle through
DETECTORS_MEASURED = ("baseline", "resnet")


def cpu_description():
    capped = next((f"{name}={os.environ[name]}" for name in ISA_ENV if os.environ.get(name)), None)
    return {"cpu_flags": " ".join(f for f in SHOWN_FLAGS if f in cpu_flags()), "cpu_count": os.cpu_count(),
            "onednn_cap": capped, "date": time.strftime("%Y-%m-%d")}


class StepClock(keras.callbacks.Callback):
    """When the first step began and the last one ended: the steps alone. A fit() also builds and tears down
    its dataset iterator; the teardown of a repeated dataset took 0 or 2 s at random, which made a minute's
    measurement look like a machine whose speed jumps between two values."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.ended = time.perf_counter()


def timed_fit(model, dataset, warmup, steps):
    """Steps per second of model.fit over `steps` steps, after `warmup` steps (tracing, buffers)."""
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    clock = StepClock()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    return steps / (clock.ended - clock.began)


def gan_rate(precision, warmup, steps, seed=0):
    """(GAN steps/s, the quick preset's GanConfig) for the quick preset's DCGAN."""
    cfg = gan_train.config(precision=precision, seed=seed)
    faces = np.random.default_rng(seed).integers(0, 256, (IMAGES, cfg.image_size, cfg.image_size, 3), np.uint8)
    gan = gan_train.make_gan(cfg)
    return timed_fit(gan, gan_train.gan_dataset(faces, cfg.gan_batch_size, seed).repeat(), warmup, steps), cfg


def detector_rate(name, warmup, steps, seed=0):
    """Training images/s of a registered detector at its quick settings, with its own augmentation and mixup."""
    cfg = DetectorConfig.from_preset("quick", model=name, seed=seed)
    detector = DETECTORS[name]
    hp = detector.hyperparameters(cfg)
    model = detector.recipe(detector.build(cfg, hp), hp, 100, cfg.epochs)
    size = cfg.image_size
    x = np.random.default_rng(seed).integers(0, 256, (IMAGES, size, size, 3), np.uint8)
    y = (np.arange(IMAGES) % 2).astype(np.float32)
    ds = make_dataset(x, y, cfg.batch_size, training=True, seed=seed, augment=augmentations(hp.get("augment")),
                      mixup=hp.get("mixup", 0.0)).repeat()
    return timed_fit(model, ds, warmup, steps) * cfg.batch_size


def measure(policy, warmup=10, steps=60, log=print):
    """Every figure, as one JSON-ready record."""
    out = dict(cpu_description(), precision=policy)
    log(f"GAN steps ({steps} after {warmup} warm-up) ...")
    out["gan_steps_per_s"], cfg = gan_rate(policy, warmup, steps)
    out["gan_steps_quick"] = cfg.gan_steps
    out["gan_minutes_quick"] = cfg.gan_steps / out["gan_steps_per_s"] / 60
    for name in DETECTORS_MEASURED:
        log(f"{name} training ...")
        out[f"{name}_images_per_s"] = detector_rate(name, max(2, warmup // 2), max(4, steps // 3))
    return out


def table(r):
    cap = f", oneDNN capped ({r['onednn_cap']})" if r["onednn_cap"] else ""
    lines = [f"CPU: {r['cpu_count']} cores, flags {r['cpu_flags'] or '(none of ' + ' '.join(SHOWN_FLAGS) + ')'}"
             f"{cap}; precision {r['precision']}; {r['date']}", "",
             "| what | this machine |", "|---|---|",
             f"| quick GAN, training steps/s (64 px, batch 32, DiffAugment) | {r['gan_steps_per_s']:.2f} |"]
    lines += [f"| {name} training, images/s (quick settings) | {r[f'{name}_images_per_s']:.0f} |"
              for name in DETECTORS_MEASURED]
    lines += ["", f"The quick GAN's {r['gan_steps_quick']:,} steps take about {r['gan_minutes_quick']:.0f} min here "
                  "(then stage 2's detectors)."]
    return "\n".join(lines)
