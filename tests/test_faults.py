"""Faults: a killed search resumes without redoing trials, two writers never share a run folder, an
unwritable output folder is one clear line."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import kill_when
from data.runs import read_run, run_lock
from data.runtime import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image-size", "16", "--batch-size", "16", "--seed", "3"]


def completed_trials(tuner_dir):
    done = []
    if not os.path.isdir(tuner_dir):
        return done
    for name in sorted(os.listdir(tuner_dir)):
        path = os.path.join(tuner_dir, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            try:
                trial = json.load(open(path))
            except ValueError:
                continue
            if trial.get("status") == "COMPLETED":
                done.append(trial["trial_id"])
    return done


def test_killed_search_resumes_without_redoing_finished_trials(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "classifiers.train", "--model", "hpsearch", "--data-dir", tiny_faces,
           "--runs-dir", runs, "--max-trials", "4", "--search-epochs", "1", "--epochs", "1"] + TINY
    tuner_dir = os.path.join(runs, "default", ".hpsearch-tuner")
    kill_when(cmd, lambda: len(completed_trials(tuner_dir)) >= 2, ROOT)
    before = completed_trials(tuner_dir)
    assert before and not os.path.exists(os.path.join(runs, "default", "hpsearch"))
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"search: resuming, {len(before)} finished trial(s)" in again.stdout
    redone = set(re.findall(r"^trial (\w+) on", again.stdout, re.M)) & set(before)
    assert not redone, f"finished trials were run again: {redone}"
    info = read_run(os.path.join(runs, "default", "hpsearch"))
    assert len(info["search"]["trials"]) == 4


def test_second_writer_of_the_same_model_is_told_and_stops(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    with run_lock(runs, "default", "baseline"):
        proc = subprocess.run([sys.executable, "-m", "classifiers.train", "--data-dir", tiny_faces, "--runs-dir",
                               runs, "--epochs", "1"] + TINY, cwd=ROOT, capture_output=True, text=True)
        with pytest.raises(UserError, match="being trained by pid"):
            with run_lock(runs, "default", "baseline"):
                pass
    assert proc.returncode == 2 and "is being trained by pid" in proc.stderr and "Traceback" not in proc.stderr
    with run_lock(runs, "default", "baseline"):  # released: free again
        pass


def test_unwritable_runs_folder_is_one_clear_line(tiny_faces, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the runs folder should be")
    proc = subprocess.run([sys.executable, "-m", "classifiers.train", "--data-dir", tiny_faces, "--runs-dir",
                           str(blocker), "--epochs", "1"] + TINY, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot write") and "Traceback" not in proc.stderr
