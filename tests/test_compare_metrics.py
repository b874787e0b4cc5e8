"""The comparison's metrics against values worked out by hand."""
import numpy as np
import pytest

from compare import metrics as M


def test_small_example_by_hand():
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    m = M.evaluate(y, p, threshold=0.5, ci=False)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (fake, real) pairs ranked right
    assert m["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["eer"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    # at 0.5 only 0.8 is called fake: tp 1, fp 0, tn 2, fn 1
    assert m["confusion_at_0_5"] == {"tp": 1, "fp": 0, "tn": 2, "fn": 1}
    assert m["accuracy"] == 0.75 and m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == 0.75
    assert m["tpr_at_fpr_1pct"] == 0.5 and m["tpr_at_fpr_5pct"] == 0.5
    chosen = M.evaluate(y, p, threshold=0.3, ci=False)
    assert chosen["confusion_at_threshold"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}


def test_ties_count_one_half():
    assert M.evaluate([0, 1], [0.5, 0.5], ci=False)["roc_auc"] == 0.5
    assert M.evaluate([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9], ci=False)["roc_auc"] == pytest.approx(3.5 / 4)


def test_perfect_classifier():
    y = np.array([0] * 50 + [1] * 50)
    p = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    m = M.evaluate(y, p)
    assert m["roc_auc"] == 1.0 and m["average_precision"] == 1.0 and m["eer"] == 0.0
    assert m["tpr_at_fpr_1pct"] == 1.0 and m["accuracy"] == 1.0 and m["f1"] == 1.0
    assert m["roc_auc_ci95"] == [1.0, 1.0] and m["accuracy_ci95"] == [1.0, 1.0]


def test_useless_classifier():
    y = np.array([0, 1] * 100)
    m = M.evaluate(y, np.full(200, 0.5))
    assert m["roc_auc"] == 0.5 and m["eer"] == pytest.approx(0.5)
    assert m["tpr_at_fpr_1pct"] == 0.0  # with every score tied, no threshold keeps FPR under 1% but 'nothing'
    assert m["brier"] == pytest.approx(0.25) and m["log_loss"] == pytest.approx(np.log(2))
    assert m["ece"] == pytest.approx(0.0)  # p = 0.5 and half are fake: calibrated, yet useless
    assert m["roc_auc_ci95"][0] == m["roc_auc_ci95"][1] == 0.5


def test_calibration_error_of_an_overconfident_model():
    y = np.array([1, 0] * 50)
    p = np.full(100, 0.95)  # says 95% fake, half are
    assert M.expected_calibration_error(y, p) == pytest.approx(0.45)


def test_paired_tests_tell_real_differences_from_noise():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 150)
    good = np.clip(y * 0.6 + rng.uniform(0, 0.4, 300), 0, 1)
    noisy = rng.uniform(0, 1, 300)
    d = M.paired_auc_difference(y, good, noisy)
    assert d["ci95"][0] > 0 and d["p_value"] < 0.01
    same = M.paired_auc_difference(y, good, good)
    assert same["auc_difference"] == 0 and same["ci95"] == [0.0, 0.0]
    mc = M.mcnemar([1, 1, 1, 0], [0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1])
    assert mc["only_a_wrong"] == 0 and mc["only_b_wrong"] == 2 and mc["p_value"] == 0.5  # 2 * (1/2)^2
