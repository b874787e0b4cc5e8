"""Every detector `python -m classifiers.train --model NAME` can train: one table, DETECTORS.

Adding a detector is one function and one line in the table (README, "Adding a detector"): the function
builds an uncompiled Keras model from [0, 255] RGB faces (image_size x image_size x 3) to P(fake) (one float32
sigmoid); the line names it and gives its hyperparameters, which run.json records. By default it is trained
with Adam at its "learning_rate" for the preset's epochs; a `recipe`, a warm-up or its own epochs are options.
The training CLI, the search (whose trial 1 and reference are the baseline below) and `--help` read this table.
"""
import dataclasses
from typing import Callable, Mapping, Optional

from classifiers.backbones import BACKBONES, build_backbone_detector, set_trainable
from classifiers.models import build_resnet, cnn, compile_detector, compile_recipe, inner_model
from classifiers.runner import Phase, Run, training_steps
from data.pipeline import AUGMENTATIONS

# The original study's CNN, and the search's first trial
BASELINE = {"filters": [32, 64], "head": "flatten", "dropout": 0.2, "residual": False, "learning_rate": 1e-3,
            "augment": False, "schedule": "constant"}
# The strong from-scratch recipe: a small ResNet, AdamW with warm-up and cosine decay, label smoothing, flips
# and mixup. No shifts, JPEG, blur or resizing: on the development faces each of them slowed learning badly
# (see docs/results.md).
RESNET = {"widths": [32, 64, 128, 256], "blocks": [1, 1, 1, 1], "stem_stride": 1, "head": "gap", "dropout": 0.3,
          "learning_rate": 2e-3, "weight_decay": 0.05, "warmup_epochs": 2, "label_smoothing": 0.1,
          "augment": ["flip"], "mixup": 0.2}
RESNET_EPOCHS = {"quick": 30, "paper": 60}
# An ImageNet network with a new head; warm-up: the head alone, then the top blocks; then everything
BACKBONE = {"head_epochs": 2, "top_epochs": 2, "head_learning_rate": 1e-3, "top_learning_rate": 1e-4,
            "learning_rate": 3e-5, "scratch_learning_rate": 1e-3, "augment": ["flip"]}


def adam(model, hp, steps_per_epoch, epochs):
    """The default recipe: Adam at hp["learning_rate"], constant or (hp["schedule"] "cosine") decayed over the run."""
    return compile_detector(model, hp["learning_rate"], hp.get("schedule", "constant"), steps_per_epoch * epochs)


@dataclasses.dataclass(frozen=True)
class Option:
    """A setting one detector reads: `classifiers.train --NAME` (in --help), recorded in run.json's config and
    in its hyperparameters, and part of the run's identity (a run recorded before the option existed counts
    as made with its default)."""
    name: str
    default: object
    help: str
    type: Callable = str
    choices: Optional[tuple] = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Detector:
    build: Callable  # build(cfg, hp) -> uncompiled keras.Model; cfg: DetectorConfig, hp: the hyperparameters
    help: str  # what --model shows
    defaults: Mapping = dataclasses.field(default_factory=lambda: {"learning_rate": 1e-3})
    epochs: Optional[Mapping] = None  # preset -> epochs, where it needs another budget than the preset's
    recipe: Callable = adam  # recipe(model, hp, steps_per_epoch, epochs) -> the model, compiled (and unfrozen)
    warmup: Optional[Callable] = None  # warmup(hp) -> [Phase]: fit()s before the main one, skipped on resume
    options: tuple = ()  # its own settings (Option), beside every detector's
    folder: str = "{model}"  # the run folder's name, formatted with the config's fields

    def hyperparameters(self, cfg):
        return dict(self.defaults, **{o.name: cfg.options.get(o.name, o.default) for o in self.options})


def baseline(cfg, hp):
    return cnn(cfg.image_size, hp["filters"], hp["head"], hp["dropout"], hp["residual"], name=cfg.model)


def resnet(cfg, hp):
    return build_resnet(cfg.image_size, hp["widths"], hp["blocks"], hp["dropout"], hp["stem_stride"], hp["head"],
                        name="resnet")


def resnet_recipe(model, hp, steps_per_epoch, epochs):
    return compile_recipe(model, hp["learning_rate"], steps_per_epoch * epochs, steps_per_epoch * hp["warmup_epochs"],
                          hp["weight_decay"], hp["label_smoothing"])


