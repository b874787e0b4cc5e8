"""Find every image under a data folder's class folders (data.layout) and validate it once, before any training.

Each good image gets its sha256 and a perceptual hash in all eight orientations (so flipped and rotated
copies can be found); each bad one gets a reason. Results are cached by path, size and modification time,
so re-scanning tens of thousands of unchanged images costs only a stat() each.
"""
import hashlib
import io
import json
import os
import re
import struct
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.layout import FAKE, LABEL_NAMES, REAL, Layout, find_layout  # noqa: F401  (REAL, FAKE: the labels)
from data.runtime import UserError, printable, progress_line
from data.runs import write_json_atomic

FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP"}  # MPO: camera JPEGs with extra frames
MAX_PIXELS = 40_000_000  # decompression-bomb guard, checked from the header before decoding
MIN_SIDE = 16
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "icon\r"}
HASH_INPUT = 32  # the grey image the DCT hash is computed on
HASH_SIDE = 16  # 16x16 low-frequency DCT coefficients -> 256-bit hash
CACHE_VERSION = 3  # 2: blank images are rejected; 3: images turned by their EXIF orientation
# An image with (almost) nothing in it cannot be judged, and its hash matches every other blank image, so it
# would merge unrelated files into one near-copy group or put "the same picture" under both labels.
MIN_PIXEL_STD = 2.0  # of 255, on the grey image the hash sees; a flat colour with JPEG noise is below 1
MIN_HASH_BITS = 16  # of 255 data bits set (the median split sets about half in a real picture)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard, for formats whose header understates


class BadImage(Exception):
    """The file is not a usable image; the message says why."""


@dataclass
class ImageRecord:
    path: str  # relative to the data root, with forward slashes
    label: int
    sha256: str
    width: int
    height: int
    phash: np.ndarray  # (8, 256) bool: the hash in each of the eight orientations
    side: str = None  # the data set's own side of the split (train / val / test), where it gives one
    generator: str = None  # the generator's folder, where the data set is sorted by generator


@dataclass
class Scan:
    root: str
    images: list = field(default_factory=list)  # ImageRecord, class folder by class folder (real first)
    rejected: list = field(default_factory=list)  # (path, reason)
    skipped: list = field(default_factory=list)  # (path, reason): hidden and system files
    layout: Layout = None

    def counts(self):
        return {name: sum(r.label == label for r in self.images) for label, name in LABEL_NAMES.items()}

    def summary(self):
        c = self.counts()
        line = f"{len(self.images):,} images: {c['real']:,} real, {c['fake']:,} fake"
        if self.rejected:
            reasons = "; ".join(f"{printable(p)}: {why}" for p, why in self.rejected[:5])
            more = f"; and {len(self.rejected) - 5} more" if len(self.rejected) > 5 else ""
            line += f"; {len(self.rejected):,} rejected: {reasons}{more}"
        else:
            line += "; 0 rejected"
        if self.skipped:
            line += f"; {len(self.skipped):,} hidden/system files ignored"
        return line


def to_rgb(img):
    """Any Pillow mode -> 8-bit RGB. 16-bit and 32-bit grey are scaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or arr.max() > 255:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def upright(img):
    """The image as viewers show it: turned by its EXIF Orientation tag (a phone photo is often stored sideways
    with the tag saying so). A damaged EXIF block costs the turn, never the image."""
    try:
        with warnings.catch_warnings():  # Pillow's "Corrupt EXIF data" says nothing the user can act on
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return img


def decode_bytes(data):
    """Validate and decode one file's bytes into an RGB Pillow image, or raise BadImage."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        # the size check below says it better than Pillow's bomb warning, and "Corrupt EXIF data" (a damaged
        # EXIF block: the image itself decodes) is nothing the user can act on
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image (format not recognised)")
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"unreadable image header ({e})")
    except Image.DecompressionBombError as e:  # Pillow's own guard fires at twice its limit, in open()
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "its size"
        raise BadImage(f"too large: {size} is over the {MAX_PIXELS:,}-pixel limit (not decoded)")
    if img.format not in FORMATS:
        raise BadImage(f"unsupported format {img.format} (use JPEG, PNG, BMP, GIF or WebP)")
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise BadImage(f"too large: {width}x{height} is over the {MAX_PIXELS:,}-pixel limit (not decoded)")
    if min(width, height) < MIN_SIDE:
        raise BadImage(f"too small: {width}x{height}, each side must be at least {MIN_SIDE} pixels")
    try:
        img.seek(0)  # first frame of an animation
        img.load()
        return to_rgb(upright(img))
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large ({e})")
    except (OSError, ValueError, SyntaxError, EOFError, TypeError) as e:
        raise BadImage(f"cannot decode: {e}")


