"""`python -m gan.train`: a DCGAN trained on faces, whose discriminator then becomes the detector.

Stage 1 (gan)       the DCGAN on the training split only (its Real images by default), never on
                    validation or test images, for a budget of optimizer steps and minutes, in rounds
                    (a sample grid, a KID figure and a checkpoint after each); DiffAugment on all D sees, an
                    averaged (EMA) generator for samples and quality. Run folder `dcgan/`: generator.keras
                    (the average), generator_raw.keras, discriminator.keras, samples/, logs/, and in
                    run.json KID against held-out real faces beside its floor and its step-0 ceiling.
Stage 2 (finetune)  the discriminator's trunk with a fresh sigmoid head on the real / fake labels: the head
                    alone first, then everything at a lower learning rate -> `dcgan-discriminator`.
                    (Each variant and the controls it is compared with: one entry of gan/variants.py.)
                    Two controls with the same budget: `dcgan-linear-probe` (trunk frozen throughout) and
                    `dcgan-scratch` (the same architecture from random weights), so the comparison can say
                    whether GAN pretraining helped. With --seeds N (the quick preset: 3) each is trained N
                    times from the one GAN, `dcgan-scratch.seed1337` ..., and compare.report gives mean and
                    spread per variant and the paired difference across seeds: one run settles nothing.
                    Before them, two detectors that never saw a labelled fake (gan/label_free.py):
                    `dcgan-zero-shot` (the discriminator's own verdict) and `dcgan-one-class` (distance of
                    its features from the real training faces'), no gradient step, seconds each.

--discriminator resnet  the same, with the network of the `resnet` detector recipe as the discriminator (R1
                    penalty on, gan/dcgan.py), in its own folder `dcgan-resnet/`. Stage 2 then fine-tunes it
                    with the resnet recipe itself -> `dcgan-resnet-discriminator`, beside
                    `dcgan-resnet-scratch`: the resnet recipe from random weights, paired seed by seed.
"""
import argparse
import dataclasses
import os
import sys
import time

import keras
from keras import layers
import numpy as np
import tensorflow as tf

from classifiers.checkpoint import ensure_room_for
from classifiers.heads import to_gan_range
from classifiers.layers import load_model_safely
from classifiers.models import compile_detector, inner_model
from classifiers.registry import RESNET, augmentations, resnet_recipe
from classifiers.runner import (Phase, Run, epochs_in_order, labelled_subset, prepare, record_header, train_run,
                                training_steps)
from data.pipeline import image_elements, select
from data.runs import BrokenRun, experiment_dir, finished_run, read_json, read_run, write_atomic, write_json_atomic
from data.runtime import (UserError, add_common_args, configuration, default_of, label_count, positive_int,
                          run_main, setup)
from gan.config import PRESETS, R1_GAMMA, GanConfig, probe_features, recorded_config, resolve_config
from gan.dcgan import DCGAN, SampleGrid
from gan.label_free import ONE_CLASS, ZERO_SHOT, label_free_runs
from gan.models import DISCRIMINATORS, build_discriminator, build_generator, build_trunk, probe_trunk_of, trunk_of
from gan.quality import QualityJudge, describe, sample
from gan.variants import HEAD_LEARNING_RATE, variants_of

LABEL_FREE = (ZERO_SHOT, ONE_CLASS)  # the default GAN's; with --discriminator resnet: dcgan-resnet-zero-shot ...

