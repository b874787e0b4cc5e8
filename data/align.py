"""Find faces and frame them as FFHQ did: `--align auto|ffhq|none`.

Every face the kit's detectors learn from is FFHQ-aligned (eyes and mouth at fixed places), so a face framed
otherwise, or inside a larger photo, is judged on its framing. mtcnn (its P/R/O-net weights ship inside its
wheel: nothing is downloaded) gives each face's box and five landmarks; FFHQ's own crop follows from them: a
square along the eyes-to-mouth geometry, centred a tenth of the eye-to-mouth vector below the eyes' midpoint,
its half-side max(2.0 x eye distance, 1.8 x eye-to-mouth distance). Outside the picture it is filled by
reflection, never black.

  ffhq  every picture: its largest face found and warped to that framing;
  auto  (default) a picture whose FFHQ crop is already the picture (each corner within AUTO_TOLERANCE of
        its side) is kept as it is, byte for byte; the others are aligned;
  none  the picture as given.

For a folder (a training split, a test set, a family), auto first looks at a sample of it (resolve): a
folder whose faces already sit at FFHQ's framing is used as given, whole, so that auto changes nothing there;
one where mtcnn finds faces in too few pictures (drawn faces, the embedded default) is used as given and
judged as given; any other is aligned picture by picture. Landmarks are found once per file content (sha256)
and kept in a cache (LandmarkCache, runs/.cache/landmarks.json).
"""
import contextlib
import json
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from data.runs import write_json_atomic
from data.runtime import import_tensorflow, progress_line, printable
from data.scan import BadImage, read_rgb

ALIGN_MODES = ("auto", "ffhq", "none")
ALIGN = "none"  # what a run recorded before the setting existed was made with
MIN_CONFIDENCE = 0.8  # mtcnn's own last threshold: real faces of the development set score as low as 0.81
MIN_FACE_PIXELS = 20  # mtcnn's smallest face searched for (its pyramid's floor: smaller is slower)
# of the picture's side: how far each FFHQ crop corner may sit from the picture's own. mtcnn's landmarks are
# not dlib's (FFHQ's): on FFHQ-aligned development faces the corners sit a median 0.026 of the side away, at
# most 0.13; a face in a photo sits far further (0.3 and more)
AUTO_TOLERANCE = 0.15
# a face's eye distance must be at least this share of the detector's input side: FFHQ's crop is about four
# eye distances wide, so below it the face would be enlarged more than twice before it is judged
MIN_EYE_SHARE = 1 / 8
# auto on a folder: a sample of its pictures (the first by sha256: any order of listing gives the same) says
# whether the faces are found in nearly every picture, and are already at FFHQ's framing in nearly every one
AUTO_SAMPLE = 50
FOUND_SHARE = 0.9  # of the sample with a face found: below it the folder is used (and judged) as given
ALIGNED_SHARE = 0.9  # of those faces already at the framing: from it on the folder is used as given, whole
DETECTOR = "mtcnn-1.0.0"  # the landmark cache's key: another detector, other landmarks
SAVE_EVERY = 200  # files between two writes of the landmark cache: an interrupted survey keeps its work
# pictures of one size searched in one call: 3.3 times the images/s of one at a time on 2 cores (the per-call
# cost is Python's, docs/alignment.md). A batch's sums run in another order, so a few faces' landmarks move by
# up to 5 px (0.02 of a 256 px side, under mtcnn's own median distance from FFHQ's crop): a file's faces are
# those of the batch it was found in, the same batch for the same folder and cache every time
FIND_BATCH = 8
FIND_BATCH_PIXELS = 2 ** 20  # a larger picture is searched alone: mtcnn holds a batch as float32, whole
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # left and right as the picture shows


def align_of(info):
    """How a run (its run.json) frames what it judges: "align", recorded since alignment exists."""
    return info.get("align", ALIGN)


def split_align_of(info):
    """How a run's own split was decoded (data.align.Framing.decode): what its test side is judged as."""
    return (info.get("alignment") or {}).get("decoded", ALIGN)


