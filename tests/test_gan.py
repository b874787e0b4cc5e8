import json
import os
import subprocess
import sys

import numpy as np
import pytest

import conftest
from conftest import epochs_recorded, kill_when
from data.runs import list_runs, read_run
from data.runtime import UserError
from gan import train as gan_cli
from gan.variants import VARIANTS, Variant, variants_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = conftest.GAN_TINY + ["--precision", "float32"]  # float32: figures recomputed here must match to the last digits
DCGAN_VARIANTS = [v.name for v in variants_of("dcgan")]  # dcgan-discriminator, dcgan-linear-probe, dcgan-scratch


@pytest.mark.end_to_end
def test_a_step_budget_then_detectors_over_seeds_and_their_report(tiny_faces, tmp_path, capsys):
    from compare import report

    runs = str(tmp_path / "runs")
    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "5", "--sample-every", "3",
                         "--finetune-epochs", "1", "--seeds", "2"] + TINY) == 0
    gan = read_run(os.path.join(runs, "default", "dcgan"))
    # 5 steps are rounded up to whole rounds of 3: two rounds, six steps, a grid after each
    assert gan["kind"] == "gan" and gan["steps_completed"] == 6 and gan["stopped_by"] == "steps"
    assert [h["steps"] for h in gan["history"]] == [3, 6]
    assert {"d_loss", "g_loss", "d_acc_real", "d_acc_fake", "kid"} <= set(gan["history"][-1])
    samples = os.listdir(os.path.join(runs, "default", "dcgan", "samples"))
    assert sorted(samples) == ["step_000003.png", "step_000006.png"]
    kit = gan["quality"]["spaces"]["kit"]
    assert kit["floor"][0] < kit["ceiling"][0] and all(np.isfinite(kit["generator"]))
    assert "InceptionV3" in gan["quality"]["inception"]  # none on a test machine: said, not hidden
    assert_quality_measured_on_the_averaged_generator(tiny_faces, runs, gan)
    good, broken = list_runs(runs, "default")
    detectors = {os.path.basename(f): info for f, info in good if info["kind"] == "detector"
                 and os.path.basename(f) not in gan_cli.LABEL_FREE}
    assert set(detectors) == {f"{v}.seed{s}" for v in DCGAN_VARIANTS for s in (5, 6)} and not broken
    assert_label_free_detectors(tiny_faces, runs, gan)
    split = json.load(open(os.path.join(runs, "default", "split.json")))["fingerprint"]
    for name, info in detectors.items():
        assert info["split_fingerprint"] == split == gan["split_fingerprint"]
        assert info["image_size"] == 16 and 0 <= info["validation"]["auc"] <= 1
        assert info["seed"] == int(name.rsplit("seed", 1)[1])
    assert detectors["dcgan-linear-probe.seed5"]["hyperparameters"]["trunk_trained"] is False
    assert detectors["dcgan-scratch.seed6"]["hyperparameters"]["trunk"] == "random init"

    assert report.main(["--runs-dir", runs, "--no-timing"]) == 0
    metrics = json.load(open(os.path.join(runs, "default", "report", "metrics.json")))
    groups, pairs = metrics["seed_groups"], metrics["seed_pairs"]
    members = metrics["models"]["ensemble"]["hyperparameters"]["members"].split(",")
    assert set(members) == set(detectors)  # the label-free scores are judged, not averaged in
    assert set(groups) == set(DCGAN_VARIANTS) and all(g["seeds"] == [5, 6] for g in groups.values())
    auc = {n: m["test"]["roc_auc"] for n, m in metrics["models"].items()}
    d = [auc[f"dcgan-discriminator.seed{s}"] - auc[f"dcgan-scratch.seed{s}"] for s in (5, 6)]
    pair = pairs["dcgan-discriminator vs dcgan-scratch"]
    assert pair["differences"] == pytest.approx(d) and pair["mean"] == pytest.approx(np.mean(d))
    assert groups["dcgan-scratch"]["mean"] == pytest.approx(np.mean([auc["dcgan-scratch.seed5"], auc["dcgan-scratch.seed6"]]))
    text = open(os.path.join(runs, "default", "report", "report.md")).read()
    assert "## Planned comparisons" in text and "| dcgan-discriminator vs dcgan-scratch | " in text
    planned = {(c["a"], c["b"]): c for c in metrics["planned"]}
    assert planned[("dcgan-discriminator", "dcgan-scratch")]["evidence"] == "paired over 2 seeds"
    assert planned[("dcgan-discriminator", "dcgan-scratch")]["difference"] == pytest.approx(np.mean(d))
    assert ("dcgan-discriminator", "dcgan-linear-probe") in planned
    rows = {r["recipe"]: r for r in metrics["recipes"]}  # one row per recipe, its seeds folded into it
    assert rows["dcgan-scratch"]["runs"] == ["dcgan-scratch.seed5", "dcgan-scratch.seed6"] or \
        sorted(rows["dcgan-scratch"]["runs"]) == ["dcgan-scratch.seed5", "dcgan-scratch.seed6"]

    # runs recorded before the typed configuration (three more keys) are still this configuration's: kept
    for name in ("dcgan", "dcgan-scratch.seed5"):
        path = os.path.join(runs, "default", name, "run.json")
        info = json.load(open(path))
        info["config"].update(epochs=1, strategy="none", resize_mode="resize")
        json.dump(info, open(path, "w"))
    capsys.readouterr()
    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "5", "--sample-every", "3",
                         "--finetune-epochs", "1", "--seeds", "2"] + TINY) == 0
    assert capsys.readouterr().out.count("already trained with this configuration") == 9  # 7 + 2 label-free
    # seed 6 trained alone gives what it gave after seed 5 in one process (each run re-seeds before anything)
    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--stage", "finetune", "--finetune-epochs", "1",
                         "--seeds", "1"] + TINY + ["--seed", "6"]) == 0
    for variant in DCGAN_VARIANTS:
        assert read_run(os.path.join(runs, "default", variant))["validation"] == detectors[f"{variant}.seed6"]["validation"]


