"""compare.bench --learning-curve: every point through the training commands, kept when finished."""
import json
import os

import pytest

from compare.bench import cli as bench
from data.runtime import run_main

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

DETECTOR = "--image-size 16 --epochs 1 --batch-size 8"
GAN = ("--image-size 16 --gan-batch-size 8 --batch-size 8 --head-epochs 1 --finetune-epochs 1 --gan-steps 2 "
       "--sample-every 2")


def test_the_curve_trains_each_point_once_and_reports_it(tiny_faces, tmp_path, capsys):
    from compare import report

    runs = str(tmp_path / "runs")
    argv = ["--learning-curve", "--labels", "6", "10", "--recipes", "baseline", "dcgan-discriminator",
            "dcgan-scratch", "--seeds", "2", "--data-dir", tiny_faces, "--runs-dir", runs, "--precision", "float32",
            "--detector-args", DETECTOR, "--gan-args", GAN]
    assert bench.main(argv) == 0
    exp = os.path.join(runs, "default")
    curve = json.load(open(os.path.join(exp, "bench", "learning_curve.json")))
    points = {(r["recipe"], r["labels"]): r for r in curve["rows"]}
    assert set(points) == {(r, n) for r in ("baseline", "dcgan-discriminator", "dcgan-scratch") for n in ("6", "10")}
    assert all(r["seeds"] == [1337, 1338] and 0 <= r["mean"] <= 1 for r in curve["rows"])
    assert [(v["labels"], v["pretrained"], v["control"]) for v in curve["verdicts"]] == [
        (n, "dcgan-discriminator", "dcgan-scratch") for n in ("6", "10")]
    auc = {(r["recipe"], r["labels"]): r["mean"] for r in curve["rows"]}
    first = curve["verdicts"][0]  # the mean of the paired differences is the difference of the means
    assert abs(first["mean"] - (auc["dcgan-discriminator", "6"] - auc["dcgan-scratch", "6"])) < 1e-9
    assert first["verdict"].startswith("with 6 labels, dcgan-discriminator") and ("beats" in first["verdict"]
                                                                                 or "no difference" in first["verdict"]
                                                                                 or "loses to" in first["verdict"])
    for name in ("baseline-labels6.seed1338", "dcgan-scratch-labels10.seed1337", "dcgan-discriminator-labels6.seed1337"):
        assert os.path.exists(os.path.join(exp, name, "model.keras"))
    assert os.path.exists(os.path.join(exp, "bench", "learning_curve.png"))

    capsys.readouterr()
    assert bench.main(argv) == 0  # a second run trains nothing
    out = capsys.readouterr().out
    assert "validation AUC" not in out and out.count("already trained with this configuration") >= 4 + 12

    # a curve cut short: one point's run never finished (only its work folder is left); the same command trains it alone
    import shutil

    shutil.move(os.path.join(exp, "baseline-labels10.seed1338"), os.path.join(exp, ".baseline-labels10.seed1338.partial"))
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("validation AUC") == 1 and "baseline-labels10.seed1338: validation AUC" in out

    assert report.main(["--runs-dir", runs, "--no-timing", "--no-saliency"]) == 0
    assert "## Learning curve" in open(os.path.join(exp, "report", "report.md")).read()
    skipped = json.load(open(os.path.join(exp, "report", "metrics.json")))["skipped"]
    assert not skipped, skipped  # the bench/ folder the curve wrote is not a broken run


def test_a_recipe_the_curve_does_not_know_is_named(tmp_path, capsys):
    assert run_main(lambda: bench.main(["--learning-curve", "--recipes", "baseline", "vit", "--runs-dir",
                                        str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown vit" in err[0]
