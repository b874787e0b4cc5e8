"""A data set with blank images and a picture under both labels still trains; a finished run is never silently replaced."""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from classifiers import train as train_cli
import pytest

import conftest
from conftest import completed_trials, epochs_recorded, smooth_image, write_image
from classifiers.layers import load_model_safely
from data.runs import read_run

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.TINY + ["--seed", "3", "--epochs", "1"]


def with_odd_files(tiny_faces, tmp_path):
    """tiny_faces plus blank images in both classes and one picture filed under both labels."""
    data = str(tmp_path / "odd")
    shutil.copytree(tiny_faces, data)
    write_image(os.path.join(data, "Real", "gray16.png"), Image.fromarray(np.zeros((32, 32), np.uint16)), "PNG")
    write_image(os.path.join(data, "Fake", "rgba.png"), Image.fromarray(np.zeros((32, 32, 4), np.uint8)), "PNG")
    write_image(os.path.join(data, "Real", "white.jpg"), Image.new("RGB", (32, 32), (250, 250, 250)))
    write_image(os.path.join(data, "Fake", "grey-noise.jpg"),
                Image.fromarray((128 + np.random.default_rng(0).normal(0, 0.4, (32, 32, 3))).astype(np.uint8)))
    twin = smooth_image(777, 48)
    write_image(os.path.join(data, "Real", "twin.jpg"), twin)
    write_image(os.path.join(data, "Fake", "twin-copy.jpg"), twin.transpose(Image.FLIP_LEFT_RIGHT), quality=70)
    return data


def test_blank_images_are_rejected_and_a_conflict_is_left_out_not_fatal(tiny_faces, tmp_path):
    data = with_odd_files(tiny_faces, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "data", data, "--runs-dir", str(tmp_path / "r"), "--split-out",
                           str(tmp_path / "split.json")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("Real/gray16.png", "Fake/rgba.png", "Real/white.jpg", "Fake/grey-noise.jpg"):
        assert re.search(rf"rejected {re.escape(name)}: no content to judge", proc.stdout), proc.stdout
    assert "left out: 2 images in 1 group(s) labelled both real and fake" in proc.stdout
    manifest = json.load(open(tmp_path / "split.json"))
    paths = {f["path"] for f in manifest["files"]}
    assert not paths & {"Real/twin.jpg", "Fake/twin-copy.jpg", "Real/gray16.png", "Fake/rgba.png"}
    ordinary = sum(len(os.listdir(os.path.join(tiny_faces, c))) for c in ("Real", "Fake"))
    assert len(paths) == ordinary  # every ordinary image is used
    assert manifest["label_conflicts"][0]["files"] == ["Fake/twin-copy.jpg", "Real/twin.jpg"]
    assert "near-copies" in manifest["label_conflicts"][0]["reason"]
    strict = subprocess.run([sys.executable, "-m", "data", data, "--runs-dir", str(tmp_path / "r"), "--strict"],
                            cwd=ROOT, capture_output=True, text=True)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert strict.stderr.strip() == ("error: the same image is labelled both real and fake: Real/twin.jpg and "
                                     "Fake/twin-copy.jpg" + strict.stderr.strip().split("Fake/twin-copy.jpg", 1)[1])
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--data-dir", data, "--runs-dir", runs] + TINY) == 0  # training goes on


def test_a_finished_run_is_kept_refused_or_retrained_never_silently_replaced(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    common = ["--data-dir", tiny_faces, "--runs-dir", runs] + TINY
    assert train_cli.main(common) == 0
    folder = os.path.join(runs, "default", "baseline")
    first = read_run(folder)
    capsys.readouterr()
    assert train_cli.main(common) == 0  # same configuration and split: kept, one line
    out = capsys.readouterr().out
    assert f"baseline: already trained with this configuration ({folder}); kept" in out
    assert read_run(folder)["created"] == first["created"]
    proc = subprocess.run([sys.executable, "-m", "classifiers.train"] + common + ["--epochs", "2"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "epochs 1 -> 2" in line and "new --experiment" in line and "--retrain" in line
    assert read_run(folder)["created"] == first["created"]  # untouched
    time.sleep(1)  # "created" has one-second resolution
    assert train_cli.main(common + ["--epochs", "2", "--retrain"]) == 0
    assert read_run(folder)["epochs_completed"] == 2 and read_run(folder)["created"] != first["created"]


def test_search_survives_five_kills_at_random_points(tiny_faces, tmp_path):
    """SIGKILL five times during trials, the retrain and the writing; then max_trials trials, none run twice."""
    runs = str(tmp_path / "runs")
    max_trials = 5
    cmd = [sys.executable, "-m", "classifiers.train", "--model", "hpsearch", "--tuner", "random", "--max-trials",
           str(max_trials), "--search-epochs", "2", "--data-dir", tiny_faces, "--runs-dir", runs,
           "--seed", "3", "--epochs", "3"] + conftest.TINY
    tuner_dir = os.path.join(runs, "default", ".hpsearch-tuner")
    partial = os.path.join(runs, "default", ".hpsearch.partial")
    # each kill waits for a stage, then a random moment inside it: start-up or the first trial, later
    # trials, the winner's retrain, and the writing of its model and run folder
    stages = [lambda: True, lambda: len(completed_trials(tuner_dir)) >= 2,
              lambda: len(completed_trials(tuner_dir)) >= 4,
              lambda: epochs_recorded(os.path.join(partial, "progress.json")) >= 1,
              lambda: os.path.exists(os.path.join(partial, "model.keras"))]
    rng = random.Random(0)
    killed = []
    for kill, reached in enumerate(stages):
        with open(tmp_path / f"kill{kill}.log", "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and not reached():
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 4.0 if kill == 0 else 1.0))
            proc.kill()
            killed.append((kill, proc.wait(), len(completed_trials(tuner_dir))))
    assert sum(code == -9 for _, code, _ in killed) >= 4, killed  # the kills did land mid-run
    final = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    folder = os.path.join(runs, "default", "hpsearch")
    info = read_run(folder)
    ids = [t["trial"] for t in info["search"]["trials"]]
    assert len(ids) == max_trials and len(set(ids)) == max_trials, (ids, killed)
    assert all(t["status"] == "COMPLETED" for t in info["search"]["trials"]), info["search"]["trials"]
    assert sorted(completed_trials(tuner_dir)) == sorted(ids)
    values = [json.dumps(t["hyperparameters"], sort_keys=True) for t in info["search"]["trials"]]
    assert len(set(values)) == max_trials  # no configuration ran twice
    load_model_safely(os.path.join(folder, "model.keras"))
    assert not [n for n in os.listdir(os.path.join(runs, "default")) if n.endswith(".partial")]