HEAD_DROPOUT = 0.2
SAMPLE_GRID = 32  # fixed latent vectors drawn every round
SEED_SUFFIX = ".seed"  # dcgan-scratch.seed1338: compare.report groups the runs of one variant


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m gan.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--preset", choices=tuple(PRESETS), default=default_of(GanConfig, "preset"))
    p.add_argument("--stage", choices=("all", "gan", "finetune"), default=default_of(GanConfig, "stage"))
    p.add_argument("--image-size", type=positive_int, help="64 (default) or 128; any power of two >= 16")
    p.add_argument("--gan-steps", type=positive_int, help="GAN optimizer steps (rounded up to whole rounds)")
    p.add_argument("--gan-minutes", type=float,
                   help="a cap: stop the GAN before a round would end past this many minutes (default 0: the steps "
                        "alone decide, so every machine trains the same GAN); a run it cuts short is recorded and "
                        "reported as such")
    p.add_argument("--sample-every", type=positive_int,
                   help="steps per round: a sample grid, a quality figure and a checkpoint after each")
    p.add_argument("--gan-batch-size", type=positive_int)
    p.add_argument("--gan-data", choices=("real", "all"), default=default_of(GanConfig, "gan_data"),
                   help="train the GAN on the training split's real images (default) or on all of them")
    p.add_argument("--diffaugment", help="DiffAugment policy, e.g. color,translation,cutout; 'none' to switch off")
    p.add_argument("--ema-decay", type=float, help="generator weight averaging per step, 0 for none (e.g. 0.999)")
    p.add_argument("--label-smoothing", type=float, help="one-sided, e.g. 0.1 (preset decides by default)")
    p.add_argument("--instance-noise", type=float, help="std of noise on D's inputs, e.g. 0.1")
    p.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction,
                   help="spectral normalisation in D instead of BatchNorm (preset decides by default)")
    p.add_argument("--discriminator", choices=DISCRIMINATORS, default=default_of(GanConfig, "discriminator"),
                   help="dcgan (Radford et al.'s, default) or resnet (the resnet detector recipe's network, trained "
                        "with the R1 penalty, fine-tuned with the resnet recipe); its runs are named dcgan-resnet-*")
    p.add_argument("--r1-gamma", type=float, help="R1 gradient penalty weight (default: 0 for dcgan, "
                                                  f"{R1_GAMMA['resnet']:g} for resnet)")
    p.add_argument("--inception-weights", help="a local InceptionV3 no-top weights file for standard KID")
    p.add_argument("--finetune-epochs", type=positive_int)
    p.add_argument("--head-epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--seeds", type=positive_int,
                   help="stage 2 trains each detector from the one GAN with this many seeds (seed, seed+1, ...)")
    p.add_argument("--probe-features", type=probe_features,
                   help="what the linear probe reads: last (the trunk's output), pooled (every block, "
                        "average-pooled) or blockN (block N flattened, e.g. block3)")
    p.add_argument("--labels", type=label_count, metavar="N|F|all",
                   help="stage 2 on N labelled training images (half of each class; or a fraction F), drawn per seed "
                        "and nested; the GAN still learns from every training face --gan-data allows")
    p.add_argument("--retrain", action="store_true",
                   help="train every stage again, even where a finished run of this configuration exists")
    return p.parse_args(argv)


def gan_dataset(images, batch_size, seed):
    """uint8 faces (in memory or a decode cache) -> shuffled batches in [-1, 1] (the generator's tanh range)."""
    if len(images) < batch_size:
        raise UserError(f"the GAN needs at least {batch_size} training images, the split has {len(images)}")
    ds = image_elements(images, np.zeros(len(images), np.float32), training=True, seed=seed)
    ds = ds.map(lambda image, label: image).batch(batch_size, drop_remainder=True)
    return ds.map(lambda b: tf.cast(b, tf.float32) / 127.5 - 1.0).prefetch(tf.data.AUTOTUNE)


def kept_run(cfg, manifest, name, role, gan_created=None):
    """run.json of a finished `name` this configuration made on this split, said aloud; None to train it;
    UserError where a finished run of another configuration would be replaced without --retrain.
    role: which settings make it (gan.config.STAGES, or "label-free": the GAN alone)."""
    final = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), name)
    return finished_run(final, cfg, manifest, role, made_from=gan_created and ("gan", gan_created))


def train_gan(cfg, data):
    """Stage 1. Writes runs/<experiment>/<cfg.gan_name>/ unless this configuration's GAN is there; its folder."""
    if kept_run(cfg, data.manifest, cfg.gan_name, "gan") is None:
        return train_run(GanTraining(cfg, data), cfg, data)[0]
    return os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), cfg.gan_name)


def make_gan(cfg):
    size, latent = cfg.image_size, cfg.latent_dim
    discriminator = build_discriminator(size, spectral_norm=cfg.spectral_norm, kind=cfg.discriminator)
    gan = DCGAN(build_generator(size, latent), discriminator, latent, label_smoothing=cfg.label_smoothing,
                instance_noise=cfg.instance_noise, seed=cfg.seed, augment=cfg.augment_policy,
                ema_decay=cfg.ema_decay, r1_gamma=cfg.r1_gamma)
    gan.compile()
    return gan


