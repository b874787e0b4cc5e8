"""`python -m classifiers.adapt --run runs/E/resnet --data-dir NEW --shots 25`: a finished detector taught a new
generator family from K labelled images per class, without forgetting the family it knew.

The new folder (Real/ and Fake/) is split by the kit like any data set, once, into
runs/E/adapted/<family>/split.json; K images per class are drawn from its training side (deterministic per
seed, nested: the 10 of seed S are among its 25). The source run is only read, never written.

The recipe (ADAPT below): the adapted detector holds two copies of the source network. One is frozen; the
other learns. Their verdicts are combined as "fake if either says fake" (p = a + b - ab), so every fake the
source caught it still catches, and what it can lose is only where the learner starts accusing reals.
The learner is fine-tuned (all of it, its top, or its head: --tune) on the K shots of each class mixed half
and half with a replay of the source's own training images, so it also learns to stay quiet on the old
reals. Fine-tuning one network forgets more (docs/new-families.md: synthetic resnet, sharpened family, K 25:
original test AUC 0.979 -> 0.920 on the shots alone, 0.956 with replay; this recipe 0.973).
The threshold is chosen on the source's and the new family's validation splits together; both test splits
are judged once at the end, for the record (run.json "adaptation") and compare.report, never for a choice.

Several --shots and --seeds make the adaptation curve: what is finished is kept, only what is missing is
trained, and the table is printed at the end (compare.report draws it).
"""
import argparse
import dataclasses
import os
import sys

import numpy as np

from data.runtime import DEFAULT_SEED, CommandConfig, UserError, positive_int, run_main, setting, setup
from data.split import balanced_subset

# the adaptation recipe: every setting of it, recorded in each adapted run's run.json
ADAPT = {
    "tune": "all",  # what of the learning copy trains: all, top (the last quarter of its layers) or head
    "learning_rate": 1e-4,  # Adam, small: the learning copy starts from the source's weights (not tuned further)
    "epochs": 10,
    "replay_per_class": 128,  # source training images per class mixed in, as many as the repeated shots
    "augment": ["flip"],
}
TUNES = ("all", "top", "head")
ADAPTED = "adapted"  # runs/<experiment>/adapted/<family>/<source>-k<K>.seed<S>/


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptConfig(CommandConfig):
    run: str = setting(identity=False)  # the source run folder: where, not what (source_created says which)
    family: str
    shots: int  # labelled images per class of the new family
    tune: str = ADAPT["tune"]
    learning_rate: float = ADAPT["learning_rate"]
    epochs: int = ADAPT["epochs"]
    replay_per_class: int = ADAPT["replay_per_class"]
    batch_size: int = 32
    image_size: int = 64  # the source run's
    source_created: str = ""  # when the source run was made: a retrained source makes its adapted runs stale
    resize_mode: str = "resize"  # the source run's

    def record(self):
        # where the runs are written and which folder held the source say where, not what
        return {k: v for k, v in super().record().items() if k not in ("run", "experiment", "retrain")}


def parse_args(argv=None):
    from data.runtime import PRECISIONS

    p = argparse.ArgumentParser(prog="python -m classifiers.adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, action="append",
                   help="a finished detector run folder, e.g. runs/default/resnet (repeat for several); the "
                        "adapted runs are written beside it, in its experiment's adapted/ folder")
    p.add_argument("--data-dir", required=True,
                   help="the new family: a folder with Real/ and Fake/ (or another layout data.layout reads)")
    p.add_argument("--family", help="the new family's name (default: the --data-dir folder's name)")
    p.add_argument("--strict", action="store_true",
                   help="stop on a picture labelled both real and fake (default: leave it out, say so)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--shots", type=positive_int, nargs="+", default=[25],
                   help="labelled images per class of the new family; several make a curve (e.g. 5 10 25 50)")
    p.add_argument("--seeds", type=positive_int, default=1, help="each point with seeds seed, seed+1, ...")
    p.add_argument("--tune", choices=TUNES, default=ADAPT["tune"], help="what of the learning copy trains")
    p.add_argument("--epochs", type=positive_int, default=ADAPT["epochs"], help="of the learning copy's fine-tuning")
    p.add_argument("--retrain", action="store_true", help="train again and replace finished adapted runs")
    return p.parse_args(argv)


def source_run(folder):
    """(run.json, its split manifest) of a finished detector run; one line saying why otherwise."""
    from data.runs import BrokenRun, read_run
    from data.split import load_manifest

    try:
        info = read_run(folder)
    except BrokenRun as e:
        raise UserError(f"--run {folder}: not a finished run ({e})")
    if info.get("kind") != "detector":
        raise UserError(f"--run {folder}: a {info.get('kind')} run, not a detector")
    if info.get("adaptation"):
        raise UserError(f"--run {folder}: already an adapted run; adapt its source ({info['adaptation']['source']})")
    return info, load_manifest(os.path.join(folder, "split.json"))


