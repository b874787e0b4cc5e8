"""`python -m classifiers.train --model NAME`: train a detector on the experiment's split.

NAME is a detector of classifiers/registry.py (baseline, resnet, backbone, and any you add there), or
hpsearch: a keras-tuner search over CNNs (objective: validation AUC; trial 1 is the baseline), then the
best configuration retrained from scratch and kept only if it beats the baseline on validation.

Every run is written to runs/<experiment>/<name>/ (model.keras, run.json, split.json, logs/) only when
complete; an interrupted run resumes from its last finished epoch (or trial) when the same command is
run again; a finished run is kept (same configuration) or refused (another one) unless --retrain.
"""
import argparse
import dataclasses
import os
import sys

from classifiers.config import DetectorConfig, PRESETS, STRATEGIES, TUNERS
from classifiers.registry import DETECTORS, detector_run, run_name
from classifiers.runner import labelled_subset, make_strategy, prepare, train_run
from classifiers.search import search_and_retrain
from data.pipeline import AUGMENTATIONS, RESIZE_MODES
from data.runs import experiment_dir, finished_run
from data.runtime import (UserError, add_common_args, configuration, default_of, label_count, positive_int,
                          run_main, setup)

SEARCH = "hpsearch"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=tuple(DETECTORS) + (SEARCH,), default=default_of(DetectorConfig, "model"),
                   help="; ".join(f"{name}: {d.help}" for name, d in DETECTORS.items())
                   + f"; {SEARCH}: a keras-tuner search over CNNs")
    for option, models in detector_options().values():  # each detector's own settings, from its registry entry
        p.add_argument(option.flag, dest=option.name, type=option.type, choices=option.choices,
                       help=f"with --model {' or '.join(models)}: {option.help} (default: {option.default})")
    add_common_args(p)
    p.add_argument("--preset", choices=tuple(PRESETS), default=default_of(DetectorConfig, "preset"))
    p.add_argument("--image-size", type=positive_int, help="input side in pixels (preset decides by default)")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default=default_of(DetectorConfig, "resize_mode"),
                   help="squash each face to the input size, or cut its centre at full detail")
    p.add_argument("--augment", type=augment_list, metavar="LIST",
                   help=f"train with these perturbations instead of the detector's own: a comma list of "
                        f"{', '.join(AUGMENTATIONS)}, or none; the run is named MODEL-aug-... beside the plain one")
    p.add_argument("--labels", type=label_count, metavar="N|F|all",
                   help="train on N labelled training images (half of each class; or a fraction F of the split), "
                        "drawn per seed and nested; the run is named MODEL-labelsN.seedS; validation is untouched")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--max-trials", type=positive_int, help="search budget (hpsearch)")
    p.add_argument("--search-epochs", type=positive_int,
                   help="epochs of the longest trial (hpsearch); the winner is retrained this long unless --epochs")
    p.add_argument("--search-minutes", type=float, help="stop starting new trials after this long (hpsearch)")
    p.add_argument("--tuner", choices=TUNERS, default=default_of(DetectorConfig, "tuner"))
    p.add_argument("--retrain", action="store_true",
                   help="train again and replace a finished run of this model (else it is kept, or a run of "
                        "another configuration is an error)")
    p.add_argument("--strategy", choices=STRATEGIES, default=default_of(DetectorConfig, "strategy"),
                   help="tf.distribute: mirrored (devices of one machine) or multiworker (TF_CONFIG)")
    return p.parse_args(argv)


def detector_options():
    """{name: (Option, [models that read it])} of every registered detector's own settings."""
    out = {}
    for model, detector in DETECTORS.items():
        for option in detector.options:
            out.setdefault(option.name, (option, []))[1].append(model)
    return out


def own_options(args, detector):
    """{option: value} of the chosen detector's own settings (given, else its default); an option of another
    detector given with it is refused in one line."""
    own = {o.name: o for o in (detector.options if detector else ())}
    registered = detector_options()
    stray = [name for name in registered if name not in own and getattr(args, name, None) is not None]
    if stray:
        owners = registered[stray[0]][1]
        raise UserError(f"--{stray[0].replace('_', '-')} is an option of --model {' or '.join(owners)}, "
                        f"not of --model {args.model}")
    return {name: (o.default if getattr(args, name) is None else getattr(args, name)) for name, o in own.items()}


def augment_list(text):
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in AUGMENTATIONS + ("none",)]
    if unknown or not names or ("none" in names and len(names) > 1):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of {', '.join(AUGMENTATIONS)}, or none")
    return ",".join(names)


def resolve_config(args):
    # every field has its flag of the same name (a flag left out is None: the preset's or the field's default)
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(DetectorConfig) if f.name != "options"}
    cfg = DetectorConfig.from_preset(**settings, options=own_options(args, DETECTORS.get(args.model)))
    detector = DETECTORS.get(args.model)
    if (args.augment is not None or args.labels is not None) and detector is None:
        raise UserError(f"--augment and --labels are for a registered detector, not the search ({SEARCH})")
    if args.epochs is None and detector is not None and detector.epochs:
        cfg = dataclasses.replace(cfg, epochs=detector.epochs[args.preset])  # its own budget
    if args.epochs is None and args.model == SEARCH:
        cfg = dataclasses.replace(cfg, epochs=cfg.search_epochs)  # the winner gets the budget that won it the search
    return cfg


def keep_finished_run(cfg, manifest):
    """True when this model is already trained with this configuration (said in one line); UserError when
    it was trained with another one and --retrain was not given."""
    folder = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), run_name(cfg))
    return finished_run(folder, cfg, manifest, role="search" if cfg.model == SEARCH else "detector") is not None


def config(argv=(), **settings):
    """The DetectorConfig of `python -m classifiers.train ARGV`, settings given by name in place of their
    flags: config(model="resnet", labels="50", seed=1338)."""
    return configuration(parse_args, resolve_config, argv, settings)


def run(cfg):
    """Train the detector (or the search) cfg describes; the typed entry point."""
    strategy, chief = make_strategy(cfg.strategy)
    cfg = dataclasses.replace(cfg, precision=setup(cfg.seed, cfg.precision))
    print(cfg.summary("search" if cfg.model == SEARCH else "detector"))
    data = prepare(cfg)
    if cfg.labels is not None:
        data = labelled_subset(data, cfg.labels, cfg.seed)
    if keep_finished_run(cfg, data.manifest):
        return 0
    if cfg.model == SEARCH:
        search_and_retrain(cfg, data, strategy, chief)
    else:
        train_run(detector_run(cfg, data.train[1]), cfg, data, strategy, chief)
    return 0


def main(argv=None):
    return run(resolve_config(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
