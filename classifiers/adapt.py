"""`python -m classifiers.adapt --run runs/E/baseline --data-dir NEW --shots 25`: a finished detector taught a new
generator family from K labelled images per class, without forgetting the family it knew and without changing it.

The new folder is split by the kit like any data set, once, into runs/E/adapted/<family>/split.json; K images
per class are drawn from its training side (deterministic per seed, nested: the 10 of seed S are among its 25;
`--shots all`: its whole training side, the ceiling). The source run is only read, never written.

--method
  head      (default) ridge-logistic heads on frozen features (classifiers.heads): the source detector's
            penultimate features, a block of the experiment's GAN discriminator (--features gan) or both.
            Two are fit and validation chooses (--head choose; recorded with why):
            the replayed head  one head on the K shots per class and a replay of the source's own training
                    faces, half the weight each, its ridge pulling towards the source's own last layer (not
                    towards zero), so the original family keeps its verdicts;
            two heads  the source's own head, unchanged, beside a family head fit on the shots (and the
                    replay's reals, as reals) over the same frozen features: fake if either says fake, each
                    head's threshold from its own family's validation side, the family head's raised until it
                    accuses at most MAX_NEWLY_ACCUSED of the source's validation reals the source clears. One
                    linear head cannot keep the source's verdicts and turn round a family the source sees
                    inverted; two can, but keep the source's own false alarms on the family.
            Each head's ridge strength, and the choice between them, is the best on the family's validation
            side among those that keep the source's validation AUC within MAX_ORIGINAL_DROP. An adaptation
            whose family validation AUC stays under FAILED_BELOW, or under the source's own, is said (one line)
            and recorded as not adapted; the report flags it.
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
from classifiers.metrics import accuracy, roc_auc, youden_threshold
from classifiers.models import compile_detector
from classifiers.predict import outputs, probabilities
from classifiers.runner import Run, SplitData, train_run
from data import align
from data.align import align_of
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
MAX_NEWLY_ACCUSED = 0.02  # of the source's validation reals it clears, the share a family head may accuse
FAILED_BELOW = 0.6  # a family validation AUC under this (or under the source's own) is no adaptation
# the family head's weight under its threshold in the two-heads model (classifiers.layers.EitherFires): where
# neither head accuses a face, 1 orders it by whichever head is nearer its threshold, 100 by the source's alone
BELOW_WEIGHTS = (1.0, 3.0, 10.0, 100.0)
HEAD_CHOICES = ("choose", "replayed", "two", "family")  # --head: what --method head fits (choose: on validation)
HEAD_NAMES = {"replayed": "replayed head", "two": "two heads", "family": "family head alone"}
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
    head: str = setting("choose", added_later="replayed")  # --method head: HEAD_CHOICES
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
        head = f"-{self.head}" if self.method == "head" and self.head != "choose" else ""
        return self.method + reads + head + ("-development" if self.method == "novelty" and self.reals != "family" else "")


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
    p.add_argument("--head", choices=HEAD_CHOICES, default="choose",
                   help="--method head: the replayed head, the two heads (the source's and a family head, fake if "
                        "either says fake), whichever validation prefers (choose, the default), or the family head "
                        "alone (the source forgotten: a ceiling to compare with)")
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


def decode(manifest, files, size, mode, aligner=None):
    """(images, labels) of these files, framed as aligner says; a file without a face to judge is left out."""
    x, kept, failed = load_images([os.path.join(manifest["data_dir"], f["path"]) for f in files], size, mode,
                                  [f["sha256"] for f in files], aligner=aligner)
    for path, reason in failed:
        if not reason.startswith("no face to judge"):
            raise UserError(f"{path}: {reason} (the split was made from other files)")
        print(f"warning: skipping {path}: {reason}", file=sys.stderr)
    return x, np.array([files[k]["label"] for k in kept], np.float32)


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


def family_threshold(logits, y, cleared_reals):
    """The family head's threshold (a logit): the best on the family's validation side (Youden), raised where
    it would accuse more than MAX_NEWLY_ACCUSED of the source's validation reals that the source clears."""
    return accusing_at_most(youden_threshold(y, logits), cleared_reals)


def accusing_at_most(threshold, cleared_reals):
    """threshold, raised where more than MAX_NEWLY_ACCUSED of cleared_reals (scores of the source's validation
    reals that the source clears) would reach it."""
    allowed = int(MAX_NEWLY_ACCUSED * len(cleared_reals))
    if allowed < len(cleared_reals):
        threshold = max(threshold, float(np.nextafter(np.sort(cleared_reals)[::-1][allowed], np.inf)))
    return threshold