class NoFace(ValueError):
    """A picture without a face the kit can judge; its message says why, for a line naming the file."""


@dataclass(frozen=True)
class Face:
    box: tuple  # x, y, width, height in the picture's pixels
    landmarks: tuple  # five (x, y): LANDMARKS
    confidence: float  # to 4 decimals (box and landmarks to 0.01 px), so that a cached face is the face found

    @property
    def eye_distance(self):
        (lx, ly), (rx, ry) = self.landmarks[:2]
        return float(np.hypot(rx - lx, ry - ly))

    def as_json(self):
        return {"box": list(self.box), "confidence": self.confidence,
                "landmarks": {k: list(p) for k, p in zip(LANDMARKS, self.landmarks)}}

    @classmethod
    def from_json(cls, d):
        return cls(tuple(d["box"]), tuple(tuple(d["landmarks"][k]) for k in LANDMARKS), float(d["confidence"]))


_detector, _detector_lock = None, threading.Lock()


def _mtcnn():
    global _detector
    with _detector_lock:  # one detector, built once, whatever thread asks first
        if _detector is None:
            import_tensorflow()  # quiet, and the kit's thread settings, before mtcnn imports it
            from mtcnn import MTCNN  # its three networks load once, and only where faces are looked for
            with _untouched_randomness_and_float32():
                _detector = MTCNN()
    return _detector


def _search(arrays):
    # numpy rows [image, x1, y1, x2, y2, confidence, the five x, the five y]: sub-pixel landmarks (its JSON
    # rounds them to whole pixels); kept to 0.01 px so a cached face is the face found
    rows = _mtcnn().detect_faces(arrays, min_face_size=MIN_FACE_PIXELS, output_type="numpy", box_format="xyxy")
    return np.asarray(rows).reshape(-1, 16)


def _faces(rows):
    faces = [Face(tuple(round(float(v), 2) for v in (r[1], r[2], r[3] - r[1], r[4] - r[2])),
                  tuple((round(float(r[6 + k]), 2), round(float(r[11 + k]), 2)) for k in range(5)),
                  round(float(r[5]), 4)) for r in rows if r[5] >= MIN_CONFIDENCE]
    return sorted(faces, key=lambda f: -f.eye_distance)


def find_faces(img):
    """Every face mtcnn finds in an RGB Pillow image, largest first (by eye distance)."""
    return _faces(_search(np.asarray(img, np.uint8)))


def find_faces_together(imgs):
    """find_faces of each picture; pictures of one size are searched FIND_BATCH at a time."""
    out = []
    for start in range(0, len(imgs), FIND_BATCH):
        batch = imgs[start:start + FIND_BATCH]
        sizes = {img.size for img in batch}
        if len(batch) == 1 or len(sizes) > 1 or batch[0].width * batch[0].height > FIND_BATCH_PIXELS:
            out += [find_faces(img) for img in batch]
            continue
        rows = _search([np.asarray(img, np.uint8) for img in batch])
        out += [_faces(rows[rows[:, 0] == k]) for k in range(len(batch))]
    return out


@contextlib.contextmanager
def _untouched_randomness_and_float32():
    """mtcnn builds Keras layers: under the float32 policy, whatever the kit's precision (so the landmarks
    are the same on every CPU kind and cacheable), and with every random state put back after their
    initialisers drew from it, so a seeded run makes the same model whether or not faces were looked for."""
    import keras  # imported with TensorFlow by now: its global seed generator is Keras's own state

    global_state = keras.src.backend.common.global_state
    python_state, numpy_state = random.getstate(), np.random.get_state()
    generator = global_state.get_global_attribute("global_seed_generator")
    generator_state = None if generator is None else generator.state.numpy()
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute("global_seed_generator", generator)
        if generator is not None:
            generator.state.assign(generator_state)


