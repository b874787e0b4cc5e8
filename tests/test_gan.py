import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import epochs_recorded, kill_when
from data.runs import list_runs, read_run
from data.runtime import UserError
from gan import train as gan_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image-size", "16", "--gan-batch-size", "8", "--batch-size", "16", "--head-epochs", "1", "--seed", "5"]


def test_a_few_gan_steps_then_three_detector_runs(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-epochs", "2",
                         "--finetune-epochs", "1"] + TINY) == 0
    gan = read_run(os.path.join(runs, "default", "dcgan"))
    assert gan["kind"] == "gan" and gan["epochs_completed"] == 2
    last = gan["history"][-1]
    assert {"d_loss", "g_loss", "d_acc_real", "d_acc_fake"} <= set(last)
    assert np.isfinite(gan["quality"]["kid"]) and "NOT comparable" in gan["quality"]["kid_note"]
    samples = os.listdir(os.path.join(runs, "default", "dcgan", "samples"))
    assert sorted(samples) == ["epoch_001.png", "epoch_002.png"]
    good, broken = list_runs(runs, "default")
    detectors = {os.path.basename(f): info for f, info in good if info["kind"] == "detector"}
    assert set(detectors) == {"dcgan-discriminator", "dcgan-linear-probe", "dcgan-scratch"} and not broken
    split = json.load(open(os.path.join(runs, "default", "split.json")))["fingerprint"]
    for name, info in detectors.items():
        assert info["split_fingerprint"] == split == gan["split_fingerprint"]
        assert info["image_size"] == 16 and 0 <= info["validation"]["auc"] <= 1
    assert detectors["dcgan-linear-probe"]["hyperparameters"]["trunk_trained"] is False
    assert detectors["dcgan-scratch"]["hyperparameters"]["trunk"] == "random init"


def test_the_gan_trains_on_training_real_images_only(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-epochs", "1", "--stage", "gan"] + TINY)
    info = read_run(os.path.join(runs, "default", "dcgan"))
    split = json.load(open(os.path.join(runs, "default", "split.json")))
    real_train = [f for f in split["files"] if f["split"] == "train" and f["label"] == 0]
    assert info["train_images"] == len(real_train)


def test_checkpoint_holds_both_networks_and_both_optimizers(tmp_path):
    import keras

    from gan.dcgan import DCGAN
    from gan.models import build_discriminator, build_generator

    def make():
        gan = DCGAN(build_generator(16, 8), build_discriminator(16), 8, seed=1)
        gan.compile()
        return gan

    gan = make()
    gan.fit(np.random.default_rng(0).uniform(-1, 1, (16, 16, 16, 3)).astype("float32"), batch_size=8, epochs=1,
            verbose=0)
    path = str(tmp_path / "ckpt.weights.h5")
    gan.save_weights(path)
    fresh = make()
    fresh.load_weights(path)
    for a, b in ((gan.d_optimizer, fresh.d_optimizer), (gan.g_optimizer, fresh.g_optimizer)):
        assert int(b.iterations.numpy()) == int(a.iterations.numpy()) == 2
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(va), keras.ops.convert_to_numpy(vb))
    for va, vb in zip(gan.generator.weights + gan.discriminator.weights, fresh.generator.weights + fresh.discriminator.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(va), keras.ops.convert_to_numpy(vb))


def test_interrupted_gan_resumes_from_its_checkpoint(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "gan.train", "--stage", "gan", "--data-dir", tiny_faces, "--runs-dir", runs] + TINY
    progress = os.path.join(runs, "default", ".dcgan.partial", "progress.json")
    kill_when(cmd + ["--gan-epochs", "200"], lambda: epochs_recorded(progress) >= 2, ROOT)
    assert not os.path.exists(os.path.join(runs, "default", "dcgan"))
    done = epochs_recorded(progress)
    again = subprocess.run(cmd + ["--gan-epochs", str(done + 1)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "dcgan: resuming from epoch" in again.stdout and "both optimizers" in again.stdout
    info = read_run(os.path.join(runs, "default", "dcgan"))
    assert info["epochs_completed"] == done + 1 and info["resumed_from_epoch"] >= 1


def test_finetune_without_a_gan_is_a_clear_error(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="needs a trained GAN"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--stage", "finetune"] + TINY)


def test_image_size_must_suit_the_dcgan(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="power of two"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--image-size", "48"])
