"""`python -m compare.bench --faces-in-pictures RUN`: a detector's test AUC on its own test faces as given, and
on the same faces placed in larger pictures as photos hold them, judged through classifiers.predict's path
with and without alignment (data/align.py).

Each test face is placed in a PICTURE_SIDE px picture at FACE_SHARE of its side, at a random offset, turned by
up to MAX_DEGREES, over a heavily blurred, enlarged other test face (a photo's colours without a second
face); seeded, so the same pictures every time. Rows: the faces as given (the run's own input), the pictures
judged whole (--align none), the pictures with their face found and aligned (auto), and the faces as given
aligned the same way (ffhq). A picture whose face the aligner cannot judge gets 0.5 (undecided) and is counted.
Several runs of one split (seeds, runs trained with another --align) are judged on the same pictures, each
face found once per input size; the table gives each run's AUC, and their mean and sd.
"""
import os
import time

import numpy as np
from PIL import Image, ImageFilter

from classifiers.metrics import roc_auc
from classifiers.predict import load_detector, pictures_to_judge, probabilities
from data.pipeline import fit_square, resize_mode_of
from data.runtime import UserError
from data.scan import read_rgb
from data.split import load_manifest

PICTURE_SIDE = 512
FACE_SHARE = (0.45, 0.65)
MAX_DEGREES = 8.0
BACKGROUND_BLUR = 16  # px radius: no face left to find in the background


def face_in_picture(face, background, rng, side=PICTURE_SIDE):
    """face (RGB Pillow) placed in a side x side picture over a blurred background, moved and turned."""
    canvas = background.resize((side, side), Image.BILINEAR).filter(ImageFilter.GaussianBlur(BACKGROUND_BLUR))
    scale = rng.uniform(*FACE_SHARE) * side / max(face.size)
    img = face.resize((round(face.width * scale), round(face.height * scale)), Image.BICUBIC)
    degrees = rng.uniform(-MAX_DEGREES, MAX_DEGREES)
    mask = Image.new("L", img.size, 255).rotate(degrees, Image.BILINEAR, expand=True)
    img = img.rotate(degrees, Image.BILINEAR, expand=True)
    x = rng.integers(0, max(1, side - img.width + 1))
    y = rng.integers(0, max(1, side - img.height + 1))
    canvas.paste(img, (int(x), int(y)), mask)
    return canvas


def framed(pictures, mode, size, resize):
    """The arrays a detector of this input judges, one per picture (the largest face's, as predict frames it),
    and which pictures had no face the aligner could judge (those are scored 0.5, undecided)."""
    arrays, missed = [], []
    for img in pictures:
        picture = pictures_to_judge(img, mode, size)[0][0]
        missed.append(picture is None)
        arrays.append(np.asarray(fit_square(picture if picture is not None else img, size, resize), np.float32))
    return np.stack(arrays), np.array(missed)


def run(args):
    runs = args.faces_in_pictures
    detectors = [load_detector(run) for run in runs]
    manifest = load_manifest(os.path.join(runs[0], "split.json"))
    others = [run for run, (_, info) in zip(runs, detectors) if info["split_fingerprint"] != manifest["fingerprint"]]
    if others:
        raise UserError(f"--faces-in-pictures: {others[0]} was trained on another split than {runs[0]}: their "
                        "test faces differ")
    files = [f for f in manifest["files"] if f["split"] == "test"]
    faces = [read_rgb(os.path.join(manifest["data_dir"], f["path"]))[0] for f in files]
    y = np.array([f["label"] for f in files], np.float32)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(faces))
    pictures = [face_in_picture(faces[i], faces[order[i] if order[i] != i else (i + 1) % len(faces)], rng)
                for i in range(len(faces))]
    looks = (("faces as given", faces, "none"), ("in pictures, judged whole", pictures, "none"),
             ("in pictures, aligned (--align auto)", pictures, "auto"),
             ("faces as given, aligned (--align ffhq)", faces, "ffhq"))
    inputs, speed, aucs = {}, {}, {}  # the faces found and framed once per input kind, for every detector
    for run, (model, info) in zip(runs, detectors):
        kind = (int(info["image_size"]), resize_mode_of(info))
        for name, images, mode in looks:
            if (kind, name) not in inputs:
                started = time.time()
                inputs[kind, name] = framed(images, mode, *kind)
                speed[name] = len(images) / (time.time() - started)
            x, missed = inputs[kind, name]
            aucs.setdefault(name, []).append(roc_auc(y, np.where(missed, 0.5, probabilities(model, x))))
    print(f"{len(runs)} detector(s) on {len(files)} test faces; pictures {PICTURE_SIDE} px, face at "
          f"{FACE_SHARE[0]:.0%}-{FACE_SHARE[1]:.0%} of the side, up to {MAX_DEGREES:g} degrees")
    groups = {}  # runs trained alike (same --align) are seeds of one detector: their mean and sd
    for k, (run, (_, info)) in enumerate(zip(runs, detectors)):
        trained = (info.get("alignment") or {}).get("requested", "none")
        groups.setdefault(trained, []).append(k)
        print(f"  {run}: {info.get('model', 'detector')}, seed {info.get('seed')}, trained with --align {trained}")
    print(f"{'test AUC, mean +- sd over seeds':<40} " + " ".join(f"{f'--align {g} ({len(m)})':>16}"
                                                                 for g, m in groups.items())
          + f" {'no face':>7} {'images/s':>8}")
    for name, _, _ in looks:
        cells = []
        for members in groups.values():
            values = [aucs[name][k] for k in members]
            sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.3f} +- {sd:.3f}")
        missed = int(next(v for key, v in inputs.items() if key[1] == name)[1].sum())
        print(f"{name:<40} " + " ".join(f"{c:>16}" for c in cells) + f" {missed:>7} {speed[name]:>8.1f}")
    print("each run: " + "; ".join(f"{name}: " + " ".join(f"{v:.3f}" for v in aucs[name]) for name, _, _ in looks))
    return 0
