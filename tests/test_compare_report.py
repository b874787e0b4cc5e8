import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from classifiers import train as train_cli
from compare import evaluation
from compare import report as report_cli
import conftest
from conftest import make_dataset_dir
from data.runtime import UserError

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained_baseline(tmp_path_factory):
    """One baseline trained for the whole module (tests get a copy of its runs folder)."""
    faces = conftest.write_tiny_faces(tmp_path_factory)
    runs = str(tmp_path_factory.mktemp("trained") / "runs")
    train_cli.main(["--data-dir", faces, "--runs-dir", runs, "--experiment", "x", "--epochs", "1"] + conftest.TINY)
    return runs


@pytest.fixture
def experiment(trained_baseline, tmp_path):
    runs = str(tmp_path / "runs")
    shutil.copytree(trained_baseline, runs)
    exp = os.path.join(runs, "x")
    shutil.copytree(os.path.join(exp, "baseline"), os.path.join(exp, "baseline-copy"))
    other = os.path.join(exp, "other-split")
    shutil.copytree(os.path.join(exp, "baseline"), other)
    info = json.load(open(os.path.join(other, "run.json")))
    info["split_fingerprint"] = "f" * 64
    json.dump(info, open(os.path.join(other, "run.json"), "w"))
    broken = os.path.join(exp, "broken")
    shutil.copytree(os.path.join(exp, "baseline"), broken)
    with open(os.path.join(broken, "model.keras"), "r+b") as f:
        f.truncate(100)
    return runs, exp


def test_report_compares_refuses_and_skips(experiment, tmp_path, capsys):
    runs, exp = experiment
    external = make_dataset_dir(tmp_path / "external", n_real=5, n_fake=5, size=40)
    (tmp_path / "external" / "Fake" / "junk.jpg").write_bytes(b"junk")
    assert report_cli.main(["--runs-dir", runs, "--experiment", "x", "--test-dir", external,
                            "--perturb", "jpeg=50,blur=1.0,resize=0.5"]) == 0
    out_dir = os.path.join(exp, "report")
    metrics = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert set(metrics["models"]) == {"baseline", "baseline-copy", "ensemble"}
    for entry in metrics["models"].values():
        assert {"roc_auc", "accuracy", "eer", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
                "balanced_accuracy", "f1", "average_precision", "roc_auc_ci95"} <= set(entry["test"])
        assert entry["external"]["external"]["images"] == 10  # the set is named after its folder; junk left out
        assert set(entry["perturbed"]) == {"jpeg=50", "blur=1", "resize=0.5"}
        assert entry["costs"]["latency_ms_b1"] > 0 and entry["costs"]["params"] > 0
    # the ensemble of two identical models is that model: the mean of equal probabilities
    base, ens = metrics["models"]["baseline"], metrics["models"]["ensemble"]
    assert ens["hyperparameters"]["members"] == "baseline,baseline-copy"
    assert ens["test"]["roc_auc"] == base["test"]["roc_auc"] and ens["test"]["brier"] == pytest.approx(base["test"]["brier"])
    assert ens["costs"]["params"] == 2 * base["costs"]["params"]
    # identical models: the same predictions, so their difference is exactly noise-free zero
    pair = metrics["pairwise"]["baseline vs baseline-copy"]
    assert pair["auc"]["auc_difference"] == 0 and pair["verdict"] == "within noise"
    skipped = dict(metrics["skipped"])
    assert "another split" in skipped["other-split"] and "truncated" in skipped["broken"]
    md = open(os.path.join(out_dir, "report.md")).read()
    assert "## Runs not reported" in md and "other-split" in md and "![roc](roc.png)" in md
    for png in ("roc.png", "confusion.png", "reliability.png", "mistakes.png", "saliency_baseline.png",
                "saliency_baseline-copy.png"):
        assert os.path.getsize(os.path.join(out_dir, png)) > 1000
    assert "![saliency_baseline](saliency_baseline.png)" in md
    rows = list(csv.reader(open(os.path.join(out_dir, "metrics.csv"))))
    assert rows[0][:3] == ["model", "set", "roc_auc"] and len(rows) == 1 + 3 * (1 + 1 + 3)
    assert sorted(os.listdir(os.path.join(out_dir, "tensorboard", "models"))) == ["baseline", "baseline-copy",
                                                                                   "ensemble"]
    printed = capsys.readouterr()
    assert "baseline" in printed.out and "report:" in printed.out and "tensorboard --logdir" in printed.out
    assert "skipping other-split" in printed.err


