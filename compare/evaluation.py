"""What the comparison's numbers are: every finished detector of an experiment, and the ensemble of them,
judged on the one test split (and on external sets and perturbed copies of the test images).

Finds the runs (refusing any trained on another split, skipping broken ones with their reason), predicts
every image set once per input size, and turns predictions into metrics.json's entries. Nothing here
writes a file: compare/rendering.py turns the results into tables, figures and TensorBoard summaries.
"""
from dataclasses import dataclass
import json
import os
import sys

import numpy as np

from classifiers.layers import load_model_safely
from classifiers.metrics import youden_threshold
from classifiers.predict import probabilities as predict
from classifiers.registry import augmentations
from compare import metrics as M, perturb
from compare.timing import latency
from data import align
from data.align import align_of
from data.cache import cached_split
from data.layout import find_layout
from data.pipeline import load_images, load_split, resize_mode_of
from data.runs import BrokenRun, list_runs
from data.runtime import UserError
from data.scan import scan_folder

LATENCY_REPEATS = 30
THROUGHPUT_BATCH = 64
EXTERNAL_KEYS = ("roc_auc", "average_precision", "accuracy_at_threshold", "fake_recall_at_threshold",
                 "real_fpr_at_threshold")
INVERTED = "inverted: calls these fakes more real than the reals"
ENSEMBLE = "ensemble"


@dataclass
class Detector:
    """One finished detector run, loaded."""
    name: str
    folder: str
    info: dict
    model: object

    @property
    def size(self):
        return int(self.info["image_size"])

    @property
    def resize_mode(self):
        return resize_mode_of(self.info)

    @property
    def split_align(self):
        return align.split_align_of(self.info)


@dataclass
class TestResult:
    """One model's (or the ensemble's) predictions on the test split, with the images it saw."""
    labels: np.ndarray
    p_fake: np.ndarray
    metrics: dict
    images: np.ndarray


def gan_runs(runs_dir, experiment, manifest):
    """The experiment's GANs on this split: steps reached against steps asked for, and what stopped them, so a
    GAN cut short by its minute cap is never read as the preset's full GAN."""
    out = []
    for folder, info in list_runs(runs_dir, experiment)[0]:
        if info.get("kind") != "gan" or info.get("split_fingerprint") != manifest["fingerprint"]:
            continue
        config, kit = info.get("config") or {}, ((info.get("quality") or {}).get("spaces") or {}).get("kit") or {}
        out.append({"name": os.path.basename(folder), "steps": info.get("steps_completed"),
                    "steps_planned": info.get("steps_planned", config.get("gan_steps")),
                    "stopped_by": info.get("stopped_by"), "gan_minutes": config.get("gan_minutes"),
                    "minutes": round((info.get("train_seconds") or 0) / 60, 1), "preset": config.get("preset"),
                    "kid": (kit.get("generator") or [None])[0], "kid_floor": (kit.get("floor") or [None])[0]})
    return out


def find_detectors(runs_dir, experiment, manifest):
    """([Detector], skipped as [(name, reason)])."""
    good, broken = list_runs(runs_dir, experiment)
    skipped = [(os.path.basename(f), reason) for f, reason in broken]
    detectors = []
    names = {os.path.basename(folder) for folder, _ in good}
    for folder, info in good:
        name = os.path.basename(folder)
        if info.get("kind") != "detector":
            continue  # the GAN itself: its discriminator is judged through the dcgan-* runs
        search = info.get("search") or {}
        kept = search.get("kept_from", "baseline") if search.get("kept") == "baseline" else None
        if kept in names:  # its model is that run's, byte for byte: one row, not two
            skipped.append((name, f"the search ({len(search.get('trials') or [])} trials) kept the baseline "
                                  f"({search.get('note', 'its winner was not better')}); `{kept}`'s row is its result"))
            continue
        if info.get("split_fingerprint") != manifest["fingerprint"]:
            skipped.append((name, f"trained on another split (fingerprint {str(info.get('split_fingerprint'))[:16]}, "
                                  f"experiment {manifest['fingerprint'][:16]}): models judged on different test "
                                  "images are not comparable"))
            continue
        try:
            model = load_model_safely(os.path.join(folder, "model.keras"))
        except BrokenRun as e:
            skipped.append((name, str(e)))
            continue
        detectors.append(Detector(name, folder, info, model))
    return detectors, skipped


