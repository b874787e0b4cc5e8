"""`python -m gan.train`: a DCGAN trained on faces, whose discriminator then becomes the detector.

Stage 1 (gan)       the DCGAN on the training split only (its Real images by default), never on
                    validation or test images; run folder `dcgan/` (generator, discriminator, sample grids).
Stage 2 (finetune)  the discriminator's trunk with a fresh sigmoid head on the real / fake labels: the head
                    alone first, then everything at a lower learning rate -> `dcgan-discriminator/`.
                    Two controls with the same budget: `dcgan-linear-probe/` (trunk frozen throughout) and
                    `dcgan-scratch/` (the same architecture from random weights), so the comparison can say
                    whether GAN pretraining helped.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from data.runtime import UserError, add_common_args, positive_int, run_main, setup

PRESETS = {
    # quick: a few hundred GAN steps on 2 CPU cores. With the plain BatchNorm discriminator D won within
    # ~100 steps on the development faces (d_loss 0.02, samples stayed noise); with spectral normalisation,
    # one-sided label smoothing 0.1 and batch 32, face-like samples appeared by step ~180 (not ablated).
    "quick": {"image_size": 64, "gan_epochs": 30, "gan_batch_size": 32, "head_epochs": 2, "finetune_epochs": 6,
              "batch_size": 32, "spectral_norm": True, "label_smoothing": 0.1, "instance_noise": 0.0},
    # paper: Radford et al.'s discriminator as published (BatchNorm, no stability aids), longer
    "paper": {"image_size": 64, "gan_epochs": 100, "gan_batch_size": 64, "head_epochs": 2, "finetune_epochs": 10,
              "batch_size": 32, "spectral_norm": False, "label_smoothing": 0.0, "instance_noise": 0.0},
}
HEAD_LEARNING_RATE = 1e-3
FINETUNE_LEARNING_RATE = 1e-4
HEAD_DROPOUT = 0.2
SAMPLE_GRID = 32  # fixed latent vectors drawn every epoch
# settings that say how a command was run, not what a stage makes: a finished stage is kept across them
NOT_STAGE_CONFIG = ("runs_dir", "stage", "retrain", "strict")
FINETUNE_ONLY = ("finetune_epochs", "head_epochs", "batch_size", "epochs")  # settings the GAN itself never sees
STAGE2_RUNS = ("dcgan-discriminator", "dcgan-linear-probe", "dcgan-scratch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m gan.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    p.add_argument("--stage", choices=("all", "gan", "finetune"), default="all")
    p.add_argument("--image-size", type=positive_int, help="64 (default) or 128; any power of two >= 16")
    p.add_argument("--gan-epochs", type=positive_int)
    p.add_argument("--finetune-epochs", type=positive_int)
    p.add_argument("--head-epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--gan-batch-size", type=positive_int)
    p.add_argument("--gan-data", choices=("real", "all"), default="real",
                   help="train the GAN on the training split's real images (default) or on all of them")
    p.add_argument("--label-smoothing", type=float, help="one-sided, e.g. 0.1 (preset decides by default)")
    p.add_argument("--instance-noise", type=float, help="std of noise on D's inputs, e.g. 0.1")
    p.add_argument("--retrain", action="store_true",
                   help="train every stage again, even where a finished run of this configuration exists")
    p.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction,
                   help="spectral normalisation in D instead of BatchNorm (preset decides by default)")
    return p.parse_args(argv)


def resolve_config(args):
    cfg = dict(PRESETS[args.preset])
    for key in ("image_size", "gan_epochs", "finetune_epochs", "head_epochs", "batch_size", "gan_batch_size",
                "label_smoothing", "instance_noise", "spectral_norm"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    from gan.models import LATENT_DIM, _doublings

    try:
        _doublings(cfg["image_size"])
    except ValueError as e:
        raise UserError(str(e))
    cfg.update(preset=args.preset, stage=args.stage, retrain=args.retrain, gan_data=args.gan_data,
               latent_dim=LATENT_DIM, seed=args.seed, precision=args.precision, runs_dir=os.path.abspath(args.runs_dir),
               experiment=args.experiment, data_dir=args.data_dir, resize_mode="resize", strategy="none",
               epochs=cfg["finetune_epochs"], strict=args.strict)
    return cfg


def gan_dataset(images, batch_size, seed):
    """uint8 faces -> shuffled batches in [-1, 1] (the generator's tanh range)."""
    import tensorflow as tf

    if len(images) < batch_size:
        raise UserError(f"the GAN needs at least {batch_size} training images, the split has {len(images)}")
    ds = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.map(lambda b: tf.cast(b, tf.float32) / 127.5 - 1.0).prefetch(tf.data.AUTOTUNE)


def kept_run(cfg, manifest, name, gan_created=None):
    """run.json of a finished `name` this configuration made on this split, said aloud; None to train it;
    UserError where a finished run of another configuration would be replaced without --retrain."""
    from data.runs import experiment_dir, finished_run

    final = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), name)
    ignore = NOT_STAGE_CONFIG + (FINETUNE_ONLY if name == "dcgan" else ())
    return finished_run(final, cfg, manifest, cfg["retrain"], ignore=ignore, gan_created=gan_created)


