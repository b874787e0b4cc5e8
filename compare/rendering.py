"""The comparison as people read it: report.md, the terminal's summary, metrics.csv, the figures and the
TensorBoard summaries, all from the report record compare/report.py assembles (see compare/evaluation.py
for what the numbers are). report.md shows one row per recipe and the planned comparisons; every run's
full metric set is in metrics.csv and metrics.json."""
import csv
import io
import os

import numpy as np

from classifiers import saliency
from compare import adaptation as A, comparisons as C, learning_curve as LC, metrics as M, plots as P, seeds as S
from compare.comparisons import COLUMNS
from compare.evaluation import ENSEMBLE, EXTERNAL_KEYS
from data.runs import write_text_atomic
from data.runtime import import_tensorflow

TABLE_KEYS = ["roc_auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "average_precision", "eer",
              "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece"]


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}f}"
    return str(v)


def auc_cell(row):
    """0.826 +- 0.006 over seeds, or a single run's AUC with its 95% bootstrap interval."""
    if row["roc_auc_sd"] is not None:
        return f"{_fmt(row['roc_auc'])} +- {_fmt(row['roc_auc_sd'])}"
    ci = row["roc_auc_ci95"] or [None, None]
    return f"{_fmt(row['roc_auc'])} ({_fmt(ci[0])}-{_fmt(ci[1])})"


