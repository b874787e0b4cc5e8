"""The adaptation curves of an experiment (`classifiers.adapt`): per new family and source detector, AUC on
the new family's test split and on the experiment's own test split against K labelled images per class.

Reads the adapted run folders under runs/<experiment>/adapted/<family>/ (their run.json "adaptation" holds
both AUCs, measured once when each run finished); runs adapted from a detector of another split are left
out. Mean and spread are over seeds; "before" is the source detector as it was.
"""
import os

import numpy as np

from data.runs import list_runs, write_atomic
from data.runtime import import_tensorflow


def collect(exp_dir, fingerprint):
    """{family: {source: {"before": {...}, "points": {K: [after, ...]}}}} of the experiment's adapted runs."""
    root = os.path.join(exp_dir, "adapted")
    out = {}
    if not os.path.isdir(root):
        return out
    for family in sorted(f for f in os.listdir(root) if not f.startswith(".")):
        for _, info in list_runs(root, family)[0]:
            a = info.get("adaptation")
            if not a or a.get("source_split_fingerprint") != fingerprint:
                continue
            source = f"{os.path.basename(a['source'])} {a.get('recipe', 'finetune')}"  # before recipes: fine-tuned
            curve = out.setdefault(family, {}).setdefault(source, {"before": a["before"], "points": {}})
            curve["points"].setdefault(a["shots"], []).append(dict(a["after"], adapted=a.get("adapted", True)))
            if a["shots"] == "all":  # drawn at the images per class it had
                curve["all_per_class"] = len(a["shot_files"]) // 2
    return out


def shot_order(k):
    """K in order, 0 ("before") first and "all" (the whole training side) last."""
    return (k == "all", 0 if k == "all" else k)


def summary(curves):
    """JSON-ready rows: family, source, K ("before" first), seeds, mean and sd of both AUCs and of their changes."""
    rows = []
    for family, sources in curves.items():
        for source, curve in sources.items():
            before = curve["before"]
            rows.append({"family": family, "source": source, "shots": 0, "axis": 0, "seeds": 1,
                         "family_auc": before["family"], "family_sd": 0.0,
                         "source_auc": before["source"], "source_sd": 0.0, "source_change": 0.0})
            for k in sorted(curve["points"], key=shot_order):
                fam = np.array([p["family"] for p in curve["points"][k]])
                src = np.array([p["source"] for p in curve["points"][k]])
                sd = (lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0)
                rows.append({"family": family, "source": source, "shots": k, "seeds": len(fam),
                             "axis": curve.get("all_per_class", 0) if k == "all" else k,
                             "family_auc": float(fam.mean()), "family_sd": sd(fam),
                             "source_auc": float(src.mean()), "source_sd": sd(src),
                             "source_change": float(src.mean() - before["source"]),
                             # seeds whose family validation AUC stayed under the bar (classifiers.adapt)
                             "not_adapted": sum(not p["adapted"] for p in curve["points"][k])})
    return rows


def shot_columns(rows):
    """The K values of the rows, in order ("before" = 0 first, "all" last)."""
    return sorted({r["shots"] for r in rows}, key=shot_order)


def grid(rows):
    """{(family, source): {K: row}}: one line per family and source recipe, one column per K."""
    out = {}
    for r in rows:
        out.setdefault((r["family"], r["source"]), {})[r["shots"]] = r
    return out


def cell(r, bold=True):
    """New-family AUC (+- sd over seeds, flagged where inverted) and the change on the original test split."""
    if r is None:
        return ""
    flag = (" **inverted**" if bold else "!") if r["family_auc"] < 0.5 else ""
    if not r["shots"]:
        return f"{r['family_auc']:.3f}{flag} ({r['source_auc']:.3f})"
    if r.get("not_adapted"):
        flag += (" **not adapted**" if r["not_adapted"] == r["seeds"] else
                 f" **not adapted** ({r['not_adapted']} of {r['seeds']} seeds)")
    spread = f" +- {r['family_sd']:.3f}" if r["seeds"] > 1 else ""  # one seed has no spread to show
    return f"{r['family_auc']:.3f}{spread}{flag} ({r['source_change']:+.3f})"


