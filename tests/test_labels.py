"""--labels: detectors (and GAN stage 2) trained on part of the labelled training split."""
import argparse
import json
import os

import numpy as np
import pytest

from classifiers import train as train_cli
from data.runs import read_run
from data.runtime import label_count, run_main
from gan.variants import variants_of
import conftest

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

TINY = conftest.TINY + ["--batch-size", "8", "--epochs", "1", "--seed", "3", "--precision", "float32"]  # 8: few labels


def test_label_counts_parse_or_say_what_is_wrong():
    assert label_count("100") == "100" and label_count("0.25") == "0.25" and label_count("all") == "all"
    for bad in ("0", "-3", "1.5", "many", "1.0e9x"):
        with pytest.raises(argparse.ArgumentTypeError):
            label_count(bad)


def test_a_label_subset_is_balanced_nested_per_seed_and_leaves_validation_alone(tiny_faces, tmp_path):
    from classifiers.config import DetectorConfig
    from classifiers.runner import labelled_subset, prepare

    cfg = DetectorConfig.from_preset(data_dir=tiny_faces, runs_dir=str(tmp_path / "runs"), image_size=16)
    data = prepare(cfg, log=lambda line: None)
    small, large = (labelled_subset(data, n, seed=1, log=lambda line: None) for n in ("6", "12"))
    assert sorted(small.train[1].tolist()) == [0] * 3 + [1] * 3 and len(large.train[1]) == 12
    assert set(small.train_paths) <= set(large.train_paths)
    assert small.train_paths == labelled_subset(data, "6", seed=1, log=lambda line: None).train_paths
    assert small.train_paths != labelled_subset(data, "6", seed=2, log=lambda line: None).train_paths
    assert small.val[0] is data.val[0] and small.manifest is data.manifest
    assert labelled_subset(data, "all", seed=1, log=lambda line: None) is data
    by_path = dict(zip(data.train_paths, data.train[0]))
    assert all(np.array_equal(by_path[p], x) for p, x in zip(small.train_paths, small.train[0]))
    assert len(labelled_subset(data, "0.5", seed=1, log=lambda line: None).train[1]) == 2 * round(
        0.5 * len(data.train[1]) / 2)


def test_a_run_on_part_of_the_labels_is_its_own_run(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    common = ["--model", "baseline", "--data-dir", tiny_faces, "--runs-dir", runs] + TINY
    assert train_cli.main(common + ["--labels", "10"]) == 0
    info = read_run(os.path.join(runs, "default", "baseline-labels10.seed3"))
    assert info["config"]["labels"] == "10" and info["train_images"] == 10
    counts = json.load(open(os.path.join(runs, "default", "split.json")))["counts"]["val"]
    assert info["validation"]["images"] == counts["real"] + counts["fake"]  # all of them, whatever the label budget
    assert run_main(lambda: train_cli.main(common + ["--labels", "5000"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels 5000" in err[0] and "2500 of each are needed" in err[0]
    assert run_main(lambda: train_cli.main(common + ["--labels", "1"])) == 2
    assert "less than one labelled image per class" in capsys.readouterr().err


def test_gan_stage_two_on_few_labels_while_the_gan_sees_every_real_face(tiny_faces, tmp_path):
    from gan import train as gan_cli

    runs = str(tmp_path / "runs")
    argv = ["--data-dir", tiny_faces, "--runs-dir", runs] + conftest.GAN_TINY + [
        "--batch-size", "8", "--finetune-epochs", "1", "--gan-steps", "2", "--sample-every", "2", "--seeds", "1",
        "--precision", "float32", "--labels", "8"]
    assert gan_cli.main(argv) == 0
    gan = read_run(os.path.join(runs, "default", "dcgan"))
    for variant in variants_of("dcgan"):
        info = read_run(os.path.join(runs, "default", f"{variant.name}-labels8.seed5"))
        assert info["train_images"] == 8 and info["config"]["labels"] == "8"
    assert gan["train_images"] > 8  # stage 1: every real training face