def recipe_table(report):
    head = ["recipe", "runs", "test AUC", *COLUMNS, "ms/image"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in report["recipes"]:
        runs = f"{len(r['seeds'])} seeds" if r["seeds"] else "1"
        lines.append(f"| {r['recipe']} | {runs} | {auc_cell(r)} | " + " | ".join(_fmt(r[k]) for k in COLUMNS.values())
                     + f" | {_fmt(r['ms_per_image'], 2)} |")
    return lines


def run_table(report):
    """Every run (the seeds the recipe table folds), inside a block a reader opens when needed."""
    models = report["models"]
    lines = ["<details><summary>Every run</summary>", "", "| run | test AUC (95% CI) | " + " | ".join(COLUMNS)
             + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name in report["ranking"]:
        t = models[name]["test"]
        ci = t.get("roc_auc_ci95") or [None, None]
        lines.append(f"| {name} | {_fmt(t['roc_auc'])} ({_fmt(ci[0])}-{_fmt(ci[1])}) | "
                     + " | ".join(_fmt(t[k]) for k in COLUMNS.values()) + " |")
    return lines + ["", "</details>"]


def planned_markdown(planned):
    if not planned:
        return []
    lines = ["", "## Planned comparisons", "",
             "Each fine-tuned discriminator against its controls, then each recipe against the best one. Test "
             "AUC difference with its 95% interval; a difference holds when the interval excludes zero.", "",
             "| comparison | AUC difference | 95% CI | evidence | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c['a']} vs {c['b']} | {c['difference']:+.3f} | {c['ci95'][0]:+.3f} to {c['ci95'][1]:+.3f} | "
              f"{c['evidence']} | {c['verdict']} |" for c in planned]
    return lines


def gan_line(gan):
    """'dcgan: 1,500 of 10,000 steps, cut short by --gan-minutes 15 ...' or 'dcgan: all 10,000 steps ...'."""
    kid = f", KID {gan['kid']:.4f} (real-vs-real floor {gan['kid_floor']:.4f})" if gan.get("kid") is not None else ""
    if gan["stopped_by"] == "minutes":
        return (f"`{gan['name']}`: **cut short by --gan-minutes {gan['gan_minutes']:g}: {gan['steps']:,} of the "
                f"{gan['steps_planned']:,} steps asked for**, in {gan['minutes']:g} min{kid}. Its detectors answer for "
                "this shorter GAN, not the preset's")
    return f"`{gan['name']}`: all {gan['steps']:,} steps asked for, in {gan['minutes']:g} min{kid}"


def gan_markdown(gans):
    if not gans:
        return []
    return ["", "## The GANs", "", "What the `dcgan-*` detectors were made from (each GAN's run.json).", ""] + \
        [f"- {gan_line(g)}" for g in gans]


def external_cell(m, bold=True):
    """One set's figure for a model: its AUC (flagged where inverted), or for a one-class set the share its
    class gets right at the validation threshold."""
    if m["roc_auc"] == m["roc_auc"]:  # not nan
        return _fmt(m["roc_auc"]) + ((" **inverted**" if bold else "!") if m.get("flag") else "")
    if m.get("fake_images"):
        return f"caught {_fmt(m['fake_recall_at_threshold'], 2)}"
    return f"accused {_fmt(m['real_fpr_at_threshold'], 2)}"


def external_markdown(report):
    sets = list(report.get("test_dirs") or {})
    if not sets:
        return []
    lines = ["", "## Other generators and photos (external sets)", "",
             "Each set apart from the test split: " + "; ".join(f"`{n}` = `{d}`" for n, d in report["test_dirs"].items())
             + ". One cell per set: the AUC (for a fake-only set, the share of its fakes caught at the model's "
             "validation threshold; for a real-only set, the share of its reals accused). **Inverted** marks AUC "
             "below 0.5: the detector calls these fakes more real than the reals.", "",
             "| model | " + " | ".join(sets) + " | mean AUC | test AUC - mean |", "|---" * (len(sets) + 3) + "|"]
    for name in report["ranking"]:
        e = report["models"][name]
        lines.append(f"| {name} | " + " | ".join(external_cell(e["external"][s]) for s in sets)
                     + f" | {_fmt(e['external_mean']['roc_auc'])} | {_fmt(e['generalisation_gap'])} |")
    flagged = [f"- `{n}` on `{s}`: AUC {m['roc_auc']:.3f}, {m['flag']}" for n, s, m in inverted_sets(report)]
    lines += [""] + flagged if flagged else []
    adapted = sorted({r["family"] for r in report.get("adaptation") or []} & set(sets))
    if adapted:
        lines += ["", f"{', '.join(f'`{s}`' for s in adapted)} is judged here whole; the adaptation table below "
                  "judges only its own test split (the faces no adapted run learnt from), so a model's two figures "
                  "for it differ."]
    lines += ["", "<details><summary>Every figure per set (also in metrics.csv)</summary>", "",
              "Accuracy, fakes caught and reals accused at each model's validation threshold.", "",
              "| model | set | AUC | AP | acc@t | fakes caught | reals accused |", "|---|---|---|---|---|---|---|"]
    for name in report["ranking"]:
        for s in sets:
            m = report["models"][name]["external"][s]
            lines.append(f"| {name} | {s} | {_fmt(m['roc_auc'])} | {_fmt(m['average_precision'])} | "
                         f"{_fmt(m['accuracy_at_threshold'])} | {_fmt(m['fake_recall_at_threshold'])} | "
                         f"{_fmt(m['real_fpr_at_threshold'])} |")
    return lines + ["", "</details>"]


def inverted_sets(report):
    """[(model, set, metrics)] for every external set a model calls inverted, in ranking order."""
    return [(n, s, m) for n in report["ranking"] for s, m in report["models"][n]["external"].items() if m.get("flag")]


def robustness_markdown(report):
    rows = [(n, report["models"][n]["perturbed"]) for n in report["ranking"] if "perturbed" in report["models"][n]]
    if not rows:
        return []
    specs = list(rows[0][1])
    return (["", "## Robustness (perturbed test images)", "", "AUC on the test split after each perturbation "
             "(clean AUC first).", "", "| model | clean | " + " | ".join(specs) + " |", "|---" * (len(specs) + 2) + "|"]
            + [f"| {n} | {_fmt(report['models'][n]['test']['roc_auc'])} | "
               + " | ".join(_fmt(e[s]["roc_auc"]) for s in specs) + " |" for n, e in rows])


def markdown(report, plots):
    lines = [f"# Comparison: experiment `{report['experiment']}`", "",
             f"Test split: {report['test_images']} images, never used for training or model selection "
             f"(split fingerprint `{report['split_fingerprint'][:16]}`). Fake is the positive class. One row per "
             "recipe: runs `NAME.seedS` are folded into NAME (test AUC mean +- sd over seeds, the other columns "
             "their means); a single run's AUC carries its 95% bootstrap interval. `acc@t` is accuracy at each "
             "model's threshold chosen on validation; ms/image at batch 1 on this machine. Every metric of every "
             "run: metrics.csv."
             + (" Every prediction averages the image and its mirror image (`--tta`)." if report.get("tta") else ""),
             ""] + recipe_table(report) + [""] + run_table(report)
    lines += planned_markdown(report["planned"]) + gan_markdown(report.get("gans"))
    lines += external_markdown(report) + robustness_markdown(report)
    lines += A.markdown(report["adaptation"]) + LC.markdown(report.get("learning_curve"))
    if report["skipped"]:
        lines += ["", "## Runs not reported", ""] + [f"- `{n}`: {why}" for n, why in report["skipped"]]
    here = os.path.dirname(next(iter(plots.values()))) if plots else ""
    lines += ["", "## Figures", ""] + [f"![{k}]({os.path.relpath(v, here)})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"


def terminal_summary(report):
    """The terminal's tables: recipes, planned comparisons, external sets, adaptation."""
    width = max(len(r["recipe"]) for r in report["recipes"]) + 1
    rows = [f"{'recipe':<{width}} {'runs':>5} {'test AUC':>22} {'AP':>6} {'EER':>6} {'TPR@5%':>7} {'acc@t':>6} "
            f"{'ms/img':>7}"]
    for r in report["recipes"]:
        rows.append(f"{r['recipe']:<{width}} {len(r['runs']):>5} {auc_cell(r):>22} {_fmt(r['average_precision']):>6} "
                    f"{_fmt(r['eer']):>6} {_fmt(r['tpr_at_fpr_5pct']):>7} {_fmt(r['accuracy_at_threshold']):>6} "
                    f"{_fmt(r['ms_per_image'], 2):>7}")
    cut = [gan_line(g).replace("**", "").replace("`", "") for g in report.get("gans") or [] if g["stopped_by"] == "minutes"]
    tables = ["\n".join(rows), "\n".join(cut), "\n".join(f"{c['verdict']}: {c['difference']:+.3f} (95% CI {c['ci95'][0]:+.3f} to "
                                         f"{c['ci95'][1]:+.3f}, {c['evidence']})" for c in report["planned"]),
              external_terminal(report), A.terminal(report["adaptation"]) if report["adaptation"] else ""]
    return "\n\n".join(t for t in tables if t)


def external_terminal(report):
    sets = list(report.get("test_dirs") or {})
    if not sets:
        return ""
    width = max(len(n) for n in report["ranking"]) + 1
    cols = {s: max(len(s), 14) for s in sets}  # a set's whole name heads its column
    head = f"{'AUC per external set':<{width}}" + "".join(f" {s:>{cols[s]}}" for s in sets)
    rows = [head + f" {'mean AUC':>9} {'gap':>7}", "-" * (len(head) + 18)]
    for name in report["ranking"]:
        e = report["models"][name]
        cells = "".join(f" {external_cell(e['external'][s], bold=False):>{cols[s]}}" for s in sets)
        rows.append(f"{name:<{width}}{cells} {_fmt(e['external_mean']['roc_auc']):>9} {_fmt(e['generalisation_gap']):>7}")
    flagged = [f"{n} on {s}: AUC {m['roc_auc']:.3f}, {m['flag']}" for n, s, m in inverted_sets(report)]
    return "\n".join(rows + [f"! {f}" for f in flagged] + ["(fake-only sets: share caught; AP, accuracy, reals "
                                                            "accused per set: report.md, metrics.csv)"])


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


def figures(detectors, report, results, out_dir, saliency=True):
    """{plot key: PNG path}: ROC, confusion, reliability, mistakes, adaptation, and a saliency figure per model."""
    curves = {n: (results[n].labels, results[n].p_fake, results[n].metrics) for n in report["ranking"]}
    plots = {"roc": P.roc_plot(curves, os.path.join(out_dir, "roc.png")),
             "confusion": P.confusion_plot(curves, os.path.join(out_dir, "confusion.png")),
             "reliability": P.reliability_plot(curves, os.path.join(out_dir, "reliability.png")),
             "mistakes": P.mistakes_plot(curves, {n: results[n].images for n in report["ranking"]},
                                         os.path.join(out_dir, "mistakes.png"))}
    if saliency:  # one figure per recipe (its first run): seeds of one recipe look in much the same places
        firsts = {C.one_run(runs, []) for runs in S.recipes(report["ranking"]).values()}
        plots.update(saliency_figures([d for d in detectors if d.name in firsts], report["models"], results, out_dir))
    if report["adaptation"]:
        plots["adaptation"] = A.plot(report["adaptation"], os.path.join(out_dir, "adaptation.png"))
    curve_png = os.path.join(os.path.dirname(out_dir), "bench", LC.FIGURE)  # drawn by compare.bench
    if report.get("learning_curve") and os.path.exists(curve_png):
        plots["learning_curve"] = curve_png
    return plots


def saliency_figures(detectors, models, results, out_dir):
    """One SmoothGrad figure per model on the same test faces (real and fake, right and wrong by the
    ensemble, or by the best model where there is no ensemble): {plot key: PNG path}."""
    reference = (ENSEMBLE if ENSEMBLE in results else
                 max(results, key=lambda n: np.nan_to_num(models[n]["test"]["roc_auc"])))
    y, p_ref = results[reference].labels, results[reference].p_fake
    faces = saliency.pick_faces(y, p_ref, models[reference]["test"]["threshold"])
    out = {}
    for d in detectors:
        r = results[d.name]
        x, p, threshold = r.images[faces], r.p_fake[faces], models[d.name]["test"]["threshold"]
        captions = [f"{'fake' if y[i] else 'real'}: p {pi:.2f}\n{'right' if (pi >= threshold) == bool(y[i]) else 'WRONG'}"
                    for i, pi in zip(faces, p)]
        out[f"saliency_{d.name}"] = saliency.figure(
            x, saliency.saliency_maps(d.model, x), captions,
            f"{d.name}: where it looks (SmoothGrad; faces picked by {reference})",
            os.path.join(out_dir, f"saliency_{d.name}.png"))
    return out


def write_tensorboard(report, results, plots, logdir):
    """HParams (one session per model), PR curves, the figures as images and the report as text."""
    tf = import_tensorflow()
    from tensorboard.plugins.hparams import api as hp_api

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
            write_pr_curve(tf, results[name])
    with tf.summary.create_file_writer(os.path.join(logdir, "summary")).as_default():
        for key, path in plots.items():
            png = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image(key, png[None], step=0)
        tf.summary.text("comparison", report["markdown"], step=0)
    A.write_tensorboard(report["adaptation"], logdir)


def write_pr_curve(tf, result, thresholds=201):
    from tensorboard.plugins.pr_curve import summary as pr_summary

    cs = [M.confusion(result.labels, result.p_fake, t) for t in np.linspace(0, 1, thresholds)]
    tp, fp, tn, fn = (np.array([c[k] for c in cs], np.float64) for k in ("tp", "fp", "tn", "fn"))
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    pb = pr_summary.raw_data_pb("test_pr_curve", tp, fp, tn, fn, precision, recall, num_thresholds=thresholds)
    tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
