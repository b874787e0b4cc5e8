"""`python -m compare.report`: every model of an experiment on its one held-out test split.

Finds the experiment's finished detector runs, refuses any trained on another split, skips broken ones
with their reason, and evaluates the rest on the test split (never used for training or selection):
quality with 95% bootstrap intervals, paired tests between models, calibration, and costs measured on
this machine. Writes runs/<experiment>/report/ (report.md, metrics.json, metrics.csv, PNG plots) and
TensorBoard summaries under runs/<experiment>/report/tensorboard/.
"""
import argparse
import csv
import io
import itertools
import json
import os
import sys

import numpy as np

from classifiers.predict import probabilities as predict
from compare import adaptation as A
from compare import learning_curve as LC
from compare import metrics as M
from compare import perturb
from compare import seeds as S
from data.runs import experiment_dir, list_runs, write_json_atomic, write_text_atomic
from data.runtime import UserError, add_common_args, import_tensorflow, run_main, setup

LATENCY_REPEATS = 30
THROUGHPUT_BATCH = 64
TABLE_KEYS = ["roc_auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "average_precision", "eer",
              "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m compare.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, data=False)
    p.add_argument("--test-dir", action="append", metavar="[NAME=]DIR",
                   help="an external folder (Real/ and/or Fake/: a fake-only or real-only set is allowed), "
                        "e.g. stylegan3=/data/sg3; repeat for more sets; a bare DIR is named after the folder")
    p.add_argument("--ensemble", metavar="A,B,C",
                   help="the models the ensemble row averages (default: all of them, when there are two or more)")
    p.add_argument("--perturb", help="e.g. jpeg=50,blur=1.0,resize=0.5: robustness on perturbed test images")
    p.add_argument("--tta", action="store_true",
                   help="judge each image with its mirror image too (averaged): flip test-time augmentation")
    p.add_argument("--no-timing", action="store_true", help="skip the latency / throughput measurements")
    p.add_argument("--no-saliency", action="store_true", help="skip the per-model saliency figures")
    return p.parse_args(argv)


def find_detectors(runs_dir, experiment, manifest):
    """(detectors as [(name, folder, run.json, model)], skipped as [(name, reason)])."""
    from classifiers.layers import load_model_safely
    from data.runs import BrokenRun

    good, broken = list_runs(runs_dir, experiment)
    skipped = [(os.path.basename(f), reason) for f, reason in broken]
    detectors = []
    for folder, info in good:
        name = os.path.basename(folder)
        if info.get("kind") != "detector":
            continue  # the GAN itself: its discriminator is judged through the dcgan-* runs
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
        detectors.append((name, folder, info, model))
    return detectors, skipped


def parse_test_dirs(values):
    """[(name, folder)] from NAME=DIR or a bare DIR (named after the folder); names must differ."""
    out = []
    for value in values or []:
        name, sep, folder = value.partition("=")
        if os.path.isdir(value) or not sep:
            name, folder = os.path.basename(os.path.normpath(value)), value
        if not os.path.isdir(folder):
            raise UserError(f"--test-dir {value}: {folder} does not exist or is not a folder")
        if name in dict(out) or name in ("test", "val") or not name:
            raise UserError(f"--test-dir {value}: the set name {name!r} is taken; give each set its own NAME=DIR")
        out.append((name, folder))
    return out


class ImageSets:
    """Decoded image sets ("test", "val" or an external set's name), cached by (set, size, mode, perturbation)."""

    def __init__(self, manifest, test_dirs=()):
        self.manifest, self.test_dirs, self.cache, self.external_files = manifest, dict(test_dirs), {}, {}

    def _external(self, name):
        if name not in self.external_files:
            from data.scan import scan_folder

            scan = scan_folder(self.test_dirs[name], one_class_ok=True)
            print(f"external test set {name} ({self.test_dirs[name]}): {scan.summary()}")
            self.external_files[name] = [(os.path.join(scan.root, r.path), r.label) for r in scan.images]
        return self.external_files[name]

    def get(self, which, size, mode, perturbation=None):
        from data.pipeline import load_images, load_split

        key = (which, size, mode, perturbation)
        if key not in self.cache:
            fn = perturb.transform(*perturbation) if perturbation else None
            if which in ("test", "val"):
                x, y, _ = load_split(self.manifest, which, size, mode, transform=fn)
            else:
                files = self._external(which)
                x, kept, failed = load_images([p for p, _ in files], size, mode, transform=fn)
                for path, reason in failed:
                    print(f"warning: skipping {path}: {reason}", file=sys.stderr)
                y = np.array([files[i][1] for i in kept], np.float32)
            self.cache[key] = (x, y)
        return self.cache[key]


def measure_costs(model, size, folder, info):
    """Parameters, size on disk, training time, and latency / throughput measured now on this machine."""
    out = {"params": int(model.count_params()), "size_mb": os.path.getsize(os.path.join(folder, "model.keras")) / 2 ** 20,
           "train_seconds": info.get("train_seconds")}
    from compare.bench import latency

    one, many = latency(model, size, LATENCY_REPEATS, THROUGHPUT_BATCH)
    out["latency_ms_b1"], out["throughput_b64"] = one["median"], many["median"]
    return out


def flat_hparams(name, info):
    hp = {"model": name, "image_size": int(info.get("image_size", 0)), "precision": str(info.get("precision"))}
    for k, v in (info.get("hyperparameters") or {}).items():
        hp[k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return hp


EXTERNAL_KEYS = ("roc_auc", "average_precision", "accuracy_at_threshold", "fake_recall_at_threshold",
                 "real_fpr_at_threshold")
INVERTED = "inverted: calls these fakes more real than the reals"


def predict_all(detectors, sets, args, need_val=()):
    """({model: {set key: P(fake)}}, {set key: labels}, {model: test images}); set keys are "test", "val"
    (only for the models in need_val: the ensemble's members, whose threshold it is chosen on), "ext:NAME"
    and "perturbed:SPEC". Every model sees the same files in the same order at its own size."""
    specs = perturb.parse_spec(args.perturb)
    preds, labels, images = {}, {}, {}
    for name, _, info, model in detectors:
        size, mode = int(info["image_size"]), info.get("resize_mode", "resize")
        looks = [("test", "test", None)] + ([("val", "val", None)] if name in need_val else [])
        looks += [(f"ext:{s}", s, None) for s in sets.test_dirs]
        looks += [(f"perturbed:{perturb.label(*spec)}", "test", spec) for spec in specs]
        preds[name] = {}
        for key, which, spec in looks:
            x, y = sets.get(which, size, mode, spec)
            preds[name][key] = predict(model, x, args.tta)
            labels.setdefault(key, y)
            if key == "test":
                images[name] = x
    return preds, labels, images


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


def evaluate_all(detectors, sets, args, members=()):
    """metrics.json's models dict (with the ensemble of `members`, if any), plus the raw predictions the
    plots and tests need."""
    preds, labels, images = predict_all(detectors, sets, args, need_val=members)
    models, raw = {}, {}
    for name, folder, info, model in detectors:
        entry = judge(preds[name], labels, float(info.get("threshold") or 0.5))
        entry["hyperparameters"] = flat_hparams(name, info)
        if not args.no_timing:
            entry["costs"] = measure_costs(model, int(info["image_size"]), folder, info)
        models[name] = entry
        raw[name] = (labels["test"], preds[name]["test"], entry["test"], images[name])
        print(f"  {name}: test AUC {entry['test']['roc_auc']:.4f}")
    if members:
        models[ENSEMBLE], raw[ENSEMBLE] = ensemble(members, preds, labels, models, images)
        print(f"  {ENSEMBLE} (the mean of {len(members)} models): test AUC {models[ENSEMBLE]['test']['roc_auc']:.4f}")
    return models, raw


ENSEMBLE = "ensemble"


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
    from classifiers.metrics import youden_threshold

    p = {k: np.mean([preds[n][k] for n in members], axis=0) for k in preds[members[0]]}
    threshold = youden_threshold(labels["val"], p["val"])
    entry = judge(p, labels, threshold)
    entry["hyperparameters"] = {"model": ENSEMBLE, "members": ",".join(members), "image_size": 0,
                                "precision": "mixed"}
    costs = [models[n].get("costs") for n in members]
    if all(costs):
        entry["costs"] = {k: (None if any(c[k] is None for c in costs) else float(sum(c[k] for c in costs)))
                          for k in ("params", "size_mb", "train_seconds", "latency_ms_b1")}
        entry["costs"]["params"] = int(entry["costs"]["params"])
        # members run one after another: throughput adds as harmonic, not arithmetic
        entry["costs"]["throughput_b64"] = 1.0 / sum(1.0 / c["throughput_b64"] for c in costs)
    return entry, (labels["test"], p["test"], entry["test"], images[members[0]])


def saliency_figures(detectors, models, raw, out_dir):
    """One SmoothGrad figure per model on the same test faces (real and fake, right and wrong by the
    ensemble, or by the best model where there is no ensemble): {plot key: PNG path}."""
    from classifiers import saliency

    reference = ENSEMBLE if ENSEMBLE in raw else max(raw, key=lambda n: np.nan_to_num(models[n]["test"]["roc_auc"]))
    y, p_ref = raw[reference][0], raw[reference][1]
    faces = saliency.pick_faces(y, p_ref, models[reference]["test"]["threshold"])
    out = {}
    for name, _, _, model in detectors:
        x, p, threshold = raw[name][3][faces], raw[name][1][faces], models[name]["test"]["threshold"]
        captions = [f"{'fake' if y[i] else 'real'}: p {pi:.2f}\n{'right' if (pi >= threshold) == bool(y[i]) else 'WRONG'}"
                    for i, pi in zip(faces, p)]
        out[f"saliency_{name}"] = saliency.figure(
            x, saliency.saliency_maps(model, x), captions,
            f"{name}: where it looks (SmoothGrad; faces picked by {reference})",
            os.path.join(out_dir, f"saliency_{name}.png"))
    return out


def pairwise(raw):
    out = {}
    for a, b in itertools.combinations(sorted(raw), 2):
        ya, pa, ma, _ = raw[a]
        yb, pb, mb, _ = raw[b]
        if len(ya) != len(yb) or not np.array_equal(ya, yb):
            continue  # different input sizes can never change the test images, but be safe
        auc = M.paired_auc_difference(ya, pa, pb)
        mc = M.mcnemar(ya, pa, pb, ma["threshold"], mb["threshold"])
        auc_real = auc["ci95"][0] > 0 or auc["ci95"][1] < 0
        verdict = ("real difference" if auc_real else
                   "AUC within noise; errors at the thresholds differ (McNemar)" if mc["p_value"] < 0.05 else
                   "within noise")
        out[f"{a} vs {b}"] = {"auc": auc, "mcnemar": mc, "verdict": verdict}
    return out


def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}f}"
    return str(v)


