"""Few-shot adaptation of a finished detector to a new family (classifiers.adapt: a head on frozen features, a
novelty score from reals, the fine-tuning recipe) and its curve in the report."""
import hashlib
import json
import os

import numpy as np
import pytest

from classifiers import adapt
import conftest
from conftest import faces_and_family
from data.split import balanced_subset
from data.runs import read_run
from data.runtime import UserError, run_main

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

TINY = [*conftest.TINY, "--epochs", "1", "--precision", "float32", "--image-size", "32"]  # 32: the shots need room


def tree_digest(folder):
    """Every file below folder with its bytes and modification time: what 'never touched' means."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = (hashlib.sha256(open(path, "rb").read()).hexdigest(),
                                                  os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A baseline trained one epoch on the 32 px synthetic faces, and a folder of the other family."""
    from classifiers import train

    root = tmp_path_factory.mktemp("adapt")
    faces, family = faces_and_family(root)
    runs = str(root / "runs")
    assert train.main(["--model", "baseline", "--data-dir", faces, "--runs-dir", runs] + TINY) == 0
    return {"run": os.path.join(runs, "default", "baseline"), "family": family, "faces": faces, "runs": runs,
            "exp": os.path.join(runs, "default")}


def run_adapt(source, *extra):
    return adapt.main(["--run", source["run"], "--data-dir", source["family"], "--epochs", "1",
                       "--precision", "float32"] + list(extra))


def test_an_adapted_run_records_both_aucs_in_its_own_folder_and_never_touches_the_source(source, capsys):
    before = tree_digest(source["run"])
    assert run_adapt(source, "--shots", "3") == 0
    assert tree_digest(source["run"]) == before
    family_dir = os.path.join(source["exp"], "adapted", "sharp")
    folder = os.path.join(family_dir, "baseline-head-k3.seed1337")
    info = read_run(folder)
    a = info["adaptation"]
    assert a["shots"] == 3 and a["family"] == "sharp" and a["method"] == "head" and a["recipe"] == "head"
    labels = {f["path"]: (f["label"], f["split"]) for f in json.load(open(os.path.join(folder, "split.json")))["files"]}
    assert sorted(labels[p] for p in a["shot_files"]) == [(0, "train")] * 3 + [(1, "train")] * 3
    assert set(a["before"]) == set(a["after"]) == {"family", "source"}
    assert all(0 <= v <= 1 for v in list(a["before"].values()) + list(a["after"].values()))
    assert a["source_split_fingerprint"] == read_run(source["run"])["split_fingerprint"]
    # the new family's split is its own, made by the kit and recorded, and the run says it used it
    family_split = json.load(open(os.path.join(family_dir, "split.json")))
    assert family_split["data_dir"] == os.path.abspath(source["family"])
    assert info["split_fingerprint"] == family_split["fingerprint"] != a["source_split_fingerprint"]
    assert json.load(open(os.path.join(folder, "split.json")))["fingerprint"] == family_split["fingerprint"]
    # it is a detector like any other: it loads in safe mode and its threshold came from validation
    from classifiers.predict import load_detector

    model, _ = load_detector(folder)
    assert model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 1)
    assert 0 < info["threshold"] <= 1 and info["validation"]["images"] > 0

    # the report has the curve: its table, its figure, the same numbers as the record
    from compare import report

    assert report.main(["--runs-dir", source["runs"], "--no-timing", "--no-saliency"]) == 0
    metrics = json.load(open(os.path.join(source["exp"], "report", "metrics.json")))
    rows = {(r["source"], r["shots"]): r for r in metrics["adaptation"]}
    assert rows[("baseline head", 3)]["family_auc"] == pytest.approx(a["after"]["family"])
    assert rows[("baseline head", 0)]["source_auc"] == pytest.approx(a["before"]["source"])
    assert "baseline-head-k3.seed1337" not in metrics["models"]  # judged in its own table, not as a model of the split
    text = open(os.path.join(source["exp"], "report", "report.md")).read()
    assert "## Adapted to new families" in text
    row = next(line for line in text.splitlines() if line.startswith("| sharp | baseline head |"))
    assert f"{a['after']['family']:.3f} (" in row  # one line per source recipe, one column per K; one seed: no spread
    assert os.path.exists(os.path.join(source["exp"], "report", "adaptation.png"))