@pytest.mark.end_to_end
def test_a_new_gan_variant_is_one_entry_trained_paired_with_its_control_and_reported(tiny_faces, tmp_path,
                                                                                     monkeypatch):
    from compare import report
    from compare.bench import learning_curve as LC

    slow = Variant("dcgan-slow", "dcgan", pretrained=True, learning_rate=1e-5, controls=("dcgan-scratch",),
                   what="the discriminator fine-tuned at a tenth of the rate")
    monkeypatch.setitem(VARIANTS, slow.name, slow)  # the one entry
    runs = str(tmp_path / "runs")
    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "2", "--sample-every", "2",
                         "--finetune-epochs", "1", "--seeds", "1"] + TINY) == 0
    info = read_run(os.path.join(runs, "default", "dcgan-slow"))
    assert info["hyperparameters"]["variant"] == "dcgan-slow" and info["hyperparameters"]["trunk_trained"] is True
    assert info["hyperparameters"]["finetune_learning_rate"] == 1e-5 and info["gan"]["created"]
    assert "dcgan-slow" in LC.known_recipes() and ("dcgan-slow", "dcgan-scratch") in LC.pairs()
    assert report.main(["--runs-dir", runs, "--no-timing", "--no-saliency"]) == 0
    metrics = json.load(open(os.path.join(runs, "default", "report", "metrics.json")))
    planned = [(c["a"], c["b"], c["kind"]) for c in metrics["planned"]]
    assert ("dcgan-slow", "dcgan-scratch", "against its control") in planned
    pairs = [frozenset(p[:2]) for p in planned]
    assert len(pairs) == len(set(pairs))  # no pair judged twice (once as control, once against the best)
    assert "| dcgan-slow vs dcgan-scratch | " in open(os.path.join(runs, "default", "report", "report.md")).read()


def assert_quality_measured_on_the_averaged_generator(data_dir, runs, gan):
    from classifiers.runner import prepare
    from classifiers.layers import load_model_safely
    from gan.quality import QualityJudge, sample

    folder = os.path.join(runs, "default", "dcgan")
    ema, raw = (load_model_safely(os.path.join(folder, f)) for f in ("generator.keras", "generator_raw.keras"))
    assert any(not np.allclose(a, b) for a, b in zip(ema.get_weights(), raw.get_weights()))
    cfg = gan_cli.resolve_config(gan_cli.parse_args(["--data-dir", data_dir, "--runs-dir", runs] + TINY))
    data = prepare(cfg, log=lambda *a: None)
    (x, y), (xv, yv) = data.train, data.val
    judge = QualityJudge(runs, "default", x[y == 0], xv[yv == 0], cfg.seed, log=lambda *a: None)
    kid_of = {name: judge.kid_of(sample(g, cfg.latent_dim, seed=cfg.seed + 1))["kit"][0]
              for name, g in (("ema", ema), ("raw", raw))}
    recorded = gan["quality"]["spaces"]["kit"]["generator"][0]
    assert recorded == pytest.approx(kid_of["ema"], rel=1e-4) and recorded != pytest.approx(kid_of["raw"], rel=1e-4)


