"""One deterministic train / validation / test split per experiment, with no near-copies across it.

Images are grouped when their perceptual hashes (in any of the eight flip / rotation orientations) lie
within NEAR_COPY_BITS of each other, so the flipped, rotated, re-encoded or resized copies that face
datasets are often padded with never straddle the split. Each group's side is decided by a hash of its
content (the smallest sha256 in it), so it depends neither on listing order nor on unrelated files.
"""
import hashlib
import json
import os
import time

import numpy as np

from data.runs import experiment_dir, write_json_atomic
from data.runtime import UserError, progress_line
from data.scan import HASH_SIDE, LABEL_NAMES, scan_folder

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
NEAR_COPY_BITS = 24  # of 256: copies measured at <= 18 (brightness +15%), distinct real faces >= 42
CLOSEST_SHOWN = 5
MANIFEST_FORMAT = "deepfake-kit split manifest 1"
SPLITS = tuple(SPLIT_FRACTIONS)
SPLIT_SOURCES = ("auto", "given", "made")  # --split: the data set's own train/val/test folders, or the kit's
VAL_FROM_TRAIN = 0.15  # of a given train side's groups, when the data set brings no validation side
PAIRS_KEPT = 4  # near-copy results kept (cached_pairs): a few folders, or a few states of one
PROGRESS_FROM = 20_000  # images: below this the comparison takes seconds
BLOCK = 128  # images per block of the all-pairs comparison (memory: BLOCK * 8 * N floats, 570 MB at 140k)