def test_the_curve_trains_only_what_is_missing(source, capsys):
    assert run_adapt(source, "--shots", "3") == 0
    model = os.path.join(source["exp"], "adapted", "sharp", "baseline-head-k3.seed1337", "model.keras")
    stamp = os.stat(model).st_mtime_ns
    capsys.readouterr()
    assert run_adapt(source, "--shots", "2", "3") == 0
    out = capsys.readouterr().out
    assert "baseline-head-k3.seed1337: already trained with this configuration" in out
    assert "baseline-head-k2.seed1337: validation AUC" in out and os.stat(model).st_mtime_ns == stamp
    assert "before" in out and "         2     1" in out  # the curve's table, one line per K


def test_shots_are_exactly_k_per_class_deterministic_per_seed_and_nested():
    files = [{"path": f"{c}/{i}.jpg", "sha256": hashlib.sha256(f"{c}{i}".encode()).hexdigest(), "label": label,
              "split": split} for c, label in (("Real", 0), ("Fake", 1)) for i in range(30)
             for split in [("train", "val", "test")[i % 3]]]
    manifest = {"files": files}
    five = balanced_subset(manifest, "train", 5, seed=1, what="x")
    assert [f["label"] for f in five].count(0) == 5 and [f["label"] for f in five].count(1) == 5
    assert all(f["split"] == "train" for f in five)
    assert five == balanced_subset(manifest, "train", 5, seed=1, what="x")
    assert five != balanced_subset(manifest, "train", 5, seed=2, what="x")
    eight = balanced_subset(manifest, "train", 8, seed=1, what="x")
    assert {f["path"] for f in five} <= {f["path"] for f in eight}
    with pytest.raises(UserError, match="has 10 real and 10 fake images; 11 of each are needed"):
        balanced_subset(manifest, "train", 11, seed=1, what="x")


def test_bad_sources_and_families_get_one_line(source, tmp_path, capsys):
    from conftest import make_dataset_dir

    adapt.family_split(source["family"], os.path.join(source["exp"], "adapted"), "sharp",
                       adapt.source_run(source["run"])[1])  # the family "sharp" is split from source["family"]
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    one_class = tmp_path / "fakes-only"
    make_dataset_dir(str(one_class), n_real=0, n_fake=6)
    cases = [
        (["--run", str(empty), "--data-dir", source["family"]], "not a finished run"),
        (["--run", source["run"], "--data-dir", str(one_class)], "has no real class folder"),
        (["--run", source["run"], "--data-dir", source["family"], "--shots", "500"], "500 of each are needed"),
        (["--run", source["run"], "--data-dir", source["faces"], "--family", "sharp"], "name this one with --family"),
        (["--run", source["run"], "--data-dir", source["faces"], "--family", "same"],
         "of the source experiment's data"),  # the source's own faces: it would test on what it trained on
    ]
    for argv, expected in cases:
        assert run_main(lambda: adapt.main(argv + ["--precision", "float32"])) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert not os.path.exists(os.path.join(source["exp"], "adapted", "same", "split.json"))


def test_an_adaptation_killed_half_way_leaves_nothing_finished_and_resumes(source):
    import subprocess
    import sys

    from conftest import epochs_recorded, kill_when

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "classifiers.adapt", "--run", source["run"], "--data-dir", source["family"],
           "--family", "killed", "--shots", "2", "--method", "finetune", "--epochs", "30", "--precision", "float32"]
    family_dir = os.path.join(source["exp"], "adapted", "killed")
    name = "baseline-finetune-k2.seed1337"
    kill_when(cmd, lambda: epochs_recorded(os.path.join(family_dir, f".{name}.partial", "progress.json")) >= 2, root)
    assert not os.path.exists(os.path.join(family_dir, name)), "a killed run must not look finished"
    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{name}: resuming from epoch" in again.stdout
    info = read_run(os.path.join(family_dir, name))
    assert info["epochs_completed"] == 30 and info["resumed_from_epoch"] >= 1