def fit_family_head(data, shots, replay, l2_grid):
    """(a plain ridge-logistic head on the shots alone, its row, the validation table of every strength): the
    family head of the two-heads model, each strength's threshold by family_threshold and judged as the
    two-heads model it would make."""
    reals = replay[0][replay[1] == 0]
    x = np.concatenate([outputs(data["features"], shots[0])] + ([outputs(data["features"], reals)] if len(reals) else []))
    y = np.r_[shots[1], np.zeros(len(reals))]
    groups = y + 2 * (np.arange(len(y)) >= len(shots[1]))  # the shots' two classes and the replayed reals
    candidates = heads.fit_heads(x, y, balanced_weights(groups), l2_grid=l2_grid)
    (fx, fy), (sx, sy) = data["val_features"]
    (fa, sa), t_a = data["val_source_logits"], data["source_threshold"]
    cleared = (sy == 0) & (sa < t_a)
    table = []
    for l2, head in candidates.items():
        fb, sb = heads.head_logits(fx, head), heads.head_logits(sx, head)
        t_b = family_threshold(fb, fy, sb[cleared])
        for below in BELOW_WEIGHTS:
            rule = (t_a, t_b, below)
            table.append({"l2": l2, "threshold": t_b, "below": below, "family_head_val_auc": roc_auc(fy, fb),
                          "family_val_auc": roc_auc(fy, heads.either_logits(fa, fb, rule)),
                          "source_val_auc": roc_auc(sy, heads.either_logits(sa, sb, rule)),
                          "newly_accused_val": float(np.mean(sb[cleared] >= t_b)) if cleared.any() else 0.0})
    best = keeping_best(table, data["source_val_auc"])
    return candidates[best["l2"]], best, table


def keeping_best(rows, source_val_auc):
    """The row with the best family validation AUC among those keeping the source's validation AUC within
    MAX_ORIGINAL_DROP (ties: the first); where none keeps it, the one that keeps it best."""
    keeping = [r for r in rows if r["source_val_auc"] >= source_val_auc - MAX_ORIGINAL_DROP]
    return max(keeping, key=lambda r: r["family_val_auc"]) if keeping else max(rows, key=lambda r: r["source_val_auc"])


def plain_head(data, shots, l2_grid):
    """(a ridge-logistic head on the shots alone, pulled towards zero, its row): the strength best on the
    family's validation side, whatever it costs the source (--head family: what forgetting the source gives)."""
    candidates = heads.fit_heads(outputs(data["features"], shots[0]), shots[1], balanced_weights(shots[1]),
                                 l2_grid=l2_grid)
    (fx, fy), (sx, sy) = data["val_features"]
    table = [{"l2": l2, "family_val_auc": roc_auc(fy, heads.head_logits(fx, head)),
              "source_val_auc": roc_auc(sy, heads.head_logits(sx, head))} for l2, head in candidates.items()]
    best = max(table, key=lambda r: r["family_val_auc"])
    return candidates[best["l2"]], best, table


def choose_head(data, shots, replay, cfg, name):
    """(the model, what the run records) of --head: the replayed head, the two heads, whichever of those two
    validation prefers, or the family head alone."""
    if cfg.head == "family":
        head, row, table = plain_head(data, shots, cfg.l2_grid)
        return heads.head_model(data["extractors"], head, name), {"head": HEAD_NAMES["family"], "l2": row["l2"],
                                                                  "validation_by_l2": table}
    replayed, l2, table = fit_head(data, shots, replay, cfg.l2_grid)
    record = {"head": HEAD_NAMES["replayed"], "l2": l2, "validation_by_l2": table}
    if cfg.head == "replayed" or "source_features" not in data:  # --features gan: no source head to keep
        return heads.head_model(data["extractors"], replayed, name), record
    family_head, row, family_table = fit_family_head(data, shots, replay, cfg.l2_grid)
    options = [dict(next(r for r in table if r["l2"] == l2), head=HEAD_NAMES["replayed"]),
               dict(row, head=HEAD_NAMES["two"])]
    chosen = keeping_best(options, data["source_val_auc"]) if cfg.head == "choose" else options[1]
    other = options[1 - options.index(chosen)]
    record.update(head=chosen["head"], family_head={"l2": row["l2"], "threshold": row["threshold"],
                                                    "below": row["below"], "validation": family_table})
    if cfg.head == "choose":
        record["why"] = (f"family validation AUC {chosen['family_val_auc']:.3f} against {other['family_val_auc']:.3f}"
                         f" by the {other['head']}, source validation AUC {chosen['source_val_auc']:.3f} against "
                         f"{other['source_val_auc']:.3f} (the source alone: {data['source_val_auc']:.3f}; at most "
                         f"{MAX_ORIGINAL_DROP} may be lost)")
    if chosen is options[0]:
        return heads.head_model(data["extractors"], replayed, name), record
    model = heads.either_model(data["source_features"], data["source"], data["extractors"], family_head,
                               (data["source_threshold"], row["threshold"], row["below"]), name)
    return model, dict(record, threshold_from="each head's own validation side: fake where either fires (0.5)")


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

    def record(self, model, cfg, data, *context):
        info = super().record(model, cfg, data, *context)
        judged_now = self.judge(model, info["threshold"])
        if judged_now["threshold"] != info["threshold"]:  # the model's own rule, not the joint validation's
            p = probabilities(model, data.val[0], batch_size=cfg.batch_size)
            info["validation"] = dict(info["validation"], threshold=judged_now["threshold"],
                                      accuracy_at_threshold=accuracy(data.val[1], p, judged_now["threshold"]))
        return dict(info, **judged_now)


