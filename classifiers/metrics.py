"""Plain NumPy metrics for binary detectors (label 1 = fake is the positive class)."""
import numpy as np


def roc_auc(y_true, score):
    """Area under the ROC curve by the rank-sum formula; tied scores count one half."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = y_true.sum(), (~y_true).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y_true, score):
    """(fpr, tpr, thresholds), one point per distinct score, from (0, 0) to (1, 1)."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], y_true[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def youden_threshold(y_true, score):
    """The score threshold (predict fake when score >= it) that maximises TPR - FPR."""
    fpr, tpr, thresholds = roc_curve(y_true, score)
    best = int(np.argmax(tpr - fpr))
    t = thresholds[best]
    return 0.5 if not np.isfinite(t) else float(t)


def accuracy(y_true, score, threshold=0.5):
    return float(np.mean((np.asarray(score) >= threshold) == np.asarray(y_true).astype(bool)))