def _p(value):
    # a bootstrap of M.BOOTSTRAP resamples cannot resolve p-values below 1 / M.BOOTSTRAP
    return f"<{1 / M.BOOTSTRAP:g}" if value < 1 / M.BOOTSTRAP else f"{value:.3f}"


def markdown(report, plots):
    lines = [f"# Comparison: experiment `{report['experiment']}`", "",
             f"Test split: {report['test_images']} images, never used for training or model selection "
             f"(split fingerprint `{report['split_fingerprint'][:16]}`). Fake is the positive class. "
             "Threshold-free metrics and those at 0.5; `acc@t` uses each model's threshold chosen on validation.",
             "A difference between two models counts as real when the 95% interval of their paired AUC "
             "difference excludes zero (see below)."
             + (" Every prediction averages the image and its mirror image (`--tta`)." if report.get("tta") else ""),
             "", "| model | " + " | ".join(TABLE_KEYS) + " | AUC 95% CI | acc@t |",
             "|---" * (len(TABLE_KEYS) + 3) + "|"]
    for name in report["ranking"]:
        t = report["models"][name]["test"]
        ci = t.get("roc_auc_ci95", [None, None])
        lines.append(f"| {name} | " + " | ".join(_fmt(t[k]) for k in TABLE_KEYS)
                     + f" | {_fmt(ci[0], 3)}-{_fmt(ci[1], 3)} | {_fmt(t['accuracy_at_threshold'])} |")
    if report["pairwise"]:
        lines += ["", "## Which differences are real", "",
                  "Paired on the same test images: bootstrap of the AUC difference, McNemar on the errors.", "",
                  "| pair | AUC difference | 95% CI | p (AUC) | p (McNemar) | verdict |", "|---|---|---|---|---|---|"]
        for pair, d in report["pairwise"].items():
            lines.append(f"| {pair} | {d['auc']['auc_difference']:+.4f} | {d['auc']['ci95'][0]:+.4f} to "
                         f"{d['auc']['ci95'][1]:+.4f} | {_p(d['auc']['p_value'])} | {_p(d['mcnemar']['p_value'])} | "
                         f"{d['verdict']} |")
    costed = [n for n in report["ranking"] if "costs" in report["models"][n]]
    if costed:
        lines += ["", "## Costs (measured on this machine in this run)", "",
                  "| model | parameters | size (MB) | training (s) | latency batch 1 (ms) | throughput batch 64 (img/s) |",
                  "|---|---|---|---|---|---|"]
        for n in costed:
            c = report["models"][n]["costs"]
            lines.append(f"| {n} | {c['params']:,} | {c['size_mb']:.2f} | {_fmt(c['train_seconds'], 0)} | "
                         f"{c['latency_ms_b1']:.2f} | {c['throughput_b64']:.0f} |")
    lines += external_markdown(report)
    rows = [(n, report["models"][n]["perturbed"]) for n in report["ranking"] if "perturbed" in report["models"][n]]
    if rows:
        specs = list(rows[0][1])
        lines += ["", "## Robustness (perturbed test images)", "",
                  "AUC on the test split after each perturbation (clean AUC first).", "",
                  "| model | clean | " + " | ".join(specs) + " |", "|---" * (len(specs) + 2) + "|"]
        lines += [f"| {n} | {_fmt(report['models'][n]['test']['roc_auc'])} | "
                  + " | ".join(_fmt(e[s]["roc_auc"]) for s in specs) + " |" for n, e in rows]
    lines += S.markdown(report["seed_groups"], report["seed_pairs"])
    lines += A.markdown(report["adaptation"])
    lines += LC.markdown(report.get("learning_curve"))
    if report["skipped"]:
        lines += ["", "## Runs not reported", ""] + [f"- `{n}`: {why}" for n, why in report["skipped"]]
    lines += ["", "## Figures", ""] + [f"![{k}]({os.path.basename(v)})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"


def inverted_sets(report):
    """[(model, set, metrics)] for every external set a model calls inverted, in ranking order."""
    return [(n, s, m) for n in report["ranking"] for s, m in report["models"][n]["external"].items() if m.get("flag")]


def external_markdown(report):
    sets = list(report.get("test_dirs") or {})
    if not sets:
        return []
    lines = ["", "## Other generators and photos (external sets)", "",
             "Each set apart from the test split: " + "; ".join(f"`{n}` = `{d}`" for n, d in report["test_dirs"].items())
             + ". Per set: AUC, average precision, accuracy, recall on its fakes and false-positive rate on its "
             "reals, the last three at each model's validation threshold. A fake-only or real-only set has "
             "no AUC. **Inverted** marks AUC below 0.5: the detector calls these fakes more real than the reals.",
             "", "| model | " + " | ".join(f"{s}: AUC | AP | acc@t | fakes caught | reals accused" for s in sets)
             + " | mean AUC | test AUC - mean |", "|---" * (5 * len(sets) + 3) + "|"]
    for name in report["ranking"]:
        e = report["models"][name]
        cells = []
        for s in sets:
            m = e["external"][s]
            auc = _fmt(m["roc_auc"], 3) + (" **inverted**" if m.get("flag") else "")
            cells += [auc, _fmt(m["average_precision"], 3), _fmt(m["accuracy_at_threshold"], 3),
                      _fmt(m["fake_recall_at_threshold"], 3), _fmt(m["real_fpr_at_threshold"], 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(e['external_mean']['roc_auc'], 3)} | "
                     f"{_fmt(e['generalisation_gap'], 3)} |")
    flagged = [f"- `{n}` on `{s}`: AUC {m['roc_auc']:.3f}, {m['flag']}" for n, s, m in inverted_sets(report)]
    return lines + ([""] + flagged if flagged else [])


def external_terminal(report):
    sets = list(report.get("test_dirs") or {})
    if not sets:
        return ""
    width = max(len(n) for n in report["ranking"]) + 1
    head = f"{'AUC / fakes caught / reals accused':<{width}}" + "".join(f" {s[:20]:>21}" for s in sets)
    rows = [head + f" {'mean AUC':>9} {'gap':>7}", "-" * (len(head) + 18)]
    for name in report["ranking"]:
        e = report["models"][name]
        cells = ""
        for s in sets:
            m = e["external"][s]
            cell = f"{_fmt(m['roc_auc'], 2)}/{_fmt(m['fake_recall_at_threshold'], 2)}/{_fmt(m['real_fpr_at_threshold'], 2)}"
            cells += f" {(cell + ('!' if m.get('flag') else '')):>21}"
        rows.append(f"{name:<{width}}{cells} {_fmt(e['external_mean']['roc_auc'], 3):>9} "
                    f"{_fmt(e['generalisation_gap'], 3):>7}")
    flagged = [f"{n} on {s}: AUC {m['roc_auc']:.3f}, {m['flag']}" for n, s, m in inverted_sets(report)]
    return "\n".join(rows + [f"! {f}" for f in flagged])


def write_csv(report, path):
    keys = TABLE_KEYS + ["accuracy_at_threshold", "fake_recall_at_threshold", "real_fpr_at_threshold", "threshold",
                         "images"]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["model", "set"] + keys)
    for name in report["ranking"]:
        entry = report["models"][name]
        w.writerow([name, "test"] + [entry["test"][k] for k in keys])
        for set_name, m in entry.get("external", {}).items():
            w.writerow([name, f"external:{set_name}"] + [m[k] for k in keys])
        for spec, m in entry.get("perturbed", {}).items():
            w.writerow([name, f"perturbed:{spec}"] + [m[k] for k in keys])
    write_text_atomic(path, out.getvalue())


