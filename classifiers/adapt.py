"""`python -m classifiers.adapt --run runs/E/baseline --data-dir NEW --shots 25`: a finished detector taught a new
generator family from K labelled images per class, without forgetting the family it knew and without changing it.

The new folder is split by the kit like any data set, once, into runs/E/adapted/<family>/split.json; K images
per class are drawn from its training side (deterministic per seed, nested: the 10 of seed S are among its 25;
`--shots all`: its whole training side, the ceiling). The source run is only read, never written.

--method
  head      (default) a ridge-logistic head on frozen features (classifiers.heads): the source detector's
            penultimate features, a block of the experiment's GAN discriminator (--features gan) or both. It
            is fit on the K shots per class and a replay of the source's own training faces, half the weight
            each, its ridge pulling towards the source's own last layer (not towards zero), so the original
            family keeps its verdicts; the ridge strength is the best on the family's validation side among
            those that keep the source's validation AUC within MAX_ORIGINAL_DROP.
  novelty   real faces only: the distance to real faces in the same features, fit on K reals of the new
            family (or --reals development: the source's training reals), its threshold accusing 5% of them.
            An alarm for "unlike any real face this network knows"; it never reads a fake.
  finetune  the earlier recipe (classifiers.adapt_finetune): a copy fine-tuned beside a frozen one.

A head's or fine-tuned run's threshold is chosen on the source's and the family's validation sides together;
both test sides are judged once at the end, for the record (run.json "adaptation") and compare.report, never
for a choice. Several --shots and --seeds make the adaptation curve: what is finished is kept, only what is
missing is made, and the table is printed at the end (compare.report draws it).
"""
import argparse
import dataclasses
import os
import sys
from typing import Union

import keras
import numpy as np

from classifiers import heads
from classifiers.adapt_finetune import FINETUNE, TUNES, build_either, learning_set
from classifiers.layers import load_model_safely
from classifiers.metrics import roc_auc
from classifiers.models import compile_detector
from classifiers.predict import outputs, probabilities
from classifiers.runner import Run, SplitData, train_run
from data.pipeline import load_images, load_split, resize_mode_of
from data.runs import BrokenRun, check_name, experiment_dir, finished_run, read_run
from data.runtime import (DEFAULT_SEED, PRECISIONS, CommandConfig, UserError, positive_int, run_main, setting,
                          setup)
from data.scan import scan_folder
from data.split import balanced_subset, experiment_split, load_manifest, require_both_classes, scan_cache_path

METHODS = ("head", "novelty", "finetune")
FEATURES = ("source", "gan", "both")  # what a head or novelty score reads: the source, the GAN's discriminator
REALS = ("family", "development")  # what a novelty score is fit on: K reals of the new family, or the source's
REPLAY_PER_CLASS = 128  # source training faces per class replayed beside the shots
MAX_ORIGINAL_DROP = 0.01  # of the source's validation AUC, that a head's ridge strength may cost
ADAPTED = "adapted"  # runs/<experiment>/adapted/<family>/<source>-<recipe>-k<K>.seed<S>/
GAN_RUN = "dcgan"  # the GAN run a head reads by default: the experiment's


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptConfig(CommandConfig):
    run: str = setting(identity=False)  # the source run folder: where, not what (source_created says which)
    family: str
    shots: Union[int, str]  # labelled images per class of the new family, or "all" (its whole training side)
    method: str = setting("head", added_later="finetune")
    features: str = setting("source", added_later="source")
    gan_run: str = setting("", identity=False)  # where; gan_created says which
    gan_created: str = setting("", added_later="")
    gan_block: int = setting(0, added_later=0)  # the discriminator block read (its number, once resolved)
    reals: str = setting("family", added_later="family")
    replay_per_class: int = REPLAY_PER_CLASS
    l2_grid: tuple = setting(heads.L2_GRID, added_later=heads.L2_GRID)  # a head's ridge strengths tried
    tune: str = FINETUNE["tune"]
    learning_rate: float = FINETUNE["learning_rate"]
    epochs: int = FINETUNE["epochs"]
    batch_size: int = 32
    image_size: int = 64  # the source run's
    source_created: str = ""  # when the source run was made: a retrained source makes its adapted runs stale
    resize_mode: str = "resize"  # the source run's

    def record(self):
        # where the runs are written and which folders held the sources say where, not what
        return {k: v for k, v in super().record().items() if k not in ("run", "gan_run", "experiment", "retrain")}

    def recipe(self):
        """The run name's middle: head, head-gan4, head-both4, novelty, novelty-development, finetune."""
        if self.method == "finetune":
            return "finetune"
        reads = "" if self.features == "source" else f"-{self.features}{self.gan_block}"
        return self.method + reads + ("-development" if self.method == "novelty" and self.reals != "family" else "")