def train_gan(cfg, manifest, train):
    """Stage 1. Writes runs/<experiment>/dcgan/ unless this configuration's GAN is already there; its folder."""
    from data.runs import experiment_dir, run_lock

    with run_lock(cfg["runs_dir"], cfg["experiment"], "dcgan"):
        if kept_run(cfg, manifest, "dcgan") is None:
            return _train_gan(cfg, manifest, train)
        return os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), "dcgan")


def _train_gan(cfg, manifest, train):
    import keras

    from classifiers.checkpoint import EpochCheckpoint, ensure_room_for
    from classifiers.train import ProgressFile, verbosity
    from data.runs import experiment_dir, finish_run, library_versions, partial_dir, write_json_atomic
    from gan.dcgan import DCGAN, SampleGrid
    from gan.models import build_discriminator, build_generator
    from gan.quality import generator_quality

    x, y = train
    images = x if cfg["gan_data"] == "all" else x[y == 0]
    work = partial_dir(cfg["runs_dir"], cfg["experiment"], "dcgan")
    final = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), "dcgan")
    os.makedirs(work, exist_ok=True)
    checkpoint = EpochCheckpoint(os.path.join(work, "backup"), "dcgan", cfg["gan_epochs"],
                                 "both networks and both optimizers")
    print(f"dcgan: training on {len(images):,} {'real ' if cfg['gan_data'] == 'real' else ''}training images "
          f"at {cfg['image_size']}px")
    size, latent = cfg["image_size"], cfg["latent_dim"]
    gan = DCGAN(build_generator(size, latent), build_discriminator(size, spectral_norm=cfg["spectral_norm"]), latent,
                label_smoothing=cfg["label_smoothing"], instance_noise=cfg["instance_noise"], seed=cfg["seed"])
    gan.compile()
    z_fixed = np.random.default_rng(cfg["seed"]).normal(size=(SAMPLE_GRID, latent)).astype("float32")
    progress = ProgressFile(os.path.join(work, "progress.json"))
    callbacks = [progress.callback(), checkpoint,
                 keras.callbacks.TensorBoard(os.path.join(work, "logs")),
                 SampleGrid(z_fixed, os.path.join(work, "logs"), os.path.join(work, "samples"))]
    gan.fit(gan_dataset(images, cfg["gan_batch_size"], cfg["seed"]), epochs=cfg["gan_epochs"], callbacks=callbacks,
            verbose=verbosity(), shuffle=False)

    ensure_room_for(work, gan, "the generator and discriminator")
    for name, net in (("generator", gan.generator), ("discriminator", gan.discriminator)):
        tmp = os.path.join(work, f"{name}.tmp.keras")
        net.save(tmp)
        os.replace(tmp, os.path.join(work, f"{name}.keras"))
    quality = generator_quality(gan.generator, images, latent, cfg["runs_dir"], cfg["experiment"], cfg["seed"])
    write_json_atomic(os.path.join(work, "split.json"), manifest)
    epochs = progress.state["epochs"]
    info = {
        "model": "dcgan", "kind": "gan", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {k: v for k, v in cfg.items() if k != "runs_dir"},
        "image_size": size, "precision": keras.mixed_precision.global_policy().name, "seed": cfg["seed"],
        "split_fingerprint": manifest["fingerprint"], "data_dir": manifest["data_dir"],
        "train_images": int(len(images)), "train_seconds": round(progress.state["seconds"], 2),
        "epochs_completed": len(epochs), "resumed_from_epoch": checkpoint.resumed_from or None,
        "params": {"generator": int(gan.generator.count_params()),
                   "discriminator": int(gan.discriminator.count_params())},
        "quality": quality,
        "history": [dict(epoch=int(e), **m) for e, m in sorted(epochs.items(), key=lambda kv: int(kv[0]))],
        "versions": library_versions(),
    }
    os.remove(progress.path)
    finish_run(work, final, info)
    last = epochs[str(max(map(int, epochs)))] if epochs else {}
    note = (f", baseline calls {quality['baseline_calls_fake']:.0%} of its faces fake"
            if "baseline_calls_fake" in quality else "")
    print(f"dcgan: {info['train_seconds']:.0f}s, d_loss {last.get('d_loss', float('nan')):.3f}, "
          f"g_loss {last.get('g_loss', float('nan')):.3f}, KID {quality['kid']:.4f} "
          f"({quality['kid_feature_space']}; not Inception KID){note}; samples in {final}/samples/")
    return final