def write_tensorboard(report, raw, plots, logdir):
    """HParams (one session per model), PR curves, the figures as images and the table as text."""
    tf = import_tensorflow()
    from tensorboard.plugins.hparams import api as hp_api
    from tensorboard.plugins.pr_curve import summary as pr_summary

    from compare.metrics import confusion

    for name in report["ranking"]:
        entry = report["models"][name]
        with tf.summary.create_file_writer(os.path.join(logdir, "models", name)).as_default():
            hp_api.hparams(entry["hyperparameters"], trial_id=name)
            for k in TABLE_KEYS:
                tf.summary.scalar(f"test/{k}", entry["test"][k], step=0)
            for set_name, m in entry.get("external", {}).items():
                for k in EXTERNAL_KEYS:
                    if m[k] == m[k]:
                        tf.summary.scalar(f"external/{set_name}/{k}", m[k], step=0)
            mean_auc = entry.get("external_mean", {}).get("roc_auc")
            if mean_auc is not None and mean_auc == mean_auc:  # the HParams table's column
                tf.summary.scalar("external/mean_roc_auc", mean_auc, step=0)
            for k, v in entry.get("costs", {}).items():
                if v is not None:
                    tf.summary.scalar(f"cost/{k}", float(v), step=0)
            y, p, _, _ = raw[name]
            thresholds = np.linspace(0, 1, 201)
            cs = [confusion(y, p, t) for t in thresholds]
            tp, fp, tn, fn = (np.array([c[k] for c in cs], np.float64) for k in ("tp", "fp", "tn", "fn"))
            precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
            recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
            pb = pr_summary.raw_data_pb("test_pr_curve", tp, fp, tn, fn, precision, recall, num_thresholds=201)
            tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
    with tf.summary.create_file_writer(os.path.join(logdir, "summary")).as_default():
        for key, path in plots.items():
            png = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image(key, png[None], step=0)
        tf.summary.text("comparison", report["markdown"], step=0)