def ffhq_quad(landmarks):
    """FFHQ's crop of a face from its five landmarks: corners (4, 2) as upper-left, lower-left, lower-right,
    upper-right of the aligned face, in the picture's pixels."""
    left_eye, right_eye, _, mouth_left, mouth_right = (np.asarray(p, np.float64) for p in landmarks)
    eye_avg, eye_to_eye = (left_eye + right_eye) / 2, right_eye - left_eye
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # the face's horizontal, from both eyes and mouth
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def face_problem(face, size):
    """Why this face cannot be judged at a detector input of size px, or None."""
    left_eye, right_eye, _, mouth_left, mouth_right = (np.asarray(p, np.float64) for p in face.landmarks)
    eye_to_eye = right_eye - left_eye
    eye_to_mouth = (mouth_left + mouth_right) / 2 - (left_eye + right_eye) / 2
    # with y downwards, the mouth lies to the right of the left-to-right eye line: anything else is no face
    if eye_to_eye[0] * eye_to_mouth[1] - eye_to_eye[1] * eye_to_mouth[0] <= 0:
        return "its landmarks make no face (the eyes are not above the mouth)"
    minimum = size * MIN_EYE_SHARE
    if face.eye_distance < minimum:
        return (f"the face is too small to judge: its eye distance is {face.eye_distance:.1f} px, the minimum "
                f"{minimum:.1f} px (for a {size} px detector)")
    return None


def is_aligned(picture_size, quad, tolerance=AUTO_TOLERANCE):
    """Whether a picture of this (width, height) already is the face's FFHQ crop: square, each corner within
    tolerance of its side."""
    w, h = picture_size
    if abs(w - h) > 1:
        return False
    corners = np.array([[0, 0], [0, h], [w, h], [w, 0]], np.float64)
    return float(np.max(np.hypot(*(quad - corners).T))) <= tolerance * w


