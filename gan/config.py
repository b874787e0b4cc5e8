"""The configuration of a `gan.train` command: presets, the command line, and a typed, frozen record of it.

`GanConfig` is what the command prints at its start and what the run.json of the GAN and of every detector
fine-tuned from it records under "config" (all but runs_dir), so a finished stage can be compared with the
one about to replace it. Change a setting with dataclasses.replace(cfg, seed=2), never in place.
"""
import argparse
import dataclasses
import os
from typing import Optional

from classifiers.registry import RESNET_EPOCHS
from data.pipeline import RESIZE
from data.runtime import CommandConfig, DEFAULT_SEED, UserError, setting
from gan.augment import OPERATIONS
from gan.models import LATENT_DIM, _doublings

PRESETS = {
    # quick: a real attempt on 2 CPU cores, named in steps so that every machine trains the same GAN: 5,500
    # steps, what the learning curve's and the headline's GANs reached in 15 minutes on an AVX512-BF16 EPYC
    # (about 15 minutes there, about an hour at the 1.7 steps/s of an AVX2-only one; the first round says how
    # long here, and --gan-minutes caps it, recorded and reported as cut short). The 760 real training faces
    # are few for a GAN: DiffAugment keeps D from memorising them (without it the BatchNorm D won within
    # ~100 steps, d_loss 0.02, samples stayed noise), the averaged generator draws the samples. Measured at
    # 3,000 steps on the development faces (KID, baseline features; floor 0.00, step 0 7.07): BatchNorm D +
    # label smoothing 0.1 0.51, spectral norm + smoothing 0.65, spectral norm without smoothing 0.89.
    "quick": {"image_size": 64, "gan_steps": 5500, "gan_minutes": 0.0, "sample_every": 500, "gan_batch_size": 32,
              "diffaugment": "color,translation,cutout", "ema_decay": 0.999, "spectral_norm": False,
              "label_smoothing": 0.1, "instance_noise": 0.0,
              "head_epochs": 2, "finetune_epochs": 6, "batch_size": 32, "seeds": 3, "probe_features": "block2"},
    # (probe: on the development faces, 3 seeds, test AUC: block2 0.811 +- 0.007, block3 0.809 +- 0.010, the
    # last layer 0.776 +- 0.008, every block average-pooled 0.663 +- 0.012; the last layer specialises in
    # "real vs this generator's faces", and pooling throws away where in the aligned face a cue sits)
    # paper: Radford et al.'s DCGAN as published (BatchNorm D, no augmentation, no averaging), longer
    "paper": {"image_size": 64, "gan_steps": 20000, "gan_minutes": 0.0, "sample_every": 1000, "gan_batch_size": 64,
              "diffaugment": "none", "ema_decay": 0.0, "spectral_norm": False, "label_smoothing": 0.0,
              "instance_noise": 0.0,
              "head_epochs": 2, "finetune_epochs": 10, "batch_size": 32, "seeds": 3, "probe_features": "last"},
}


# R1 penalty weight per discriminator (--r1-gamma), for the deeper ResNet discriminator on a thousand faces.
# StyleGAN2-ADA's rule of thumb for 64 px and batch 32 gives 0.03; 0.1 is a guess above it for the kit's
# smaller data, not tuned (a 700-step run on the development faces stayed stable with it)
R1_GAMMA = {"dcgan": 0.0, "resnet": 0.1}