def family_split(data_dir, family_root, family, source_manifest, strict=False):
    """The new family's own split (made once, like an experiment's); refused when it holds source files."""
    from data.runs import experiment_dir
    from data.split import experiment_split, load_manifest, scan_cache_path
    from data.scan import scan_folder

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
    return experiment_split(data_dir, family_root, family, strict=strict, log=lambda line: None)


def decode(manifest, files, size, mode):
    from data.pipeline import load_images

    root = manifest["data_dir"]
    x, kept, failed = load_images([os.path.join(root, f["path"]) for f in files], size, mode,
                                  [f["sha256"] for f in files])
    if failed:
        raise UserError(f"{failed[0][0]}: {failed[0][1]} (the split was made from other files)")
    return x, np.array([f["label"] for f in files], np.float32)


def learning_set(shots, replay):
    """The K shots repeated to as many images as the replay, then both together: every epoch sees the new
    family and the old one half and half."""
    repeat = max(1, -(-len(replay[1]) // len(shots[1])))
    x = np.concatenate([np.repeat(shots[0][None], repeat, 0).reshape(-1, *shots[0].shape[1:]), replay[0]])
    y = np.concatenate([np.tile(shots[1], repeat), replay[1]])
    return x, y


def set_tuned(learner, tune):
    """What of the learning copy trains: everything, the last quarter of its weighted layers, or the last one."""
    import keras

    def weighted(model):
        out = []
        for layer in model.layers:
            out += weighted(layer) if isinstance(layer, keras.Model) else ([layer] if layer.weights else [])
        return out

    layers = weighted(learner)
    learner.trainable = True
    if tune != "all":
        keep = layers[-1:] if tune == "head" else layers[-max(1, len(layers) // 4):]
        for layer in layers:
            layer.trainable = layer in keep


def build_adapted(source_model_path, tune, name):
    """[0, 255] faces -> P(fake) = a + b - ab of the frozen source (a) and its learning copy (b). Stock layers
    only, so the run loads in safe mode like any detector."""
    import keras
    from keras import layers

    from classifiers.layers import load_model_safely

    frozen, learner = (load_model_safely(source_model_path) for _ in range(2))
    frozen.trainable = False
    set_tuned(learner, tune)
    frozen.name, learner.name = "source", "learner"  # two copies of one network need two names
    inputs = keras.Input(frozen.input_shape[1:], name="image")
    a, b = frozen(inputs), learner(inputs)
    # in float32 whatever the policy: probabilities near 0 and 1 are what thresholds separate
    total = layers.Add(name="a_plus_b", dtype="float32")([a, b])
    both = layers.Multiply(name="a_times_b", dtype="float32")([a, b])
    either = layers.Subtract(name="p_fake", dtype="float32")([total, both])
    return keras.Model(inputs, either, name=name.replace("-", "_").replace(".", "_"))


def judged(model, sets):
    """{set: AUC} of a model on named (images, labels) sets."""
    from classifiers.metrics import roc_auc
    from classifiers.predict import probabilities

    return {name: roc_auc(y, probabilities(model, x)) for name, (x, y) in sets.items()}


def adapted_name(source_dir, shots, seed):
    return f"{os.path.basename(os.path.normpath(source_dir))}-k{shots}.seed{seed}"


def adapt_one(cfg, source_dir, info, tests, family_manifest, data, before):
    """One adapted run (cfg.shots, cfg.seed) through the kit's runner; its run.json."""
    import keras

    from classifiers.models import compile_detector
    from classifiers.runner import RunSpec, SplitData, train_run

    name = adapted_name(source_dir, cfg.shots, cfg.seed)
    shot_files = balanced_subset(family_manifest, "train", cfg.shots, cfg.seed, cfg.data_dir)
    shots = decode(family_manifest, shot_files, cfg.image_size, cfg.resize_mode)
    x, y = learning_set(shots, data["replay"])
    hp = dict(ADAPT, tune=cfg.tune, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
              replay_per_class=cfg.replay_per_class, shots=cfg.shots)
    record = {"source": os.path.abspath(source_dir), "source_model": info["model"],
              "source_split_fingerprint": info["split_fingerprint"], "family": cfg.family,
              "family_data_dir": family_manifest["data_dir"], "shots": cfg.shots,
              "shot_files": [f["path"] for f in shot_files], "before": before}

    def evaluate(model):  # both test splits, once, for the record: what was learnt and what was kept
        after = judged(model, tests)
        return {"adaptation": dict(record, after=after,
                                   change={k: after[k] - before[k] for k in after})}

    keras.utils.set_random_seed(cfg.seed)
    spec = RunSpec(name, build=lambda: build_adapted(os.path.join(source_dir, "model.keras"), cfg.tune, name),
                   compile=lambda model: compile_detector(model, cfg.learning_rate), epochs=cfg.epochs,
                   hyperparameters=hp, augment=tuple(ADAPT["augment"]), evaluate=evaluate)
    return train_run(spec, cfg, SplitData(family_manifest, (x, y), data["val"]))[1]


def adapt_source(args, source_dir, family):
    """Every (shots, seed) of one source run: kept where finished, trained where missing; {name: run.json}."""
    from data.runs import experiment_dir, finished_run

    info, source_manifest = source_run(source_dir)
    exp = os.path.dirname(os.path.abspath(source_dir))
    base = AdaptConfig(run=source_dir, family=family, shots=max(args.shots), tune=args.tune, epochs=args.epochs,
                       image_size=int(info["image_size"]), resize_mode=info.get("resize_mode", "resize"),
                       seed=args.seed, precision=args.precision, runs_dir=os.path.join(exp, ADAPTED),
                       experiment=family, data_dir=os.path.abspath(args.data_dir), strict=args.strict,
                       retrain=args.retrain, source_created=info["created"])
    manifest = family_split(base.data_dir, base.runs_dir, family, source_manifest, args.strict)
    balanced_subset(manifest, "train", max(args.shots), args.seed, base.data_dir)  # enough for every K? before work
    data, out = None, {}
    for shots in sorted(args.shots):
        for seed in range(args.seed, args.seed + args.seeds):
            cfg = dataclasses.replace(base, shots=shots, seed=seed)
            folder = os.path.join(experiment_dir(cfg.runs_dir, family), adapted_name(source_dir, shots, seed))
            kept = finished_run(folder, cfg, manifest)
            if kept is None:
                if data is None:  # decoded once, and only when something is to be trained
                    data = shared_data(source_dir, source_manifest, manifest, base)
                kept = adapt_one(cfg, source_dir, info, data["tests"], manifest,
                                 dict(data, replay=data["replay"][seed]), data["before"])
            out[os.path.basename(folder)] = kept
    return out


def shared_data(source_dir, source_manifest, manifest, cfg):
    """What every adapted run of one source shares: the replay per seed, the joint validation set, both test
    splits, and the source's own AUCs on them before adaptation."""
    from classifiers.layers import load_model_safely
    from data.pipeline import load_split

    size, mode = cfg.image_size, cfg.resize_mode

    class Replay(dict):  # the source's training images, a balanced sample per seed, decoded on first use
        def __missing__(self, seed):
            files = balanced_subset(source_manifest, "train", cfg.replay_per_class, seed, source_dir,
                                    at_most=True)
            self[seed] = decode(source_manifest, files, size, mode)
            return self[seed]

    vals = [load_split(m, "val", size, mode)[:2] for m in (manifest, source_manifest)]
    val = (np.concatenate([v[0] for v in vals]), np.concatenate([v[1] for v in vals]))
    tests = {"family": load_split(manifest, "test", size, mode)[:2],
             "source": load_split(source_manifest, "test", size, mode)[:2]}
    before = judged(load_model_safely(os.path.join(source_dir, "model.keras")), tests)
    return {"replay": Replay(), "val": val, "tests": tests, "before": before}


def curve_table(results):
    """Lines: per shot count, the mean (and spread over seeds) of the AUC on the new family and on the old."""
    rows = {}
    for info in results.values():
        a = info["adaptation"]
        rows.setdefault(a["shots"], []).append((a["after"]["family"], a["after"]["source"]))
    before = next(iter(results.values()))["adaptation"]["before"]
    lines = [f"{'K per class':>11} {'seeds':>5} {'new family AUC':>16} {'original test AUC':>18}",
             f"{'before':>11} {'':>5} {before['family']:>16.3f} {before['source']:>18.3f}"]
    for k in sorted(rows):
        fam, src = np.array(rows[k]).T
        lines.append(f"{k:>11} {len(fam):>5} {fam.mean():>9.3f} +- {fam.std(ddof=1) if len(fam) > 1 else 0:.3f} "
                     f"{src.mean():>11.3f} +- {src.std(ddof=1) if len(src) > 1 else 0:.3f}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    from data.runs import check_name

    family = check_name(args.family or os.path.basename(os.path.normpath(args.data_dir)), "family")
    for folder in args.run:
        source_run(folder)  # every source checked before any work
    args.precision = setup(args.seed, args.precision)
    for folder in args.run:
        results = adapt_source(args, folder, family)
        print(f"{os.path.basename(os.path.normpath(folder))} adapted to {family} "
              f"({os.path.join(os.path.dirname(os.path.abspath(folder)), ADAPTED, family)}):")
        for line in curve_table(results):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