def shot_count(text):
    return text if text == "all" else positive_int(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, action="append",
                   help="a finished detector run folder, e.g. runs/default/baseline (repeat for several); the "
                        "adapted runs are written beside it, in its experiment's adapted/ folder")
    p.add_argument("--data-dir", required=True,
                   help="the new family: a folder with Real/ and Fake/ (or another layout data.layout reads)")
    p.add_argument("--family", help="the new family's name (default: the --data-dir folder's name)")
    p.add_argument("--method", choices=METHODS, default="head", help="head (default), novelty or finetune")
    p.add_argument("--features", choices=FEATURES, default="source",
                   help="what a head or novelty score reads: the source's penultimate features (default), the "
                        "GAN discriminator's block features, or both")
    p.add_argument("--gan", help=f"the GAN run whose discriminator --features gan|both reads (default: the "
                                 f"source experiment's {GAN_RUN}/)")
    p.add_argument("--gan-block", type=int, default=0, help="its block read, 1 = first (default 0: the last)")
    p.add_argument("--reals", choices=REALS, default="family",
                   help="--method novelty: fit on K reals of the new family (default) or the source's training reals")
    p.add_argument("--shots", type=shot_count, nargs="+", default=[25],
                   help="labelled images per class of the new family, or 'all'; several make a curve (5 10 25 all)")
    p.add_argument("--seeds", type=positive_int, default=1, help="each point with seeds seed, seed+1, ...")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--replay-per-class", type=int, default=REPLAY_PER_CLASS,
                   help="source training faces per class learnt beside the shots (0: none)")
    p.add_argument("--tune", choices=TUNES, default=FINETUNE["tune"], help="--method finetune: what of the copy trains")
    p.add_argument("--epochs", type=positive_int, default=FINETUNE["epochs"], help="--method finetune: its epochs")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--strict", action="store_true",
                   help="stop on a picture labelled both real and fake (default: leave it out, say so)")
    p.add_argument("--retrain", action="store_true", help="make again and replace finished adapted runs")
    return p.parse_args(argv)


def source_run(folder):
    """(run.json, its split manifest) of a finished detector run; one line saying why otherwise."""
    try:
        info = read_run(folder)
    except BrokenRun as e:
        raise UserError(f"--run {folder}: not a finished run ({e})")
    if info.get("kind") != "detector":
        raise UserError(f"--run {folder}: a {info.get('kind')} run, not a detector")
    if info.get("adaptation"):
        raise UserError(f"--run {folder}: already an adapted run; adapt its source ({info['adaptation']['source']})")
    return info, load_manifest(os.path.join(folder, "split.json"))


def gan_run(folder, source_info):
    """run.json of a GAN run whose discriminator a head may read; one line saying why not otherwise."""
    try:
        info = read_run(folder)
    except BrokenRun as e:
        raise UserError(f"--gan {folder}: not a finished run ({e})")
    if info.get("kind") != "gan" or not os.path.exists(os.path.join(folder, "discriminator.keras")):
        raise UserError(f"--gan {folder}: a {info.get('kind')} run without a discriminator.keras to read features from")
    if info["split_fingerprint"] != source_info["split_fingerprint"]:
        raise UserError(f"--gan {folder}: trained on another split ({info['split_fingerprint']}) than the source "
                        f"({source_info['split_fingerprint']}): its discriminator may have seen the source's test faces")
    if int(info["image_size"]) != int(source_info["image_size"]):
        raise UserError(f"--gan {folder}: a {info['image_size']} px GAN; the source reads {source_info['image_size']} "
                        "px faces: give a GAN of the source's size")
    return info


def family_split(data_dir, family_root, family, source_manifest, strict=False):
    """The new family's own split (made once, like an experiment's); refused when it holds source files."""
    made = os.path.join(experiment_dir(family_root, family), "split.json")
    if os.path.exists(made) and load_manifest(made)["data_dir"] != os.path.abspath(data_dir):
        raise UserError(f"family {family!r} was split from {load_manifest(made)['data_dir']}, not {data_dir}; "
                        "name this one with --family")
    scan = scan_folder(data_dir, cache_path=scan_cache_path(family_root))
    known = {f["sha256"]: f["path"] for f in source_manifest["files"]}
    shared = [(r.path, known[r.sha256]) for r in scan.images if r.sha256 in known]
    if shared:
        raise UserError(f"{data_dir} holds {len(shared)} file(s) of the source experiment's data "
                        f"(e.g. {shared[0][0]} = {shared[0][1]}): adapting on them would test on what the source "
                        "trained on; give a folder of the new family only")
    manifest = experiment_split(data_dir, family_root, family, strict=strict, log=lambda line: None)
    require_both_classes(manifest, f"--data-dir {data_dir}")
    return manifest


