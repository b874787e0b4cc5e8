"""Decode a side of the split once into an on-disk array that every run of the experiment shares.

runs/<experiment>/.decoded/<split>-<size>px-<mode>[-<align>]-<key>.npy holds the images as uint8
(N, S, S, 3) in the split's file order (framed by data.align where the name says auto or ffhq); the .json beside it is written last and is what makes the cache finished: its rows
(the files that decoded), their labels, the files skipped and why, and a crc32 per row. The key is a hash of
the files' paths and contents (sha256), so a changed file or another split gets another cache and the old
one is removed. A cache without its .json (an interrupted build), of the wrong size or with a row that fails
its checksum is never read: it is rebuilt, or the read stops with one line naming it.

A split whose decoded images fit in IN_MEMORY_MB is read into memory (numpy, the fastest path); a larger
one stays on disk as CachedImages and is read in batches with pread, never mapped, so resident memory
does not grow with the data.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import time
import zlib

import numpy as np

from data.align import DETECTOR, pictures, survey
from data.pipeline import load_images
from data.runs import experiment_dir, write_json_atomic
from data.runtime import UserError, progress_line

CACHE_FORMAT = 2  # 2: images turned by their EXIF orientation (data.scan.upright)
MEMORY_ENV = "DEEPFAKE_KIT_MEMORY_MB"
IN_MEMORY_MB = 1024  # per side of the split; above it the images are streamed from the cache file (in memory,
# tf.data holds a second copy and the training shuffle a third)
BUILD_CHUNK = 256  # images decoded and written at a time while the cache is built
FOLDER = ".decoded"


def in_memory_limit():
    """Bytes of decoded images a side of the split may take in memory (DEEPFAKE_KIT_MEMORY_MB overrides)."""
    value = os.environ.get(MEMORY_ENV)
    try:
        return int(float(value) * 2 ** 20) if value else IN_MEMORY_MB * 2 ** 20
    except ValueError:
        raise UserError(f"${MEMORY_ENV}={value!r} is not a number of megabytes")


class DamagedCache(UserError):
    """A row of a decode cache fails its checksum."""


class CachedImages:
    """A finished cache's images (or a subset of its rows), read on demand; len(), shape, [i], [indices]."""

    def __init__(self, path, shape, offset, checksums, rows=None):
        self.path, self.offset, self.checksums = path, offset, checksums
        self.image_shape = tuple(shape[1:])
        self.row_bytes = int(np.prod(self.image_shape))
        self.rows = np.arange(shape[0]) if rows is None else np.asarray(rows)
        self._fd = os.open(path, os.O_RDONLY)  # pread on one descriptor is safe from tf.data's threads

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return (len(self.rows),) + self.image_shape

    dtype = np.dtype(np.uint8)

    def subset(self, selection):
        """The same cache restricted to some of its rows (a boolean mask or positions), nothing read."""
        return CachedImages(self.path, (0,) + self.image_shape, self.offset, self.checksums, self.rows[selection])

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        return self.read(np.arange(len(self))[key])

    def read(self, positions):
        """uint8 images at these positions, each checked against its row's crc32."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        out = np.empty((len(positions),) + self.image_shape, np.uint8)
        for k, row in enumerate(self.rows[positions]):
            data = os.pread(self._fd, self.row_bytes, self.offset + int(row) * self.row_bytes)
            if len(data) != self.row_bytes or zlib.crc32(data) != self.checksums[row]:
                with contextlib.suppress(OSError):  # no longer finished: the next command rebuilds it
                    os.remove(self.path[:-len(".npy")] + ".json")
                raise DamagedCache(f"the decode cache {self.path} is damaged (image {int(row)} fails its "
                                   "checksum); it is set aside to be rebuilt: run the command again")
            out[k] = np.frombuffer(data, np.uint8).reshape(self.image_shape)
        return out

    def batches(self, batch_size):
        for start in range(0, len(self), batch_size):
            yield self.read(np.arange(start, min(len(self), start + batch_size)))

    def load(self):
        """Every image, in memory."""
        return self.read(np.arange(len(self)))


def cache_folder(runs_dir, experiment):
    return os.path.join(experiment_dir(runs_dir, experiment), FOLDER)


def cache_key(files, size, mode, align="none"):
    # pictures as given keep the key they had before alignment existed: the same cache, the same numbers
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, size, mode] + ([align, DETECTOR] if align != "none" else [])).encode())
    for f in files:
        h.update(json.dumps([f["path"], f["sha256"]]).encode())  # JSON: a file name need not be valid UTF-8
    return h.hexdigest()[:16]


def cached_split(manifest, split, size, mode, folder, log=print, aligner=None):
    """(images, labels, paths) of one side of the split at this size: numpy in memory when it fits in
    in_memory_limit(), else CachedImages; the cache in `folder` is built first if it is missing or stale.
    aligner (data.align.Aligner): the faces framed as it says, a picture without one to judge skipped."""
    files = [f for f in manifest["files"] if f["split"] == split]
    align = aligner.mode if aligner is not None else "none"
    stem = f"{split}-{size}px-{mode}" + (f"-{align}" if aligner is not None else "")
    path = os.path.join(folder, f"{stem}-{cache_key(files, size, mode, align)}.npy")
    os.makedirs(folder, exist_ok=True)
    for attempt in (1, 2):
        with _lock(path):  # a second command waits, then finds the cache the first one built
            index = _finished(path, _stats(manifest["data_dir"], files))
            if index is not None:
                log(f"decode cache: reusing {path} ({len(index['rows']):,} images at {size}px)")
            else:
                index = _build(manifest, files, size, mode, path, log, aligner)
                _remove_stale(folder, stem, path)
        images = CachedImages(path, index["shape"], index["offset"], np.array(index["checksums"], np.uint32),
                              index["rows"])
        if not images.rows.size or images.rows.size * images.row_bytes > in_memory_limit():
            break
        try:
            images = images.load()  # every row checked on the way in
            break
        except DamagedCache:  # its index is gone: the second attempt rebuilds it
            if attempt == 2:
                raise
    for skipped, reason in index["skipped"]:
        print(f"warning: skipping {skipped}: {reason}", file=sys.stderr)
    if not len(images):
        raise UserError(f"the {split} split of {manifest['data_dir']} has no readable images")
    return images, np.array(index["labels"], np.float32), [files[r]["path"] for r in index["rows"]]


@contextlib.contextmanager
def _lock(path):
    with open(path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _stats(root, files):
    """(size, modification time) of each file, None for a missing one: what tells a file changed."""
    out = []
    for f in files:
        try:
            st = os.stat(os.path.join(root, f["path"]))
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


def _finished(path, stats):
    """The index of a finished, whole cache at path made from files of these stats; None (after removing
    the remains) for anything else."""
    why = None
    try:
        with open(path[:-len(".npy")] + ".json") as f:
            index = json.load(f)
        if index["format"] != CACHE_FORMAT or os.path.getsize(path) != index["offset"] + int(np.prod(index["shape"])):
            why = "is incomplete or damaged"
        elif index["stats"] != stats:
            why = "was made before a file of the split changed"
    except (OSError, ValueError, KeyError, TypeError):
        why = "is incomplete or damaged"
    if why is None:
        return index
    for leftover in (path, path[:-len(".npy")] + ".json"):
        if os.path.exists(leftover):
            print(f"decode cache: {leftover} {why}; rebuilding it", file=sys.stderr)
            os.remove(leftover)
    return None


def _build(manifest, files, size, mode, path, log, aligner=None):
    """Decode every file of the list into path (via a temporary file), then write its index last."""
    root, started = manifest["data_dir"], time.time()
    if aligner is not None:  # every face found first, one file at a time, with progress and the cache kept
        for line in survey(root, pictures(files), aligner.mode, aligner.size, aligner.cache).lines(aligner.mode):
            log(line)
    shape = (len(files), size, size, 3)
    stats = _stats(root, files)  # before decoding: a file changed meanwhile fails its sha256 and is skipped
    for name in os.listdir(os.path.dirname(path)):  # a build killed half-way (the lock is ours now)
        if name.startswith(os.path.basename(path) + ".partial-"):
            os.remove(os.path.join(os.path.dirname(path), name))
    tmp = f"{path}.partial-{os.getpid()}"
    rows, skipped, checksums = [], [], [0] * len(files)
    try:
        with open(tmp, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
            offset = out.tell()
            for start in range(0, len(files), BUILD_CHUNK):
                chunk = files[start:start + BUILD_CHUNK]
                x, kept, failed = load_images([os.path.join(root, f["path"]) for f in chunk], size, mode,
                                              [f["sha256"] for f in chunk], aligner=aligner)
                block = np.zeros((len(chunk), size, size, 3), np.uint8)  # a skipped file leaves a row of zeros
                block[kept] = x
                for k in range(len(chunk)):
                    checksums[start + k] = zlib.crc32(block[k].tobytes())
                out.write(block.tobytes())
                rows += [start + k for k in kept]
                skipped += [(os.path.relpath(p, root), reason) for p, reason in failed]
                _progress(start + len(chunk), len(files), started, path)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    index = {"format": CACHE_FORMAT, "shape": list(shape), "offset": offset, "rows": rows,
             "labels": [files[r]["label"] for r in rows], "skipped": skipped, "checksums": checksums, "stats": stats,
             "seconds": round(time.time() - started, 2)}
    write_json_atomic(path[:-len(".npy")] + ".json", index)  # last: the cache is finished from here on
    log(f"decode cache: {len(rows):,} images at {size}px decoded in {index['seconds']:.0f}s into {path}")
    return index


def _progress(done, total, started, path):
    """images/s and time left on stderr: a live line on a terminal, every tenth of the way in a log."""
    if total < 2 * BUILD_CHUNK:
        return
    rate = done / max(1e-9, time.time() - started)
    progress_line(f"decoding {os.path.basename(path)}: {done:,}/{total:,} images, {rate:,.0f}/s, "
                  f"{(total - done) / rate:,.0f}s left", finished=done == total,
                  logged=done // BUILD_CHUNK % max(1, total // BUILD_CHUNK // 10) == 0)


def _remove_stale(folder, stem, keep):
    """Caches of the same side, size, mode and alignment made from other files: the split or a file changed.
    Only stem-KEY.npy and .json (another command's build is .partial-, and another alignment another stem)."""
    pattern = re.compile(re.escape(stem) + r"-[0-9a-f]{16}\.(npy|json)")
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if pattern.fullmatch(name) and not path.startswith(keep[:-len(".npy")]):
            os.remove(path)
