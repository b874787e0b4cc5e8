"""The benchmark runs end to end and writes the figures it promises (no timing thresholds here)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_writes_every_figure(tiny_faces, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "compare.bench", "--data-dir", tiny_faces, "--image-size", "16",
                           "--window", "1", "--json-out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    figures = json.load(open(out))["sizes"]["16"]
    for key in ("train_speedup", "pipeline_headroom", "latency_ms_b1", "flops_fraction_of_peak"):
        assert figures[key] > 0
    assert "speed-up (kit / original)" in proc.stdout


def test_recipe_curves_write_auc_per_minute_for_each_recipe(tiny_faces, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "compare.bench", "--data-dir", tiny_faces, "--runs-dir", str(runs),
                           "--recipes", "original", "resnet", "--epochs", "2"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    out = runs / "default" / "bench"
    summary = json.load(open(out / "curves.json"))
    original = summary["recipes"]["original"]
    assert summary["target_auc"] == original["final_auc"]
    for name in ("original", "resnet"):
        row = summary["recipes"][name]
        assert [p["epoch"] for p in row["points"]] == [1, 2]
        seconds = [p["seconds"] for p in row["points"]]
        assert 0 < seconds[0] < seconds[1]  # cumulative training time
        reach = row["minutes_to_original_final_auc"]
        assert reach is None or reach <= row["minutes"] + 1e-9
    assert original["minutes_to_original_final_auc"] is not None  # it reaches its own final AUC
    assert summary["precision"]["original"] == "float32"
    assert (out / "curves.png").stat().st_size > 0
    assert os.listdir(out / "tensorboard" / "original") and os.listdir(out / "tensorboard" / "resnet")
    assert "min to target" in proc.stdout and "resnet" in proc.stdout
