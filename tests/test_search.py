"""The search: the user's precision in every trial, the baseline first, a time budget, never below the baseline."""
import os

import numpy as np

from classifiers import search
from classifiers import train as train_cli
from classifiers.registry import BASELINE
from classifiers.layers import load_model_safely
import pytest

import conftest
from conftest import reduced_precision
from data.runs import read_run

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

TINY = conftest.TINY + ["--seed", "3"]


def test_every_trial_and_the_winner_run_at_the_requested_precision(tiny_faces, tmp_path, monkeypatch):
    import keras

    seen, reduced = [], reduced_precision()  # any policy but float32, which clear_session() resets to
    real_build = search.build_from_config

    def recording_build(*args, **kwargs):
        seen.append(keras.mixed_precision.global_policy().name)  # after keras-tuner's clear_session()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(search, "build_from_config", recording_build)
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "hpsearch", "--tuner", "random", "--max-trials", "3", "--search-epochs", "1",
                           "--epochs", "1", "--precision", reduced, "--data-dir", tiny_faces,
                           "--runs-dir", runs] + TINY) == 0
    assert len(seen) >= 3 and set(seen) == {reduced}, seen
    folder = os.path.join(runs, "default", "hpsearch")
    assert read_run(folder)["precision"] == reduced
    model = load_model_safely(os.path.join(folder, "model.keras"))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.dtype_policy.name == reduced for layer in convs)
    keras.mixed_precision.set_global_policy("float32")


def test_hyperband_tries_the_baseline_first_and_stops_at_the_trial_cap(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "hpsearch", "--max-trials", "4", "--search-epochs", "3", "--epochs", "1",
                           "--data-dir", tiny_faces, "--runs-dir", runs] + TINY) == 0
    info = read_run(os.path.join(runs, "default", "hpsearch"))
    assert info["config"]["tuner"] == "hyperband"  # the default
    trials = info["search"]["trials"]
    assert len(trials) == 4
    assert search.hyperparameters_to_config(trials[0]["hyperparameters"]) == BASELINE
    assert "tuner/epochs" in trials[0]["hyperparameters"]  # Hyperband's own bookkeeping is kept


def test_search_minutes_stops_starting_trials(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "hpsearch", "--tuner", "random", "--max-trials", "5", "--search-minutes",
                           "0.0001", "--search-epochs", "1", "--epochs", "1", "--data-dir", tiny_faces,
                           "--runs-dir", runs] + TINY) == 0
    info = read_run(os.path.join(runs, "default", "hpsearch"))
    assert len(info["search"]["trials"]) == 1  # the budget was over before the second; the baseline always runs
    assert info["search"]["search_minutes"] == 0.0001


def test_a_winner_that_does_not_beat_the_baseline_is_not_kept(tiny_faces, tmp_path, monkeypatch, capsys):
    runs = str(tmp_path / "runs")
    common = ["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + TINY
    assert train_cli.main(["--model", "baseline"] + common) == 0
    real_reference = search.baseline_reference

    def unbeatable(*args, **kwargs):  # a baseline no retrained winner can beat
        folder, info = real_reference(*args, **kwargs)
        return folder, dict(info, validation=dict(info["validation"], auc=1.01))

    monkeypatch.setattr(search, "baseline_reference", unbeatable)
    assert train_cli.main(["--model", "hpsearch", "--tuner", "random", "--max-trials", "3", "--search-epochs", "1"]
                          + common) == 0
    out = capsys.readouterr().out
    info = read_run(os.path.join(runs, "default", "hpsearch"))
    assert info["search"]["kept"] == "baseline" and info["hyperparameters"] == BASELINE
    assert "baseline" in out.splitlines()[-1]
    baseline = load_model_safely(os.path.join(runs, "default", "baseline", "model.keras"))
    kept = load_model_safely(os.path.join(runs, "default", "hpsearch", "model.keras"))
    for a, b in zip(baseline.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(os.path.join(runs, "default", "hpsearch", "logs", "search"))  # the trials' logs stay
