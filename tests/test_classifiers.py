import json
import os
import subprocess
import sys

import pytest

from classifiers import train as train_cli
import conftest
from conftest import epochs_recorded, kill_when
from data.runs import read_run

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.TINY + ["--seed", "3"]


def run_json(runs, exp, name):
    return read_run(os.path.join(runs, exp, name))


def test_baseline_trains_and_writes_a_complete_run(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "baseline", "--data-dir", tiny_faces, "--runs-dir", runs,
                           "--experiment", "e", "--epochs", "2"] + TINY) == 0
    folder = os.path.join(runs, "e", "baseline")
    assert sorted(os.listdir(folder)) == ["logs", "model.keras", "run.json", "split.json"]
    info = run_json(runs, "e", "baseline")
    split = json.load(open(os.path.join(runs, "e", "split.json")))
    assert info["split_fingerprint"] == split["fingerprint"]
    assert info["epochs_completed"] == 2 and len(info["history"]) == 2
    assert info["hyperparameters"]["filters"] == [32, 64] and info["image_size"] == 16
    assert 0.0 <= info["validation"]["auc"] <= 1.0 and 0.0 < info["threshold"] < 1.0
    assert info["params"] > 0 and info["train_seconds"] > 0 and info["versions"]["tensorflow"]
    assert os.listdir(os.path.join(folder, "logs", "train")) and os.listdir(os.path.join(folder, "logs", "validation"))
    out = capsys.readouterr().out
    assert "baseline: validation AUC" in out and folder in out
    assert not [n for n in os.listdir(os.path.join(runs, "e")) if n.endswith(".partial")]


def test_resnet_recipe_trains_and_records_its_recipe(tiny_faces, tmp_path):
    from classifiers.registry import RESNET

    runs = str(tmp_path / "runs")
    assert train_cli.main(["--model", "resnet", "--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "2"]
                          + TINY) == 0
    info = run_json(runs, "default", "resnet")
    assert info["hyperparameters"] == RESNET and info["augment"] == RESNET["augment"]
    assert info["epochs_completed"] == 2 and info["image_size"] == 16


def test_same_seed_gives_the_same_model_on_cpu(tiny_faces, tmp_path):
    aucs = []
    for i in range(2):
        runs = str(tmp_path / f"runs{i}")
        train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + TINY)
        aucs.append(run_json(runs, "default", "baseline")["history"])
    assert aucs[0] == aucs[1]


def test_search_runs_trials_resumes_and_retrains_the_best(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    common = ["--model", "hpsearch", "--tuner", "random", "--data-dir", tiny_faces, "--runs-dir", runs, "--experiment", "s",
              "--search-epochs", "1", "--epochs", "1"] + TINY
    assert train_cli.main(common + ["--max-trials", "2"]) == 0
    first = run_json(runs, "s", "hpsearch")
    assert len(first["search"]["trials"]) == 2
    # the same command with a larger budget keeps the finished trials and runs only the new one
    assert train_cli.main(common + ["--max-trials", "3"]) == 0
    info = run_json(runs, "s", "hpsearch")
    trials = info["search"]["trials"]
    assert len(trials) == 3
    assert [t["hyperparameters"] for t in trials[:2]] == [t["hyperparameters"] for t in first["search"]["trials"]]
    from classifiers.search import hyperparameters_to_config
    from classifiers.registry import BASELINE

    # the baseline's configuration is always the first trial, and the search never returns less than it
    assert hyperparameters_to_config(trials[0]["hyperparameters"]) == BASELINE
    baseline = run_json(runs, "s", "baseline")
    assert info["validation"]["auc"] >= baseline["validation"]["auc"]
    if info["search"].get("kept") == "baseline":
        assert info["hyperparameters"] == BASELINE and "baseline" in info["search"]["note"]
    else:
        best = max(trials, key=lambda t: t["val_auc"] or -1)
        assert info["hyperparameters"] == hyperparameters_to_config(best["hyperparameters"])
    search_logs = os.path.join(runs, "s", "hpsearch", "logs", "search")
    assert len(os.listdir(search_logs)) == 3  # one TensorBoard folder (with HParams) per trial


def test_interrupted_baseline_resumes_from_its_last_epoch(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "classifiers.train", "--data-dir", tiny_faces, "--runs-dir", runs,
           "--epochs", "40"] + TINY
    progress = os.path.join(runs, "default", ".baseline.partial", "progress.json")
    kill_when(cmd, lambda: epochs_recorded(progress) >= 2, ROOT)
    assert not os.path.exists(os.path.join(runs, "default", "baseline")), "a killed run must not look finished"
    done = epochs_recorded(progress)
    again = subprocess.run(cmd[:-len(TINY) - 2] + ["--epochs", str(done + 1)] + TINY, cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "baseline: resuming from epoch" in again.stdout
    info = run_json(runs, "default", "baseline")
    assert info["epochs_completed"] == done + 1 and info["resumed_from_epoch"] >= 1


def test_predict_judges_good_files_and_names_bad_ones(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + TINY)
    run = os.path.join(runs, "default", "baseline")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    good = os.path.join(tiny_faces, "Fake")
    proc = subprocess.run([sys.executable, "-m", "classifiers.predict", "--run", run, "--json", good, str(bad)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    judged = [r for r in rows if "p_fake" in r]
    assert len(judged) == len(os.listdir(good))
    assert all(0 <= r["p_fake"] <= 1 and r["verdict"] in ("real", "fake") for r in judged)
    assert {r["path"] for r in rows if "error" in r} == {str(bad)}
    assert f"error: {bad}:" in proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "classifiers.predict", "--run", str(tmp_path), "x.jpg"],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr


@pytest.mark.parametrize("argv, message", [
    (["--image-size", "0"], "must be a positive whole number"),
    (["--model", "vgg"], "invalid choice"),
])
def test_bad_arguments_are_one_clear_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "classifiers.train"] + argv, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_folder_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "classifiers.train", "--data-dir", str(tmp_path / "nope"),
                           "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("does not exist or is not a folder") and "Traceback" not in proc.stderr


def test_cosine_schedule_decays_to_zero_over_the_run_and_old_trials_read_as_constant():
    from classifiers.models import build_cnn
    from classifiers.search import hyperparameters_to_config

    model = build_cnn(16, [4], schedule="cosine", decay_steps=10)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    model.optimizer.iterations.assign(10)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert float(build_cnn(16, [4]).optimizer.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="decay_steps"):
        build_cnn(16, [4], schedule="cosine")
    old_trial = {"filters": "32-64", "head": "gap", "dropout": 0.2, "residual": False, "learning_rate": 1e-3,
                 "augment": True}
    assert hyperparameters_to_config(old_trial)["schedule"] == "constant"


def test_augment_trains_a_run_beside_the_plain_one_and_an_unknown_perturbation_is_named(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    common = ["--model", "baseline", "--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + TINY
    assert train_cli.main(common) == 0
    assert train_cli.main(common + ["--augment", "blur,jpeg,resize"]) == 0
    plain, augmented = run_json(runs, "default", "baseline"), run_json(runs, "default", "baseline-aug-blur-jpeg-resize")
    assert plain["augment"] == [] and augmented["augment"] == ["blur", "jpeg", "resize"]
    assert augmented["hyperparameters"]["augment"] == ["blur", "jpeg", "resize"]
    assert augmented["split_fingerprint"] == plain["split_fingerprint"]
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--augment", "blur,sparkle"])
    assert "'blur,sparkle': a comma list of flip" in capsys.readouterr().err
