"""Every metric of the comparison, in plain NumPy, with fake (label 1) as the positive class.

Keys are stable snake_case names: they are the keys of metrics.json and of the HParams dashboard.
"""
import math

import numpy as np

from classifiers.metrics import roc_auc, roc_curve

BOOTSTRAP = 1000
ECE_BINS = 10
EPS = 1e-7


def confusion(y, p, threshold):
    """{tp, fp, tn, fn} predicting fake when p >= threshold."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    return {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()), "tn": int((~pred & ~y).sum()),
            "fn": int((~pred & y).sum())}


def _ratio(a, b):
    return float(a / b) if b else 0.0


def average_precision(y, p):
    """Area under the precision-recall curve as a step sum over distinct thresholds (ties grouped)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    tp = tpr * y.sum()
    fp = fpr * (~y).sum()
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def equal_error_rate(y, p):
    """The error rate where the false-positive and false-negative rates meet (interpolated on the ROC)."""
    fpr, tpr, _ = roc_curve(y, p)
    fnr = 1 - tpr
    diff = fpr - fnr
    i = int(np.nonzero(diff >= 0)[0][0])
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    # linear interpolation between the points i-1 and i where fpr - fnr changes sign
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(y, p, max_fpr):
    """The highest true-positive rate reachable with a false-positive rate of at most max_fpr."""
    fpr, tpr, _ = roc_curve(y, p)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def log_loss(y, p):
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y, p):
    return float(np.mean((np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2))


def reliability(y, p, bins=ECE_BINS):
    """Per equal-width bin: (mean predicted, observed fake rate, count)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[which == b].mean()) if (which == b).any() else None,
             float(y[which == b].mean()) if (which == b).any() else None, int((which == b).sum()))
            for b in range(bins)]


def expected_calibration_error(y, p, bins=ECE_BINS):
    n = len(y)
    return float(sum(c / n * abs(conf - acc) for conf, acc, c in reliability(y, p, bins) if c))


def at_threshold(y, p, threshold):
    c = confusion(y, p, threshold)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    specificity = _ratio(c["tn"], c["tn"] + c["fp"])
    return {"accuracy": _ratio(c["tp"] + c["tn"], len(y)), "balanced_accuracy": (recall + specificity) / 2,
            "precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall), "confusion": c}


def bootstrap_ci(y, p, threshold, n=BOOTSTRAP, seed=0):
    """95% percentile intervals for ROC AUC and accuracy (at threshold) by resampling images."""
    rng = np.random.default_rng(seed)
    y, p = np.asarray(y), np.asarray(p)
    aucs, accs = [], []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        aucs.append(roc_auc(y[i], p[i]))
        accs.append(np.mean((p[i] >= threshold) == y[i].astype(bool)))
    q = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]  # noqa: E731
    return {"roc_auc_ci95": q(aucs), "accuracy_ci95": q(accs)}


def evaluate(y, p, threshold=0.5, ci=True, seed=0):
    """The full metric set of one model on one labelled image set."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, np.float64)
    out = {"images": int(len(y)), "fake_images": int(y.sum()), "threshold": float(threshold)}
    at_half = at_threshold(y, p, 0.5)
    out.update({k: v for k, v in at_half.items() if k != "confusion"})
    out["confusion_at_0_5"] = at_half["confusion"]
    chosen = at_threshold(y, p, threshold)
    out["accuracy_at_threshold"] = chosen["accuracy"]
    out["balanced_accuracy_at_threshold"] = chosen["balanced_accuracy"]
    out["confusion_at_threshold"] = chosen["confusion"]
    c = chosen["confusion"]
    # one-class figures, defined for a fake-only or real-only set too: how many of its fakes are caught,
    # how many of its reals are accused, at the threshold chosen on validation
    out["fake_recall_at_threshold"] = float(c["tp"] / (c["tp"] + c["fn"])) if c["tp"] + c["fn"] else float("nan")
    out["real_fpr_at_threshold"] = float(c["fp"] / (c["fp"] + c["tn"])) if c["fp"] + c["tn"] else float("nan")
    out["mean_p_fake"] = float(p.mean()) if len(p) else float("nan")
    both = 0 < y.sum() < len(y)
    out.update({
        "roc_auc": roc_auc(y, p) if both else float("nan"),
        "average_precision": average_precision(y, p) if both else float("nan"),
        "eer": equal_error_rate(y, p) if both else float("nan"),
        "tpr_at_fpr_1pct": tpr_at_fpr(y, p, 0.01) if both else float("nan"),
        "tpr_at_fpr_5pct": tpr_at_fpr(y, p, 0.05) if both else float("nan"),
        "log_loss": log_loss(y, p), "brier": brier(y, p), "ece": expected_calibration_error(y, p),
    })
    if ci and both:
        out.update(bootstrap_ci(y, p, 0.5, seed=seed))
    return out


def mcnemar(y, p_a, p_b, t_a=0.5, t_b=0.5):
    """McNemar's test on the images exactly one of two models gets wrong. Exact binomial p-value."""
    y = np.asarray(y).astype(bool)
    wrong_a = (np.asarray(p_a) >= t_a) != y
    wrong_b = (np.asarray(p_b) >= t_b) != y
    b, c = int((wrong_a & ~wrong_b).sum()), int((~wrong_a & wrong_b).sum())
    n, k = b + c, min(b, c)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"only_a_wrong": b, "only_b_wrong": c, "p_value": float(p)}


def paired_auc_difference(y, p_a, p_b, n=BOOTSTRAP, seed=0):
    """Bootstrap of AUC(a) - AUC(b) on the same resampled images: 95% interval and two-sided p-value."""
    rng = np.random.default_rng(seed)
    y, p_a, p_b = np.asarray(y), np.asarray(p_a), np.asarray(p_b)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(roc_auc(y[i], p_a[i]) - roc_auc(y[i], p_b[i]))
    diffs = np.array(diffs)
    p_value = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    return {"auc_difference": roc_auc(y, p_a) - roc_auc(y, p_b),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
            "p_value": float(p_value)}