def assert_label_free_detectors(data_dir, runs, gan):
    """dcgan-zero-shot is sigmoid(-logit) of the discriminator; dcgan-one-class is fit on the training split's
    real faces only; both are ordinary detector runs with a threshold chosen on validation."""
    from classifiers.layers import load_model_safely
    from classifiers.metrics import youden_threshold
    from classifiers.runner import prepare
    from classifiers.heads import fit_gaussian

    exp = os.path.join(runs, "default")
    cfg = gan_cli.resolve_config(gan_cli.parse_args(["--data-dir", data_dir, "--runs-dir", runs] + TINY))
    data = prepare(cfg, log=lambda *a: None)
    (x, y), (xv, yv) = data.train, data.val
    discriminator = load_model_safely(os.path.join(exp, "dcgan", "discriminator.keras"))
    logit = discriminator.predict(xv / 127.5 - 1, verbose=0).reshape(-1)
    for name in gan_cli.LABEL_FREE:
        info = read_run(os.path.join(exp, name))
        assert info["kind"] == "detector" and info["labelled_fakes_seen"] == 0 and info["epochs_completed"] == 0
        assert info["gan"]["created"] == gan["created"] and info["split_fingerprint"] == gan["split_fingerprint"]
        p = load_model_safely(os.path.join(exp, name, "model.keras")).predict(xv, verbose=0).reshape(-1)
        assert info["threshold"] == pytest.approx(youden_threshold(yv, p), abs=1e-6)
        if name == "dcgan-zero-shot":
            assert p == pytest.approx(1 / (1 + np.exp(logit)), abs=1e-3)  # (bfloat16 inside on some CPUs)
    one_class = load_model_safely(os.path.join(exp, "dcgan-one-class", "model.keras"))
    import keras

    features = keras.Model(one_class.input, one_class.get_layer("p_fake").input).predict(x, verbose=0)
    mean, precision, loc_scale = one_class.get_layer("p_fake").get_weights()
    assert mean == pytest.approx(features[y == 0].mean(0), abs=1e-4)  # the real training faces, not all of them
    assert not np.allclose(mean, features.mean(0), atol=1e-4)
    assert precision == pytest.approx(fit_gaussian(features[y == 0])[1].astype("float32"), rel=1e-3, abs=1e-3)


def tiny_gan(policy=(), ema_decay=0.9, size=16, latent=8):
    from gan.dcgan import DCGAN
    from gan.models import build_discriminator, build_generator

    gan = DCGAN(build_generator(size, latent), build_discriminator(size), latent, seed=1, augment=policy,
                ema_decay=ema_decay)
    gan.compile()
    return gan


def test_diffaugment_reaches_reals_and_fakes_in_both_steps():
    import tensorflow as tf

    gan = tiny_gan(policy=("color", "translation", "cutout"))
    seen = []
    original = gan.discriminator_input

    def spy(images):
        out = original(images)
        seen.append((images.numpy(), out.numpy()))
        return out

    gan.discriminator_input = spy
    real = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32"))
    gan.train_step(real)  # eagerly: one discriminator step, one generator step
    assert len(seen) == 2
    for images, augmented in seen:
        assert images.shape[0] == 8 and np.array_equal(images[:4], real.numpy())  # reals, then fakes
        for half in (slice(0, 4), slice(4, 8)):
            per_image = np.abs(augmented[half] - images[half]).reshape(4, -1).max(axis=1)
            assert (per_image > 1e-3).all(), "an image reached D un-augmented"