def test_a_head_reads_frozen_features_the_source_weights_stay_byte_for_byte(source):
    from classifiers.layers import load_model_safely

    assert run_adapt(source, "--shots", "3") == 0
    adapted = load_model_safely(os.path.join(source["exp"], "adapted", "sharp", "baseline-head-k3.seed1337",
                                             "model.keras"))
    original = load_model_safely(os.path.join(source["run"], "model.keras"))
    extractor = adapted.get_layer("source_features")
    kept = [w.tobytes() for w in extractor.get_weights()]
    assert kept and kept == [w.tobytes() for w in original.get_weights()[:-2]]  # all but the original's last layer
    assert not any(w.trainable for w in adapted.weights)
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert extractor.predict(x, verbose=0) == pytest.approx(
        adapt.heads.detector_features(original).predict(x, verbose=0), abs=1e-6)


def test_a_strong_ridge_gives_back_the_source_and_a_weak_one_learns_the_shots():
    from classifiers import heads
    from classifiers.metrics import roc_auc

    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 40)
    x = rng.normal(size=(80, 30))
    x[:, 0] += 3 * y  # the shots are told apart by feature 0 only
    source_head = np.zeros(30)
    source_head[1] = 1.0  # the source reads feature 1
    fitted = heads.fit_heads(x, y, np.ones(80), prior=source_head, l2_grid=(1e-6, 1e4))
    weak, strong = fitted[1e-6], fitted[1e4]
    source_logits = x @ source_head
    assert np.corrcoef(heads.head_logits(x, strong), source_logits)[0, 1] > 0.999
    assert roc_auc(y, heads.head_logits(x, weak)) > 0.97 > roc_auc(y, source_logits) + 0.2
    # more features than faces: solved in the faces' span, the same separation
    wide = np.hstack([x, rng.normal(size=(80, 500))])
    head = heads.fit_heads(wide, y, np.ones(80), l2_grid=(1e-4,))[1e-4]
    assert roc_auc(y, heads.head_logits(wide, head)) > 0.97
    # more faces than HEAD_COMPONENTS: their leading directions, orthonormal, the strongest variation first
    many = rng.normal(size=(heads.HEAD_COMPONENTS + 88, heads.HEAD_COMPONENTS + 100))
    many[:, 3] *= 50
    directions = heads.leading_directions(many, heads.HEAD_COMPONENTS)
    assert directions.shape == (many.shape[1], heads.HEAD_COMPONENTS)
    assert directions.T @ directions == pytest.approx(np.eye(heads.HEAD_COMPONENTS), abs=1e-6)
    assert abs(directions[3, 0]) > 0.99


def test_the_replayed_head_keeps_the_original_test_auc_within_the_stated_drop(source):
    assert run_adapt(source, "--shots", "5", "--family", "sharp5") == 0
    a = read_run(os.path.join(source["exp"], "adapted", "sharp5", "baseline-head-k5.seed1337"))["adaptation"]
    assert a["after"]["source"] >= a["before"]["source"] - adapt.MAX_ORIGINAL_DROP
    kept = [r for r in a["validation_by_l2"] if r["l2"] == a["l2"]][0]
    assert kept["source_val_auc"] >= max(r["source_val_auc"] for r in a["validation_by_l2"]) - 0.011


def test_a_novelty_score_is_fit_on_reals_only_and_never_reads_a_fake(source, monkeypatch):
    decoded = []
    real_decode = adapt.decode

    def watched(manifest, files, size, mode, aligner=None):
        decoded.extend(f["label"] for f in files)
        return real_decode(manifest, files, size, mode, aligner)

    monkeypatch.setattr(adapt, "decode", watched)
    assert run_adapt(source, "--shots", "8", "--method", "novelty") == 0
    info = read_run(os.path.join(source["exp"], "adapted", "sharp", "baseline-novelty-k8.seed1337"))
    assert decoded == [0] * 8  # the eight reals it was fit on, and nothing else was decoded for it
    labels = {f["path"]: f["label"] for f in json.load(open(os.path.join(source["exp"], "adapted", "sharp",
                                                                          "split.json")))["files"]}
    assert [labels[p] for p in info["adaptation"]["shot_files"]] == [0] * 8
    assert 0 < info["threshold"] < 1 and info["adaptation"]["threshold_from"] == "reals it was fit on"
    decoded.clear()
    assert run_adapt(source, "--shots", "all", "--method", "novelty") == 0  # every real of the training side
    info = read_run(os.path.join(source["exp"], "adapted", "sharp", "baseline-novelty-kall.seed1337"))
    assert decoded == [0] * len(info["adaptation"]["shot_files"]) and len(decoded) > 8


