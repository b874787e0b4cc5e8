"""The benchmark runs end to end and writes the figures it promises (no timing thresholds here)."""
import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_writes_every_figure(tiny_faces, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "compare.bench", "--data-dir", tiny_faces, "--image-size", "16",
                           "--window", "1", "--windows", "5", "--json-out", str(out)], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    figures = json.load(open(out))["sizes"]["16"]
    for key in ("train_speedup", "pipeline_headroom", "latency_ms_b1", "flops_fraction_of_peak"):
        assert figures[key] > 0
    windows = figures["windows"]
    assert len(windows["kit_img_s"]) == len(windows["original_img_s"]) == len(windows["pair_ratios"]) == 5
    assert windows["pair_ratios"] == [k / o for k, o in zip(windows["kit_img_s"], windows["original_img_s"])]
    speedup = figures["speedup"]
    assert speedup["median"] == sorted(windows["pair_ratios"])[2] == figures["train_speedup"]
    assert speedup["min"] <= speedup["median"] <= speedup["max"]
    assert figures["unstable"] == (speedup["spread"] > 0.15)
    for key in ("latency_b1_ms", "throughput_b64_img_s", "kit_train", "original_train"):
        assert figures[key]["min"] <= figures[key]["median"] <= figures[key]["max"]
    assert "speed-up (kit / original)" in proc.stdout and "interleaved windows" in proc.stdout


def test_windows_alternate_between_the_two_pipelines():
    from data.runtime import import_tensorflow

    tf = import_tensorflow()
    from compare.bench.pipeline import MIN_WINDOW_STEPS, WARMUP_STEPS, interleaved_rates
    from compare.timing import spread

    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def train_on_batch(self, x, y):
            calls.append(self.name)

    ds = tf.data.Dataset.from_tensors((tf.zeros((1, 2)), tf.zeros((1,))))
    rates, window = interleaved_rates({"kit": (Recorder("kit"), ds), "original": (Recorder("original"), ds)},
                                      window=3, windows=5)
    warmup = 2 * (1 + WARMUP_STEPS)  # a first step that traces, then the timed warm-up, each side
    assert window == 3 and calls[warmup:] == (["kit"] * 3 + ["original"] * 3) * 5
    assert len(rates["kit"]) == len(rates["original"]) == 5 and min(rates["kit"]) > 0
    # without --window, windows are sized from the warm-up: about window_seconds for the slower side
    calls.clear()
    Slow = type("Slow", (Recorder,), {"train_on_batch": lambda self, x, y: (calls.append(self.name), time.sleep(0.02))})
    _, window = interleaved_rates({"kit": (Recorder("kit"), ds), "original": (Slow("original"), ds)}, window=None,
                                  windows=2, window_seconds=0.2)
    assert MIN_WINDOW_STEPS <= window <= 10
    assert calls[warmup:] == (["kit"] * window + ["original"] * window) * 2
    assert spread([1.0, 2.0, 4.0]) == {"median": 2.0, "min": 1.0, "max": 4.0, "spread": 1.5}


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


def test_bench_takes_the_common_options_like_every_entry_point(monkeypatch, tmp_path):
    from compare.bench import cli as bench

    monkeypatch.setenv("DEEPFAKE_KIT_RUNS", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("DEEPFAKE_KIT_DATA", str(tmp_path / "faces"))
    args = bench.parse_args(["--learning-curve", "--recipes", "baseline", "--seed", "7", "--strict"])
    assert args.runs_dir == str(tmp_path / "elsewhere") and args.data_dir == str(tmp_path / "faces")
    assert (args.seed, args.strict, args.experiment, args.precision) == (7, True, "default", "auto")


def test_curve_recipes_come_from_the_registry(monkeypatch):
    from classifiers import registry
    from compare.bench import curves

    monkeypatch.setitem(registry.DETECTORS, "tiny", registry.Detector(registry.baseline, "a tiny CNN", epochs={"quick": 5}))
    assert curves.recipe("tiny") == {"image_size": 64, "epochs": 5, "precision": "kit", "what": "a tiny CNN (quick preset)"}
    assert curves.recipe("baseline")["epochs"] == 8 and curves.recipe("original")["precision"] == "float32"
    assert "tiny" in curves.known_recipes() and "backbone" not in curves.known_recipes()  # it needs --backbone


def test_the_machine_figures_name_the_cpu_and_the_precision_and_what_the_quick_gan_takes(tmp_path):
    out = tmp_path / "machine.json"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")  # auto precision is then float32 on any CPU
    proc = subprocess.run([sys.executable, "-m", "compare.bench", "--machine", "--machine-steps", "2",
                           "--json-out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.load(open(out))
    assert r["precision"] == "float32" and r["onednn_cap"] == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert r["gan_steps_per_s"] > 0 and r["baseline_images_per_s"] > 0 and r["resnet_images_per_s"] > 0
    assert r["gan_minutes_quick"] == r["gan_steps_quick"] / r["gan_steps_per_s"] / 60
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
    assert r["cpu_flags"].split() == [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                                                   "amx_tile") if f in flags]
    assert f"quick GAN, training steps/s (64 px, batch 32, DiffAugment) | {r['gan_steps_per_s']:.2f}" in proc.stdout
    assert "oneDNN capped (ONEDNN_MAX_CPU_ISA=AVX2)" in proc.stdout


def test_the_machine_clock_counts_the_steps_not_fits_set_up_or_teardown():
    """fit() builds and tears down its dataset iterator around the steps (the teardown of a repeated dataset
    took 0 or 2 s at random); the machine benchmark's rate must not depend on either."""
    import keras
    import numpy as np
    import tensorflow as tf

    from compare.bench.machine import timed_fit

    class SlowEnds(keras.Sequential):  # a second of set-up before every fit's steps and of teardown after
        def fit(self, *args, **kwargs):
            time.sleep(1.0)
            history = super().fit(*args, **kwargs)
            time.sleep(1.0)
            return history

    model = SlowEnds([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((8, 4), np.float32)
    started = time.perf_counter()
    rate = timed_fit(model, tf.data.Dataset.from_tensor_slices((x, x)).batch(4).repeat(), 1, 5)
    assert time.perf_counter() - started > 4  # both fits paid their slow ends
    assert rate > 5 / 1.0  # the five steps alone take far less than the second either end took
