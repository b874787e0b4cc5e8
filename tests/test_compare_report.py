import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from classifiers import train as train_cli
from compare import report as report_cli
from conftest import make_dataset_dir
from data.runtime import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def experiment(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--experiment", "x", "--epochs", "1",
                    "--image-size", "16", "--batch-size", "16"])
    exp = os.path.join(runs, "x")
    shutil.copytree(os.path.join(exp, "baseline"), os.path.join(exp, "baseline-copy"))
    other = os.path.join(exp, "other-split")
    shutil.copytree(os.path.join(exp, "baseline"), other)
    info = json.load(open(os.path.join(other, "run.json")))
    info["split_fingerprint"] = "f" * 64
    json.dump(info, open(os.path.join(other, "run.json"), "w"))
    broken = os.path.join(exp, "broken")
    shutil.copytree(os.path.join(exp, "baseline"), broken)
    with open(os.path.join(broken, "model.keras"), "r+b") as f:
        f.truncate(100)
    return runs, exp


def test_report_compares_refuses_and_skips(experiment, tmp_path, capsys):
    runs, exp = experiment
    external = make_dataset_dir(tmp_path / "external", n_real=5, n_fake=5, size=40)
    (tmp_path / "external" / "Fake" / "junk.jpg").write_bytes(b"junk")
    assert report_cli.main(["--runs-dir", runs, "--experiment", "x", "--test-dir", external,
                            "--perturb", "jpeg=50,blur=1.0,resize=0.5"]) == 0
    out_dir = os.path.join(exp, "report")
    metrics = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert set(metrics["models"]) == {"baseline", "baseline-copy"}
    for entry in metrics["models"].values():
        assert {"roc_auc", "accuracy", "eer", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
                "balanced_accuracy", "f1", "average_precision", "roc_auc_ci95"} <= set(entry["test"])
        assert entry["external"]["images"] == 10  # the junk file is left out
        assert set(entry["perturbed"]) == {"jpeg=50", "blur=1", "resize=0.5"}
        assert entry["costs"]["latency_ms_b1"] > 0 and entry["costs"]["params"] > 0
    # identical models: the same predictions, so their difference is exactly noise-free zero
    pair = metrics["pairwise"]["baseline vs baseline-copy"]
    assert pair["auc"]["auc_difference"] == 0 and pair["verdict"] == "within noise"
    skipped = dict(metrics["skipped"])
    assert "another split" in skipped["other-split"] and "truncated" in skipped["broken"]
    md = open(os.path.join(out_dir, "report.md")).read()
    assert "## Runs not reported" in md and "other-split" in md and "![roc](roc.png)" in md
    for png in ("roc.png", "confusion.png", "reliability.png", "mistakes.png"):
        assert os.path.getsize(os.path.join(out_dir, png)) > 1000
    rows = list(csv.reader(open(os.path.join(out_dir, "metrics.csv"))))
    assert rows[0][:3] == ["model", "set", "roc_auc"] and len(rows) == 1 + 2 * (1 + 1 + 3)
    assert sorted(os.listdir(os.path.join(out_dir, "tensorboard", "models"))) == ["baseline", "baseline-copy"]
    printed = capsys.readouterr()
    assert "baseline" in printed.out and "report:" in printed.out and "tensorboard --logdir" in printed.out
    assert "skipping other-split" in printed.err


def test_bad_arguments(experiment, tmp_path):
    runs, _ = experiment
    with pytest.raises(UserError, match="unknown perturbation"):
        report_cli.main(["--runs-dir", runs, "--experiment", "x", "--perturb", "sharpen=2"])
    with pytest.raises(UserError, match="no experiment"):
        report_cli.main(["--runs-dir", runs, "--experiment", "nothing-here"])
    proc = subprocess.run([sys.executable, "-m", "compare.report", "--runs-dir", runs, "--experiment", "x",
                           "--test-dir", str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
