"""`python -m classifiers.predict --run RUN_DIR [--json] [--align auto] [--draw DIR] PATH...`: real or fake?

For every image (or every image under a folder): the probability that it is fake and the verdict at the
run's threshold (chosen on the validation split; 0.5 where the run has none). With --align auto|ffhq
(data/align.py) every face of a photo is found and judged on its own, framed as FFHQ frames its faces (auto:
a picture that already is a face's FFHQ crop is judged as it is), its box and landmarks beside its verdict;
--draw DIR writes each photo with a box and verdict per face. Unreadable files, pictures without a face and
faces too small to judge get an error line naming them, the other images and faces are still judged, and the
exit status is 1 at the end.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import ImageDraw

from classifiers import saliency
from classifiers.layers import load_model_safely
from data import align
from data.pipeline import fit_square, resize_mode_of
from data.runs import BrokenRun, read_run
from data.runtime import UserError, import_tensorflow, printable, run_main
from data.scan import BadImage, _is_system_file, list_files, read_checked

BATCH = 64
STREAM_CHUNK = 1024  # images of a decode cache predicted at a time: memory bounded, whatever the split's size


def collect(paths):
    """Files to judge, in the order given (folders walked in sorted order, hidden files left out)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            out.extend(p for p in list_files(path) if not _is_system_file(os.path.basename(p)))
        else:
            out.append(path)
    return out


def load_detector(run_dir):
    """(keras model, run.json) of a finished run; Keras safe mode only, nothing executable is loaded.
    UserError where run.json does not say the input size or the model takes faces of another size."""
    try:
        info = read_run(run_dir)
        size = info.get("image_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise BrokenRun(f"{os.path.join(run_dir, 'run.json')}: no valid image_size (the face size the detector "
                            f"was trained at; found {size!r})")
        import_tensorflow()
        model = load_model_safely(os.path.join(run_dir, "model.keras"))
    except BrokenRun as e:
        raise UserError(str(e))
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3 or any(s not in (None, size) for s in shape[1:3]):
        raise UserError(f"{os.path.join(run_dir, 'model.keras')} takes input {shape}, but its run.json says "
                        f"{size}x{size} RGB faces: the two files are from different runs")
    return model, info


def chunk_size(batch_size):
    return max(1, STREAM_CHUNK // batch_size) * batch_size


def chunks(images, batch_size):
    """Images STREAM_CHUNK at a time in whole batches (the same batches as all at once, so the same numbers):
    a decode cache's read from disk, an array's sliced, so no float32 copy of a whole split is ever made."""
    size = chunk_size(batch_size)
    if hasattr(images, "batches"):
        return images.batches(size)
    return (images[start:start + size] for start in range(0, len(images), size))


def outputs(model, x, batch_size=BATCH):
    """model.predict over [0, 255] images: an array, or a decode cache's CachedImages, a chunk at a time."""
    if hasattr(x, "batches") or len(x) > chunk_size(batch_size):
        return np.concatenate([outputs(model, part, batch_size) for part in chunks(x, batch_size)])
    return model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)


def probabilities(model, x, tta=False, batch_size=BATCH):
    """P(fake) for a batch of [0, 255] images; tta: averaged with the horizontally flipped images
    (a face and its mirror image are equally real or fake, so two looks cost twice and lower the variance).
    x: an array, or a decode cache's CachedImages (data.cache), a chunk at a time."""
    if hasattr(x, "batches") or len(x) > chunk_size(batch_size):
        return np.concatenate([probabilities(model, part, tta, batch_size) for part in chunks(x, batch_size)])
    x = np.asarray(x, np.float32)
    p = model.predict(x, batch_size=batch_size, verbose=0).reshape(-1)
    if tta:
        p = (p + model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0).reshape(-1)) / 2
    return p


def pictures_to_judge(img, mode, size):
    """[(picture, face record or None, error or None)] of one decoded image: the image itself (mode none), or
    one entry per face found, largest first, each framed by data.align."""
    if mode == "none":
        return [(img, None, None)]
    faces = align.find_faces(img)
    if not faces:
        return [(None, None, "no face found")]
    out = []
    for number, face in enumerate(faces, 1):
        name = f"face {number} of {len(faces)}: " if len(faces) > 1 else ""
        try:
            picture, _, warped = align.frame(img, [face], mode, size)
            out.append((picture, dict(face.as_json(), face=number, aligned=warped), None))
        except align.NoFace as e:
            out.append((None, dict(face.as_json(), face=number), f"{name}{e}"))
    return out