def terminal_table(report):
    head = f"{'model':<28} {'AUC':>7} {'95% CI':>13} {'acc':>6} {'acc@t':>6} {'EER':>6} {'TPR@5%':>7} {'ms/img':>7}"
    rows = [head, "-" * len(head)]
    for name in report["ranking"]:
        e = report["models"][name]
        t, c = e["test"], e.get("costs", {})
        ci = t.get("roc_auc_ci95", [float("nan")] * 2)
        rows.append(f"{name:<28} {t['roc_auc']:>7.4f} {ci[0]:>6.3f}-{ci[1]:<6.3f} {t['accuracy']:>6.3f} "
                    f"{t['accuracy_at_threshold']:>6.3f} {t['eer']:>6.3f} {t['tpr_at_fpr_5pct']:>7.3f} "
                    f"{c.get('latency_ms_b1', float('nan')):>7.2f}")
    return "\n".join(rows)


def print_tables(report):
    """The terminal's summary: every model, then each section the report has."""
    tables = [terminal_table(report), external_terminal(report),
              S.terminal(report["seed_groups"], report["seed_pairs"]) if report["seed_groups"] else "",
              A.terminal(report["adaptation"]) if report["adaptation"] else ""]
    print()
    for table in filter(None, tables):
        print(table)
        print()


