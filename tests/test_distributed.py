"""Scale-out on loopback: tf.distribute multi-worker training and keras-tuner's chief / worker search."""
import json
import os
import re
import socket
import subprocess
import sys

from data.runs import read_run
import pytest

import conftest

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.TINY + ["--epochs", "1"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env_extra, log):
    env = dict(os.environ, **env_extra)
    return subprocess.Popen([sys.executable, "-m", "classifiers.train"] + args, cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_two_workers_train_one_model_and_the_chief_saves_it(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(start(["--strategy", "multiworker", "--data-dir", tiny_faces, "--runs-dir", runs] + TINY,
                           {"TF_CONFIG": tf_config}, tmp_path / f"w{i}.log"))
    codes = [p.wait(timeout=600) for p in procs]
    logs = [open(tmp_path / f"w{i}.log").read() for i in range(2)]
    assert codes == [0, 0], logs
    assert "baseline: validation AUC" in logs[0]
    assert "this worker is done; the chief writes the run folder" in logs[1]
    info = read_run(os.path.join(runs, "default", "baseline"))
    assert info["replicas"] == 2 and info["config"]["strategy"] == "multiworker"


def test_search_chief_shares_trials_among_workers_without_repeats(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    port = str(free_port())
    args = ["--model", "hpsearch", "--tuner", "random", "--max-trials", "4", "--search-epochs", "1", "--data-dir", tiny_faces,
            "--runs-dir", runs] + TINY
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
        procs[tuner_id] = start(args, env, tmp_path / f"{tuner_id}.log")
    codes = {k: p.wait(timeout=600) for k, p in procs.items()}
    logs = {k: open(tmp_path / f"{k}.log").read() for k in procs}
    assert set(codes.values()) == {0}, logs
    ran = {k: re.findall(rf"^trial (\w+) on {k}:", logs[k], re.M) for k in ("tuner0", "tuner1")}
    assert ran["tuner0"] and ran["tuner1"], "both workers should get trials"
    assert not set(ran["tuner0"]) & set(ran["tuner1"]), "no trial runs twice"
    assert len(ran["tuner0"]) + len(ran["tuner1"]) == 4
    info = read_run(os.path.join(runs, "default", "hpsearch"))  # one search, one run, written by the chief
    assert sorted(t["trial"] for t in info["search"]["trials"]) == sorted(ran["tuner0"] + ran["tuner1"])
    assert all(t["status"] == "COMPLETED" for t in info["search"]["trials"])
