"""`python -m classifiers.export --run RUN --format savedmodel|tflite [--out PATH]`: a detector that leaves the kit.

Writes a self-contained model that takes RGB faces as float32 in [0, 255], NHWC, at the run's input size (fit
the face to a square the way the run did: `resize_mode` in the JSON) and returns P(fake), and a small JSON
beside it (input size, the threshold chosen on validation, the run's validation AUC and split fingerprint).
Both load with TensorFlow alone:

    m = tf.saved_model.load("baseline.savedmodel");  p = m.serve(faces)["p_fake"]
    i = tf.lite.Interpreter("baseline.tflite")  # or ai_edge_litert / tflite_runtime

The SavedModel computes exactly as the run does (its precision included), so its probabilities are
classifiers.predict's. The TFLite model is converted from a float32 copy (TFLite has no bfloat16 kernels).
Any finished detector run exports: supervised, fine-tuned, adapted and label-free alike.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import keras

from classifiers.predict import load_detector
from data.pipeline import RESIZE, resize_mode_of
from data.runs import BrokenRun, read_run, write_json_atomic
from data.runtime import UserError, import_tensorflow, run_main

FORMATS = {"savedmodel": ".savedmodel", "tflite": ".tflite"}
INPUT_NAME, OUTPUT_NAME = "faces", "p_fake"


def float32_copy(model):
    """The same network and weights with every layer computing in float32 (a mixed-precision run's layers
    compute in bfloat16 or float16, which TFLite cannot run)."""
    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                return dict(node, config=dict(node["config"], name="float32"))
            return {k: to_float32(v) for k, v in node.items()}
        if isinstance(node, list):
            return [to_float32(v) for v in node]
        return node

    config = to_float32(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
    copy.set_weights(model.get_weights())
    return copy


def write_savedmodel(model, size, path):
    """A SavedModel whose `serve` (and serving_default) signature maps faces [N, size, size, 3] to p_fake [N]."""
    tf = import_tensorflow()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve", fn=lambda faces: {OUTPUT_NAME: tf.reshape(tf.cast(model(faces, training=False), tf.float32), [-1])},
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=INPUT_NAME)])
    archive.write_out(path, verbose=False)


def write_tflite(model, size, path):
    tf = import_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        write_savedmodel(float32_copy(model), size, os.path.join(tmp, "float32"))
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(tmp, "float32"), signature_keys=["serve"])
        flatbuffer = converter.convert()
    with open(path, "wb") as f:
        f.write(flatbuffer)


def description(info, run_dir, fmt):
    validation = info.get("validation") or {}
    return {
        "format": fmt,
        "model": info.get("model"),
        "run": os.path.abspath(run_dir),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {"name": INPUT_NAME, "shape": [None, int(info["image_size"]), int(info["image_size"]), 3],
                  "dtype": "float32", "range": [0, 255], "channels": "RGB",
                  "resize_mode": resize_mode_of(info),
                  "resize": "centre square, then bilinear to the input size" if resize_mode_of(info) == RESIZE
                            else "centre square, then its central input-size crop"},
        "output": {"name": OUTPUT_NAME, "meaning": "P(fake), one float per face; label 1 = fake"},
        "threshold": float(info.get("threshold") or 0.5),  # chosen on the validation split
        "validation_auc": validation.get("auc"),
        "split_fingerprint": info.get("split_fingerprint"),
        "precision": info.get("precision") if fmt == "savedmodel" else "float32",
        "versions": info.get("versions"),
    }


def export(run_dir, fmt, out=None):
    """Write the run's detector in fmt to out (default: beside the run, RUN/export/MODEL.EXT) and its JSON to
    out's stem + .json. Nothing is written when it fails; an earlier export at out is replaced only at the end."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not os.path.isdir(run_dir):
        raise UserError(f"--run {run_dir}: no such run folder")
    try:
        kind = read_run(run_dir).get("kind", "detector")
    except BrokenRun as e:
        raise UserError(str(e))
    if kind != "detector":
        raise UserError(f"--run {run_dir}: a {kind} run, not a detector (export a detector made from it)")
    model, info = load_detector(run_dir)
    out = os.path.abspath(out or os.path.join(run_dir, "export", info["model"] + FORMATS[fmt]))
    meta = out + ".json"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(out))
    try:
        staged = os.path.join(tmp, os.path.basename(out))
        (write_savedmodel if fmt == "savedmodel" else write_tflite)(model, int(info["image_size"]), staged)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json_atomic(meta, description(info, run_dir, fmt))
    return out, meta


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished detector's run folder, e.g. runs/default/baseline")
    p.add_argument("--format", required=True, help="savedmodel or tflite")
    p.add_argument("--out", help="where to write it (default: RUN/export/MODEL.savedmodel or .tflite)")
    args = p.parse_args(argv)
    out, meta = export(args.run, args.format, args.out)
    print(f"{args.format}: {out} (and {os.path.basename(meta)} beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