def main(argv=None):
    args = parse_args(argv)
    setup(args.seed, args.precision)
    from compare import plots as P
    from data.split import load_manifest

    exp = experiment_dir(args.runs_dir, args.experiment)
    split_path = os.path.join(exp, "split.json")
    if not os.path.exists(split_path):
        raise UserError(f"no experiment at {exp} (no split.json): train a model first")
    test_dirs = parse_test_dirs(args.test_dir)
    perturb.parse_spec(args.perturb)  # fail on a bad spec before any work
    manifest = load_manifest(split_path)
    detectors, skipped = find_detectors(args.runs_dir, args.experiment, manifest)
    for name, reason in skipped:
        print(f"skipping {name}: {reason}", file=sys.stderr)
    if not detectors:
        raise UserError(f"no finished detector runs to compare in {exp}")
    # by default every detector trained on labelled fakes: a label-free score near or below chance only dilutes it
    members = ensemble_members(args.ensemble, [d[0] for d in detectors],  # a misspelt one fails before any work
                               [d[0] for d in detectors if d[2].get("labelled_fakes_seen") != 0])
    print(f"comparing {len(detectors)} model(s) on the test split of {exp}")
    sets = ImageSets(manifest, test_dirs)
    models, raw = evaluate_all(detectors, sets, args, members)
    ranking = sorted(models, key=lambda n: -np.nan_to_num(models[n]["test"]["roc_auc"], nan=-1))
    out_dir = os.path.join(exp, "report")
    os.makedirs(out_dir, exist_ok=True)
    results = {n: raw[n][:3] for n in ranking}
    plots = {"roc": P.roc_plot(results, os.path.join(out_dir, "roc.png")),
             "confusion": P.confusion_plot(results, os.path.join(out_dir, "confusion.png")),
             "reliability": P.reliability_plot(results, os.path.join(out_dir, "reliability.png")),
             "mistakes": P.mistakes_plot(results, {n: raw[n][3] for n in ranking}, os.path.join(out_dir, "mistakes.png"))}
    if not args.no_saliency:
        plots.update(saliency_figures(detectors, models, raw, out_dir))
    adapted = A.summary(A.collect(exp, manifest["fingerprint"]))
    if adapted:
        plots["adaptation"] = A.plot(adapted, os.path.join(out_dir, "adaptation.png"))
    report = {"experiment": args.experiment, "split_fingerprint": manifest["fingerprint"],
              "test_images": int(len(raw[ranking[0]][0])), "test_dirs": dict(test_dirs), "perturb": args.perturb, "tta": args.tta,
              "ranking": ranking, "models": models, "pairwise": pairwise(raw), "skipped": skipped,
              "adaptation": adapted, "learning_curve": LC.load(exp)}
    report["seed_groups"], report["seed_pairs"] = S.summarise(models)
    report["markdown"] = markdown(report, plots)
    write_text_atomic(os.path.join(out_dir, "report.md"), report["markdown"])
    write_json_atomic(os.path.join(out_dir, "metrics.json"),
                      {k: v for k, v in report.items() if k != "markdown"})
    write_csv(report, os.path.join(out_dir, "metrics.csv"))
    tb_dir = os.path.join(out_dir, "tensorboard")
    write_tensorboard(report, raw, plots, tb_dir)
    A.write_tensorboard(adapted, tb_dir)
    print_tables(report)
    print(f"report: {os.path.join(out_dir, 'report.md')} (metrics.json, metrics.csv, PNG plots beside it)")
    print(f"TensorBoard: tensorboard --logdir {exp} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