def read_rgb(path):
    """Read, validate and decode one image file; BadImage says what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadImage(f"cannot read: {e.strerror or e}")
    return decode_bytes(data), data


_DCT = np.array([[np.cos(np.pi * (2 * x + 1) * u / (2 * HASH_INPUT)) for x in range(HASH_INPUT)]
                 for u in range(HASH_INPUT)])
_SIGN = (-1.0) ** np.arange(HASH_SIDE)


def perceptual_hash(img):
    """256-bit DCT hash in the eight orientations (identity, flips, rotations), shape (8, 256).

    A flip of the image only changes the sign of odd-frequency DCT coefficients and a transpose swaps
    the axes, so all eight are computed from one transform.
    """
    grey = np.asarray(img.convert("L").resize((HASH_INPUT, HASH_INPUT), Image.BILINEAR), np.float64)
    low = (_DCT @ grey @ _DCT.T)[:HASH_SIDE, :HASH_SIDE]
    hflip = low * _SIGN[None, :]  # mirror left-right: odd horizontal frequencies change sign
    vflip = low * _SIGN[:, None]
    both = hflip * _SIGN[:, None]  # 180-degree rotation
    bits = []
    for c in (low, hflip, vflip, both, low.T, hflip.T, vflip.T, both.T):
        ac = c.ravel()[1:]  # the DC term carries brightness, not structure
        bits.append(np.concatenate([[True], ac > np.median(ac)]))
    return np.array(bits, dtype=bool)


def check_content(img, phash):
    """BadImage for a blank or nearly uniform image: nothing to judge, and a hash that matches anything."""
    grey = np.asarray(img.convert("L").resize((HASH_INPUT, HASH_INPUT), Image.BILINEAR), np.float64)
    if grey.std() < MIN_PIXEL_STD:
        raise BadImage(f"no content to judge: nearly uniform (pixel standard deviation {grey.std():.2f} of 255)")
    bits = int(phash[0, 1:].sum())
    if min(bits, phash.shape[1] - 1 - bits) < MIN_HASH_BITS:
        raise BadImage(f"no content to judge: its perceptual hash carries almost no information "
                       f"({bits} of {phash.shape[1] - 1} bits set)")


def read_checked(path):
    """(RGB image, file bytes, phash) of an image with something in it to judge: what every image the kit
    learns from (the scan) or judges (predict) must pass; BadImage otherwise."""
    img, data = read_rgb(path)
    phash = perceptual_hash(img)
    check_content(img, phash)
    return img, data, phash


def _inspect(path):
    """(sha256, width, height, phash) of a good image; raises BadImage for a bad one."""
    img, data, phash = read_checked(path)
    return hashlib.sha256(data).hexdigest(), img.width, img.height, phash


def list_files(folder):
    """Every file below folder (symbolic links to folders are not followed, so loops cannot hang)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    return out


def _is_system_file(name):
    return name.startswith(".") or name.lower() in SYSTEM_FILES


class HashCache:
    """Scan results keyed by absolute path, valid while size and modification time are unchanged."""

    def __init__(self, path):
        self.path = path
        self.entries = {}
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    blob = json.load(f)
                if blob.get("version") == CACHE_VERSION:
                    self.entries = blob["entries"]
            except (OSError, ValueError, KeyError):
                self.entries = {}  # a damaged cache only costs a re-scan
        self.dirty = False

    @staticmethod
    def _key(path):
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]

    def get(self, path):
        entry = self.entries.get(path)
        try:
            if entry is None or entry["stat"] != self._key(path):
                return None
        except OSError:
            return None
        return entry

    def put(self, path, result):
        try:
            self.entries[path] = dict(result, stat=self._key(path))
            self.dirty = True
        except OSError:
            pass

    def save(self):
        if not (self.path and self.dirty):
            return

        try:
            write_json_atomic(self.path, {"version": CACHE_VERSION, "entries": self.entries})
        except OSError as e:
            print(f"warning: could not write the hash cache {self.path}: {e}", file=sys.stderr)


def _scan_one(path):
    try:
        sha, width, height, phash = _inspect(path)
    except BadImage as e:
        return {"error": str(e)}
    return {"sha256": sha, "width": width, "height": height,
            "phash": np.packbits(phash, axis=1).tobytes().hex()}


def _progress(done, total, label, started):
    """images/s and time left on stderr: a live line on a terminal, every tenth of the way in a log."""
    if total < 200 or not (done % 100 == 0 or done == total):
        return
    rate = done / max(1e-9, time.time() - started)
    progress_line(f"{label}: {done:,}/{total:,} images, {rate:,.0f}/s, {(total - done) / rate:,.0f}s left",
                  finished=done == total, logged=done % max(100, total // 10 // 100 * 100) == 0)


def scan_folder(root, cache_path=None, workers=None, one_class_ok=False):
    """Validate every file under the folder's class folders (data.layout finds them). Never raises for a bad
    image; a class folder with no usable image is a UserError naming it."""
    layout = find_layout(root, one_class_ok)
    scan = Scan(root=layout.root, layout=layout)
    candidates = []
    for folder in layout.folders:
        for path in list_files(folder.path):
            rel = os.path.relpath(path, layout.root).replace(os.sep, "/")
            if _is_system_file(os.path.basename(path)):
                scan.skipped.append((rel, "hidden or system file"))
            else:
                candidates.append((path, rel, folder))

    cache = HashCache(cache_path)
    results = [cache.get(path) for path, _, _ in candidates]
    todo = [i for i, r in enumerate(results) if r is None]
    workers = workers or min(8, (os.cpu_count() or 1) + 1)  # decoding releases the GIL
    started = time.time()
    with ThreadPoolExecutor(workers) as pool:
        for n, (i, result) in enumerate(zip(todo, pool.map(_scan_one, [candidates[i][0] for i in todo])), 1):
            results[i] = result
            cache.put(candidates[i][0], result)
            _progress(n, len(todo), "checking and hashing", started)
    cache.save()

    usable = {folder.path: 0 for folder in layout.folders}
    for (path, rel, folder), result in zip(candidates, results):
        if "error" in result:
            scan.rejected.append((rel, result["error"]))
            continue
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(result["phash"]), np.uint8)).reshape(8, -1)
        scan.images.append(ImageRecord(rel, folder.label, result["sha256"], result["width"], result["height"],
                                       bits.astype(bool), folder.side, folder.generator))
        usable[folder.path] += 1
    for folder in layout.folders:
        if not usable[folder.path]:
            tried = sum(1 for _, _, f in candidates if f is folder)
            raise UserError(f"{os.path.relpath(folder.path, os.path.dirname(layout.root))}/ folder has no usable "
                            f"images ({tried} files tried; it holds the {LABEL_NAMES[folder.label]} class)")
    return scan
