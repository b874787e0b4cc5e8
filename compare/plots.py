"""The comparison's figures as PNG files (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classifiers.metrics import roc_curve  # noqa: E402
from compare.metrics import reliability  # noqa: E402
from data.runs import write_atomic  # noqa: E402


COLUMNS = 6  # panels per row of the per-model grids: a figure reads at its own size, whatever the model count


def _save(fig, path):
    if not fig.get_constrained_layout():
        fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def styles(n):
    """n distinct (colour, line style) pairs: ten strong colours solid, their light shades dashed, then dotted..."""
    colours = plt.get_cmap("tab20").colors
    lines = ["-", "--", ":", "-."]
    return [(colours[(2 * i) % 20 + (i // 10) % 2], lines[(i // 10) % len(lines)]) for i in range(n)]


def curve_figure(n):
    """A square plot with room for n legend entries beside it."""
    wide = n > 8
    return plt.subplots(figsize=(8.5 if wide else 5.5, 5))


def _legend(ax, n):
    if n > 8:  # many models: beside the plot, where it hides no curve
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    else:
        ax.legend(fontsize=7, loc="lower right")


def roc_plot(results, path):
    """results: {model: (y, p, metrics)}. All models on one plot, each its own colour and line."""
    fig, ax = curve_figure(len(results))
    for (name, (y, p, m)), (colour, line) in zip(results.items(), styles(len(results))):
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=colour, ls=line, label=f"{name} (AUC {m['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake caught)",
           title="ROC on the test split")
    _legend(ax, len(results))
    return _save(fig, path)


def confusion_plot(results, path):
    n = len(results)
    cols = min(n, COLUMNS)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, (_, _, m)) in zip(axes.flat, results.items()):
        c = m["confusion_at_threshold"]
        grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, str(v), ha="center", va="center", color="black")
        ax.set_xticks([0, 1], ["real", "fake"])
        ax.set_yticks([0, 1], ["real", "fake"])
        ax.set(xlabel="predicted", ylabel="true", title=f"{name}\nat {m['threshold']:.2f}")
        ax.title.set_fontsize(8)
    return _save(fig, path)


def reliability_plot(results, path):
    fig, ax = curve_figure(len(results))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    for (name, (y, p, m)), (colour, line) in zip(results.items(), styles(len(results))):
        pts = [(conf, acc) for conf, acc, count in reliability(y, p) if count]
        ax.plot(*zip(*pts), color=colour, ls=line, marker="o", ms=3, label=f"{name} (ECE {m['ece']:.3f})")
    ax.set(xlabel="predicted probability of fake", ylabel="observed share of fakes", title="Reliability")
    _legend(ax, len(results) + 1)
    return _save(fig, path)


def mistakes_plot(results, images, path, per_model=6):
    """The most confident mistakes of each model: a row per model, titled with its name; each test image with
    its true label and the model's score."""
    rows = len(results)
    fig = plt.figure(figsize=(1.6 * per_model, 2.1 * rows + 0.4), layout="constrained")
    fig.suptitle("Most confident mistakes (true label, p_fake)", fontsize=9)
    for sub, (name, (y, p, m)) in zip(np.atleast_1d(fig.subfigures(rows, 1)), results.items()):
        sub.suptitle(name, fontsize=8, x=0.01, ha="left")
        axes = sub.subplots(1, per_model)
        wrong = np.nonzero((np.asarray(p) >= m["threshold"]) != np.asarray(y).astype(bool))[0]
        worst = wrong[np.argsort(-np.abs(np.asarray(p)[wrong] - m["threshold"]))][:per_model]
        for c, ax in enumerate(np.atleast_1d(axes)):
            ax.axis("off")
            if c < len(worst):
                i = worst[c]
                ax.imshow(images[name][i])
                ax.set_title(f"{'fake' if y[i] else 'real'}, p={p[i]:.2f}", fontsize=7)
        if not len(worst):
            sub.text(0.5, 0.5, "no mistakes at its threshold", ha="center", va="center", fontsize=7)
    return _save(fig, path)