def test_bad_arguments(experiment, tmp_path):
    runs, _ = experiment
    with pytest.raises(UserError, match="unknown perturbation"):
        report_cli.main(["--runs-dir", runs, "--experiment", "x", "--perturb", "sharpen=2"])
    with pytest.raises(UserError, match="no finished model named resnet"):
        report_cli.main(["--runs-dir", runs, "--experiment", "x", "--ensemble", "baseline,resnet"])
    with pytest.raises(UserError, match="the set name 'test' is taken"):
        report_cli.main(["--runs-dir", runs, "--experiment", "x", "--test-dir", f"test={tmp_path}"])
    with pytest.raises(UserError, match="no experiment"):
        report_cli.main(["--runs-dir", runs, "--experiment", "nothing-here"])
    proc = subprocess.run([sys.executable, "-m", "compare.report", "--runs-dir", runs, "--experiment", "x",
                           "--test-dir", str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_many_external_sets_one_of_them_fake_only_in_one_table(experiment, tiny_faces, tmp_path, capsys):
    runs, exp = experiment
    both = make_dataset_dir(tmp_path / "photos", n_real=5, n_fake=5, size=40)
    fakes_only = tmp_path / "sd-fakes"
    shutil.copytree(os.path.join(tiny_faces, "Fake"), fakes_only / "Fake")
    swapped = tmp_path / "swapped"  # the training faces with their labels swapped: an AUC of 1 - AUC
    shutil.copytree(os.path.join(tiny_faces, "Real"), swapped / "Fake")
    shutil.copytree(os.path.join(tiny_faces, "Fake"), swapped / "Real")
    assert report_cli.main(["--runs-dir", runs, "--experiment", "x", "--no-timing", "--ensemble", "baseline,baseline-copy",
                            "--test-dir", both, "--test-dir", f"diffusion={fakes_only}",
                            "--test-dir", f"swapped={swapped}"]) == 0
    metrics = json.load(open(os.path.join(exp, "report", "metrics.json")))
    assert metrics["test_dirs"] == {"photos": both, "diffusion": str(fakes_only), "swapped": str(swapped)}
    for name, entry in metrics["models"].items():
        ext = entry["external"]
        assert set(ext) == {"photos", "diffusion", "swapped"}
        assert ext["diffusion"]["images"] == ext["diffusion"]["fake_images"] == len(os.listdir(fakes_only / "Fake"))
        assert ext["diffusion"]["roc_auc"] != ext["diffusion"]["roc_auc"]  # one class: no AUC (nan)...
        assert 0 <= ext["diffusion"]["fake_recall_at_threshold"] <= 1  # ...but the share of its fakes caught
        assert ext["diffusion"]["real_fpr_at_threshold"] != ext["diffusion"]["real_fpr_at_threshold"]
        for m in ext.values():
            assert ("flag" in m) == (m["roc_auc"] < 0.5)
        aucs = [ext["photos"]["roc_auc"], ext["swapped"]["roc_auc"]]
        assert entry["external_mean"]["roc_auc"] == pytest.approx(sum(aucs) / 2)
        assert entry["generalisation_gap"] == pytest.approx(entry["test"]["roc_auc"] - sum(aucs) / 2)
    printed = capsys.readouterr().out
    assert "AUC per external set" in printed and "diffusion" in printed and "swapped" in printed
    md = open(os.path.join(exp, "report", "report.md")).read()
    # one cell per set at a glance: the AUC, or for the fake-only set the share of its fakes caught
    assert "| model | photos | diffusion | swapped | mean AUC | test AUC - mean |" in md
    lines = md.splitlines()
    table = lines[lines.index("| model | photos | diffusion | swapped | mean AUC | test AUC - mean |"):]
    row = next(line for line in table if line.startswith("| baseline | "))
    caught = metrics["models"]["baseline"]["external"]["diffusion"]["fake_recall_at_threshold"]
    assert row.split(" | ")[2] == f"caught {caught:.2f}"
    assert "| baseline | diffusion | nan |" in md  # the folded figures: a fake-only set has no AUC


def test_an_inverted_set_is_flagged_in_words_and_the_ensemble_is_the_mean():
    import numpy as np

    y = np.array([0, 0, 0, 1, 1, 1], np.float32)
    labels = {"test": y, "val": y, "ext:sd": y}
    a = {"test": np.array([.1, .2, .3, .7, .8, .9]), "val": np.array([.1, .2, .3, .7, .8, .9]),
         "ext:sd": np.array([.9, .8, .6, .3, .2, .1])}  # calls the fakes more real than the reals
    b = {k: np.clip(v + 0.05, 0, 1) for k, v in a.items()}
    entry = evaluation.judge(a, labels, 0.5)
    assert entry["external"]["sd"]["roc_auc"] == 0.0
    assert entry["external"]["sd"]["flag"] == "inverted: calls these fakes more real than the reals"
    models = {"a": {"test": {}}, "b": {"test": {}}}
    ens, result = evaluation.ensemble(["a", "b"], {"a": a, "b": b}, labels, models, {"a": None})
    np.testing.assert_allclose(result.p_fake, (a["test"] + b["test"]) / 2)
    assert ens["test"]["brier"] == pytest.approx(float(np.mean(((a["test"] + b["test"]) / 2 - y) ** 2)))


def test_saliency_works_for_any_detector_a_backbone_too():
    import numpy as np

    from classifiers.backbones import build_backbone_detector
    from classifiers.saliency import pick_faces, saliency_maps

    _, model = build_backbone_detector("mobilenetv3small", 32, "none")
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    maps = saliency_maps(model, x, samples=2)
    assert maps.shape == (3, 32, 32) and np.isfinite(maps).all() and 0 <= maps.min() and maps.max() <= 1
    assert (maps.reshape(3, -1).max(axis=1) > 0.3).all()  # every image has somewhere the gradient is strong
    y, p = np.array([0, 0, 0, 1, 1, 1]), np.array([.1, .9, .2, .8, .3, .95])
    assert pick_faces(y, p, 0.5, per_kind=1) == [0, 1, 5, 4]  # real right, real wrong, fake right, fake wrong


def test_predict_writes_a_saliency_figure_per_image(experiment, tiny_faces, tmp_path):
    from classifiers import predict

    runs, exp = experiment
    images = sorted(os.listdir(os.path.join(tiny_faces, "Fake")))[:2]
    out = tmp_path / "why"
    assert predict.main(["--run", os.path.join(exp, "baseline"), "--saliency", str(out)]
                        + [os.path.join(tiny_faces, "Fake", f) for f in images]) == 0
    assert sorted(os.listdir(out)) == sorted(os.path.splitext(f)[0] + ".saliency.png" for f in images)
    twin = tmp_path / "elsewhere"
    twin.mkdir()
    shutil.copy(os.path.join(tiny_faces, "Fake", images[0]), twin / images[0])  # one name, two folders
    out2 = tmp_path / "why2"
    assert predict.main(["--run", os.path.join(exp, "baseline"), "--saliency", str(out2),
                         os.path.join(tiny_faces, "Fake", images[0]), str(twin / images[0])]) == 0
    stem = os.path.splitext(images[0])[0]
    assert sorted(os.listdir(out2)) == [f"{stem}-2.saliency.png", f"{stem}.saliency.png"]


def test_the_report_folds_seeds_into_recipes_and_plans_its_comparisons():
    import numpy as np

    from compare import comparisons as C
    from compare import seeds as S
    from compare.evaluation import TestResult

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20, np.float32)
    aucs = {"dcgan-discriminator-labels50.seed1": .80, "dcgan-discriminator-labels50.seed2": .84,
            "dcgan-scratch-labels50.seed1": .70, "dcgan-scratch-labels50.seed2": .745,
            "resnet-labels50.seed1": .90, "resnet-labels50.seed2": .88, "dcgan-zero-shot": .40}
    models = {n: {"test": {"roc_auc": a, "roc_auc_ci95": [a - .05, a + .05], "average_precision": a, "eer": 1 - a,
                           "tpr_at_fpr_5pct": a / 2, "accuracy_at_threshold": a, "threshold": .5}}
              for n, a in aucs.items()}
    results = {n: TestResult(y, np.clip(y * a + rng.uniform(0, 1 - a, len(y)), 0, 1), models[n]["test"], None)
               for n, a in aucs.items()}
    grouped = S.recipes(aucs)
    assert grouped["resnet-labels50"] == {1: "resnet-labels50.seed1", 2: "resnet-labels50.seed2"}
    assert grouped["dcgan-zero-shot"] == {None: "dcgan-zero-shot"}
    rows = C.recipe_rows(models, grouped)
    assert [r["recipe"] for r in rows][0] == "resnet-labels50" and rows[0]["roc_auc"] == pytest.approx(.89)
    assert rows[0]["roc_auc_sd"] == pytest.approx(np.std([.90, .88], ddof=1)) and rows[0]["roc_auc_ci95"] is None
    zero_shot = next(r for r in rows if r["recipe"] == "dcgan-zero-shot")
    assert zero_shot["roc_auc_sd"] is None and zero_shot["roc_auc_ci95"] == pytest.approx([.35, .45])
    planned = C.planned(models, results, grouped)
    # the discriminator against its control at the same label count first, then every recipe against the best
    assert [(c["a"], c["b"]) for c in planned] == [
        ("dcgan-discriminator-labels50", "dcgan-scratch-labels50"), ("dcgan-discriminator-labels50", "resnet-labels50"),
        ("dcgan-scratch-labels50", "resnet-labels50"), ("dcgan-zero-shot", "resnet-labels50")]
    control = planned[0]
    assert control["difference"] == pytest.approx(.0975) and control["evidence"] == "paired over 2 seeds"
    # two seeds, differences .100 and .095: t(1) = 12.706 times the standard error
    half = 12.706 * np.std([.1, .095], ddof=1) / np.sqrt(2)
    assert control["ci95"] == pytest.approx([.0975 - half, .0975 + half])
    assert control["verdict"].startswith("dcgan-discriminator-labels50 beats")
    # no seeds shared: one run each, the best recipe's lowest seed, paired on the test images
    assert planned[-1]["evidence"].startswith("one run each (dcgan-zero-shot, resnet-labels50.seed1)")
    # where the best recipe is the discriminator, its control is judged once, as its control
    models["resnet-labels50.seed1"]["test"]["roc_auc"] = models["resnet-labels50.seed2"]["test"]["roc_auc"] = .5
    pairs = [(c["a"], c["b"]) for c in C.planned(models, results, grouped)]
    assert pairs[0] == ("dcgan-discriminator-labels50", "dcgan-scratch-labels50")
    assert ("dcgan-scratch-labels50", "dcgan-discriminator-labels50") not in pairs and len(pairs) == len(set(pairs)) == 3


def test_a_search_that_kept_the_baseline_is_not_a_second_row(experiment, capsys):
    runs, exp = experiment
    kept = os.path.join(exp, "hpsearch")
    shutil.copytree(os.path.join(exp, "baseline"), kept)
    info = json.load(open(os.path.join(kept, "run.json")))
    info["search"] = {"kept": "baseline", "kept_from": "baseline", "trials": [{}, {}],
                      "note": "the baseline's configuration won the search"}
    json.dump(info, open(os.path.join(kept, "run.json"), "w"))
    assert report_cli.main(["--runs-dir", runs, "--experiment", "x", "--no-timing", "--no-saliency"]) == 0
    metrics = json.load(open(os.path.join(exp, "report", "metrics.json")))
    assert "hpsearch" not in metrics["models"] and "baseline" in metrics["models"]
    md = open(os.path.join(exp, "report", "report.md")).read()
    assert "- `hpsearch`: the search (2 trials) kept the baseline" in md and "`baseline`'s row is its result" in md