def gan_run_of(source, folder, fingerprint=None):
    """A GAN run folder as gan.train leaves it, with an untrained 32 px discriminator: what a head reads."""
    from gan.models import build_discriminator, build_generator

    os.makedirs(folder)
    build_discriminator(32).save(os.path.join(folder, "discriminator.keras"))
    build_generator(32).save(os.path.join(folder, "generator.keras"))
    info = read_run(source["run"])
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"model": "dcgan", "kind": "gan", "created": "now", "image_size": 32,
                   "split_fingerprint": fingerprint or info["split_fingerprint"]}, f)
    return str(folder)


def test_a_head_on_the_gan_discriminator_and_the_source_together(source, tmp_path):
    gan = gan_run_of(source, tmp_path / "dcgan")
    assert run_adapt(source, "--shots", "3", "--features", "both", "--gan", gan, "--gan-block", "2") == 0
    folder = os.path.join(source["exp"], "adapted", "sharp", "baseline-head-both2-k3.seed1337")
    a = read_run(folder)["adaptation"]
    assert a["features"] == "both" and a["gan"] == gan
    from classifiers.layers import load_model_safely

    model = load_model_safely(os.path.join(folder, "model.keras"))
    assert {"source_features", "gan_features"} <= {layer.name for layer in model.layers}
    # block 2 of the 32 px discriminator has 64 channels: their means and spreads beside the source's features
    assert model.get_layer("p_fake").get_weights()[0].shape[0] == (
        model.get_layer("source_features").output.shape[-1] + 2 * 64)


def test_bad_gan_runs_and_real_only_scores_get_one_line(source, tmp_path, capsys):
    from conftest import make_dataset_dir

    other_split = gan_run_of(source, tmp_path / "other", fingerprint="0123456789abcdef")
    headless = gan_run_of(source, tmp_path / "headless")
    os.remove(os.path.join(headless, "discriminator.keras"))
    fakes_only = tmp_path / "fakes-only"
    make_dataset_dir(str(fakes_only), n_real=0, n_fake=6)
    base = ["--run", source["run"], "--data-dir", source["family"], "--shots", "3"]
    cases = [
        (base + ["--features", "gan", "--gan", other_split], "trained on another split"),
        (base + ["--features", "gan", "--gan", headless], "no discriminator.keras"),
        (base + ["--features", "gan", "--gan", source["run"]], "a detector run without a discriminator.keras"),
        (base + ["--features", "both", "--gan", other_split.replace("other", "missing")], "not a finished run"),
        (["--run", source["run"], "--data-dir", str(fakes_only), "--method", "novelty"], "has no real class folder"),
        (base[:-1] + ["500", "--method", "novelty"], "the family's train split has"),
    ]
    for argv, expected in cases:
        assert run_main(lambda: adapt.main(argv + ["--precision", "float32"])) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (argv, err)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    """A baseline trained on 150 synthetic faces per class at 32 px (its default epochs), and the zoomed-reals
    family, which it sees inverted: its reals carry a faint trace of the source's generator, its fakes are
    smoother than any camera here."""
    from classifiers import train
    from data.synthetic import generate

    root = tmp_path_factory.mktemp("inverted")
    faces = generate(str(root / "faces"), images_per_class=150, size=32)
    family = generate(str(root / "zoomed"), images_per_class=150, size=32, seed=4, family="zoomed-reals")
    runs = str(root / "runs")
    assert train.main(["--model", "baseline", "--data-dir", faces, "--runs-dir", runs, "--image-size", "32",
                       "--batch-size", "16", "--precision", "float32"]) == 0
    return {"run": os.path.join(runs, "default", "baseline"), "family": family, "root": root,
            "family_dir": os.path.join(runs, "default", "adapted")}


def adapt_inverted(inverted, *extra, data_dir=None):
    return adapt.main(["--run", inverted["run"], "--data-dir", data_dir or inverted["family"], "--precision",
                       "float32", *extra])