def hamming_pairs(hashes, threshold, closest=CLOSEST_SHOWN):
    """All pairs (i, j, bits) with i < j within threshold, and the closest pairs beyond it (ties by i, j).

    hashes: (N, 8, B) bool, the hash of each image in its eight orientations. The distance of a pair
    is the smallest over the orientations of image i against image j as it is. Computed as a matrix
    product of +-1 vectors (distance = (B - dot) / 2, so the largest dot is the smallest distance), a block
    of images at a time against every later image: quadratic, minutes at 100k images.
    """
    n, _, bits = hashes.shape
    upright = np.where(hashes[:, 0, :], 1.0, -1.0).astype(np.float32)
    cutoff = bits - 2 * threshold  # dot >= cutoff <=> distance <= threshold
    near, beyond = [], []
    started = time.time()
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        if n >= PROGRESS_FROM:
            _progress(1 - ((n - start) / n) ** 2, n, started)
        queries = np.where(hashes[start:stop], 1.0, -1.0).astype(np.float32).reshape(-1, bits)
        dots = (queries @ upright[start:].T).reshape(stop - start, 8, -1).max(axis=1)  # (block, n - start)
        dots[np.tril_indices(stop - start)] = -np.inf  # each pair once: i < j
        i, j = np.nonzero(dots >= cutoff)
        near.extend(zip((i + start).tolist(), (j + start).tolist(), ((bits - dots[i, j]) // 2).astype(int).tolist()))
        far = np.where(dots < cutoff, dots, -np.inf)
        k = min(closest, far.size)
        if k:
            kth = np.partition(far.ravel(), far.size - k)[far.size - k]
            # the k closest and any tied with the k-th (or every pair there is, in a block of fewer)
            i, j = np.nonzero(far >= kth if np.isfinite(kth) else np.isfinite(far))
            beyond.extend(zip((i + start).tolist(), (j + start).tolist(), ((bits - far[i, j]) // 2).astype(int).tolist()))
    if n >= PROGRESS_FROM:
        progress_line(f"near-copy comparison of {n:,} images: done in {time.time() - started:,.0f}s", finished=True,
                      logged=True)
    beyond.sort(key=lambda t: (t[2], t[0], t[1]))
    return near, beyond[:closest]


def _progress(done, n, started):
    """The all-pairs comparison's share done (rows near the end have fewer pairs left), on stderr."""
    if done <= 0:
        return
    left = (time.time() - started) * (1 - done) / done
    progress_line(f"near-copy comparison of {n:,} images: {done:.0%}, {left:,.0f}s left", finished=False,
                  logged=int(done * 10) != int((done - BLOCK * 2 / n) * 10))  # in a log: about every tenth


def cached_pairs(hashes, threshold, cache_dir=None):
    """hamming_pairs, kept in cache_dir under a hash of every image's hash and the threshold: the all-pairs
    comparison is quadratic (minutes at 100k images), and an unchanged folder gives the same answer."""
    if not cache_dir:
        return hamming_pairs(hashes, threshold)
    key = hashlib.sha256(np.packbits(hashes, axis=-1).tobytes() + f"|{threshold}|{CLOSEST_SHOWN}".encode())
    path = os.path.join(cache_dir, f"pairs-{key.hexdigest()[:16]}.json")
    try:
        with open(path) as f:
            blob = json.load(f)
        return [tuple(p) for p in blob["near"]], [tuple(p) for p in blob["beyond"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or damaged: computed again
    near, beyond = hamming_pairs(hashes, threshold)
    write_json_atomic(path, {"near": near, "beyond": beyond})
    kept = sorted((os.path.join(cache_dir, n) for n in os.listdir(cache_dir) if n.startswith("pairs-")),
                  key=os.path.getmtime)
    for stale in kept[:-PAIRS_KEPT]:  # earlier states of the folders scanned here
        os.remove(stale)
    return near, beyond


def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _pair_reason(images, i, j, bits):
    return "identical bytes" if images[i].sha256 == images[j].sha256 else f"near-copies, {bits} of 256 hash bits differ"


def group_images(images, threshold=NEAR_COPY_BITS, strict=False, cache_dir=None):
    """Group identical and near-identical images.

    Returns (group id per image, closest unmerged pairs, label conflicts). A group that holds both labels
    is a conflict ({"files": [...], "reason": ...}): the same face cannot be both, so the caller leaves the
    whole group out; with strict=True it is an error naming two of its files instead.
    """
    n = len(images)
    parent = list(range(n))
    by_sha = {}
    cross = {}  # a pair of files under different labels that joined their group: the conflict's reason
    for i, rec in enumerate(images):
        if rec.sha256 in by_sha:
            j = by_sha[rec.sha256]
            parent[_find(parent, i)] = _find(parent, j)
            if images[i].label != images[j].label:
                cross.setdefault(i, (j, i, 0))
        by_sha.setdefault(rec.sha256, i)
    hashes = np.stack([rec.phash for rec in images]) if images else np.zeros((0, 8, HASH_SIDE ** 2), bool)
    near, beyond = cached_pairs(hashes, threshold, cache_dir)
    for i, j, bits in near:
        parent[_find(parent, j)] = _find(parent, i)
        if images[i].label != images[j].label:
            cross.setdefault(i, (i, j, bits))
    roots = [_find(parent, i) for i in range(n)]
    conflicts = {}
    for i, j, bits in cross.values():
        root = roots[i]
        if root in conflicts:
            continue
        real, fake = (i, j) if images[i].label == 0 else (j, i)
        reason = f"the same image is labelled both real and fake: {images[real].path} and {images[fake].path} " \
                 f"({_pair_reason(images, i, j, bits)})"
        if strict:
            raise UserError(reason)
        conflicts[root] = {"files": sorted(images[k].path for k in range(n) if roots[k] == root), "reason": reason}
    closest = [{"a": images[i].path, "b": images[j].path, "bits": bits} for i, j, bits in beyond]
    return roots, closest, [conflicts[r] for r in sorted(conflicts, key=lambda r: conflicts[r]["files"][0])]


def split_of(group_key, salt=""):
    """Map a group's content key to a side, uniformly and independently of every other group."""
    u = int(hashlib.sha256((salt + group_key).encode()).hexdigest()[:15], 16) / 16 ** 15
    edge = 0.0
    for name, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]


def fingerprint(files):
    """sha256 over (path, sha256, label, split) of every file, in path order: the split's identity."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(json.dumps([f["path"], f["sha256"], f["label"], f["split"]]).encode())
    return h.hexdigest()


def _given_sides(images, split):
    """Each image's side when the data set's own split is used (None: the kit makes one), after checking it.
    A missing validation side is carved from the given train side (VAL_FROM_TRAIN of its groups, by content);
    with no test side, the given validation side is the test side (GenImage publishes results on its val/)."""
    sides = {rec.side for rec in images if rec.side}
    if split == "made" or (split == "auto" and not sides):
        return None
    if not sides:
        raise UserError("--split given: this folder brings no split of its own (no train/ val/ test/ folders)")
    if "train" not in sides:
        raise UserError(f"the folder's own split has no train side (only {', '.join(sorted(sides))}): nothing to "
                        "train on; use it as a test set (compare.report --test-dir), or --split made")
    if len(sides) == 1:
        raise UserError("the folder's own split has only a train side; add val/ or test/ folders, or --split made")
    rename = {"val": "test"} if "test" not in sides else {}
    return [rename.get(rec.side, rec.side) for rec in images]


def _assign_sides(images, members, given, salt):
    """{group root: side} for the kit's own split, or each image's side for a given one (val carved from train)."""
    if given is None:
        return {r: split_of(min(images[i].sha256 for i in idx), salt) for r, idx in members.items()}, None
    carve = "val" not in given
    sides = list(given)
    if carve:
        for idx in members.values():
            train = [i for i in idx if given[i] == "train"]
            key = min((images[i].sha256 for i in train), default="")
            if train and int(hashlib.sha256((salt + "val:" + key).encode()).hexdigest()[:15], 16) / 16 ** 15 < VAL_FROM_TRAIN:
                for i in train:
                    sides[i] = "val"
    return None, sides


def _crossings(images, members, sides, strict):
    """Groups of identical or near-identical images that a given split puts on more than one side: reported,
    never moved (the data set's split is what published numbers are quoted on); strict: an error."""
    out = []
    for idx in members.values():
        on = sorted({sides[i] for i in idx}, key=SPLITS.index)
        if len(on) > 1:
            files = sorted(f"{images[i].path} ({sides[i]})" for i in idx)
            reason = f"the same picture on the {' and '.join(on)} sides of the given split: {', '.join(files[:4])}" + \
                (f" and {len(files) - 4} more" if len(files) > 4 else "")
            if strict:
                raise UserError(reason + " (--strict)")
            out.append({"files": sorted(images[i].path for i in idx), "sides": on, "reason": reason})
    return sorted(out, key=lambda c: c["files"][0])


def make_split(scan, threshold=NEAR_COPY_BITS, salt="", strict=False, cache_dir=None, split="auto"):
    """The split manifest (a JSON-ready dict) of a scanned folder. Groups under both labels are left out.
    cache_dir: where the near-copy comparison's result is kept for the next time (cached_pairs).
    split: "made" (the kit's own), "given" (the data set's train / val / test folders) or "auto" (given where
    the folder has them: published numbers are quoted on a data set's own split)."""
    if split not in SPLIT_SOURCES:
        raise UserError(f"unknown --split {split!r}; choose one of {', '.join(SPLIT_SOURCES)}")
    images = scan.images
    given = _given_sides(images, split)
    roots, closest, conflicts = group_images(images, threshold, strict, cache_dir)
    left_out = {path for c in conflicts for path in c["files"]}
    members = {}
    for i, r in enumerate(roots):
        if images[i].path not in left_out:
            members.setdefault(r, []).append(i)
    group_side, sides = _assign_sides(images, members, given, salt)
    files = []
    for r, idx in members.items():
        key = min(images[i].sha256 for i in idx)
        for i in idx:
            entry = {"path": images[i].path, "sha256": images[i].sha256, "label": images[i].label,
                     "split": group_side[r] if given is None else sides[i], "group": key[:16]}
            if images[i].generator:
                entry["generator"] = images[i].generator
            files.append(entry)
    files.sort(key=lambda f: f["path"])
    merged = [idx for idx in members.values() if len(idx) > 1]
    counts = {s: {name: sum(1 for f in files if f["split"] == s and f["label"] == label)
                  for label, name in LABEL_NAMES.items()} for s in SPLITS}
    manifest = {
        "format": MANIFEST_FORMAT,
        "data_dir": scan.root,
        "fractions": SPLIT_FRACTIONS,
        "near_copy_bits": threshold,
        "hash_bits": HASH_SIDE ** 2,
        "fingerprint": fingerprint(files),
        "summary": scan.summary(),
        "counts": counts,
        "groups": {"images": len(images), "groups": len(members), "near_copy_groups": len(merged),
                   "images_in_near_copy_groups": sum(len(m) for m in merged)},
        "closest_unmerged": closest,
        "rejected": [{"path": p, "reason": r} for p, r in scan.rejected],
        "label_conflicts": conflicts,  # left out of every side: a picture cannot be both real and fake
        "files": files,
    }
    if given is not None:
        manifest["split_source"] = "given"
        manifest["given_sides"] = sorted({rec.side for rec in images if rec.side}, key=SPLITS.index)
        manifest["given_split_crossings"] = _crossings(images, members, sides, strict)
    if scan.layout is not None:
        manifest["layout"] = scan.layout.describe()
    return manifest


def balanced_subset(manifest, split, per_class, seed, what, at_most=False):
    """Exactly per_class files of each label from one side of a split (at_most: up to that many): the first
    in an order drawn from the seed and each file's content, so it is deterministic per seed and nested (the
    10 of a seed are among its 25); UserError, naming `what` and the counts, when a class has too few."""
    chosen = []
    for label in (0, 1):
        files = [f for f in manifest["files"] if f["split"] == split and f["label"] == label]
        if len(files) < per_class and not at_most:
            counts = [sum(1 for f in manifest["files"] if f["split"] == split and f["label"] == lab) for lab in (0, 1)]
            raise UserError(f"{what}: its {split} split has {counts[0]} real and {counts[1]} fake images; "
                            f"{per_class} of each are needed")
        chosen += sorted(files, key=lambda f: hashlib.sha256(f"{seed}:{f['sha256']}".encode()).hexdigest())[:per_class]
    return chosen


def one_class_sides(manifest, sides=SPLITS):
    """[(side, reals, fakes)] of the sides that lack a class: nothing on them can be measured (AUC is undefined)."""
    counts = [(s, manifest["counts"][s]["real"], manifest["counts"][s]["fake"]) for s in sides]
    return [(s, real, fake) for s, real, fake in counts if not (real and fake)]


def require_both_classes(manifest, what, sides=SPLITS):
    """UserError, naming the counts, where a side lacks real or fake images: refused before any training, so
    no AUC of nan (and no threshold chosen on one class) is ever stored as a result."""
    missing = one_class_sides(manifest, sides)
    if missing:
        counts = "; ".join(f"its {s} side has {real:,} real and {fake:,} fake images" for s, real, fake in missing)
        raise UserError(f"{what}: {counts}; every side needs both classes to be measured (add images of the "
                        "missing class, or more images overall for the kit's split to reach each side)")


def load_manifest(path):
    """Read a split manifest and check that it is whole (its fingerprint matches its files)."""
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read split manifest {path}: {e}")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a split manifest of this kit")
    if fingerprint(manifest["files"]) != manifest.get("fingerprint"):
        raise UserError(f"{path}: the file list does not match its fingerprint (edited or damaged)")
    return manifest


def describe(manifest):
    """Human-readable lines: dataset summary, per-split counts, grouping, closest unmerged pairs."""
    lines = [manifest["summary"]] + ([manifest["layout"]] if manifest.get("layout") else [])
    if manifest.get("split_source") == "given":
        given = manifest["given_sides"]
        note = "" if "test" in given and "val" in given else \
            " (validation carved from train)" if "test" in given else \
            " (no test side given: its val side is the test side, validation carved from train)"
        lines.append(f"split: the data set's own ({', '.join(given)}){note}; --split made makes the kit's own")
    for s in SPLITS:
        c = manifest["counts"][s]
        lines.append(f"  {s:<5} {c['real'] + c['fake']:>7,}  ({c['real']:,} real, {c['fake']:,} fake)")
    for side, real, fake in one_class_sides(manifest):
        lines.append(f"warning: the {side} side has {real:,} real and {fake:,} fake images; no detector can be trained "
                     "or measured on this split until every side holds both classes")
    g = manifest["groups"]
    lines.append(f"near-copies: {g['images_in_near_copy_groups']:,} images merged into "
                 f"{g['near_copy_groups']:,} groups (each kept on one side); "
                 f"{g['groups']:,} groups in all, threshold {manifest['near_copy_bits']} of "
                 f"{manifest['hash_bits']} hash bits")
    conflicts = manifest.get("label_conflicts") or []
    if conflicts:
        lines.append(f"left out: {sum(len(c['files']) for c in conflicts):,} images in {len(conflicts):,} "
                     "group(s) labelled both real and fake (--strict makes this an error):")
        for c in conflicts:
            lines.append(f"  {c['reason']}" + (f"; also {', '.join(c['files'][2:])}" if len(c["files"]) > 2 else ""))
    crossings = manifest.get("given_split_crossings") or []
    if crossings:
        lines.append(f"warning: {len(crossings):,} picture(s) on more than one side of the given split (kept as given; "
                     "--strict makes this an error):")
        lines.extend(f"  {c['reason']}" for c in crossings[:10])
    if manifest["closest_unmerged"]:
        lines.append("closest pairs not merged (look at them if the threshold seems too strict):")
        for p in manifest["closest_unmerged"]:
            lines.append(f"  {p['bits']:>3} bits  {p['a']}  ~  {p['b']}")
    lines.append(f"fingerprint {manifest['fingerprint'][:16]}")
    return lines


def scan_cache_path(runs_dir):
    return os.path.join(os.path.abspath(runs_dir), ".cache", "scan.json")


def experiment_split(data_dir, runs_dir, experiment, log=print, strict=False, split="auto"):
    """The experiment's split: made once and written to runs/<experiment>/split.json, then reused.
    split: as make_split's; an experiment keeps the kind of split it was made with."""
    path = os.path.join(experiment_dir(runs_dir, experiment), "split.json")
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(path):
        manifest = load_manifest(path)
        if os.path.abspath(manifest["data_dir"]) != data_dir:
            raise UserError(f"experiment {experiment!r} was split from {manifest['data_dir']}, not "
                            f"{data_dir}; use another --experiment for other data")
        source = manifest.get("split_source", "made")
        if split not in ("auto", source):
            raise UserError(f"experiment {experiment!r} uses the {'data set' if source == 'given' else 'kit'}'s own "
                            f"split, not --split {split}; use another --experiment for another split")
        log(f"split: reusing {path} ({len(manifest['files']):,} images, "
            f"fingerprint {manifest['fingerprint'][:16]})")
        return manifest
    scan = scan_folder(data_dir, cache_path=scan_cache_path(runs_dir))
    manifest = make_split(scan, strict=strict, cache_dir=os.path.dirname(scan_cache_path(runs_dir)), split=split)
    write_json_atomic(path, manifest)
    for line in describe(manifest):
        log(line)
    log(f"split: written to {path}")
    return manifest