def test_diffaugment_is_differentiable_down_to_the_generator():
    import tensorflow as tf

    from gan.augment import OPERATIONS, diff_augment

    import keras

    seed = keras.random.SeedGenerator(3)
    x = tf.Variable(np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype("float32"))
    for name in OPERATIONS:
        with tf.GradientTape() as tape:
            y = OPERATIONS[name](x, seed)
            loss = tf.reduce_sum(y * y)
        grad = tape.gradient(loss, x).numpy()
        assert np.isfinite(grad).all() and np.abs(grad).sum() > 0, name
    gan = tiny_gan(policy=tuple(OPERATIONS))
    z = tf.random.normal((4, 8), seed=0)
    with tf.GradientTape() as tape:
        logits = gan.discriminator(diff_augment(gan.generator(z, training=True), seed), training=True)
        loss = tf.reduce_mean(logits)
    grads = tape.gradient(loss, gan.generator.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_cutout_and_translation_do_what_they_say():
    import keras
    import tensorflow as tf

    from gan.augment import cutout, translation

    x = tf.ones((64, 16, 16, 3))
    holes = 1 - cutout(x, keras.random.SeedGenerator(0)).numpy()[..., 0]
    assert ((holes.sum(axis=(1, 2)) > 0) & (holes.sum(axis=(1, 2)) <= 64)).all()  # at most an 8x8 square
    moved = translation(x, keras.random.SeedGenerator(0)).numpy()[..., 0]
    # a shift of at most 2 px brings in at most 2 zero rows and 2 zero columns, and keeps the centre
    assert (moved[:, 2:14, 2:14] == 1).all() and ((moved == 0).sum(axis=(1, 2)) <= 2 * 16 + 2 * 16).all()


def test_the_averaged_generator_follows_the_trained_one_and_draws_the_samples(tmp_path):
    import tensorflow as tf
    from PIL import Image

    from gan.dcgan import SampleGrid, grid, to_uint8

    gan = tiny_gan(ema_decay=0.9)
    before = gan.generator.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, gan.ema_generator.get_weights()))
    gan.train_step(tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")))
    decay = min(0.9, 2 / 11)  # after the first generator step: (1 + t) / (10 + t) with t = 1
    after, ema = gan.generator.get_weights(), gan.ema_generator.get_weights()
    for w0, w1, e in zip(before, after, ema):
        np.testing.assert_allclose(e, decay * w0 + (1 - decay) * w1, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, e) for a, e in zip(after, ema))
    z = np.random.default_rng(2).normal(size=(8, 8)).astype("float32")
    callback = SampleGrid(z, str(tmp_path / "logs"), str(tmp_path / "png"))
    callback.set_model(gan)
    callback.on_epoch_end(0)
    picture = np.asarray(Image.open(tmp_path / "png" / "step_000001.png"))
    np.testing.assert_array_equal(picture, grid(to_uint8(gan.ema_generator(z, training=False))))
    assert not np.array_equal(picture, grid(to_uint8(gan.generator(z, training=False))))


@pytest.mark.end_to_end
def test_a_minute_cap_stops_between_rounds_and_is_never_taken_for_the_whole_gan(tiny_faces, tmp_path, capsys):
    from compare import evaluation, rendering

    runs = str(tmp_path / "runs")
    argv = ["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "30", "--sample-every", "3", "--stage", "gan"]
    assert gan_cli.main(argv + ["--gan-minutes", "0.00001"] + TINY) == 0
    out = capsys.readouterr().out
    assert "dcgan: at " in out and "steps/s on this machine the 30 steps take about" in out  # said after round 1
    assert "cut short by --gan-minutes 1e-05: 3 of the 30 steps asked for" in out
    info = read_run(os.path.join(runs, "default", "dcgan"))
    assert info["stopped_by"] == "minutes" and info["steps_completed"] == 3  # one round, then the budget ran out
    assert info["steps_planned"] == 30
    # the same command keeps it; the whole GAN (no cap) is another GAN, and the refusal says why
    assert gan_cli.main(argv + ["--gan-minutes", "0.00001"] + TINY) == 0
    assert "already trained with this configuration" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"gan_minutes 1e-05 -> 0.0 \(it stopped at step 3 of 30\)"):
        gan_cli.main(argv + ["--gan-minutes", "0"] + TINY)
    manifest = json.load(open(os.path.join(runs, "default", "split.json")))
    [gan] = evaluation.gan_runs(runs, "default", manifest)
    assert (gan["steps"], gan["steps_planned"], gan["stopped_by"]) == (3, 30, "minutes")
    assert "**cut short by --gan-minutes 1e-05: 3 of the 30 steps asked for**" in "\n".join(rendering.gan_markdown([gan]))


