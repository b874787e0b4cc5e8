"""`python -m classifiers.export --run RUN --format savedmodel|tflite [--out PATH]`: a detector that leaves the kit.

Writes a self-contained model that takes RGB faces as float32 in [0, 255], NHWC, at the run's input size (frame
the face and fit it to a square the way the run did: `align` and `resize_mode` in the JSON) and returns P(fake),
and a small JSON
beside it (input size, the threshold chosen on validation, the run's validation AUC and split fingerprint).
Both load with TensorFlow alone:

    m = tf.saved_model.load("baseline.savedmodel");  p = m.serve(faces)["p_fake"]
    i = tf.lite.Interpreter("baseline.tflite")  # or ai_edge_litert / tflite_runtime

The SavedModel computes exactly as the run does (its precision included), so its probabilities are
classifiers.predict's. The TFLite model is converted from a float32 copy (TFLite has no bfloat16 kernels).
Any finished detector run exports: supervised, fine-tuned, adapted and label-free alike.

Nothing the kit did not write is ever replaced: an existing --out (or its JSON) is refused unless it is an
earlier export of the same format (its JSON says so), and even that is replaced only with --force, or at the
default place beside the run (RUN/export/), which belongs to the kit.
"""
import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

import keras

from classifiers.predict import load_detector
from data.align import align_of
from data.pipeline import RESIZE, resize_mode_of
from data.runs import BrokenRun, read_json, read_run, write_json_atomic
from data.runtime import UserError, import_tensorflow, run_main

FORMATS = {"savedmodel": ".savedmodel", "tflite": ".tflite"}
INPUT_NAME, OUTPUT_NAME = "faces", "p_fake"
WRITTEN_BY = "classifiers.export"  # in every export's JSON: what marks a destination as the kit's own
# what tf.saved_model / keras.export write into a SavedModel folder: a folder holding anything else is not one
SAVEDMODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb"}


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


FRAMINGS = {  # what the model expects of the face it is given, by the run's "align" (data/align.py)
    "none": "the picture as given: no face is found or framed",
    "auto": "FFHQ's framing: a face whose five landmarks sit where FFHQ puts them; any other picture has its "
            "largest face found (mtcnn) and warped to that framing first",
    "ffhq": "FFHQ's framing: every picture's largest face found (mtcnn) and warped to it",
}


def description(info, run_dir, fmt):
    validation = info.get("validation") or {}
    return {
        "written_by": WRITTEN_BY,
        "format": fmt,
        "model": info.get("model"),
        "run": os.path.abspath(run_dir),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {"name": INPUT_NAME, "shape": [None, int(info["image_size"]), int(info["image_size"]), 3],
                  "dtype": "float32", "range": [0, 255], "channels": "RGB",
                  "resize_mode": resize_mode_of(info),
                  "resize": "centre square, then bilinear to the input size" if resize_mode_of(info) == RESIZE
                            else "centre square, then its central input-size crop",
                  "align": align_of(info), "framing": FRAMINGS[align_of(info)]},
        "output": {"name": OUTPUT_NAME, "meaning": "P(fake), one float per face; label 1 = fake"},
        "threshold": float(info.get("threshold") or 0.5),  # chosen on the validation split
        "validation_auc": validation.get("auc"),
        "split_fingerprint": info.get("split_fingerprint"),
        "precision": info.get("precision") if fmt == "savedmodel" else "float32",
        "versions": info.get("versions"),
    }


def earlier_export(out, fmt):
    """The JSON of an earlier export in fmt at out (a SavedModel folder holding only what one holds, or a
    TFLite file, with its JSON beside it), or None where out or its JSON is anything else."""
    meta = read_json(out + ".json")
    if not isinstance(meta, dict) or meta.get("format") != fmt or (meta.get("output") or {}).get("name") != OUTPUT_NAME \
            or meta.get("written_by", WRITTEN_BY) != WRITTEN_BY or "exported" not in meta:
        return None  # exports made before "written_by" existed carry the rest
    if fmt == "savedmodel":
        is_export = os.path.isdir(out) and not os.path.islink(out) and "saved_model.pb" in os.listdir(out) \
            and set(os.listdir(out)) <= SAVEDMODEL_ENTRIES
    else:
        is_export = os.path.isfile(out) and not os.path.islink(out)
    return meta if is_export else None


def missing_folders(folder):
    """The folders os.makedirs(folder) would create, deepest first."""
    out = []
    while folder and not os.path.isdir(folder):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


def check_destination(out, fmt, replace):
    """UserError unless out may be written: nothing there, or an earlier export of fmt and replace allowed."""
    taken = [p for p in (out, out + ".json") if os.path.lexists(p)]
    if not taken:
        return
    earlier = earlier_export(out, fmt)
    if earlier is None:
        what = "a folder" if os.path.isdir(taken[0]) else "a file"
        raise UserError(f"--out {taken[0]}: {what} that is not an earlier {fmt} export of this kit; nothing was "
                        "written (name a new path)")
    if not replace:
        raise UserError(f"--out {out}: an earlier {fmt} export (of {earlier.get('run')}, {earlier.get('exported')}); "
                        "--force replaces it")


def export(run_dir, fmt, out=None, force=False):
    """Write the run's detector in fmt to out (default: beside the run, RUN/export/MODEL.EXT) and its JSON to
    out + .json. Nothing is written when it fails; an earlier export at out is replaced only at the end, and
    only at the default place or with force (check_destination)."""
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
    default = os.path.abspath(os.path.join(run_dir, "export", info["model"] + FORMATS[fmt]))
    out = os.path.abspath(out) if out else default
    check_destination(out, fmt, replace=force or out == default)
    meta = out + ".json"
    folder = os.path.dirname(out)
    made = missing_folders(folder)
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=folder)
    try:
        staged = os.path.join(tmp, os.path.basename(out))
        (write_savedmodel if fmt == "savedmodel" else write_tflite)(model, int(info["image_size"]), staged)
        if os.path.isdir(out):  # checked above: an earlier SavedModel export; moved aside, then dropped
            os.replace(out, os.path.join(tmp, "earlier"))
        os.replace(staged, out)
        made = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in made:  # a failed export leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(path)
    write_json_atomic(meta, description(info, run_dir, fmt))
    return out, meta


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished detector's run folder, e.g. runs/default/baseline")
    p.add_argument("--format", required=True, help="savedmodel or tflite")
    p.add_argument("--out", help="where to write it (default: RUN/export/MODEL.savedmodel or .tflite); an existing "
                                 "path is refused unless it is an earlier export (then see --force)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier export of this format at --out (anything else there is never replaced)")
    args = p.parse_args(argv)
    out, meta = export(args.run, args.format, args.out, args.force)
    print(f"{args.format}: {out} (and {os.path.basename(meta)} beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
