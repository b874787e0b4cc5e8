"""classifiers.export: a finished detector (supervised, mixed precision, adapted, label-free) as a SavedModel
and a TFLite model that load with TensorFlow alone and give classifiers.predict's probabilities."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from classifiers import export
from classifiers.predict import collect, load_detector, predict_files
import conftest
from conftest import faces_and_family, reduced_precision
from data.pipeline import fit_square
from data.runtime import UserError, run_main
from data.scan import read_rgb

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)
TINY = conftest.TINY + ["--precision", "float32"]

# Run with TensorFlow and numpy only: the kit's packages are made unimportable, so a model that needed them
# (a custom layer's code, a preprocessing step) fails here.
STANDALONE = """
import json, sys
for name in ("data", "classifiers", "gan", "compare", "keras_tuner"):
    sys.modules[name] = None
import numpy as np
import tensorflow as tf

x = np.load(sys.argv[1])
loaded = tf.saved_model.load(sys.argv[2])
serve = loaded.serve(tf.constant(x))["p_fake"].numpy()
default = loaded.signatures["serving_default"](faces=tf.constant(x))["p_fake"].numpy()
interpreter = tf.lite.Interpreter(model_path=sys.argv[3])
given = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(given["index"], x.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(given["index"], x)
interpreter.invoke()
lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
print(json.dumps({"serve": serve.tolist(), "default": default.tolist(), "tflite": lite.tolist()}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished detectors of every kind, trained a step or two on 16 px synthetic faces."""
    from classifiers import adapt, train
    from gan import train as gan_train

    root = tmp_path_factory.mktemp("export")
    faces, family = faces_and_family(root)
    runs = str(root / "runs")
    common = ["--data-dir", faces, "--runs-dir", runs, "--epochs", "1"]
    assert train.main(["--model", "baseline"] + common + TINY) == 0
    assert train.main(["--model", "baseline", "--experiment", "mixed"] + common + TINY[:-1] + [reduced_precision()]) == 0
    assert gan_train.main(["--data-dir", faces, "--runs-dir", runs, "--gan-steps", "2", "--sample-every", "2",
                           "--gan-batch-size", "8", "--finetune-epochs", "1", "--head-epochs", "1", "--seeds", "1",
                           "--gan-minutes", "0"] + TINY) == 0
    exp = os.path.join(runs, "default")
    assert adapt.main(["--run", os.path.join(exp, "baseline"), "--data-dir", family, "--shots", "3", "--epochs", "1",
                       "--precision", "float32"]) == 0
    assert adapt.main(["--run", os.path.join(exp, "baseline"), "--data-dir", family, "--shots", "3", "--head", "two",
                       "--precision", "float32"]) == 0  # the source's head beside a family head: EitherFires
    return {"faces": faces, "exp": exp, "runs": runs,
            "baseline": os.path.join(exp, "baseline"), "mixed": os.path.join(runs, "mixed", "baseline"),
            "adapted": os.path.join(exp, "adapted", "sharp", "baseline-head-k3.seed1337"),
            "two-heads": os.path.join(exp, "adapted", "sharp", "baseline-head-two-k3.seed1337"),
            "one-class": os.path.join(exp, "dcgan-one-class"), "zero-shot": os.path.join(exp, "dcgan-zero-shot"),
            "fine-tuned": os.path.join(exp, "dcgan-discriminator")}


@pytest.mark.parametrize("kind", ["baseline", "mixed", "adapted", "two-heads", "one-class", "zero-shot", "fine-tuned"])
def test_an_exported_detector_gives_predicts_probabilities_without_the_kit(runs, kind, tmp_path):
    run = runs[kind]
    out = str(tmp_path / "out")
    saved, saved_meta = export.export(run, "savedmodel", os.path.join(out, "m.savedmodel"))
    lite, lite_meta = export.export(run, "tflite", os.path.join(out, "m.tflite"))
    model, info = load_detector(run)
    meta = json.load(open(saved_meta))
    assert meta["input"]["shape"] == [None, info["image_size"], info["image_size"], 3]
    assert meta["input"]["align"] == info["align"] and meta["input"]["framing"] == export.FRAMINGS[info["align"]]
    assert meta["threshold"] == info["threshold"] and meta["validation_auc"] == info["validation"]["auc"]
    assert meta["split_fingerprint"] == info["split_fingerprint"] and json.load(open(lite_meta))["format"] == "tflite"

    files = collect([os.path.join(runs["faces"], "Real"), os.path.join(runs["faces"], "Fake")])[::8]
    expected = np.array([p for _, p, _, _ in predict_files(model, info, files)], np.float32)
    size = info["image_size"]
    faces = np.stack([np.asarray(fit_square(read_rgb(f)[0], size, info["resize_mode"]), np.float32) for f in files])
    np.save(tmp_path / "faces.npy", faces)
    proc = subprocess.run([sys.executable, "-c", STANDALONE, str(tmp_path / "faces.npy"), saved, lite],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(expected) == 10 and expected.std() > 0  # ten faces that the detector tells apart at least a little
    np.testing.assert_allclose(got["serve"], expected, atol=1e-4)
    np.testing.assert_allclose(got["default"], expected, atol=1e-4)
    np.testing.assert_allclose(got["tflite"], expected, atol=1e-2)


def test_bad_exports_are_one_line_and_write_nothing(runs, tmp_path, capsys):
    out = str(tmp_path / "x" / "m.onnx")
    assert run_main(lambda: export.main(["--run", runs["baseline"], "--format", "onnx", "--out", out])) == 2
    assert "unknown --format 'onnx'" in capsys.readouterr().err
    assert run_main(lambda: export.main(["--run", os.path.join(runs["exp"], "dcgan"), "--format", "tflite",
                                         "--out", out])) == 2
    assert "a gan run, not a detector" in capsys.readouterr().err
    unfinished = tmp_path / "runs" / ".baseline.partial"
    unfinished.mkdir(parents=True)
    assert run_main(lambda: export.main(["--run", str(unfinished), "--format", "savedmodel", "--out", out])) == 2
    assert "no run.json (unfinished" in capsys.readouterr().err
    assert run_main(lambda: export.main(["--run", str(tmp_path / "nowhere"), "--format", "tflite", "--out", out])) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x") or os.listdir(tmp_path / "x") == []
    with pytest.raises(UserError, match="unknown --format"):
        export.export(runs["baseline"], "pb")


def test_the_default_place_is_beside_the_run_and_a_second_export_replaces_the_first(runs, capsys):
    out, meta = export.export(runs["baseline"], "savedmodel")
    assert out == os.path.join(runs["baseline"], "export", "baseline.savedmodel") and os.path.isdir(out)
    first = os.path.getmtime(meta)
    out2, meta2 = export.export(runs["baseline"], "savedmodel")
    assert out2 == out and os.path.getmtime(meta2) >= first
    assert sorted(os.listdir(os.path.dirname(out))) == ["baseline.savedmodel", "baseline.savedmodel.json"]