def step0_quality(work, gan, judge, cfg):
    """KID of the untrained generator: the ceiling. Measured before the first step and kept in the work
    folder, so a resumed run reads the very figure its start measured."""
    path = os.path.join(work, "quality_step0.json")
    kept = read_json(path)
    if kept is not None:
        return {k: tuple(v) for k, v in kept.items()}
    ceiling = judge.kid_of(sample(gan.ema_generator, cfg.latent_dim, seed=cfg.seed))
    write_json_atomic(path, ceiling)
    return ceiling


class StepBudget:
    """Builds the callback that ends every round with one line (step, steps/s, losses, KID of the averaged
    generator, time left) and stops before a round would end past the minute budget."""

    def __init__(self, cfg, progress, judge):
        self.cfg, self.progress, self.judge = cfg, progress, judge
        self.stopped_by = "steps"

    def callback(self):
        outer, cfg = self, self.cfg
        budget = cfg.gan_minutes * 60 or float("inf")

        class _Budget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.base, self.started = outer.progress.state["seconds"], time.time()

            def on_epoch_begin(self, epoch, logs=None):
                self.round_start = (time.time(), int(self.model.g_optimizer.iterations.numpy()))

            def on_epoch_end(self, epoch, logs=None):
                now, steps = time.time(), int(self.model.g_optimizer.iterations.numpy())
                rate = (steps - self.round_start[1]) / max(now - self.round_start[0], 1e-9)
                fake = sample(self.model.ema_generator, cfg.latent_dim, seed=cfg.seed)
                kid = outer.judge.kid_of(fake, spaces=("kit",))["kit"][0]
                logs["kid"] = kid  # recorded in the history and in TensorBoard beside the losses
                elapsed = self.base + now - self.started
                left = min((cfg.gan_steps - steps) / rate, budget - elapsed)
                r1 = f", R1 {logs['r1']:.3f}" if "r1" in logs else ""
                if steps < cfg.gan_steps and not getattr(self, "estimated", False):  # after this process's first
                    # round: what the whole GAN costs on this machine
                    self.estimated = True
                    total = elapsed + (cfg.gan_steps - steps) / rate
                    cap = (f"; --gan-minutes {cfg.gan_minutes:g} stops it at about step "
                           f"{min(cfg.gan_steps, steps + int(max(budget - elapsed, 0) * rate)):,}"
                           if total > budget else "")
                    print(f"{cfg.gan_name}: at {rate:.1f} steps/s on this machine the {cfg.gan_steps:,} steps take "
                          f"about {total / 60:.0f} min in all, {(cfg.gan_steps - steps) / rate / 60:.0f} min from "
                          f"now{cap}", flush=True)
                print(f"{cfg.gan_name}: step {steps:,}/{cfg.gan_steps:,} ({rate:.1f} steps/s), "
                      f"d_loss {logs['d_loss']:.3f}, g_loss {logs['g_loss']:.3f}{r1}, KID {kid:.4f} "
                      f"(floor {outer.judge.floor['kit'][0]:.4f}), "
                      f"{max(left, 0) / 60:.1f} min left", flush=True)
                if steps < cfg.gan_steps and elapsed + (now - self.round_start[0]) > budget:
                    outer.stopped_by = "minutes"
                    self.model.stop_training = True
                    print(f"{cfg.gan_name}: stopping at step {steps:,}: another round would end past the "
                          f"{cfg.gan_minutes:g}-minute budget (--gan-minutes)")

        return _Budget()