def parse_test_dirs(values):
    """[(name, folder)] from NAME=DIR or a bare DIR (named after the folder); names must differ. A folder sorted
    by generator (CNNDetection's and UniversalFakeDetect's test sets, GenImage) gives one set per generator,
    named after the generator's folder (NAME/generator with NAME=)."""
    out = []
    for value in values or []:
        name, sep, folder = value.partition("=")
        if os.path.isdir(value) or not sep:
            name, folder, sep = os.path.basename(os.path.normpath(value)), value, ""
        if not os.path.isdir(folder):
            raise UserError(f"--test-dir {value}: {folder} does not exist or is not a folder")
        if name in ("test", "val") or not name:
            raise UserError(f"--test-dir {value}: the set name {name!r} is taken; give each set its own NAME=DIR")
        generators = find_layout(folder, one_class_ok=True).generator_folders()
        sets = [(f"{name}/{g}" if sep else g, path) for g, path in generators.items()] or [(name, folder)]
        for set_name, set_folder in sets:
            if set_name in dict(out) or set_name in ("test", "val") or not set_name:
                raise UserError(f"--test-dir {value}: the set name {set_name!r} is taken; give each set its own NAME=DIR")
            out.append((set_name, set_folder))
    return out


class ImageSets:
    """Decoded image sets ("test", "val" or an external set's name), cached by (set, size, mode, perturbation,
    alignment). A detector sees its own split framed as it was trained (its decode cache), and an external set
    framed as data.align.resolve makes of that set with the run's "align"."""

    def __init__(self, manifest, test_dirs=(), cache_dir=None, landmarks=None):
        self.manifest, self.test_dirs, self.cache, self.external_files = manifest, dict(test_dirs), {}, {}
        self.cache_dir = cache_dir  # the experiment's decode cache (data.cache), for the split's own images
        self.landmarks = landmarks  # data.align.LandmarkCache: faces found once per file, for every run
        self.framings = {}

    def align_for(self, detector, which):
        """The per-picture alignment (none, auto or ffhq) this detector's view of the set `which` is decoded with."""
        if which in ("test", "val") or align_of(detector.info) == "none":
            return detector.split_align
        key = (which, align_of(detector.info), detector.size)
        if key not in self.framings:
            pictures = [align.Picture(p, sha) for p, _, sha in self._external(which)]
            framing = align.resolve(key[1], "", pictures, self.landmarks, detector.size)
            print(f"external test set {which}: {framing.why}")
            self.framings[key] = framing.decode
        return self.framings[key]

    def aligner(self, mode, size):
        return None if mode == "none" else align.Aligner(mode, self.landmarks, size)

    def _external(self, name):
        if name not in self.external_files:
            scan = scan_folder(self.test_dirs[name], one_class_ok=True)
            images = scan.images
            sides = {r.side for r in images if r.side}
            if sides:  # a data set's own split: the side its published results are quoted on
                side = "test" if "test" in sides else "val" if "val" in sides else "train"
                images = [r for r in images if r.side == side]
            print(f"external test set {name} ({self.test_dirs[name]}{f', its {side} side' if sides else ''}): "
                  f"{scan.summary()}")
            self.external_files[name] = [(os.path.join(scan.root, r.path), r.label, r.sha256) for r in images]
        return self.external_files[name]

    def get(self, which, size, mode, perturbation=None, align_mode="none"):
        """(images, labels, paths) of a set; a picture without a face to judge is left out (and named)."""
        key = (which, size, mode, perturbation, align_mode)
        if key not in self.cache:
            fn = perturb.transform(*perturbation) if perturbation else None
            aligner = self.aligner(align_mode, size)
            if which in ("test", "val") and fn is None and self.cache_dir:
                x, y, paths = cached_split(self.manifest, which, size, mode, self.cache_dir, aligner=aligner)
            elif which in ("test", "val"):  # perturbed at the file's own resolution: decoded anew
                x, y, paths = load_split(self.manifest, which, size, mode, transform=fn, aligner=aligner)
            else:
                files = self._external(which)
                if aligner is not None:  # every face found first, with progress, into the shared cache
                    align.survey("", [align.Picture(p, sha) for p, _, sha in files], align_mode, size,
                                 self.landmarks)
                x, kept, failed = load_images([p for p, _, _ in files], size, mode, [sha for _, _, sha in files],
                                              transform=fn, aligner=aligner)
                for path, reason in failed:
                    print(f"warning: skipping {path}: {reason}", file=sys.stderr)
                y = np.array([files[i][1] for i in kept], np.float32)
                paths = [files[i][0] for i in kept]
            self.cache[key] = (x, y, list(paths))
        return self.cache[key]