def predict_files(model, info, files, tta=False, saliency_dir=None, align_mode=align.ALIGN, draw_dir=None,
                  threshold=0.5):
    """Yield (path, p_fake or None, error or None, face record or None) per file, or per face with
    align_mode auto|ffhq, decoding in batches; saliency_dir: also write each image's SmoothGrad figure there
    (classifiers/saliency.py), named after the image; draw_dir: each photo with its faces' boxes and verdicts."""
    figure_names, drawn_names = set(), set()  # two images of one name in different folders get NAME and NAME-2

    size, mode = int(info["image_size"]), resize_mode_of(info)
    for start in range(0, len(files), BATCH):
        chunk = files[start:start + BATCH]
        arrays, results, photos = [], [], {}
        for path in chunk:
            try:
                img = read_checked(path)[0]  # a blank image the scan refuses is refused here too
            except BadImage as e:
                results.append((path, None, str(e), None))
                continue
            photos[path] = img
            for picture, face, error in pictures_to_judge(img, align_mode, size):
                if picture is not None:
                    arrays.append(np.asarray(fit_square(picture, size, mode), np.float32))
                results.append((path, len(arrays) - 1 if picture is not None else None, error, face))
        probs = probabilities(model, np.stack(arrays), tta) if arrays else []
        if saliency_dir and arrays:
            write_saliency(model, info, np.stack(arrays), probs, [r for r in results if r[1] is not None], saliency_dir,
                           figure_names)
        if draw_dir and align_mode != "none":
            for path, img in photos.items():
                faces = [(face, float(probs[idx]) if idx is not None else None)
                         for p, idx, _, face in results if p == path and face is not None]
                draw_verdicts(img, faces, threshold, os.path.join(draw_dir, unique_name(path, drawn_names) + ".png"))
        for path, idx, error, face in results:
            yield path, (float(probs[idx]) if idx is not None else None), error, face


def unique_name(path, taken):
    stem = os.path.splitext(os.path.basename(path))[0]
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def draw_verdicts(img, faces, threshold, out):
    """The photo with each face's box: red and "fake p" at or over the threshold, green "real p" under it,
    grey where the face could not be judged."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    img = img.copy()
    pen = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for face, prob in faces:
        x, y, w, h = face["box"]
        if prob is None:
            colour, label = (160, 160, 160), "not judged"
        else:
            fake = prob >= threshold
            colour, label = ((220, 30, 30) if fake else (30, 180, 60)), f"{'fake' if fake else 'real'} {prob:.2f}"
        pen.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        pen.text((x + width, max(0, y - 12)), label, fill=colour)
    img.save(out)


def write_saliency(model, info, images, probs, results, folder, taken):
    os.makedirs(folder, exist_ok=True)
    maps = saliency.saliency_maps(model, images)
    threshold = float(info.get("threshold") or 0.5)
    for path, idx, _, _ in results:
        verdict = "fake" if probs[idx] >= threshold else "real"
        name = unique_name(path, taken)
        out = os.path.join(folder, name + ".saliency.png")
        saliency.figure(images[idx:idx + 1], maps[idx:idx + 1], [f"p {probs[idx]:.2f}: {verdict}"],
                        f"{info.get('model', 'model')}: {os.path.basename(path)}", out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.predict", description=__doc__)
    p.add_argument("--run", required=True, help="a run folder, e.g. runs/default/baseline")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--threshold", type=float, help="override the run's threshold")
    p.add_argument("--tta", action="store_true", help="average each image with its mirror image (2x the time)")
    p.add_argument("--saliency", metavar="DIR",
                   help="also write, per image, where the detector looks (SmoothGrad) to DIR/NAME.saliency.png")
    p.add_argument("--align", choices=align.ALIGN_MODES,
                   help="find every face and judge each framed as FFHQ frames faces (ffhq), or as it is where the "
                        "picture already is its crop (auto); none: the picture as given (default: as the run was "
                        "trained, its run.json's \"align\"; none for a run that does not say)")
    p.add_argument("--draw", metavar="DIR", help="with --align auto|ffhq: write each photo with a box and verdict "
                                                 "per face to DIR/NAME.png")
    p.add_argument("paths", nargs="+", metavar="PATH", help="images or folders of images")
    args = p.parse_args(argv)
    files = collect(args.paths)
    if not files:
        raise UserError(f"no image files in {', '.join(printable(p) for p in args.paths)}")
    model, info = load_detector(args.run)
    threshold = args.threshold if args.threshold is not None else float(info.get("threshold") or 0.5)
    align_mode = args.align or align.align_of(info)
    if args.draw and align_mode == "none":
        raise UserError("--draw marks the faces found: give --align auto or ffhq")
    failures, fakes, judged = 0, 0, 0
    for path, prob, error, face in predict_files(model, info, files, args.tta, args.saliency, align_mode, args.draw,
                                                 threshold):
        where = face_mark(face) if face else ""
        if error:
            failures += 1
            print(f"error: {printable(path)}: {error}", file=sys.stderr)
            if args.json:
                print(json.dumps(dict(face or {}, path=path, error=error)))
            continue
        verdict = "fake" if prob >= threshold else "real"
        fakes += verdict == "fake"
        judged += 1
        if args.json:
            print(json.dumps(dict(face or {}, path=path, p_fake=round(prob, 6), verdict=verdict, threshold=threshold)))
        else:
            print(f"{prob:.4f}  {verdict}  {printable(path)}{where}")
    things = "face(s)" if align_mode != "none" else "image(s)"
    print(f"{fakes:,} of {judged:,} {things} judged fake at threshold {threshold:.3f}"
          + (f"; {failures:,} could not be judged" if failures else ""), file=sys.stderr)
    if args.draw:
        print(f"faces drawn: {os.path.abspath(args.draw)}", file=sys.stderr)
    if args.saliency:
        print(f"saliency figures: {os.path.abspath(args.saliency)}", file=sys.stderr)
    return 1 if failures else 0


def face_mark(face):
    x, y, w, h = (round(v) for v in face["box"])
    return f"  face {face['face']} at {x},{y} {w}x{h}" + (" (aligned)" if face.get("aligned") else "")


if __name__ == "__main__":
    sys.exit(run_main(main))