def test_two_heads_turn_round_a_family_the_source_sees_inverted_and_keep_the_source_byte_for_byte(inverted):
    from classifiers.layers import load_model_safely

    assert adapt_inverted(inverted, "--shots", "all") == 0
    folder = os.path.join(inverted["family_dir"], "zoomed", "baseline-head-kall.seed1337")
    info = read_run(folder)
    a = info["adaptation"]
    assert a["before"]["family"] < 0.45  # the source sees the family inverted ...
    assert a["head"] == "two heads" and "replayed head" in a["why"]  # ... validation chose the two heads, and said why
    # ... and the adapted model does not (0.63 with oneDNN's AVX2 float32 kernels, 0.8 and more with AVX512's)
    assert a["after"]["family"] > 0.6 and a["adapted"]
    assert a["after"]["source"] >= a["before"]["source"] - adapt.MAX_ORIGINAL_DROP
    assert a["newly_accused"] <= 0.05 and info["threshold"] == 0.5  # fake where either head fires
    # the source's features and its own last layer are in the model unchanged, byte for byte, and frozen
    adapted = load_model_safely(os.path.join(folder, "model.keras"))
    original = load_model_safely(os.path.join(inverted["run"], "model.keras"))
    kept = [w.tobytes() for w in adapted.get_layer("source_features").get_weights()]
    kept += [w.tobytes() for w in adapted.get_layer("source_head").get_weights()]
    assert kept == [w.tobytes() for w in original.get_weights()]
    assert not any(w.trainable for w in adapted.weights)
    # where the family head is quiet the verdict is the source's: the model's rule, recomputed by hand
    x = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3)).astype(np.float32)
    source_logits = adapt.heads.logit(original.predict(x, verbose=0).reshape(-1))
    family_logits = adapted.get_layer("family_head")(adapted.get_layer("source_features")(x)).numpy().reshape(-1)
    rule = adapted.get_layer("p_fake").get_weights()[0]
    expected = 1 / (1 + np.exp(-adapt.heads.either_logits(source_logits, family_logits, rule)))
    assert adapted.predict(x, verbose=0).reshape(-1) == pytest.approx(expected, abs=1e-4)


def test_an_adaptation_that_learns_nothing_says_so_in_one_line_and_the_report_flags_it(inverted, capsys):
    import random
    import shutil

    from data.synthetic import generate

    # a family's faces with their labels drawn at random (more of them than the others: a validation side
    # large enough that chance stays well under the bar)
    family = generate(str(inverted["root"] / "to-shuffle"), images_per_class=400, size=32, seed=6,
                      family="zoomed-reals")
    shuffled = inverted["root"] / "shuffled"
    files = sorted(os.path.join(family, c, f) for c in ("Real", "Fake") for f in os.listdir(os.path.join(family, c)))
    random.Random(0).shuffle(files)
    for i, path in enumerate(files):
        os.makedirs(shuffled / ("Real", "Fake")[i % 2], exist_ok=True)
        shutil.copy(path, shuffled / ("Real", "Fake")[i % 2] / f"{i:04d}.jpg")
    capsys.readouterr()
    assert adapt_inverted(inverted, "--shots", "25", data_dir=str(shuffled)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "not adapted" in line]
    assert len(lines) == 1 and lines[0].startswith("baseline-head-k25.seed1337: not adapted: its validation AUC")
    a = read_run(os.path.join(inverted["family_dir"], "shuffled", "baseline-head-k25.seed1337"))["adaptation"]
    assert not a["adapted"] and (a["family_val_auc"] < adapt.FAILED_BELOW
                                 or a["family_val_auc"] < a["family_val_auc_before"])
    # kept, it is said again; the report flags its row
    assert adapt_inverted(inverted, "--shots", "25", data_dir=str(shuffled)) == 0
    assert "baseline-head-k25.seed1337: not adapted" in capsys.readouterr().out
    from compare import adaptation

    rows = adaptation.summary(adaptation.collect(os.path.dirname(inverted["family_dir"]),
                                                 read_run(inverted["run"])["split_fingerprint"]))
    assert "**not adapted**" in "\n".join(adaptation.markdown(rows))
    assert [r["not_adapted"] for r in rows if r["family"] == "shuffled" and r["shots"]] == [1]