def adapted_run(cfg, name, data, files, record):
    """(the AdaptedRun of cfg.method, the images it learns from)."""
    size, mode, manifest = cfg.image_size, cfg.resize_mode, data["family_manifest"]
    chosen = {}

    def judge(model, threshold):  # both test splits, once, for the record: what was learnt and what was kept
        if chosen.get("head") == HEAD_NAMES["two"]:
            threshold = 0.5  # either fires: each head's threshold is in the model
        elif chosen.get("head") == HEAD_NAMES["replayed"]:
            threshold = accusing_at_most(threshold, probabilities(model, data["source_val_cleared"]))
            chosen["threshold_from"] = (f"both validation sides, raised until at most {MAX_NEWLY_ACCUSED} of the "
                                        "source's validation reals it clears are accused")
        after = judged(model, data["tests"])
        change = {k: after[k] - record["before"][k] for k in after}
        family_val_auc = judged(model, {"val": data["family_val"]})["val"]
        # the original test reals the source clears and this model accuses: what the new family costs the old
        cleared = data["source_test_cleared"]
        accused = probabilities(model, data["tests"]["source"][0][cleared]) >= threshold if cleared.any() else []
        failed = family_val_auc < FAILED_BELOW or family_val_auc < data["family_val_auc_before"]
        return {"threshold": threshold, "adaptation": dict(
            record, **chosen, after=after, change=change, family_val_auc=family_val_auc,
            family_val_auc_before=data["family_val_auc_before"], adapted=not failed,
            newly_accused=float(np.mean(accused)) if len(accused) else 0.0)}

    hp = dict(cfg.record(), recipe=cfg.recipe())
    if cfg.method == "finetune":
        x, y = learning_set(decode(manifest, files, size, mode, data["family_aligner"]), data["replay"][cfg.seed])
        return AdaptedRun(name, hp, lambda: build_either(data["source_model"], cfg.tune, name), judge,
                          epochs=cfg.epochs, compile_main=lambda model: compile_detector(model, cfg.learning_rate),
                          augment=tuple(FINETUNE["augment"])), (x, y)
    if cfg.method == "novelty":
        reals, threshold = (decode(data["source_manifest"], files, size, mode, data["source_aligner"])
                            if cfg.reals == "development" else
                            decode(manifest, files, size, mode, data["family_aligner"])), {}

        def build_novelty():
            novelty = heads.fit_novelty(outputs(data["features"], reals[0]))
            threshold["threshold"] = novelty[3]  # from the reals it was fit on, not from validation
            chosen.update(threshold_from="reals it was fit on", false_alarms_on_them=heads.NOVELTY_FALSE_ALARMS)
            return heads.novelty_model(data["extractors"], novelty, name)

        return AdaptedRun(name, hp, build_novelty, judge, extra=threshold), reals

    def build():
        model, record_of_choice = choose_head(data, shots, data["replay"][cfg.seed], cfg, name)
        chosen.update(record_of_choice)
        return model

    shots = decode(manifest, files, size, mode, data["family_aligner"])
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
    info = train_run(run, cfg, SplitData(data["family_manifest"], learnt, data["val"], framing=data["framing"]))[1]
    say_if_not_adapted(name, info["adaptation"])
    return info


