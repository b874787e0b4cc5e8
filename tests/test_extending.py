"""Adding a detector as README "Adding a detector" says: one function, one line in the registry; then it is
trained, judged by predict and compared like any other, its custom layer included, and safe mode still
refuses code that is not the kit's."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from classifiers import registry
from classifiers import train as train_cli
from classifiers.layers import LogSpectrum, load_model_safely
from data.runs import BrokenRun, read_run
from data.runtime import UserError
import conftest

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.TINY + ["--epochs", "1"]


def spectrum_cnn(cfg, hp):
    """The README's example: a small CNN on the log spectrum, where upsampling leaves its fingerprint."""
    import keras
    from keras import layers

    inputs = keras.Input((cfg.image_size, cfg.image_size, 3))
    x = LogSpectrum()(inputs)
    x = layers.Conv2D(hp["filters"], 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", dtype="float32")(x), name="spectrum")


def run(args):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True)


def test_a_registered_detector_with_a_custom_layer_is_trained_judged_and_compared(tiny_faces, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.DETECTORS, "spectrum", registry.Detector(
        spectrum_cnn, "a CNN on the log spectrum", {"filters": 4, "learning_rate": 1e-3}))
    runs = str(tmp_path / "runs")
    common = ["--data-dir", tiny_faces, "--runs-dir", runs] + TINY
    assert train_cli.main(["--model", "spectrum"] + common) == 0
    assert train_cli.main(["--model", "baseline"] + common) == 0
    folder = os.path.join(runs, "default", "spectrum")
    info = read_run(folder)
    assert info["hyperparameters"] == {"filters": 4, "learning_rate": 1e-3} and info["epochs_completed"] == 1
    assert info["config"]["model"] == "spectrum" and "runs_dir" not in info["config"]
    # fresh interpreters, which never saw this test's registry: the model loads because the kit's layers do
    judged = run(["classifiers.predict", "--run", folder, "--json", os.path.join(tiny_faces, "Fake")])
    assert judged.returncode == 0, judged.stderr
    rows = [json.loads(line) for line in judged.stdout.splitlines()]
    assert rows and all(0 <= r["p_fake"] <= 1 for r in rows)
    compared = run(["compare.report", "--runs-dir", runs, "--no-timing", "--no-saliency"])
    assert compared.returncode == 0, compared.stderr
    with open(os.path.join(runs, "default", "report", "metrics.json")) as f:
        metrics = json.load(f)
    assert {"spectrum", "baseline"} <= set(metrics["models"]) and not metrics["skipped"]
    assert 0 <= metrics["models"]["spectrum"]["test"]["roc_auc"] <= 1


def test_the_help_lists_every_registered_detector(monkeypatch, capsys):
    monkeypatch.setitem(registry.DETECTORS, "spectrum", registry.Detector(spectrum_cnn, "a CNN on the log spectrum"))
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in ("baseline", "resnet", "backbone", "hpsearch", "spectrum"))
    assert "a CNN on the log spectrum" in out


def test_a_detector_with_an_option_of_its_own_is_one_registry_entry(tiny_faces, tmp_path, monkeypatch, capsys):
    """The option is in --help, in run.json, in the folder's name if the entry says so, and in the finished-run
    check: the same value keeps the run, another is refused naming it."""
    def spectrum_of_width(cfg, hp):
        return spectrum_cnn(cfg, dict(hp, filters=hp["width"]))

    option = registry.Option("width", 4, "filters of its one convolution", type=int)
    monkeypatch.setitem(registry.DETECTORS, "spectrum", registry.Detector(
        spectrum_of_width, "a CNN on the log spectrum", {"learning_rate": 1e-3}, options=(option,),
        folder="spectrum-w{width}"))
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--width WIDTH with --model spectrum: filters of its one convolution (default: 4)" in out
    runs = str(tmp_path / "runs")
    common = ["--model", "spectrum", "--data-dir", tiny_faces, "--runs-dir", runs] + TINY
    assert train_cli.main(common + ["--width", "6"]) == 0
    info = read_run(os.path.join(runs, "default", "spectrum-w6"))
    assert info["config"]["width"] == 6 and info["hyperparameters"]["width"] == 6
    capsys.readouterr()
    assert train_cli.main(common + ["--width", "6"]) == 0
    assert "spectrum-w6: already trained with this configuration" in capsys.readouterr().out
    # the folder's name comes from the option here; an entry that keeps one folder has the check say it
    monkeypatch.setitem(registry.DETECTORS, "spectrum", registry.Detector(
        spectrum_of_width, "a CNN on the log spectrum", {"learning_rate": 1e-3}, options=(option,),
        folder="spectrum-w6"))
    with pytest.raises(UserError, match="width 6 -> 8"):
        train_cli.main(common + ["--width", "8"])
    with pytest.raises(UserError, match="--width is an option of --model spectrum, not of --model baseline"):
        train_cli.main(["--model", "baseline", "--width", "8", "--data-dir", tiny_faces, "--runs-dir", runs])


def test_log_spectrum_is_the_centred_log_magnitude_of_the_fourier_transform():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x, axes=(1, 2)), axes=(1, 2))))
    np.testing.assert_allclose(np.asarray(LogSpectrum()(x)), expected, rtol=1e-4, atol=1e-3)


def test_safe_loading_refuses_code_that_is_not_the_kits(tmp_path):
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(BrokenRun, match="lambda.keras cannot be loaded"):
        load_model_safely(path)