def decode(manifest, files, size, mode):
    x, kept, failed = load_images([os.path.join(manifest["data_dir"], f["path"]) for f in files], size, mode,
                                  [f["sha256"] for f in files])
    if failed:
        raise UserError(f"{failed[0][0]}: {failed[0][1]} (the split was made from other files)")
    return x, np.array([f["label"] for f in files], np.float32)


def shot_files(cfg, manifest, source_manifest):
    """The files a run learns from: K per class of the family's training side (all of it for "all"); for a
    novelty score only reals - K of the family's, or every training real of the source's (--reals)."""
    if cfg.method == "novelty" and cfg.reals == "development":
        return [f for f in source_manifest["files"] if f["split"] == "train" and f["label"] == 0]
    if cfg.method == "novelty" and cfg.shots == "all":
        return [f for f in manifest["files"] if f["split"] == "train" and f["label"] == 0]
    if cfg.method == "novelty":
        reals = [f for f in balanced_subset(manifest, "train", cfg.shots, cfg.seed, "", at_most=True) if f["label"] == 0]
        if len(reals) < cfg.shots:
            raise UserError(f"--shots {cfg.shots}: the family's train split has {len(reals)} real images")
        return reals
    if cfg.shots == "all":
        return [f for f in manifest["files"] if f["split"] == "train"]
    return balanced_subset(manifest, "train", cfg.shots, cfg.seed, cfg.data_dir)


def judged(model, sets):
    """{set: AUC} of a model on named (images, labels) sets."""
    return {name: roc_auc(y, probabilities(model, x)) for name, (x, y) in sets.items()}


def balanced_weights(groups):
    """Each group (the shots' and the replay's classes) the same total weight, whatever its size."""
    weight = np.zeros(len(groups))
    for g in np.unique(groups):
        weight[groups == g] = 1 / np.sum(groups == g)
    return weight / weight.mean()


def fit_head(data, shots, replay, l2_grid):
    """(the chosen head, its ridge strength, the validation AUCs of every strength) of shots + replay."""
    f = data["features"]
    x = np.concatenate([outputs(f, shots[0])] + ([outputs(f, replay[0])] if len(replay[1]) else []))
    y = np.concatenate([shots[1], replay[1]])
    groups = y + 2 * (np.arange(len(y)) >= len(shots[1]))  # the shots' and the replay's classes
    candidates = heads.fit_heads(x, y, balanced_weights(groups), data["prior"], l2_grid=l2_grid)
    (fx, fy), (sx, sy) = data["val_features"]
    table = [{"l2": l2, "family_val_auc": roc_auc(fy, heads.head_logits(fx, head)),
              "source_val_auc": roc_auc(sy, heads.head_logits(sx, head))} for l2, head in candidates.items()]
    keeping = [r for r in table if r["source_val_auc"] >= data["source_val_auc"] - MAX_ORIGINAL_DROP]
    best = (max(keeping, key=lambda r: (r["family_val_auc"], r["l2"])) if keeping
            else max(table, key=lambda r: r["source_val_auc"]))  # none keeps it: the one that keeps it best
    return candidates[best["l2"]], best["l2"], table


class AdaptedRun(Run):
    """One adapted run of cfg.method. A head or a novelty score is fit when the runner builds it (so its time
    is the run's training time); a fine-tuned copy trains like any detector. Its run.json adds the adaptation:
    both test splits judged once, what was learnt and what was kept."""

    def __init__(self, name, hyperparameters, fit_and_build, judge, epochs=0, compile_main=None, augment=(),
                 extra=None):
        super().__init__(name, hyperparameters, epochs, augment=augment, extra=extra)
        self.fit_and_build, self.judge, self.compile_main = fit_and_build, judge, compile_main

    def build(self):
        return self.fit_and_build()

    def compile(self, model):
        return self.compile_main(model) if self.compile_main else model

    def record(self, model, *context):
        return dict(super().record(model, *context), **self.judge(model))