def backbone(cfg, hp):
    return build_backbone_detector(hp["backbone"], cfg.image_size, hp["weights"])[0]


def backbone_warmup(hp):
    """ImageNet weights: the fresh head alone, then the top blocks too; random weights have nothing to protect."""
    if hp["weights"] == "none":
        return []
    return [Phase("the head", hp["head_epochs"], hp["head_learning_rate"],
                  lambda model: set_trainable(inner_model(model), "head")),
            Phase("the top", hp["top_epochs"], hp["top_learning_rate"],
                  lambda model: set_trainable(inner_model(model), "top"))]


def backbone_recipe(model, hp, steps_per_epoch, epochs):
    if hp["weights"] == "none":
        return compile_detector(model, hp["scratch_learning_rate"])
    set_trainable(inner_model(model), "all")  # BatchNorm stays frozen: batches of 32 would wreck ImageNet's
    return compile_detector(model, hp["learning_rate"])


DETECTORS = {
    "baseline": Detector(baseline, "the study's CNN", BASELINE),
    "resnet": Detector(resnet, "the strong from-scratch recipe", RESNET, RESNET_EPOCHS, resnet_recipe),
    "backbone": Detector(backbone, "a keras.applications network (--backbone, --weights) with a new head", BACKBONE,
                         recipe=backbone_recipe, warmup=backbone_warmup, options=(
                             Option("backbone", "efficientnetb0", "the keras.applications network",
                                    choices=tuple(BACKBONES)),
                             Option("weights", "imagenet", "imagenet (downloaded once into Keras's cache), none, or "
                                                           "a weights file")),
                         folder="backbone-{backbone}"),
}


# what the search's "augment" switch turns on: every perturbation but shifts, which slowed learning most
AUGMENT_SWITCH = tuple(a for a in AUGMENTATIONS if a != "shift")


def augmentations(value):
    """A hyperparameter's "augment": a list of perturbations, or the search's switch (True: AUGMENT_SWITCH)."""
    if value is True:
        return AUGMENT_SWITCH
    return tuple(value or ())


def run_name(cfg):
    """The run folder's name; a detector trained with other perturbations (--augment) or on part of the labels
    (--labels) sits beside its plain run."""
    if cfg.model not in DETECTORS:
        return cfg.model
    name = DETECTORS[cfg.model].folder.format(**dataclasses.asdict(cfg), **cfg.options)
    name = name if cfg.augment is None else f"{name}-aug-{cfg.augment.replace(',', '-')}"
    # a run on part of the labels is one point of a curve over label counts and seeds
    return name if cfg.labels is None else f"{name}-labels{cfg.labels}.seed{cfg.seed}"


class DetectorRun(Run):
    """A registered detector's run: built by its builder, trained by its recipe for cfg.epochs."""

    def __init__(self, detector, cfg, hp, steps_per_epoch, name):
        super().__init__(name, hp, cfg.epochs, warmup=tuple(detector.warmup(hp)) if detector.warmup else (),
                         augment=augmentations(hp.get("augment")), mixup=hp.get("mixup", 0.0))
        self.detector, self.cfg, self.steps_per_epoch = detector, cfg, steps_per_epoch

    def build(self):
        return self.detector.build(self.cfg, self.hyperparameters)

    def compile(self, model):
        return self.detector.recipe(model, self.hyperparameters, self.steps_per_epoch, self.cfg.epochs)


def detector_run(cfg, train_labels, name=None, detector=None, hp=None, run_class=None):
    """The Run of a registered detector (cfg.model's, or `detector`'s), trained for cfg.epochs; hp:
    hyperparameters other than its own (the search's winner); run_class: a DetectorRun subclass."""
    detector = DETECTORS[detector or cfg.model]
    if hp is None:
        hp = detector.hyperparameters(cfg)
        if cfg.augment is not None:  # --augment replaces the detector's own perturbations
            hp = dict(hp, augment=[a for a in cfg.augment.split(",") if a != "none"])
    steps_per_epoch = training_steps(len(train_labels), cfg.batch_size, 1)
    return (run_class or DetectorRun)(detector, cfg, hp, steps_per_epoch, name or run_name(cfg))
