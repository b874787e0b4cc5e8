"""Faults: killed searches, retrains and GAN fine-tunes resume without redoing finished work; two writers
never share a run folder; a full disk or an unwritable output folder is one clear line and costs nothing
that was finished."""
import json
import os
import re
import subprocess
import sys

import shutil

import pytest

import conftest
from conftest import completed_trials, kill_when
from data.runs import read_run, run_lock
from data.runtime import UserError

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.TINY + ["--seed", "3"]
GAN_TINY = conftest.GAN_TINY + ["--seeds", "1"]


def checkpointed(partial):
    """True once a run's partial folder holds a committed epoch checkpoint."""
    return lambda: os.path.exists(os.path.join(partial, "backup", "checkpoint.json"))


def test_killed_search_resumes_without_redoing_finished_trials(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "classifiers.train", "--model", "hpsearch", "--tuner", "random", "--data-dir", tiny_faces,
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


def test_search_killed_while_retraining_the_best_resumes_the_retrain(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "classifiers.train", "--model", "hpsearch", "--tuner", "random", "--data-dir", tiny_faces,
           "--runs-dir", runs, "--max-trials", "2", "--search-epochs", "1", "--epochs", "30"] + TINY
    kill_when(cmd, checkpointed(os.path.join(runs, "default", ".hpsearch.partial")), ROOT)
    assert not os.path.exists(os.path.join(runs, "default", "hpsearch"))
    again = subprocess.run(cmd[:-len(TINY) - 2] + ["--epochs", "3"] + TINY, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "search: resuming, 2 finished trial(s)" in again.stdout
    assert not re.findall(r"^trial (\w+) on", again.stdout, re.M), "a finished search ran trials again"
    assert re.search(r"^hpsearch: resuming from epoch \d+ of 3", again.stdout, re.M), again.stdout
    info = read_run(os.path.join(runs, "default", "hpsearch"))
    retrained = info["search"].get("rejected_winner", info)  # the winner, kept or (not above the baseline) not
    assert retrained["resumed_from_epoch"] >= 1 and len(info["search"]["trials"]) == 2


def test_gan_killed_while_fine_tuning_keeps_the_gan_and_finished_detectors(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "gan.train", "--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "3",
           "--finetune-epochs", "40"] + GAN_TINY
    kill_when(cmd, checkpointed(os.path.join(runs, "default", ".dcgan-linear-probe.partial")), ROOT, timeout=300)
    gan_before = read_run(os.path.join(runs, "default", "dcgan"))
    disc_before = read_run(os.path.join(runs, "default", "dcgan-discriminator"))
    assert not os.path.exists(os.path.join(runs, "default", "dcgan-linear-probe"))
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    out = again.stdout
    assert "dcgan: already trained with this configuration" in out
    assert "dcgan-discriminator: already trained with this configuration" in out
    assert re.search(r"^dcgan-linear-probe: resuming from epoch \d+ of 40", out, re.M), out
    assert "dcgan-linear-probe: warm-up already done" in out
    assert read_run(os.path.join(runs, "default", "dcgan"))["created"] == gan_before["created"]
    assert read_run(os.path.join(runs, "default", "dcgan-discriminator"))["created"] == disc_before["created"]
    assert read_run(os.path.join(runs, "default", "dcgan-linear-probe"))["resumed_from_epoch"] >= 1
    read_run(os.path.join(runs, "default", "dcgan-scratch"))
    # --retrain is the way to train a finished stage again
    retrain = subprocess.run(cmd[:cmd.index("--finetune-epochs")] + ["--stage", "gan", "--retrain"] + GAN_TINY,
                             cwd=ROOT, capture_output=True, text=True)
    assert retrain.returncode == 0 and "already trained" not in retrain.stdout, retrain.stderr


def test_concurrent_commands_on_one_experiment_leave_consistent_runs(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    base = [sys.executable, "-m", "classifiers.train", "--data-dir", tiny_faces, "--runs-dir", runs,
            "--epochs", "3"] + TINY
    cmds = [base, base, base[:3] + ["--model", "hpsearch", "--max-trials", "2", "--search-epochs", "1"] + base[3:]]
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    for rc, _, err in results:  # each either finished or was told, in one line, that another writer holds the model
        assert rc == 0 or (rc == 2 and "is being trained by pid" in err), err
        assert "Traceback" not in err
    assert results[2][0] == 0 and sum(rc == 0 for rc, _, _ in results[:2]) >= 1
    split = json.load(open(os.path.join(runs, "default", "split.json")))
    for name in ("baseline", "hpsearch"):
        info = read_run(os.path.join(runs, "default", name))
        assert info["split_fingerprint"] == split["fingerprint"] and info["epochs_completed"] >= 1
    leftovers = [n for n in os.listdir(os.path.join(runs, "default")) if n.endswith(".partial") or ".old-" in n]
    assert not leftovers


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs), so that writes fail with ENOSPC as on a full disk."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield str(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)])


def fill_disk(folder, leave_bytes):
    """Take all but leave_bytes of the file system's free space with one file; returns its path."""
    st = os.statvfs(folder)
    filler = os.path.join(folder, "filler")
    with open(filler, "wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


@pytest.mark.parametrize("leave_kb", [40, 400])
def test_full_disk_is_one_clear_line_and_keeps_earlier_results(tiny_faces, small_disk, leave_kb):
    runs = os.path.join(small_disk, "runs")
    cmd = [sys.executable, "-m", "classifiers.train", "--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + TINY
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    run_dir = os.path.join(runs, "default", "baseline")
    before = {n: open(os.path.join(run_dir, n), "rb").read() for n in ("run.json", "model.keras")}

    filler = fill_disk(small_disk, leave_kb * 1024)
    # --retrain: a longer run replaces the finished one (without it, a different configuration is refused)
    full = subprocess.run(cmd[:-len(TINY) - 2] + ["--epochs", "2", "--retrain"] + TINY, cwd=ROOT, capture_output=True,
                          text=True)
    assert full.returncode == 2, (full.returncode, full.stderr[-2000:])
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and ("space" in last) and "Traceback" not in full.stderr, full.stderr[-2000:]
    assert {n: open(os.path.join(run_dir, n), "rb").read() for n in before} == before
    assert read_run(run_dir)["epochs_completed"] == 1  # the earlier run, not a half-written one

    os.remove(filler)  # room again: the same command finishes
    again = subprocess.run(cmd[:-len(TINY) - 2] + ["--epochs", "2", "--retrain"] + TINY, cwd=ROOT, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr
    assert read_run(run_dir)["epochs_completed"] == 2
