"""A corpus of bad and unusual files through every entry point: each is used or skipped with its reason,
every good image is still used, and nothing ends in a traceback."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import conftest
from conftest import write_bad_corpus
from data.runs import read_run
from data.scan import scan_folder

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True,
                          errors="backslashreplace")


def test_corpus_through_scan_training_predict_and_compare(tiny_faces, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(tiny_faces, data)
    expect = write_bad_corpus(os.path.join(data, "Fake", "odd"))
    scan = scan_folder(data)
    outcome = {}
    for r in scan.images:
        outcome[r.path] = "used"
    for p, _ in scan.rejected:
        outcome[p] = "rejected"
    for p, _ in scan.skipped:
        outcome[p] = "skipped"
    assert {k: outcome[f"Fake/odd/{k}"] for k in expect} == expect
    assert all(reason for _, reason in scan.rejected)

    runs = str(tmp_path / "runs")
    trained = run(["classifiers.train", "--data-dir", data, "--runs-dir", runs, "--epochs", "1"] + conftest.TINY)
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
    info = read_run(os.path.join(runs, "default", "baseline"))
    split = json.load(open(os.path.join(runs, "default", "split.json")))
    used = sum(1 for v in expect.values() if v == "used")
    assert len(split["files"]) == len(scan_folder(tiny_faces).images) + used  # every good file, odd ones too
    assert info["train_images"] == sum(f["split"] == "train" for f in split["files"])

    predicted = run(["classifiers.predict", "--run", os.path.join(runs, "default", "baseline"), "--json",
                     os.path.join(data, "Fake", "odd")])
    assert predicted.returncode == 1 and "Traceback" not in predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    judged = {os.path.relpath(r["path"], os.path.join(data, "Fake", "odd")) for r in rows if "p_fake" in r}
    failed = {os.path.relpath(r["path"], os.path.join(data, "Fake", "odd")) for r in rows if "error" in r}
    assert judged == {k for k, v in expect.items() if v == "used"}
    assert failed == {k for k, v in expect.items() if v == "rejected"}

    external = tmp_path / "external"
    os.makedirs(external / "Real")
    shutil.copytree(os.path.join(data, "Fake", "odd"), external / "Fake", symlinks=True)
    for name in os.listdir(os.path.join(tiny_faces, "Real"))[:5]:
        shutil.copy(os.path.join(tiny_faces, "Real", name), external / "Real" / name)
    compared = run(["compare.report", "--runs-dir", runs, "--test-dir", str(external), "--no-timing"])
    assert compared.returncode == 0 and "Traceback" not in compared.stderr, compared.stderr
    metrics = json.load(open(os.path.join(runs, "default", "report", "metrics.json")))
    assert metrics["models"]["baseline"]["external"]["external"]["images"] == 5 + used  # the set takes its folder name
