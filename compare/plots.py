"""The comparison's figures as PNG files (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classifiers.metrics import roc_curve  # noqa: E402
from compare.metrics import reliability  # noqa: E402
from data.runs import write_atomic  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def roc_plot(results, path):
    """results: {model: (y, p, metrics)}. All models on one plot."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (y, p, m) in results.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {m['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake caught)",
           title="ROC on the test split")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def confusion_plot(results, path):
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), squeeze=False)
    for ax, (name, (_, _, m)) in zip(axes[0], results.items()):
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
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    for name, (y, p, m) in results.items():
        pts = [(conf, acc) for conf, acc, count in reliability(y, p) if count]
        ax.plot(*zip(*pts), marker="o", label=f"{name} (ECE {m['ece']:.3f})")
    ax.set(xlabel="predicted probability of fake", ylabel="observed share of fakes", title="Reliability")
    ax.legend(fontsize=7)
    return _save(fig, path)


def mistakes_plot(results, images, path, per_model=6):
    """The most confident mistakes of each model: the test image, its true label and the model's score."""
    rows = len(results)
    fig, axes = plt.subplots(rows, per_model, figsize=(1.6 * per_model, 1.9 * rows), squeeze=False)
    for r, (name, (y, p, m)) in enumerate(results.items()):
        wrong = np.nonzero((np.asarray(p) >= m["threshold"]) != np.asarray(y).astype(bool))[0]
        worst = wrong[np.argsort(-np.abs(np.asarray(p)[wrong] - m["threshold"]))][:per_model]
        for c in range(per_model):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(worst):
                i = worst[c]
                ax.imshow(images[name][i])
                ax.set_title(f"{'fake' if y[i] else 'real'}, p={p[i]:.2f}", fontsize=7)
        axes[r][0].text(-0.1, 0.5, name, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle("Most confident mistakes (true label, p_fake)", fontsize=9)
    return _save(fig, path)