def warp(img, quad, size):
    """The quad of the picture as a size x size RGB Pillow image; outside the picture, its reflection."""
    quad = np.array(quad, np.float64)
    side = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(side / size / 2))  # a large face is shrunk first, as FFHQ did, so nothing aliases
    if shrink > 1:
        img = img.resize((max(1, round(img.width / shrink)), max(1, round(img.height / shrink))), Image.BOX)
        quad /= shrink
    w, h = img.size
    pad = int(np.ceil(max(0.0, -quad.min(), quad[:, 0].max() - w, quad[:, 1].max() - h))) + 2
    if pad > 2:
        arr = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        img, quad = Image.fromarray(arr), quad + pad
    return img.transform((size, size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)


def decide(faces, picture_size, mode, size):
    """(the face framed or None, its FFHQ quad to warp or None where the picture is kept as it is) for a
    picture of picture_size (width, height); NoFace where its largest face cannot be judged."""
    if mode == "none":
        return None, None
    if not faces:
        raise NoFace("no face found")
    problem = face_problem(faces[0], size)
    if problem:
        raise NoFace(problem)
    quad = ffhq_quad(faces[0].landmarks)
    return faces[0], (None if mode == "auto" and is_aligned(picture_size, quad) else quad)


def frame(img, faces, mode, size):
    """(the picture to judge, the face it holds or None, whether it was warped): the largest face at the FFHQ
    framing (size px), or the picture as it is (mode none; auto where it is already aligned). NoFace where
    the largest face cannot be judged."""
    face, quad = decide(faces, img.size, mode, size)
    return (img, face, False) if quad is None else (warp(img, quad, size), face, True)


class LandmarkCache:
    """Faces found per file content: sha256 -> (the picture's (width, height), [Face]), kept in one JSON file
    written atomically; a file that is not this detector's, or unreadable, is started afresh."""

    def __init__(self, path):
        self.path, self.entries, self.changed = path, {}, False
        try:
            with open(path) as f:
                saved = json.load(f)
            if saved.get("detector") == DETECTOR and saved.get("min_confidence") == MIN_CONFIDENCE:
                self.entries = {k: (tuple(v["size"]), [Face.from_json(d) for d in v["faces"]])
                                for k, v in saved["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def __contains__(self, sha):
        return sha in self.entries

    def get(self, sha, img):
        """[Face] of the picture whose content is sha: found in img where not yet cached."""
        if sha not in self.entries:
            self.entries[sha], self.changed = (img.size, find_faces(img)), True
        return self.entries[sha][1]

    def put(self, sha, picture_size, faces):
        self.entries[sha], self.changed = (tuple(picture_size), faces), True

    def picture_size(self, sha):
        return self.entries[sha][0]

    def save(self):
        if self.changed:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            files = {k: {"size": list(size), "faces": [f.as_json() for f in faces]}
                     for k, (size, faces) in self.entries.items()}
            write_json_atomic(self.path, {"detector": DETECTOR, "min_confidence": MIN_CONFIDENCE, "files": files})
            self.changed = False


@dataclass
class Survey:
    """What alignment makes of a folder's files: how many are kept as they are and aligned, and the files
    that cannot be judged (path, why) or hold several faces (the largest is the one aligned)."""
    kept: int = 0
    aligned: int = 0
    refused: list = field(default_factory=list)
    several: list = field(default_factory=list)
    seconds: float = 0.0

    def lines(self, mode, shown=20):
        out = [f"--align {mode}: {self.kept:,} kept as they are, {self.aligned:,} aligned, {len(self.refused):,} "
               f"cannot be judged, {len(self.several):,} with several faces (the largest taken); {self.seconds:.0f}s"]
        out += [f"  no face to judge in {printable(p)}: {why}" for p, why in self.refused[:shown]]
        out += [f"  {n} faces in {printable(p)}: the largest taken" for p, n in self.several[:shown]]
        hidden = max(0, len(self.refused) - shown) + max(0, len(self.several) - shown)
        return out + ([f"  and {hidden:,} more"] if hidden else [])


def _faces_of(root, record):
    try:
        img = read_rgb(os.path.join(root, record.path))[0]
        return (img.size, find_faces(img)), None
    except BadImage as e:
        return None, str(e)


def survey(root, records, mode, size, cache):
    """Find (or read from cache) the faces of every file (data.scan records under root) and say what --align
    mode makes of them at a detector input of size px; progress with images/s on stderr. The files not yet
    cached are searched FIND_BATCH at a time (find_faces_together), in the records' order."""
    result, started, done = Survey(), time.time(), 0
    for start in range(0, len(records), SAVE_EVERY):
        chunk = records[start:start + SAVE_EVERY]
        unread, waiting = {}, [r for r in chunk if r.sha256 not in cache]
        for first in range(0, len(waiting), FIND_BATCH):  # a batch's pictures in memory at a time, no more
            read = []
            for record in waiting[first:first + FIND_BATCH]:
                try:
                    read.append((record, read_rgb(os.path.join(root, record.path))[0]))
                except BadImage as e:
                    unread[record.sha256] = str(e)
            for (record, img), faces in zip(read, find_faces_together([img for _, img in read])):
                cache.put(record.sha256, img.size, faces)
        for record in chunk:
            if record.sha256 in unread:
                result.refused.append((record.path, unread[record.sha256]))
            else:
                _judge(result, record, cache, mode, size)
        cache.save()  # an interrupted survey keeps what it found
        done += len(chunk)
        progress_line(f"faces: {done:,}/{len(records):,} files, {done / max(time.time() - started, 1e-9):.1f} "
                      "images/s", done == len(records), True)
    result.seconds = time.time() - started
    return result


def _judge(result, record, cache, mode, size):
    faces = cache.get(record.sha256, None)
    if len(faces) > 1:
        result.several.append((record.path, len(faces)))
    try:
        warped = decide(faces, cache.picture_size(record.sha256), mode, size)[1] is not None
        result.aligned += warped
        result.kept += not warped
    except NoFace as e:
        result.refused.append((record.path, str(e)))


class Picture(NamedTuple):
    """A file to align: its path (under a folder's root, or whole) and the sha256 of its bytes."""
    path: str
    sha256: str


def pictures(files):
    """Pictures of a split manifest's files (dicts) or data.scan's records."""
    return [Picture(f["path"], f["sha256"]) if isinstance(f, dict) else Picture(f.path, f.sha256) for f in files]


def landmarks_path(runs_dir):
    """The landmark cache every command of a runs folder shares, beside the scan's hashes."""
    return os.path.join(os.path.abspath(runs_dir), ".cache", "landmarks.json")


@dataclass(frozen=True)
class Framing:
    """What --align makes of a folder. decode: how its pictures are framed (none: as given; auto or ffhq:
    picture by picture); judge: how a run trained on it frames whatever it judges (recorded in run.json as
    "align"); why: one line for the user."""
    requested: str
    decode: str
    judge: str
    why: str

    def record(self):
        return {"requested": self.requested, "decoded": self.decode, "judged": self.judge, "why": self.why}


AS_GIVEN = Framing("none", "none", "none", "--align none: every picture as given")


def resolve(mode, root, files, cache, size):
    """The Framing of --align mode for a folder's pictures (root, [Picture]); auto looks at up to AUTO_SAMPLE
    of them (their faces found once and cached) and stops as soon as the answer is certain."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment {mode!r}; choose {', '.join(ALIGN_MODES)}")
    if mode == "none":
        return AS_GIVEN
    if mode == "ffhq":
        return Framing(mode, "ffhq", "ffhq", "--align ffhq: every picture's largest face warped to FFHQ's framing")
    sample = sorted(files, key=lambda f: f.sha256)[:AUTO_SAMPLE]
    allowed_misses = len(sample) - math.ceil(round(FOUND_SHARE * len(sample), 9))
    found = aligned = looked = 0
    for picture in sample:
        entry = _cached_or_found(root, picture, cache)
        looked += 1
        if entry and entry[1] and not face_problem(entry[1][0], size):
            found += 1
            aligned += is_aligned(entry[0], ffhq_quad(entry[1][0].landmarks))
        if looked - found > allowed_misses:
            break
    cache.save()
    seen = f"{found} of the {looked} pictures looked at"
    if looked - found > allowed_misses or not sample:
        return Framing(mode, "none", "none", f"--align auto: a face to judge in only {seen} (fewer than "
                       f"{FOUND_SHARE:.0%}): these are not photos alignment can frame; used as given, and "
                       "judged as given")
    if aligned >= ALIGNED_SHARE * found:
        return Framing(mode, "none", "auto", f"--align auto: {aligned} of {found} faces already at FFHQ's "
                       "framing: the pictures are used as given; what the run judges is aligned as they are")
    return Framing(mode, "auto", "auto", f"--align auto: only {aligned} of {found} faces at FFHQ's framing: "
                   "each picture is aligned (those already at it kept as they are)")


def split_framing(manifest, mode, runs_dir, size):
    """(Framing, the Aligner its pictures are decoded with or None) of --align mode on a split manifest: the
    same for every command that reads the split, its faces found once into the runs folder's cache."""
    cache = LandmarkCache(landmarks_path(runs_dir))
    framing = resolve(mode, manifest["data_dir"], pictures(manifest["files"]), cache, size)
    return framing, (None if framing.decode == "none" else Aligner(framing.decode, cache, size))


def _cached_or_found(root, picture, cache):
    """(picture size, [Face]) of a picture, from the cache or found now; None for a file that cannot be read."""
    if picture.sha256 not in cache:
        entry, _ = _faces_of(root, picture)
        if entry is None:
            return None
        cache.put(picture.sha256, *entry)
    return cache.picture_size(picture.sha256), cache.get(picture.sha256, None)


class Aligner:
    """Frames a decoded picture as `mode` says (auto or ffhq) at size px, its faces read from the cache by the
    file's sha256 (found now where missing); NoFace where it cannot be judged. Safe to call from threads."""

    def __init__(self, mode, cache, size):
        self.mode, self.cache, self.size = mode, cache, size

    def __call__(self, img, sha256, faces_of=None):
        """faces_of: the unperturbed picture, where img is a perturbed copy of it (its landmarks are the
        original's: perturbations keep the picture's size)."""
        faces = self.cache.get(sha256, faces_of or img)
        return frame(img, faces, self.mode, self.size)[0]
