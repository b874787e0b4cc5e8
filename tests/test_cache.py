"""The decode cache (data/cache.py): built once, reused, rebuilt when the data changes, never read damaged,
and a split streamed from it trains and predicts exactly as in memory, in bounded memory."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data import cache as C
from data.pipeline import load_split, make_dataset
from data.runtime import run_main
from data.scan import scan_folder
from data.split import make_split
from conftest import make_dataset_dir, smooth_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def split(tiny_faces):
    return make_split(scan_folder(tiny_faces))


def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("data.pipeline.load_images", refuse)


def cache_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith((".npy", ".json")))


def test_a_split_is_decoded_once_and_the_second_run_reuses_it(split, tmp_path, monkeypatch):
    folder = str(tmp_path / "decoded")
    x, y, paths = C.cached_split(split, "train", 24, "resize", folder)
    direct = load_split(split, "train", 24)
    np.testing.assert_array_equal(x, direct[0])
    assert y.tolist() == direct[1].tolist() and paths == direct[2]
    no_decoding(monkeypatch)
    lines = []
    again = C.cached_split(split, "train", 24, "resize", folder, log=lines.append)
    np.testing.assert_array_equal(again[0], x)
    assert "reusing" in lines[0] and len(cache_files(folder)) == 2  # one array and its index


def test_a_changed_file_or_split_rebuilds_the_cache_and_removes_the_old_one(split, tiny_faces, tmp_path, capsys):
    folder = str(tmp_path / "decoded")
    C.cached_split(split, "train", 24, "resize", folder)
    before = cache_files(folder)
    changed = next(f for f in split["files"] if f["split"] == "train")
    smooth_image(99, 32).save(os.path.join(tiny_faces, changed["path"]), "JPEG")
    x, _, paths = C.cached_split(split, "train", 24, "resize", folder)
    err = capsys.readouterr().err
    assert "a file of the split changed" in err and f"skipping {changed['path']}" in err
    assert changed["path"] not in paths and len(x) == len(paths)
    new_split = make_split(scan_folder(tiny_faces))  # the file's new content: another split, another key
    C.cached_split(new_split, "train", 24, "resize", folder)
    assert len(cache_files(folder)) == 2 and cache_files(folder) != before


@pytest.mark.parametrize("damage", ["no index", "truncated", "a changed byte"])
def test_a_half_written_or_damaged_cache_is_rebuilt_never_read(split, tmp_path, damage, capsys):
    folder = str(tmp_path / "decoded")
    good = C.cached_split(split, "val", 24, "resize", folder)[0]
    array = os.path.join(folder, next(n for n in cache_files(folder) if n.endswith(".npy")))
    if damage == "no index":  # killed after the array, before its index: not finished
        os.remove(array[:-len(".npy")] + ".json")
    elif damage == "truncated":
        with open(array, "r+b") as f:
            f.truncate(os.path.getsize(array) - 100)
    else:
        with open(array, "r+b") as f:
            f.seek(os.path.getsize(array) - 5)
            f.write(bytes(b ^ 0xFF for b in f.read(1)))
    rebuilt = C.cached_split(split, "val", 24, "resize", folder)[0]
    np.testing.assert_array_equal(rebuilt, good)
    assert "rebuilding" in capsys.readouterr().err


def test_a_damaged_row_stops_a_streamed_read_with_one_line_and_the_next_run_rebuilds(split, tmp_path, monkeypatch,
                                                                                     capsys):
    folder = str(tmp_path / "decoded")
    monkeypatch.setenv(C.MEMORY_ENV, "0")  # every split streamed
    images = C.cached_split(split, "train", 24, "resize", folder)[0]
    assert isinstance(images, C.CachedImages)
    good = images.load()
    with open(images.path, "r+b") as f:
        f.seek(images.offset + 3 * images.row_bytes + 7)
        flipped = bytes(b ^ 0xFF for b in f.read(2))
        f.seek(images.offset + 3 * images.row_bytes + 7)
        f.write(flipped)
    with pytest.raises(C.DamagedCache, match="damaged .image 3 fails its checksum"):
        images.read([2, 3])

    def train_on_it():  # inside tf.data TensorFlow wraps the error: the command still says it in one line
        for _ in make_dataset(images, np.zeros(len(images), np.float32), 4):
            pass

    assert run_main(train_on_it) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: the decode cache {images.path}")
    again = C.cached_split(split, "train", 24, "resize", folder)[0]
    np.testing.assert_array_equal(again.load(), good)


@pytest.mark.end_to_end
def test_streamed_training_batches_and_predictions_equal_the_in_memory_ones(split, tmp_path, monkeypatch):
    import keras

    from classifiers.predict import probabilities

    folder = str(tmp_path / "decoded")
    x, y, _ = C.cached_split(split, "train", 24, "resize", folder)
    monkeypatch.setenv(C.MEMORY_ENV, "0")
    streamed = C.cached_split(split, "train", 24, "resize", folder)[0]
    assert isinstance(x, np.ndarray) and isinstance(streamed, C.CachedImages)

    def epoch(images):
        ds = make_dataset(images, y, 8, training=True, seed=3, augment=("flip", "jpeg"), mixup=0.2)
        return [(a.numpy(), b.numpy()) for a, b in ds]

    for (a, la), (b, lb) in zip(epoch(x), epoch(streamed), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    monkeypatch.setattr("classifiers.predict.STREAM_CHUNK", 16)  # several chunks of the streamed side
    np.testing.assert_array_equal(probabilities(model, streamed, tta=True, batch_size=8),
                                  probabilities(model, x, tta=True, batch_size=8))
    np.testing.assert_array_equal(probabilities(model, x, batch_size=8),  # chunked as all at once
                                  model.predict(x.astype("float32"), batch_size=8, verbose=0).reshape(-1))


PEAK_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from data.cache import cached_split
from data.pipeline import make_dataset, select
from data.split import load_manifest

def epoch(x, y):
    return sum(int(b[0].shape[0]) for b in make_dataset(x, y, 32, training=True, seed=1, augment=("flip",)))

x, y, _ = cached_split(load_manifest({manifest!r}), "train", {size}, "resize", {folder!r})
epoch(select(x, np.arange(512)), y[:512])  # TensorFlow's own threads, functions and buffers, at full size
x, y = select(x, np.arange({count})), y[:{count}]
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # peak resident memory (VmHWM) restarts from now: earlier transients do not hide growth
before = rss("VmRSS")
if {load}:  # the control: the same epoch with the images read into memory first
    x = x.load()
seen = epoch(x, y)
print(type(x).__name__, seen, rss("VmHWM") - before)
"""