def measure_costs(detector):
    """Parameters, size on disk, training time, and latency / throughput measured now on this machine."""
    model = detector.model
    out = {"params": int(model.count_params()), "train_seconds": detector.info.get("train_seconds"),
           "size_mb": os.path.getsize(os.path.join(detector.folder, "model.keras")) / 2 ** 20}
    one, many = latency(model, detector.size, LATENCY_REPEATS, THROUGHPUT_BATCH)
    out["latency_ms_b1"], out["throughput_b64"] = one["median"], many["median"]
    return out


def hparam_value(value):
    """A hyperparameter as HParams shows it, in the search's own format: a list as "32-64" (the tuner's
    filters), an empty one as "none"; None is left out (the caller drops it)."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value) or "none"
    return value if isinstance(value, (bool, int, float, str)) or value is None else json.dumps(value, sort_keys=True)


def flat_hparams(name, info):
    """One HParams session's values: each hyperparameter in one format across every model and search trial.
    "augment" is the search's switch (a bool, as in its trials: on for a list of perturbations), and
    "augmentations" names what was applied."""
    hp = {"model": name, "image_size": int(info.get("image_size", 0)), "precision": str(info.get("precision"))}
    for k, v in (info.get("hyperparameters") or {}).items():
        if k == "augment":
            hp["augment"], hp["augmentations"] = bool(v), hparam_value(list(augmentations(v)))
        elif hparam_value(v) is not None:
            hp[k] = hparam_value(v)
    return hp


def predict_all(detectors, sets, perturb_spec=None, tta=False, need_val=()):
    """({model: {set key: P(fake)}}, {set key: labels}, {model: test images}); set keys are "test", "val"
    (only for the models in need_val: the ensemble's members, whose threshold it is chosen on), "ext:NAME"
    and "perturbed:SPEC". Every model sees the same files in the same order at its own size."""
    specs = perturb.parse_spec(perturb_spec)
    preds, labels, images, files = {}, {}, {}, {}
    for d in detectors:
        looks = [("test", "test", None)] + ([("val", "val", None)] if d.name in need_val else [])
        looks += [(f"ext:{s}", s, None) for s in sets.test_dirs]
        looks += [(f"perturbed:{perturb.label(*spec)}", "test", spec) for spec in specs]
        preds[d.name] = {}
        for key, which, spec in looks:
            align_mode = sets.align_for(d, which)
            x, y, paths = sets.get(which, d.size, d.resize_mode, spec, align_mode)
            if key not in files:  # every model is judged on the same files: the set as given
                labels[key], files[key] = (y, paths) if align_mode == "none" else \
                    sets.get(which, d.size, d.resize_mode, spec)[1:]
            preds[d.name][key] = on_files(predict(d.model, x, tta), paths, files[key], f"{d.name} on {key}")
            if key == "test":  # the images beside the predictions, one per file
                images[d.name] = x if len(x) == len(files[key]) else sets.get(which, d.size, d.resize_mode)[0]
    return preds, labels, images


def on_files(p_fake, paths, files, what):
    """P(fake) per file of `files`: p_fake is for `paths` (a subset: the pictures alignment could judge); a file
    without a face to judge counts as undecided (0.5), said in one line."""
    if list(paths) == list(files):
        return p_fake
    by_path = dict(zip(paths, p_fake))
    missing = sum(f not in by_path for f in files)
    print(f"  {what}: {missing:,} of {len(files):,} pictures have no face to judge; each counts as undecided (0.5)")
    return np.array([by_path.get(f, 0.5) for f in files], np.float32)


def judge(preds, labels, threshold):
    """One model's (or the ensemble's) entry of metrics.json from its predictions."""
    entry = {"test": M.evaluate(labels["test"], preds["test"], threshold)}
    external = {k.removeprefix("ext:"): M.evaluate(labels[k], preds[k], threshold) for k in preds if k.startswith("ext:")}
    if external:
        for m in external.values():
            if m["roc_auc"] < 0.5:  # nan (one class) compares False
                m["flag"] = INVERTED
        entry["external"] = external
        entry["external_mean"] = {k: float(np.nanmean([m[k] for m in external.values()]))
                                  if any(m[k] == m[k] for m in external.values()) else float("nan")
                                  for k in EXTERNAL_KEYS}
        entry["generalisation_gap"] = entry["test"]["roc_auc"] - entry["external_mean"]["roc_auc"]
    perturbed = {k.removeprefix("perturbed:"): M.evaluate(labels[k], preds[k], threshold, ci=False) for k in preds if k.startswith("perturbed:")}
    if perturbed:
        entry["perturbed"] = perturbed
    return entry


def evaluate_all(detectors, sets, perturb_spec=None, tta=False, timing=True, members=()):
    """(metrics.json's models dict, {model: TestResult}), with the ensemble of `members` if any."""
    preds, labels, images = predict_all(detectors, sets, perturb_spec, tta, need_val=members)
    models, results = {}, {}
    for d in detectors:
        entry = judge(preds[d.name], labels, float(d.info.get("threshold") or 0.5))
        entry["hyperparameters"] = flat_hparams(d.name, d.info)
        if timing:
            entry["costs"] = measure_costs(d)
        models[d.name] = entry
        results[d.name] = TestResult(labels["test"], preds[d.name]["test"], entry["test"], images[d.name])
        print(f"  {d.name}: test AUC {entry['test']['roc_auc']:.4f}")
    if members:
        models[ENSEMBLE], results[ENSEMBLE] = ensemble(members, preds, labels, models, images)
        print(f"  {ENSEMBLE} (the mean of {len(members)} models): test AUC {models[ENSEMBLE]['test']['roc_auc']:.4f}")
    return models, results


def ensemble_members(spec, names, default=None):
    """The models the ensemble averages: --ensemble a,b,c, or all of `default` (every model) when there are
    two or more."""
    if spec is None:
        default = names if default is None else default
        return default if len(default) >= 2 else []
    members = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in members if m not in names]
    if unknown or len(members) < 2:
        raise UserError(f"--ensemble {spec}: " + (f"no finished model named {', '.join(unknown)} (models: "
                                                  f"{', '.join(names)})" if unknown else "name two models or more"))
    return members