class GanTraining(Run):
    """Stage 1 as a run (classifiers.runner.Run): the GAN learns from its own images in rounds of steps under a
    step and a minute budget, leaves three networks, and records its steps and quality."""
    kind = "gan"
    unit = "round"
    contents = "both networks, the averaged generator and both optimizers"

    def __init__(self, cfg, data):
        # gan_steps is whole rounds (resolve_config): one fit() epoch per round
        super().__init__(cfg.gan_name, {}, epochs=cfg.gan_steps // cfg.sample_every)
        (x, y), val = data.train, data.val
        self.cfg, self.reals, self.val_reals = cfg, select(x, y == 0), select(val[0], val[1] == 0)
        self.images = x if cfg.gan_data == "all" else self.reals
        self.judge = self.ceiling = self.budget = None

    def build(self):
        return make_gan(self.cfg)

    def fit(self, gan, cfg, data, strategy, work, progress, checkpoint, chief):
        rounds = self.epochs
        print(f"{cfg.gan_name}: {cfg.gan_steps:,} steps ({rounds} rounds of {cfg.sample_every}"
              + (f", at most {cfg.gan_minutes:g} min" if cfg.gan_minutes else "") + f") on {len(self.images):,} "
              f"{'real ' if cfg.gan_data == 'real' else ''}training images at {cfg.image_size}px, "
              f"DiffAugment {cfg.diffaugment}, generator average {cfg.ema_decay:g}, {cfg.discriminator} "
              "discriminator" + (f", R1 {cfg.r1_gamma:g}" if cfg.r1_gamma else ""))
        self.judge = QualityJudge(cfg.runs_dir, cfg.experiment, self.reals, self.val_reals, cfg.seed,
                                  cfg.inception_weights)
        self.ceiling = step0_quality(work, gan, self.judge, cfg)
        self.budget = StepBudget(cfg, progress, self.judge)
        z_fixed = np.random.default_rng(cfg.seed).normal(size=(SAMPLE_GRID, cfg.latent_dim)).astype("float32")
        callbacks = [self.budget.callback(), progress.callback(), checkpoint,
                     keras.callbacks.TensorBoard(os.path.join(work, "logs")),
                     SampleGrid(z_fixed, os.path.join(work, "logs"), os.path.join(work, "samples"))]
        gan.fit(gan_dataset(self.images, cfg.gan_batch_size, cfg.seed).repeat(), steps_per_epoch=cfg.sample_every,
                epochs=rounds, callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 0, shuffle=False)

    def save(self, gan, work):
        """Both networks, the averaged generator as generator.keras."""
        ensure_room_for(work, gan, "the generators and discriminator")
        for name, net in (("generator", gan.ema_generator), ("generator_raw", gan.generator),
                          ("discriminator", gan.discriminator)):
            write_atomic(os.path.join(work, f"{name}.keras"), net.save)

    def record(self, gan, cfg, data, progress, resumed_from, warmup_seconds, strategy):
        info = record_header(self.name, self.kind, cfg, data, progress["seconds"] + warmup_seconds)
        return dict(info, **{
            "train_images": len(self.images), "train_seconds": round(progress["seconds"], 2),
            "steps_completed": int(gan.g_optimizer.iterations.numpy()), "steps_planned": cfg.gan_steps,
            "stopped_by": self.budget.stopped_by,
            "epochs_completed": len(progress["epochs"]), "resumed_from_round": resumed_from or None,
            "generator_file": "generator.keras holds the averaged (EMA) generator; generator_raw.keras the trained one",
            "params": {"generator": int(gan.generator.count_params()),
                       "discriminator": int(gan.discriminator.count_params())},
            "quality": self.judge.summary(sample(gan.ema_generator, cfg.latent_dim, seed=cfg.seed + 1), self.ceiling),
            "history": [dict(round=e, steps=e * cfg.sample_every, **m) for e, m in epochs_in_order(progress)],
        })

    def announce(self, info, final):
        quality, name = info["quality"], info["model"]
        note = (f"; the baseline calls {quality['baseline_calls_fake']:.0%} of its faces fake"
                if "baseline_calls_fake" in quality else "")
        print(f"{name}: {info['steps_completed']:,} steps in {info['train_seconds'] / 60:.1f} min{note}; samples in "
              f"{final}/samples/")
        if info["stopped_by"] == "minutes":
            print(f"{name}: cut short by --gan-minutes {info['config']['gan_minutes']:g}: {info['steps_completed']:,} of "
                  f"the {info['steps_planned']:,} steps asked for; its detectors answer for this shorter GAN")
        for line in describe(quality):
            print(f"{name}: {line}")


def detector_from_trunk(trunk, image_size, name, dropout=HEAD_DROPOUT):
    """[0, 255] image -> the GAN's [-1, 1] scale -> trunk -> fresh sigmoid head."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = trunk(to_gan_range(inputs))
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def stage2_runs(cfg):
    """[(run name, gan.variants.Variant, seed)]: every variant of this discriminator for every seed; with one
    seed the plain names."""
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    runs = [(variant, seed) for seed in seeds for variant in variants_of(cfg.discriminator)]
    if cfg.labels is not None:  # one point of a curve over label counts: always named with its seed
        return [(f"{v.name}-labels{cfg.labels}{SEED_SUFFIX}{seed}", v, seed) for v, seed in runs]
    return [(v.name if len(seeds) == 1 else f"{v.name}{SEED_SUFFIX}{seed}", v, seed) for v, seed in runs]


def trained_gan(cfg, manifest):
    """(folder, run.json) of the experiment's finished GAN, checked against this split and image size."""
    gan_dir = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), cfg.gan_name)
    try:
        gan_info = read_run(gan_dir)
    except BrokenRun as e:
        raise UserError(f"--stage finetune needs a trained GAN: {e} (run --stage gan first)")
    if gan_info["split_fingerprint"] != manifest["fingerprint"]:
        raise UserError(f"{gan_dir} was trained on another split; retrain it with --stage gan")
    if int(gan_info["image_size"]) != cfg.image_size:
        raise UserError(f"the GAN in {gan_dir} works at {gan_info['image_size']}px; pass --image-size "
                        f"{gan_info['image_size']}")
    return gan_dir, gan_info


