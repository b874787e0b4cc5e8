import os
import zipfile

import numpy as np
import pytest

from data.pipeline import fit_square, load_split, make_dataset
from data.runs import BrokenRun, finish_run, list_runs, partial_dir, read_run
from data.runtime import UserError
from data.scan import scan_folder
from data.split import experiment_split, make_split


def test_load_split_decodes_resizes_and_labels(tiny_faces):
    manifest = make_split(scan_folder(tiny_faces))
    x, y, paths = load_split(manifest, "train", 24)
    assert x.shape == (len(paths), 24, 24, 3) and x.dtype == np.uint8
    expected = {f["path"]: f["label"] for f in manifest["files"]}
    assert [expected[p] for p in paths] == y.astype(int).tolist()
    assert set(y.tolist()) == {0.0, 1.0}


def test_file_vanishing_after_the_split_is_skipped_with_a_warning(tiny_faces, capsys):
    manifest = make_split(scan_folder(tiny_faces))
    gone = next(f for f in manifest["files"] if f["split"] == "train")
    os.remove(os.path.join(tiny_faces, gone["path"]))
    changed = next(f for f in manifest["files"] if f["split"] == "train" and f is not gone)
    with open(os.path.join(tiny_faces, changed["path"]), "ab") as fh:
        fh.write(b"extra")
    x, y, paths = load_split(manifest, "train", 16)
    n_train = sum(f["split"] == "train" for f in manifest["files"])
    assert len(paths) == n_train - 2 and gone["path"] not in paths and changed["path"] not in paths
    err = capsys.readouterr().err
    assert gone["path"] in err and "changed since the split" in err


def test_dataset_is_shuffled_reproducibly_and_augmentations_keep_shape(tiny_faces):
    manifest = make_split(scan_folder(tiny_faces))
    x, y, _ = load_split(manifest, "train", 32)

    def first_batch(seed):
        ds = make_dataset(x, y, 8, training=True, seed=seed, augment=("flip", "jpeg", "blur", "resize"))
        return next(iter(ds))

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert a[0].shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    assert 0 <= a[0].numpy().min() and a[0].numpy().max() <= 255
    plain = make_dataset(x, y, 8)
    np.testing.assert_array_equal(next(iter(plain))[0].numpy(), x[:8].astype(np.float32))
    with pytest.raises(UserError, match="unknown augmentation"):
        make_dataset(x, y, 8, training=True, augment=("sharpen",))


def test_fit_square_crops_centre_or_resizes():
    from PIL import Image

    img = Image.fromarray(np.arange(60 * 40 * 3, dtype=np.uint8).reshape(40, 60, 3))
    assert fit_square(img, 20).size == (20, 20)
    crop = fit_square(img, 20, mode="crop")
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(img)[10:30, 20:40])


def test_experiment_split_is_written_once_and_reused(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    first = experiment_split(tiny_faces, runs, "exp", log=lambda *_: None)
    lines = []
    again = experiment_split(tiny_faces, runs, "exp", log=lines.append)
    assert first["fingerprint"] == again["fingerprint"] and "reusing" in lines[0]
    with pytest.raises(UserError, match="was split from"):
        experiment_split(str(tmp_path), runs, "exp")
    with pytest.raises(UserError, match="not allowed"):
        experiment_split(tiny_faces, runs, "../escape")


def test_run_folder_appears_only_when_finished(tmp_path):
    runs = str(tmp_path)
    partial = partial_dir(runs, "exp", "m")
    os.makedirs(partial)
    with zipfile.ZipFile(os.path.join(partial, "model.keras"), "w") as z:
        z.writestr("config.json", "{}")
    assert list_runs(runs, "exp") == ([], [])  # the partial folder is hidden
    final = finish_run(partial, os.path.join(runs, "exp", "m"), {"model": "m"})
    assert read_run(final)["model"] == "m" and not os.path.exists(partial)
    # a truncated model is never taken for a finished run
    with open(os.path.join(final, "model.keras"), "r+b") as f:
        f.truncate(10)
    with pytest.raises(BrokenRun, match="truncated"):
        read_run(final)
    good, broken = list_runs(runs, "exp")
    assert good == [] and "truncated" in broken[0][1]


@pytest.mark.parametrize("flags, isa, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, None, "mixed_bfloat16"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX2", "float32"),  # oneDNN capped below bfloat16: emulated, slow
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512_core_bf16", "mixed_bfloat16"),
    ({"avx2", "amx_bf16"}, "ALL", "mixed_bfloat16"),
    ({"avx2", "fma"}, None, "float32"),
])
def test_auto_precision_follows_the_cpu_and_a_capped_onednn(monkeypatch, flags, isa, expected):
    from data import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(runtime.import_tensorflow().config, "list_physical_devices", lambda kind: [])
    for name in runtime.ISA_ENV:
        monkeypatch.delenv(name, raising=False)
    if isa:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert runtime.resolve_precision("auto") == expected
    assert runtime.resolve_precision("float32") == "float32"


def test_bfloat16_asked_for_where_onednn_is_capped_below_it_is_one_line(monkeypatch):
    """On an AVX-512 CPU TensorFlow gives bfloat16 convolutions to oneDNN; capped at AVX2, oneDNN has none and
    the first step would fail deep inside TensorFlow."""
    from data import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError, match="oneDNN is capped at AVX2"):
        runtime.resolve_precision("mixed_bfloat16")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})  # no AVX-512: TensorFlow's own kernels
    assert runtime.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