def peak_growth(manifest_path, folder, size, count, load=False):
    """(type of the training images, images seen in an epoch over the first `count` training images, bytes
    the peak resident memory grew by during it), in a fresh process: nothing an earlier test did counts."""
    script = PEAK_SCRIPT.format(root=ROOT, manifest=manifest_path, size=size, folder=folder, count=count, load=load)
    env = dict(os.environ, **{C.MEMORY_ENV: "1"}, TF_CPP_MIN_LOG_LEVEL="3")  # 1 MB: every side is streamed
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    kind, seen, grown = out.stdout.split()[-3:]
    return kind, int(seen), int(grown)


@pytest.mark.end_to_end
def test_a_streamed_epoch_does_not_grow_with_the_data_and_a_loaded_one_does(tmp_path):
    """What streaming promises is that memory does not grow with the training images. A training epoch also
    holds TensorFlow's working set (threads, tf.data's autotuned buffers), which depends on the CPU, its speed
    and the precision, not on the data; so the epoch over every training image (about 80 MB at 96 px) is
    compared with the same epoch over a tenth of them. Streamed, the difference in peak memory growth is a
    small part of the 72 MB of images between them; read into memory first (the control), it is at least
    most of them: the measure would see a copy of the data."""
    from data.runs import write_json_atomic

    make_dataset_dir(tmp_path / "d", n_real=2100, n_fake=0, size=24, seed=10)  # seeds apart: 4,200 distinct
    data = make_dataset_dir(tmp_path / "d", n_real=0, n_fake=2100, size=24, seed=30)
    manifest = make_split(scan_folder(data))
    path = write_json_atomic(str(tmp_path / "split.json"), manifest)
    folder, size, image_bytes = str(tmp_path / "decoded"), 96, 96 * 96 * 3
    everything = len(C.cached_split(manifest, "train", size, "resize", folder)[1])  # built here: children read
    tenth = everything // 10
    data_between = (everything - tenth) * image_bytes
    assert data_between > 60 * 2 ** 20

    growth = {}
    for load in (False, True):
        for count in (tenth, everything):
            kind, seen, growth[load, count] = peak_growth(path, folder, size, count, load)
            assert seen == count and kind == ("ndarray" if load else "CachedImages")
    streamed = growth[False, everything] - growth[False, tenth]
    loaded = growth[True, everything] - growth[True, tenth]
    print(f"growth, tenth -> all: streamed {growth[False, tenth] / 2 ** 20:.1f} -> "
          f"{growth[False, everything] / 2 ** 20:.1f} MB, loaded {growth[True, tenth] / 2 ** 20:.1f} -> "
          f"{growth[True, everything] / 2 ** 20:.1f} MB; images between them {data_between / 2 ** 20:.1f} MB")
    assert streamed < 0.25 * data_between
    assert loaded > 0.75 * data_between


def test_the_near_copy_comparison_is_kept_for_an_unchanged_folder(tiny_faces, tmp_path, monkeypatch):
    first = make_split(scan_folder(tiny_faces), cache_dir=str(tmp_path))
    monkeypatch.setattr("data.split.hamming_pairs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("again")))
    assert make_split(scan_folder(tiny_faces), cache_dir=str(tmp_path)) == first
    with open(os.path.join(tmp_path, os.listdir(tmp_path)[0]), "w") as f:
        json.dump({"near": "garbage"}, f)  # a damaged record is computed again, not trusted
    monkeypatch.undo()
    assert make_split(scan_folder(tiny_faces), cache_dir=str(tmp_path)) == first


def test_the_scale_benchmark_writes_distinct_faces_of_both_classes(tmp_path):
    from compare.bench.scale import write_set

    seconds = write_set(str(tmp_path / "set"), 120, log=lambda line: None)
    assert seconds > 0 and write_set(str(tmp_path / "set"), 120, log=lambda line: None) == 0.0  # kept
    manifest = make_split(scan_folder(str(tmp_path / "set")))
    assert manifest["groups"]["near_copy_groups"] == 0 and len(manifest["files"]) == 120
    assert min(manifest["counts"]["train"].values()) > 20