def detector_from_trunk(trunk, image_size, name):
    """[0, 255] image -> the GAN's [-1, 1] scale -> trunk -> fresh sigmoid head."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_gan_range")(inputs)
    x = trunk(x)
    x = layers.Dropout(HEAD_DROPOUT, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def fine_tune_discriminator(cfg, manifest, train, val):
    """Stage 2: three detector runs that differ only in where the trunk starts and what is trained."""
    from classifiers.checkpoint import read_state
    from classifiers.models import compile_detector
    from classifiers.train import train_run, verbosity
    from data.pipeline import make_dataset
    from data.runs import BrokenRun, experiment_dir, load_model_safely, partial_dir, read_run
    from gan.models import build_discriminator_trunk, trunk_of

    gan_dir = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), "dcgan")
    try:
        gan_info = read_run(gan_dir)
    except BrokenRun as e:
        raise UserError(f"--stage finetune needs a trained GAN: {e} (run --stage gan first)")
    if gan_info["split_fingerprint"] != manifest["fingerprint"]:
        raise UserError(f"{gan_dir} was trained on another split; retrain it with --stage gan")
    size = int(gan_info["image_size"])
    if size != cfg["image_size"]:
        raise UserError(f"the GAN in {gan_dir} works at {size}px; pass --image-size {size}")

    def pretrained_trunk():
        try:
            return trunk_of(load_model_safely(os.path.join(gan_dir, "discriminator.keras")))
        except BrokenRun as e:
            raise UserError(str(e))

    variants = {
        "dcgan-discriminator": (pretrained_trunk, True),
        "dcgan-linear-probe": (pretrained_trunk, False),
        "dcgan-scratch": (lambda: build_discriminator_trunk(size, spectral_norm=gan_info["config"]["spectral_norm"]),
                          True),
    }
    train_ds = make_dataset(train[0], train[1], cfg["batch_size"], training=True, seed=cfg["seed"])
    val_ds = make_dataset(val[0], val[1], cfg["batch_size"])
    results = {}
    for name, (make_trunk, unfreeze) in variants.items():
        pretrained = name != "dcgan-scratch"

        kept = kept_run(cfg, manifest, name, gan_created=gan_info["created"] if pretrained else None)
        if kept is not None:
            results[name] = kept
            continue

        def build(make_trunk=make_trunk, unfreeze=unfreeze, pretrained=pretrained, name=name):
            trunk = make_trunk()
            trunk.trainable = not pretrained  # a random trunk has nothing to protect from a fresh head
            model = compile_detector(detector_from_trunk(trunk, size, name), HEAD_LEARNING_RATE)
            if read_state(os.path.join(partial_dir(cfg["runs_dir"], cfg["experiment"], name), "backup"))[0]:
                print(f"{name}: warm-up already done before the interruption; its checkpoint holds the result")
            else:
                print(f"{name}: {cfg['head_epochs']} warm-up epoch(s) of the "
                      f"{'head alone' if pretrained else 'whole network'} at lr {HEAD_LEARNING_RATE}")
                model.fit(train_ds, validation_data=val_ds, epochs=cfg["head_epochs"], verbose=verbosity(),
                          shuffle=False)
            trunk.trainable = unfreeze
            return compile_detector(model, FINETUNE_LEARNING_RATE if unfreeze else HEAD_LEARNING_RATE)

        hp = {"trunk": "GAN discriminator" if pretrained else "random init", "trunk_trained": unfreeze,
              "head_epochs": cfg["head_epochs"], "head_learning_rate": HEAD_LEARNING_RATE,
              "finetune_learning_rate": FINETUNE_LEARNING_RATE if unfreeze else HEAD_LEARNING_RATE,
              "dropout": HEAD_DROPOUT, "gan_run": "dcgan" if pretrained else None}
        gan_note = {"gan": {"epochs": gan_info["epochs_completed"], "quality": gan_info.get("quality"),
                            "created": gan_info["created"]}}
        results[name] = train_run(name, build, cfg, manifest, train, val, hp,
                                  extra=gan_note if pretrained else None)[1]
    return results


def main(argv=None):
    from classifiers.train import prepare

    args = parse_args(argv)
    cfg = resolve_config(args)
    cfg["precision"] = setup(cfg["seed"], cfg["precision"])
    print("config: " + json.dumps(cfg, sort_keys=True))
    manifest, train, val = prepare(cfg)
    if cfg["stage"] in ("all", "gan"):
        train_gan(cfg, manifest, train)
    if cfg["stage"] in ("all", "finetune"):
        fine_tune_discriminator(cfg, manifest, train, val)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