def adapted_run(cfg, name, data, files, record):
    """(the AdaptedRun of cfg.method, the images it learns from)."""
    size, mode, manifest = cfg.image_size, cfg.resize_mode, data["family_manifest"]
    chosen = {}

    def judge(model):  # both test splits, once, for the record: what was learnt and what was kept
        after = judged(model, data["tests"])
        change = {k: after[k] - record["before"][k] for k in after}
        return {"adaptation": dict(record, **chosen, after=after, change=change)}

    hp = dict(cfg.record(), recipe=cfg.recipe())
    if cfg.method == "finetune":
        x, y = learning_set(decode(manifest, files, size, mode), data["replay"][cfg.seed])
        return AdaptedRun(name, hp, lambda: build_either(data["source_model"], cfg.tune, name), judge,
                          epochs=cfg.epochs, compile_main=lambda model: compile_detector(model, cfg.learning_rate),
                          augment=tuple(FINETUNE["augment"])), (x, y)
    if cfg.method == "novelty":
        reals, threshold = decode(data["source_manifest"] if cfg.reals == "development" else manifest, files, size,
                                  mode), {}

        def build_novelty():
            novelty = heads.fit_novelty(outputs(data["features"], reals[0]))
            threshold["threshold"] = novelty[3]  # from the reals it was fit on, not from validation
            chosen.update(threshold_from="reals it was fit on", false_alarms_on_them=heads.NOVELTY_FALSE_ALARMS)
            return heads.novelty_model(data["extractors"], novelty, name)

        return AdaptedRun(name, hp, build_novelty, judge, extra=threshold), reals

    def build():
        head, l2, table = fit_head(data, shots, data["replay"][cfg.seed], cfg.l2_grid)
        chosen.update(l2=l2, validation_by_l2=table)
        return heads.head_model(data["extractors"], head, name)

    shots = decode(manifest, files, size, mode)
    return AdaptedRun(name, hp, build, judge), shots


def adapt_one(cfg, source_dir, info, data):
    """One adapted run (cfg.shots, cfg.seed) through the kit's runner; its run.json."""
    name = adapted_name(source_dir, cfg)
    files = shot_files(cfg, data["family_manifest"], data["source_manifest"])
    record = {"source": os.path.abspath(source_dir), "source_model": info["model"], "recipe": cfg.recipe(),
              "method": cfg.method, "features": cfg.features, "gan": cfg.gan_run or None,
              "source_split_fingerprint": info["split_fingerprint"], "family": cfg.family,
              "family_data_dir": data["family_manifest"]["data_dir"], "shots": cfg.shots,
              "shot_files": [f["path"] for f in files], "before": data["before"]}
    run, learnt = adapted_run(cfg, name, data, files, record)
    return train_run(run, cfg, SplitData(data["family_manifest"], learnt, data["val"]))[1]


def adapted_name(source_dir, cfg):
    return f"{os.path.basename(os.path.normpath(source_dir))}-{cfg.recipe()}-k{cfg.shots}.seed{cfg.seed}"


def shots_in_order(shots):
    return sorted(set(shots), key=lambda k: (k == "all", 0 if k == "all" else k))


def source_config(args, source_dir, info, family):
    """(the configuration every adapted run of one source shares, the GAN discriminator its head reads or None)."""
    exp = os.path.dirname(os.path.abspath(source_dir))
    reads_gan = args.method != "finetune" and args.features != "source"
    gan_dir, gan_info, discriminator, block = "", {}, None, 0
    if reads_gan:
        gan_dir = os.path.abspath(args.gan or os.path.join(exp, GAN_RUN))
        gan_info = gan_run(gan_dir, info)
        try:
            discriminator = load_model_safely(os.path.join(gan_dir, "discriminator.keras"))
            block = heads.block_number(discriminator, args.gan_block)
        except (BrokenRun, ValueError) as e:
            raise UserError(f"--gan {gan_dir}: {e}")
    cfg = AdaptConfig(run=source_dir, family=family, shots=0, method=args.method,
                      features=args.features if args.method != "finetune" else "source", gan_run=gan_dir,
                      gan_created=gan_info.get("created", ""), gan_block=block, reals=args.reals,
                      replay_per_class=args.replay_per_class, tune=args.tune, epochs=args.epochs,
                      image_size=int(info["image_size"]), resize_mode=resize_mode_of(info),
                      seed=args.seed, precision=args.precision, runs_dir=os.path.join(exp, ADAPTED),
                      experiment=family, data_dir=os.path.abspath(args.data_dir), strict=args.strict,
                      retrain=args.retrain, source_created=info["created"])
    return cfg, discriminator


