"""ImageNet backbones: each trains from random weights, loads a weights file by path, fails offline in one line."""
import os
import subprocess
import sys

import numpy as np
import pytest

from classifiers import train as train_cli
from classifiers.backbones import BACKBONES, build_backbone_detector, preprocessing
from classifiers.layers import load_model_safely
from data.runs import read_run

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_trains_an_epoch_from_random_weights_and_loads_safely(name, tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    size = BACKBONES[name][2]  # the smallest input it accepts
    assert train_cli.main(["--model", "backbone", "--backbone", name, "--weights", "none", "--image-size", str(size),
                           "--epochs", "1", "--batch-size", "16", "--data-dir", tiny_faces, "--runs-dir", runs]) == 0
    folder = os.path.join(runs, "default", f"backbone-{name}")
    info = read_run(folder)
    assert info["hyperparameters"]["backbone"] == name and info["hyperparameters"]["weights"] == "none"
    assert info["epochs_completed"] == 1 and info["image_size"] == size
    model = load_model_safely(os.path.join(folder, "model.keras"))  # safe mode: stock layers only
    p = model.predict(np.full((2, size, size, 3), 128, np.float32), verbose=0)
    assert p.shape == (2, 1) and np.all((p >= 0) & (p <= 1))


def test_weights_from_a_file_are_the_files_values_and_train_in_phases(tiny_faces, tmp_path, capsys):
    import keras

    _, source = build_backbone_detector("mobilenetv3small", 32, "none")
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in source.get_weights()])
    path = str(tmp_path / "mine.weights.h5")
    source.save_weights(path)
    keras.utils.set_random_seed(99)  # a different random start, so equal values can only come from the file
    _, loaded = build_backbone_detector("mobilenetv3small", 32, path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "backbone", "--backbone", "mobilenetv3small", "--weights", path, "--image-size",
                           "32", "--epochs", "1", "--batch-size", "16", "--data-dir", tiny_faces, "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "training the head at lr" in out and "training the top at lr" in out  # then everything, in train_run
    assert read_run(os.path.join(runs, "default", "backbone-mobilenetv3small"))["hyperparameters"]["weights"] == path


def test_caffe_preprocessing_matches_keras(tmp_path):
    import keras

    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    ours = preprocessing("caffe")(x)
    np.testing.assert_allclose(np.asarray(ours), keras.applications.resnet50.preprocess_input(x.copy()), atol=1e-4)


def test_imagenet_weights_offline_or_missing_file_is_one_line(tiny_faces, tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras-home"))  # an empty cache: Keras must download
    base = [sys.executable, "-m", "classifiers.train", "--model", "backbone", "--backbone", "mobilenetv3small",
            "--image-size", "32", "--epochs", "1", "--data-dir", tiny_faces, "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.run(base + ["--weights", "imagenet"], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        pytest.skip("this machine could download the ImageNet weights")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot download the ImageNet weights of mobilenetv3small")
    assert ".h5" in line and str(tmp_path / "keras-home" / "models") in line and "--weights" in line
    proc = subprocess.run(base + ["--weights", str(tmp_path / "nowhere.h5")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "nowhere.h5: no such file" in proc.stderr and "Traceback" not in proc.stderr