def fine_tune_discriminator(cfg, data):
    """Stage 2: per seed, the detector runs that differ only in where the trunk starts and what is trained."""
    gan_dir, gan_info = trained_gan(cfg, data.manifest)
    results = label_free_detectors(cfg, data, gan_dir, gan_info)
    for name, variant, seed in stage2_runs(cfg):
        run_cfg = dataclasses.replace(cfg, seed=seed)
        run_data = data if cfg.labels is None else labelled_subset(data, cfg.labels, seed, log=lambda line: None)
        kept = kept_run(run_cfg, data.manifest, name, variant.role,
                        gan_created=gan_info["created"] if variant.pretrained else None)
        if kept is None:
            keras.utils.set_random_seed(seed)  # each seed's run starts alike, whatever ran before it
            run = VARIANT_RUNS[variant.recipe](run_cfg, name, variant, gan_dir, gan_info, len(run_data.train[1]))
            kept = train_run(run, run_cfg, run_data)[1]
        results[name] = kept
    return results


def label_free_detectors(cfg, data, gan_dir, gan_info):
    """The two detectors read off the discriminator without a labelled fake (gan/label_free.py); {name: run.json}."""
    results = {}
    x, y = data.train
    for run in label_free_runs(gan_dir, gan_info, select(x, y == 0), cfg.gan_name):
        kept = kept_run(cfg, data.manifest, run.name, "label-free", gan_created=gan_info["created"])
        results[run.name] = kept if kept is not None else train_run(run, cfg, data)[1]
    return results


def variant_trunk(variant, gan_dir, gan_info, probe_features):
    """The trunk a variant starts from: the GAN's discriminator (the probe may read every block), or random."""
    if not variant.pretrained:  # the GAN's discriminator as it was built, before a step of training
        config = recorded_config(gan_info["config"])
        return build_trunk(int(gan_info["image_size"]), config["discriminator"], config["spectral_norm"])
    try:
        discriminator = load_model_safely(os.path.join(gan_dir, "discriminator.keras"))
    except BrokenRun as e:
        raise UserError(str(e))
    if not variant.reads_probe_features:
        return trunk_of(discriminator)
    try:
        return probe_trunk_of(discriminator, probe_features)
    except ValueError as e:
        raise UserError(str(e))


def trunk_trainable(trainable):
    return lambda model: setattr(inner_model(model), "trainable", trainable)