def probe_features(value):
    if value in ("last", "pooled") or (value.startswith("block") and value[5:].isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: choose last, pooled or blockN (e.g. block3)")


# The runs a setting of the GAN shapes: the GAN itself ("gan") and the detectors fine-tuned from it
# ("finetune"; "probe" for the linear probe, which also reads --probe-features). The label-free detectors
# ("label-free") are read off the finished GAN and known by it alone (its creation stamp), and the input size.
STAGES = ("gan", "finetune", "probe")
FINETUNE = ("finetune", "probe")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GanConfig(CommandConfig):
    seed: int = setting(DEFAULT_SEED, roles=STAGES)
    precision: str = setting("auto", roles=STAGES)
    # stage 1, the GAN
    image_size: int
    gan_steps: int = setting(roles=STAGES)  # whole rounds of sample_every
    gan_minutes: float = setting(roles=STAGES, cap="minutes")  # 0: the steps alone decide
    sample_every: int = setting(roles=STAGES)
    gan_batch_size: int = setting(roles=STAGES)
    diffaugment: str = setting(roles=STAGES)  # comma-separated policy, or "none"
    ema_decay: float = setting(roles=STAGES)
    spectral_norm: bool = setting(roles=STAGES)
    label_smoothing: float = setting(roles=STAGES)
    instance_noise: float = setting(roles=STAGES)
    # gan.models.DISCRIMINATORS: Radford et al.'s, or the resnet recipe's network
    discriminator: str = setting("dcgan", roles=STAGES, added_later="dcgan")
    # R1 gradient penalty on real faces; R1_GAMMA[discriminator] unless given
    r1_gamma: float = setting(0.0, roles=STAGES, added_later=0.0)
    gan_data: str = setting("real", roles=STAGES)
    latent_dim: int = setting(LATENT_DIM, roles=STAGES)  # the generator's input (gan.models)
    preset: str = setting("quick", roles=STAGES)
    # stage 2, the detectors fine-tuned from its discriminator
    head_epochs: int = setting(roles=FINETUNE)
    finetune_epochs: int = setting(roles=FINETUNE)
    batch_size: int = setting(roles=FINETUNE)
    probe_features: str = setting(roles=("probe",))
    labels: Optional[str] = setting(None, roles=FINETUNE)  # part of the labelled training images (label_count)
    # how the command runs: each seed's run stands alone, and the stages run are a choice of this command
    seeds: int = setting(identity=False)
    stage: str = setting("all", identity=False)
    inception_weights: Optional[str] = setting(None, identity=False)  # a feature space for the record's KID

    @property
    def gan_name(self):
        """The GAN's run folder, and the prefix of every run made from it: dcgan-discriminator.seed1337 ..."""
        return "dcgan" if self.discriminator == "dcgan" else f"dcgan-{self.discriminator}"

    @property
    def resize_mode(self):
        """The GAN draws whole faces, so its data (and its detectors') are squashed to size, never cropped."""
        return RESIZE

    @property
    def augment_policy(self):
        """DiffAugment's operations, in order."""
        return () if self.diffaugment == "none" else tuple(self.diffaugment.split(","))


def recorded_config(config):
    """A run.json's config with the settings added after it was written, at the value it was made with."""
    later = {f.name: f.metadata["added_later"] for f in dataclasses.fields(GanConfig) if "added_later" in f.metadata}
    return dict(later, **config)


def resolve_config(args):
    values = dict(PRESETS[args.preset])
    values.update({k: getattr(args, k) for k in values if getattr(args, k, None) is not None})
    try:
        _doublings(values["image_size"])
    except ValueError as e:
        raise UserError(str(e))
    policy = [op for op in values["diffaugment"].split(",") if op and op != "none"]
    unknown = [op for op in policy if op not in OPERATIONS]
    if unknown:
        raise UserError(f"--diffaugment: unknown operation(s) {', '.join(unknown)}; choose from {', '.join(OPERATIONS)}")
    values["discriminator"] = args.discriminator
    if args.discriminator == "resnet" and args.finetune_epochs is None:  # stage 2 is the resnet recipe, its epochs too

        values["finetune_epochs"] = RESNET_EPOCHS[args.preset]
    values["r1_gamma"] = R1_GAMMA[args.discriminator] if args.r1_gamma is None else args.r1_gamma
    if values["r1_gamma"] < 0:
        raise UserError("--r1-gamma must be at least 0")
    if not 0 <= values["ema_decay"] < 1 or values["gan_minutes"] < 0:
        raise UserError("--ema-decay must be in [0, 1) and --gan-minutes at least 0")
    values["sample_every"] = min(values["sample_every"], values["gan_steps"])
    values["gan_steps"] = -(-values["gan_steps"] // values["sample_every"]) * values["sample_every"]  # whole rounds
    return GanConfig(**dict(
        values, diffaugment=",".join(policy) or "none", preset=args.preset, stage=args.stage, retrain=args.retrain,
        gan_data=args.gan_data, seed=args.seed, precision=args.precision,
        runs_dir=os.path.abspath(args.runs_dir), experiment=args.experiment, data_dir=args.data_dir,
        strict=args.strict, split=args.split, inception_weights=args.inception_weights, labels=args.labels))