def ensemble(members, preds, labels, models, images):
    """The mean of the members' probabilities, judged like any model; its threshold chosen on validation
    like theirs, its costs the sum of theirs (every member runs on every image)."""
    p = {k: np.mean([preds[n][k] for n in members], axis=0) for k in preds[members[0]]}
    threshold = youden_threshold(labels["val"], p["val"])
    entry = judge(p, labels, threshold)
    sizes, precisions = ({(models[n].get("hyperparameters") or {}).get(k) for n in members}
                         for k in ("image_size", "precision"))
    entry["hyperparameters"] = {"model": ENSEMBLE, "members": ",".join(members),  # the members' own where they agree
                                "image_size": sizes.pop() if len(sizes) == 1 and None not in sizes else 0,
                                "precision": "-".join(sorted(str(p) for p in precisions))}
    costs = [models[n].get("costs") for n in members]
    if all(costs):
        entry["costs"] = {k: (None if any(c[k] is None for c in costs) else float(sum(c[k] for c in costs)))
                          for k in ("params", "size_mb", "train_seconds", "latency_ms_b1")}
        entry["costs"]["params"] = int(entry["costs"]["params"])
        # members run one after another: throughput adds as harmonic, not arithmetic
        entry["costs"]["throughput_b64"] = 1.0 / sum(1.0 / c["throughput_b64"] for c in costs)
    return entry, TestResult(labels["test"], p["test"], entry["test"], images[members[0]])


def paired_on_test_images(a, b):
    """AUC(a) - AUC(b) bootstrapped on the same test images, McNemar on their errors, and a verdict."""
    auc = M.paired_auc_difference(a.labels, a.p_fake, b.p_fake)
    mc = M.mcnemar(a.labels, a.p_fake, b.p_fake, a.metrics["threshold"], b.metrics["threshold"])
    auc_real = auc["ci95"][0] > 0 or auc["ci95"][1] < 0
    verdict = ("real difference" if auc_real else
               "AUC within noise; errors at the thresholds differ (McNemar)" if mc["p_value"] < 0.05 else
               "within noise")
    return {"auc": auc, "mcnemar": mc, "verdict": verdict}


def pairwise(results):
    """Every pair of models, paired on the test images (metrics.json keeps them all; the report shows the
    planned ones)."""
    names = sorted(results)
    return {f"{a} vs {b}": paired_on_test_images(results[a], results[b])
            for i, a in enumerate(names) for b in names[i + 1:]
            if np.array_equal(results[a].labels, results[b].labels)}