class VariantRun(Run):
    """One stage-2 run of a variant (gan/variants.py) with the dcgan recipe: a warm-up of the head alone on a
    pretrained trunk (of everything on a random one), then the main phase at the variant's rate: everything
    (dcgan-discriminator), or still the head alone (a probe)."""

    def __init__(self, cfg, name, variant, gan_dir, gan_info, train_images):
        super().__init__(name, self.recipe_hyperparameters(cfg, variant), cfg.finetune_epochs,
                         extra=gan_note(gan_info) if variant.pretrained else None, **self.recipe_phases(cfg, variant))
        self.cfg, self.variant, self.gan_dir, self.gan_info = cfg, variant, gan_dir, gan_info
        self.train_images = train_images

    @staticmethod
    def recipe_hyperparameters(cfg, variant):
        pretrained = variant.pretrained
        return {"trunk": "GAN discriminator" if pretrained else "random init", "trunk_trained": variant.trunk_trained,
                "variant": variant.name, "head_epochs": cfg.head_epochs, "head_learning_rate": HEAD_LEARNING_RATE,
                "finetune_learning_rate": variant.learning_rate, "dropout": HEAD_DROPOUT,
                "gan_run": cfg.gan_name if pretrained else None,
                "probe_features": cfg.probe_features if variant.reads_probe_features else None}

    @staticmethod
    def recipe_phases(cfg, variant):
        """The warm-up (and perturbations) of the recipe: the head alone on a pretrained trunk, else everything."""
        return {"warmup": (Phase("the head alone" if variant.pretrained else "the whole network", cfg.head_epochs,
                                 HEAD_LEARNING_RATE, trunk_trainable(not variant.pretrained)),)}

    def trunk(self):
        return variant_trunk(self.variant, self.gan_dir, self.gan_info, self.cfg.probe_features)

    def build(self):
        return detector_from_trunk(self.trunk(), int(self.gan_info["image_size"]), self.name)

    def compile(self, model):
        trunk_trainable(self.variant.trunk_trained)(model)
        return compile_detector(model, self.variant.learning_rate)


class ResnetVariantRun(VariantRun):
    """One stage-2 run with the `resnet` detector recipe itself (AdamW, warm-up and cosine decay, label
    smoothing, flips, mixup) for --finetune-epochs: from the GAN's weights after a warm-up of the new head alone
    (dcgan-resnet-discriminator), or from random weights with no warm-up (dcgan-resnet-scratch: the network and
    recipe of `classifiers.train --model resnet`)."""

    @staticmethod
    def recipe_hyperparameters(cfg, variant):
        pretrained = variant.pretrained
        return dict(RESNET, trunk="GAN discriminator" if pretrained else "random init", variant=variant.name,
                    head_epochs=cfg.head_epochs if pretrained else 0, head_learning_rate=HEAD_LEARNING_RATE,
                    gan_run=cfg.gan_name if pretrained else None)

    @staticmethod
    def recipe_phases(cfg, variant):
        """The head alone first on a pretrained trunk, none from random weights; the recipe's perturbations."""
        warmup = ((Phase("the head alone", cfg.head_epochs, HEAD_LEARNING_RATE, trunk_trainable(False)),)
                  if variant.pretrained else ())
        return {"warmup": warmup, "augment": augmentations(RESNET["augment"]), "mixup": RESNET["mixup"]}

    def trunk(self):
        return variant_trunk(self.variant, self.gan_dir, self.gan_info, None)

    def build(self):
        return detector_from_trunk(self.trunk(), int(self.gan_info["image_size"]), self.name, RESNET["dropout"])

    def compile(self, model):
        trunk_trainable(True)(model)
        steps_per_epoch = training_steps(self.train_images, self.cfg.batch_size, 1)
        return resnet_recipe(model, RESNET, steps_per_epoch, self.cfg.finetune_epochs)


# how each recipe of gan/variants.py is trained
VARIANT_RUNS = {"dcgan": VariantRun, "resnet": ResnetVariantRun}


def gan_note(gan_info):
    """What a run fine-tuned from the GAN records of it (its "created" ties the run to this very GAN)."""
    return {"gan": {"steps": gan_info.get("steps_completed"), "quality": gan_info.get("quality"),
                    "created": gan_info["created"]}}


def config(argv=(), **settings):
    """The GanConfig of `python -m gan.train ARGV`, settings given by name in place of their flags:
    config(["--gan-steps", "400"], labels="50", seeds=2, discriminator="resnet")."""
    return configuration(parse_args, resolve_config, argv, settings)


def run(cfg):
    """Train what cfg asks for (its stage: the GAN, the detectors from it, or both); the typed entry point."""
    cfg = dataclasses.replace(cfg, precision=setup(cfg.seed, cfg.precision))
    print(cfg.summary())
    data = prepare(cfg)
    if cfg.labels is not None and cfg.stage in ("all", "finetune"):
        labelled_subset(data, cfg.labels, cfg.seed)  # a --labels the split cannot give stops before the GAN trains
    if cfg.stage in ("all", "gan"):
        train_gan(cfg, data)
    if cfg.stage in ("all", "finetune"):
        fine_tune_discriminator(cfg, data)
    return 0


def main(argv=None):
    return run(resolve_config(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