def say_if_not_adapted(name, a):
    """One line where an adaptation learnt nothing of the family: its verdicts there are the source's or worse."""
    if not a.get("adapted", True):
        print(f"{name}: not adapted: its validation AUC on {a['family']} is {a['family_val_auc']:.3f}, the "
              f"source's own {a['family_val_auc_before']:.3f} (below {FAILED_BELOW} or below the source's is no "
              "adaptation); its verdicts on this family are no better than the source's")


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
                      head=args.head if args.method == "head" else "choose",
                      gan_created=gan_info.get("created", ""), gan_block=block, reals=args.reals,
                      replay_per_class=args.replay_per_class, tune=args.tune, epochs=args.epochs,
                      image_size=int(info["image_size"]), resize_mode=resize_mode_of(info), align=align_of(info),
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
                    data = shared_data(base, source_dir, info, source_manifest, manifest, discriminator)
                keras.utils.set_random_seed(seed)
                kept = adapt_one(cfg, source_dir, info, data)
            else:
                say_if_not_adapted(os.path.basename(folder), kept["adaptation"])
            out[os.path.basename(folder)] = kept
    return out


def shared_data(cfg, source_dir, info, source_manifest, manifest, discriminator):
    """What every adapted run of one source shares: the replay per seed, the joint validation set, both test
    splits, the source's own AUCs on them before adaptation, and (for a head) the frozen features."""
    size, mode = cfg.image_size, cfg.resize_mode
    # the family framed as the source frames what it judges; the source's own split as it was trained
    cache = align.LandmarkCache(align.landmarks_path(os.path.dirname(os.path.dirname(os.path.abspath(source_dir)))))
    framing = align.resolve(cfg.align, manifest["data_dir"], align.pictures(manifest["files"]), cache, size)
    print(f"family {cfg.family}: {framing.why}")
    framing = dataclasses.replace(framing, judge=cfg.align)  # what the adapted run judges: as its source does
    aligners = {m["fingerprint"]: None if how == "none" else align.Aligner(how, cache, size)
                for m, how in ((source_manifest, align.split_align_of(info)), (manifest, framing.decode))}
    family_aligner, source_aligner = aligners[manifest["fingerprint"]], aligners[source_manifest["fingerprint"]]

    class Replay(dict):  # the source's training images, a balanced sample per seed, decoded on first use
        def __missing__(self, seed):
            files = balanced_subset(source_manifest, "train", cfg.replay_per_class, seed, source_dir, at_most=True)
            empty = (np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32))
            self[seed] = decode(source_manifest, files, size, mode, source_aligner) if files else empty
            return self[seed]

    def side(m, which):
        return load_split(m, which, size, mode, aligner=aligners[m["fingerprint"]])[:2]

    family_val, source_val = side(manifest, "val"), side(source_manifest, "val")
    tests = {"family": side(manifest, "test"), "source": side(source_manifest, "test")}
    source_path = os.path.join(source_dir, "model.keras")
    source = load_model_safely(source_path)
    data = {"replay": Replay(), "tests": tests, "before": judged(source, tests), "source_model": source_path,
            "val": tuple(np.concatenate([a, b]) for a, b in zip(family_val, source_val)), "family_val": family_val,
            "source_val_auc": roc_auc(source_val[1], probabilities(source, source_val[0])),
            "family_val_auc_before": roc_auc(family_val[1], probabilities(source, family_val[0])),
            "source_test_cleared": (tests["source"][1] == 0) & (
                probabilities(source, tests["source"][0]) < info["threshold"]),
            "source_val_cleared": source_val[0][(source_val[1] == 0) & (
                probabilities(source, source_val[0]) < info["threshold"])],
            "family_manifest": manifest, "source_manifest": source_manifest, "source": source, "framing": framing,
            "family_aligner": family_aligner, "source_aligner": source_aligner}
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
        if cfg.features != "gan":  # the two-heads model: the source's own head on its own features, unchanged
            data["source_features"] = extractors[0]
            kernel, bias = source.layers[-1].get_weights()
            data["val_source_logits"] = [outputs(extractors[0], x) @ kernel.reshape(-1) + bias[0]
                                         for x, _ in (family_val, source_val)]
            data["source_threshold"] = float(heads.logit(info["threshold"]))
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


def family_name(data_dir, family=None):
    """--family, or the --data-dir folder's name; one line where it cannot name a folder."""
    return check_name(family or os.path.basename(os.path.normpath(data_dir)), "family")


def main(argv=None):
    args = parse_args(argv)
    family = family_name(args.data_dir, args.family)
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
