"""`python -m compare.bench --faces-in-pictures RUN`: a detector's test AUC on its own test faces as given, and
on the same faces placed in larger pictures as photos hold them, judged through classifiers.predict's path
with and without alignment (data/align.py).

Each test face is placed in a PICTURE_SIDE px picture at FACE_SHARE of its side, at a random offset, turned by
up to MAX_DEGREES, over a heavily blurred, enlarged other test face (a photo's colours without a second
face); seeded, so the same pictures every time. Rows: the faces as given (the run's own input), the pictures
judged whole (--align none), the pictures with their face found and aligned (auto), and the faces as given
aligned the same way (ffhq). A picture whose face the aligner cannot judge gets 0.5 (undecided) and is counted.
"""
import os
import time

import numpy as np
from PIL import Image, ImageFilter

from classifiers.metrics import roc_auc
from classifiers.predict import load_detector, pictures_to_judge, probabilities
from data.pipeline import fit_square, resize_mode_of
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


def judged(model, info, pictures, mode):
    """(P(fake) per picture, how many the aligner could not judge): the largest face's, as predict judges it;
    a picture without a face it can judge gets 0.5, undecided."""
    size, resize = int(info["image_size"]), resize_mode_of(info)
    arrays, missed = [], []
    for img in pictures:
        picture = pictures_to_judge(img, mode, size)[0][0]
        missed.append(picture is None)
        arrays.append(np.asarray(fit_square(picture if picture is not None else img, size, resize), np.float32))
    return np.where(missed, 0.5, probabilities(model, np.stack(arrays))), int(np.sum(missed))


def run(args):
    model, info = load_detector(args.faces_in_pictures)
    manifest = load_manifest(os.path.join(args.faces_in_pictures, "split.json"))
    files = [f for f in manifest["files"] if f["split"] == "test"]
    faces = [read_rgb(os.path.join(manifest["data_dir"], f["path"]))[0] for f in files]
    y = np.array([f["label"] for f in files], np.float32)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(faces))
    pictures = [face_in_picture(faces[i], faces[order[i] if order[i] != i else (i + 1) % len(faces)], rng)
                for i in range(len(faces))]
    rows = []
    for name, images, mode in (("faces as given", faces, "none"), ("in pictures, judged whole", pictures, "none"),
                               ("in pictures, aligned (--align auto)", pictures, "auto"),
                               ("faces as given, aligned (--align ffhq)", faces, "ffhq")):
        started = time.time()
        p, missed = judged(model, info, images, mode)
        rows.append((name, roc_auc(y, p), missed, len(images) / (time.time() - started)))
    print(f"{info.get('model', 'detector')} ({args.faces_in_pictures}), {len(files)} test faces; pictures "
          f"{PICTURE_SIDE} px, face at {FACE_SHARE[0]:.0%}-{FACE_SHARE[1]:.0%} of the side, "
          f"up to {MAX_DEGREES:g} degrees")
    print(f"{'':<42} {'test AUC':>8} {'no face judged':>15} {'images/s':>9}")
    for name, auc, missed, speed in rows:
        print(f"{name:<42} {auc:>8.3f} {missed:>15} {speed:>9.1f}")
    return 0