def adapt_source(args, source_dir, family):
    """Every (shots, seed) of one source run: kept where finished, made where missing; {name: run.json}."""
    info, source_manifest = source_run(source_dir)
    base, discriminator = source_config(args, source_dir, info, family)
    manifest = family_split(base.data_dir, base.runs_dir, family, source_manifest, args.strict)
    development = base.method == "novelty" and base.reals == "development"  # one fit: no K, no seed to vary
    counts, seeds = (["all"], [args.seed]) if development else (shots_in_order(args.shots),
                                                               range(args.seed, args.seed + args.seeds))
    shot_files(dataclasses.replace(base, shots=counts[-1]), manifest, source_manifest)  # enough? before any work
    data, out = None, {}
    for shots in counts:
        for seed in seeds:
            cfg = dataclasses.replace(base, shots=shots, seed=seed)
            folder = os.path.join(experiment_dir(cfg.runs_dir, family), adapted_name(source_dir, cfg))
            kept = finished_run(folder, cfg, manifest)
            if kept is None:
                if data is None:  # decoded once, and only when something is to be made
                    data = shared_data(base, source_dir, source_manifest, manifest, discriminator)
                keras.utils.set_random_seed(seed)
                kept = adapt_one(cfg, source_dir, info, data)
            out[os.path.basename(folder)] = kept
    return out


def shared_data(cfg, source_dir, source_manifest, manifest, discriminator):
    """What every adapted run of one source shares: the replay per seed, the joint validation set, both test
    splits, the source's own AUCs on them before adaptation, and (for a head) the frozen features."""
    size, mode = cfg.image_size, cfg.resize_mode

    class Replay(dict):  # the source's training images, a balanced sample per seed, decoded on first use
        def __missing__(self, seed):
            files = balanced_subset(source_manifest, "train", cfg.replay_per_class, seed, source_dir, at_most=True)
            empty = (np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32))
            self[seed] = decode(source_manifest, files, size, mode) if files else empty
            return self[seed]

    family_val, source_val = (load_split(m, "val", size, mode)[:2] for m in (manifest, source_manifest))
    tests = {"family": load_split(manifest, "test", size, mode)[:2],
             "source": load_split(source_manifest, "test", size, mode)[:2]}
    source_path = os.path.join(source_dir, "model.keras")
    source = load_model_safely(source_path)
    data = {"replay": Replay(), "tests": tests, "before": judged(source, tests), "source_model": source_path,
            "val": tuple(np.concatenate([a, b]) for a, b in zip(family_val, source_val)),
            "source_val_auc": roc_auc(source_val[1], probabilities(source, source_val[0])),
            "family_manifest": manifest, "source_manifest": source_manifest}
    if cfg.method != "finetune":
        try:
            extractors = [heads.detector_features(source)] if cfg.features != "gan" else []
        except ValueError as e:
            raise UserError(f"--run {source_dir}: {e}; use --features gan")
        if discriminator is not None:
            extractors.append(heads.discriminator_features(discriminator, cfg.gan_block))
        data.update(extractors=extractors, features=heads.feature_model(extractors))
        # the ridge pulls towards the source's own last layer (zero on the discriminator's features)
        own = heads.detector_head(source) if cfg.features != "gan" else np.zeros(0)
        data["prior"] = np.r_[own, np.zeros(data["features"].output_shape[-1] - len(own))]
        data["val_features"] = [(outputs(data["features"], x), y) for x, y in (family_val, source_val)]
    return data


def curve_table(results):
    """Lines: per shot count, the mean (and spread over seeds) of the AUC on the new family and on the old."""
    rows = {}
    for info in results.values():
        a = info["adaptation"]
        rows.setdefault(a["shots"], []).append((a["after"]["family"], a["after"]["source"]))
    before = next(iter(results.values()))["adaptation"]["before"]
    lines = [f"{'K per class':>11} {'seeds':>5} {'new family AUC':>16} {'original test AUC':>18}",
             f"{'before':>11} {'':>5} {before['family']:>16.3f} {before['source']:>18.3f}"]
    for k in shots_in_order(rows):
        fam, src = np.array(rows[k]).T
        lines.append(f"{k:>11} {len(fam):>5} {fam.mean():>9.3f} +- {fam.std(ddof=1) if len(fam) > 1 else 0:.3f} "
                     f"{src.mean():>11.3f} +- {src.std(ddof=1) if len(src) > 1 else 0:.3f}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    family = check_name(args.family or os.path.basename(os.path.normpath(args.data_dir)), "family")
    for folder in args.run:
        source_run(folder)  # every source checked before any work
    args.precision = setup(args.seed, args.precision)
    for folder in args.run:
        results = adapt_source(args, folder, family)
        recipe = next(iter(results.values()))["adaptation"].get("recipe", "finetune")
        print(f"{os.path.basename(os.path.normpath(folder))} adapted to {family} by {recipe} "
              f"({os.path.join(os.path.dirname(os.path.abspath(folder)), ADAPTED, family)}):")
        for line in curve_table(results):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