@pytest.mark.end_to_end
def test_a_gan_that_reached_its_steps_inside_a_cap_is_the_gan_without_it(tiny_faces, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    argv = ["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "2", "--sample-every", "2", "--stage", "gan"]
    assert gan_cli.main(argv + ["--gan-minutes", "60"] + TINY) == 0
    assert read_run(os.path.join(runs, "default", "dcgan"))["stopped_by"] == "steps"
    assert gan_cli.main(argv + ["--gan-minutes", "0"] + TINY) == 0
    assert "already trained with this configuration" in capsys.readouterr().out


@pytest.mark.end_to_end
def test_the_gan_trains_on_training_real_images_only(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--gan-steps", "1", "--stage", "gan"] + TINY)
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


@pytest.mark.end_to_end
def test_a_gan_interrupted_mid_budget_resumes_and_finishes_it(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "gan.train", "--stage", "gan", "--data-dir", tiny_faces, "--runs-dir", runs,
           "--gan-steps", "60", "--sample-every", "2", "--gan-minutes", "0"] + TINY
    progress = os.path.join(runs, "default", ".dcgan.partial", "progress.json")
    kill_when(cmd, lambda: epochs_recorded(progress) >= 2, ROOT)
    assert not os.path.exists(os.path.join(runs, "default", "dcgan"))
    done = epochs_recorded(progress)
    assert done < 30, "the GAN finished before it could be interrupted"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # the same command, the same budget
    assert again.returncode == 0, again.stderr
    assert "dcgan: resuming from round" in again.stdout and "both optimizers" in again.stdout
    info = read_run(os.path.join(runs, "default", "dcgan"))
    assert info["steps_completed"] == 60 and info["resumed_from_round"] >= 1
    assert [h["steps"] for h in info["history"]] == list(range(2, 61, 2))


def test_finetune_without_a_gan_is_a_clear_error(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="needs a trained GAN"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--stage", "finetune"] + TINY)


def test_an_unknown_diffaugment_operation_is_named(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="unknown operation.*rotate"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--diffaugment", "color,rotate"] + TINY)


def test_image_size_must_suit_the_dcgan(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="power of two"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--image-size", "48"])


def test_inception_weights_are_found_locally_or_their_absence_said(tmp_path, monkeypatch):
    from gan.quality import INCEPTION_FILE, inception_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path, why = inception_weights()
    assert path is None and INCEPTION_FILE in why and "--inception-weights" in why
    assert inception_weights(str(tmp_path / "nowhere.h5"))[1] == f"--inception-weights {tmp_path / 'nowhere.h5'} is not a file"
    cached = tmp_path / "keras" / "models" / INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert inception_weights() == (str(cached), "")


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    from gan.quality import closer, kid

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same, shifted = kid(a, b), kid(a, b + 1.0)
    assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * max(same[1], 1e-3)
    assert closer(0.2, 0.0, 1.0) == pytest.approx(5.0) and closer(-0.1, 0.0, 1.0) == float("inf")


def test_the_linear_probe_can_read_an_intermediate_block():
    from gan.models import build_discriminator, probe_trunk_of

    d = build_discriminator(16)  # blocks: 8x8x32, then 4x4x64
    shapes = {f: probe_trunk_of(d, f).output.shape[-1] for f in ("last", "pooled", "block1", "block2")}
    assert shapes == {"last": 4 * 4 * 64, "pooled": 32 + 64, "block1": 8 * 8 * 32, "block2": 4 * 4 * 64}
    with pytest.raises(ValueError, match="blocks 1 to 2"):
        probe_trunk_of(d, "block3")
    with pytest.raises(SystemExit):
        gan_cli.parse_args(["--probe-features", "middle"])


@pytest.mark.end_to_end
def test_a_resnet_discriminator_gan_resumes_then_is_fine_tuned_with_the_resnet_recipe(tiny_faces, tmp_path):
    from classifiers.layers import load_model_safely
    from classifiers.models import build_resnet
    from classifiers.registry import RESNET

    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "gan.train", "--stage", "gan", "--data-dir", tiny_faces, "--runs-dir", runs,
           "--discriminator", "resnet", "--gan-steps", "40", "--sample-every", "4", "--gan-minutes", "0"] + TINY
    progress = os.path.join(runs, "default", ".dcgan-resnet.partial", "progress.json")
    kill_when(cmd, lambda: epochs_recorded(progress) >= 2, ROOT)
    assert not os.path.exists(os.path.join(runs, "default", "dcgan-resnet"))
    assert epochs_recorded(progress) < 10, "the GAN finished before it could be interrupted"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "dcgan-resnet: resuming from round" in again.stdout
    gan = read_run(os.path.join(runs, "default", "dcgan-resnet"))
    assert gan["steps_completed"] == 40 and gan["resumed_from_round"] >= 1
    assert gan["config"]["discriminator"] == "resnet" and gan["config"]["r1_gamma"] > 0
    assert all(np.isfinite(h["r1"]) and h["r1"] > 0 for h in gan["history"])  # its step came in every round of 4

    assert gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--discriminator", "resnet", "--stage",
                         "finetune", "--finetune-epochs", "1", "--seeds", "1"] + TINY) == 0
    exp = os.path.join(runs, "default")
    assert {"dcgan-resnet-zero-shot", "dcgan-resnet-one-class"} <= set(os.listdir(exp))
    same_network = build_resnet(16, RESNET["widths"], RESNET["blocks"], RESNET["dropout"]).count_params()
    for role in ("discriminator", "scratch"):
        info = read_run(os.path.join(exp, f"dcgan-resnet-{role}"))
        hp = info["hyperparameters"]
        assert (hp["learning_rate"], hp["mixup"], hp["augment"]) == (RESNET["learning_rate"], RESNET["mixup"], ["flip"])
        assert hp["trunk"] == ("GAN discriminator" if role == "discriminator" else "random init")
        assert load_model_safely(os.path.join(exp, f"dcgan-resnet-{role}", "model.keras")).count_params() == same_network
    assert read_run(os.path.join(exp, "dcgan-resnet-discriminator"))["gan"]["created"] == gan["created"]
    assert not os.path.exists(os.path.join(exp, "dcgan"))  # the default GAN's folder is another one


def test_the_r1_penalty_is_the_squared_gradient_on_the_real_faces_in_a_step_of_its_own():
    import keras
    import tensorflow as tf

    from gan.dcgan import DCGAN, R1_EVERY
    from gan.models import build_discriminator, build_generator

    gan = DCGAN(build_generator(16, 8), build_discriminator(16, kind="resnet"), 8, seed=1, r1_gamma=0.5)
    gan.compile()
    real = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32"))
    fake = gan.generator(keras.random.normal((4, 8), seed=gan.seed_generator), training=True)
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(gan.discriminator(tf.concat([real, fake], 0), training=True)[:4])
    expected = float(tf.reduce_mean(tf.reduce_sum(tf.square(tape.gradient(total, real)), axis=[1, 2, 3])))
    before = gan.discriminator.get_weights()
    assert expected > 0 and float(gan.r1_step(real, fake)) == pytest.approx(expected, rel=1e-4)
    assert int(gan.d_optimizer.iterations.numpy()) == 1  # its own optimizer step
    assert any(not np.allclose(a, b) for a, b in zip(before, gan.discriminator.get_weights()))

    # lazy: over 8 steps, the penalty's step follows the 1st and the 5th discriminator steps only
    gan = DCGAN(build_generator(16, 8), build_discriminator(16, kind="resnet"), 8, seed=1, r1_gamma=0.5)
    gan.compile()
    gan.fit(np.random.default_rng(0).uniform(-1, 1, (32, 16, 16, 3)).astype("float32"), batch_size=4, epochs=1,
            verbose=0)
    assert int(gan.d_optimizer.iterations.numpy()) == 8 + 8 // R1_EVERY and gan.trackers["r1"].count == 2
    assert "r1" not in tiny_gan().trackers  # no penalty, no figure


def test_a_negative_r1_weight_is_refused(tiny_faces, tmp_path):
    with pytest.raises(UserError, match="--r1-gamma"):
        gan_cli.main(["--data-dir", tiny_faces, "--runs-dir", str(tmp_path), "--r1-gamma", "-1"] + TINY)


def test_the_quick_preset_names_steps_so_every_machine_trains_the_same_gan():
    cfg = gan_cli.resolve_config(gan_cli.parse_args([]))
    assert cfg.preset == "quick" and cfg.gan_minutes == 0 and cfg.gan_steps == 5500
    assert cfg.gan_steps % cfg.sample_every == 0  # whole rounds: the step count is reached exactly
    capped = gan_cli.resolve_config(gan_cli.parse_args(["--gan-minutes", "15"]))
    assert capped.gan_minutes == 15 and capped.gan_steps == cfg.gan_steps  # a cap asked for, on the same GAN