def markdown(rows):
    if not rows:
        return []
    ks = shot_columns(rows)
    lines = ["", "## Adapted to new families (few labelled images)", "",
             "Each source detector taught a new family from K labelled images per class (`python -m "
             "classifiers.adapt`; its recipe after the source's name: `head` logistic heads on its frozen "
             "features, the replayed head or the source's own beside a family head, as validation chose (run.json "
             "says which and why; `-replayed`, `-two`, `-family` where one was asked for), `-gan`N / `-both`N on the GAN discriminator's block N / on both, `novelty` a distance to "
             "real faces fit on K reals alone, `finetune` a fine-tuned copy). Per cell: AUC on the family's own "
             "test split, mean +- sd over seeds, and in brackets the change on this experiment's test split (what "
             "it kept); `before` is the source as it was, its original test AUC in brackets. **Inverted**: AUC "
             "below 0.5. **Not adapted**: its validation AUC on the family stayed under 0.6 or under the "
             "source's own: nothing of the family was learnt.", "",
             "| family | source recipe | " + " | ".join(str(k or "before") for k in ks) + " |", "|---" * (len(ks) + 2) + "|"]
    for (family, source), by_k in grid(rows).items():
        lines.append(f"| {family} | {source} | " + " | ".join(cell(by_k.get(k)) for k in ks) + " |")
    return lines


def terminal(rows):
    ks = shot_columns(rows)
    width = max(len(r["source"]) for r in rows) + 1
    lines = [f"{'adapted to':<12} {'source recipe':<{width}}" + "".join(f" {str(k or 'before'):>15}" for k in ks),
             "(new family AUC, change on the original test AUC; before: its original test AUC; "
             "!: inverted, x: not adapted)"]
    for (family, source), by_k in grid(rows).items():
        cells = ""
        for k in ks:
            r = by_k.get(k)
            text = "" if r is None else f"{r['family_auc']:.3f}{'!' if r['family_auc'] < 0.5 else ''}" + (
                "x" if r.get("not_adapted") else "") + " " + (
                f"{r['source_change']:+.3f}" if k else f"{r['source_auc']:.3f}")
            cells += f" {text:>15}"
        lines.append(f"{family[:12]:<12} {source:<{width}}{cells}")
    return "\n".join(lines)


def plot(rows, path):
    """Two panels per family row: new-family AUC and original-test AUC against K (log axis), one line per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    families = sorted({r["family"] for r in rows})
    fig, axes = plt.subplots(len(families), 2, figsize=(10, 3.6 * len(families)), squeeze=False)
    for axrow, family in zip(axes, families):
        for source in sorted({r["source"] for r in rows if r["family"] == family}):
            pts = [r for r in rows if r["family"] == family and r["source"] == source]
            ks = [r["axis"] or 0.7 for r in pts]  # "before" drawn left of K = 1
            for ax, key in zip(axrow, ("family", "source")):
                ax.errorbar(ks, [r[f"{key}_auc"] for r in pts], yerr=[r[f"{key}_sd"] for r in pts], marker="o",
                            capsize=3, label=source)
        ks = sorted({(r["axis"], r["shots"]) for r in rows if r["family"] == family}, key=lambda t: (t[0], str(t[1])))
        for ax, title in zip(axrow, (f"{family}: its test split", f"original test split (adapted to {family})")):
            ax.set_xscale("log")
            ax.set_xticks([axis or 0.7 for axis, _ in ks], ["before" if not k else str(k) for _, k in ks])
            ax.minorticks_off()
            ax.set_ylim(0.3, 1.0)  # one scale for both panels: what is gained and what is lost compare by eye
            ax.set_xlabel("labelled images per class of the new family")
            ax.set_ylabel("AUC")
            ax.set_title(title)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def write_tensorboard(rows, logdir):
    """Scalars adaptation/<family>/{new_family,original}_auc at step K, one run per source."""
    tf = import_tensorflow()
    for source in sorted({r["source"] for r in rows}):
        with tf.summary.create_file_writer(os.path.join(logdir, "adaptation", source)).as_default():
            for r in (r for r in rows if r["source"] == source):
                tf.summary.scalar(f"adaptation/{r['family']}/new_family_auc", r["family_auc"], step=r["axis"])
                tf.summary.scalar(f"adaptation/{r['family']}/original_auc", r["source_auc"], step=r["axis"])
