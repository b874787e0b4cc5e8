import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, make_dataset_dir, smooth_image, write_image
from data.runtime import UserError
from data.scan import CACHE_VERSION, FAKE, REAL, scan_folder
from data.split import SPLITS, describe, fingerprint, load_manifest, make_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def by_path(manifest):
    return {f["path"]: f for f in manifest["files"]}


def test_labels_are_explicit_any_case_and_nested(tmp_path):
    make_dataset_dir(tmp_path, n_real=3, n_fake=2, real="rEaL", fake="FAKE")
    write_image(str(tmp_path / "FAKE" / "deeper" / "still" / "nested.png"), smooth_image(99), "PNG")
    scan = scan_folder(str(tmp_path))
    labels = {r.path: r.label for r in scan.images}
    assert labels["rEaL/r000.jpg"] == REAL == 0
    assert labels["FAKE/f000.jpg"] == FAKE == 1
    assert labels["FAKE/deeper/still/nested.png"] == FAKE
    assert scan.counts() == {"real": 3, "fake": 3}


def test_bad_files_are_rejected_with_reasons_and_odd_ones_converted(tmp_path):
    make_dataset_dir(tmp_path, n_real=3, n_fake=3)
    fake = tmp_path / "Fake"
    (fake / "empty.jpg").write_bytes(b"")
    whole = jpeg_bytes(smooth_image(5, 64))
    (fake / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    (fake / "random.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (fake / "notes.txt").write_text("not an image")
    (fake / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (fake / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    Image.new("1", (8000, 8000)).save(fake / "bomb.png")  # 64 Mpx, a few KB on disk
    write_image(str(fake / "tiny.png"), Image.new("RGB", (1, 1)), "PNG")
    write_image(str(fake / "grey.png"), smooth_image(11).convert("L"), "PNG")
    write_image(str(fake / "rgba.png"), smooth_image(12).convert("RGBA"), "PNG")
    write_image(str(fake / "palette.gif"), smooth_image(13).convert("P"), "GIF")
    write_image(str(fake / "cmyk.jpg"), smooth_image(14).convert("CMYK"), "JPEG")
    grey16 = (np.asarray(smooth_image(15).convert("L"), np.uint16) * 257)
    Image.fromarray(grey16).save(fake / "deep16.png")
    scan = scan_folder(str(tmp_path))
    rejected = dict(scan.rejected)
    assert "empty" in rejected["Fake/empty.jpg"]
    assert "decode" in rejected["Fake/truncated.jpg"]
    assert "not an image" in rejected["Fake/random.jpg"]
    assert "not an image" in rejected["Fake/notes.txt"]
    assert "too large" in rejected["Fake/bomb.png"] and "not decoded" in rejected["Fake/bomb.png"]
    assert "too small" in rejected["Fake/tiny.png"]
    assert {p for p, _ in scan.skipped} == {"Fake/.DS_Store", "Fake/Thumbs.db"}
    good = {r.path for r in scan.images}
    assert {"Fake/grey.png", "Fake/rgba.png", "Fake/palette.gif", "Fake/cmyk.jpg", "Fake/deep16.png"} <= good
    assert "6 rejected" in scan.summary() and "Fake/empty.jpg: empty" in scan.summary()

    from data.scan import read_rgb

    deep, _ = read_rgb(str(fake / "deep16.png"))
    assert deep.mode == "RGB"
    # 16-bit values are scaled to 8 bits, not clipped to white
    assert abs(np.asarray(deep)[..., 0].astype(int) - np.asarray(smooth_image(15).convert("L"))).max() <= 1


def test_missing_class_folder_and_empty_class_are_one_line_errors(tmp_path):
    make_dataset_dir(tmp_path / "a", n_real=2, n_fake=0)
    with pytest.raises(UserError, match="has no fake class folder"):
        scan_folder(str(tmp_path / "a"))
    os.makedirs(tmp_path / "a" / "Fake")
    (tmp_path / "a" / "Fake" / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(UserError, match="Fake/ folder has no usable images"):
        scan_folder(str(tmp_path / "a"))
    with pytest.raises(UserError, match="does not exist"):
        scan_folder(str(tmp_path / "nowhere"))


def test_split_is_deterministic_and_stable_when_unrelated_files_are_added(tmp_path):
    make_dataset_dir(tmp_path, n_real=30, n_fake=30)
    first = make_split(scan_folder(str(tmp_path)))
    again = make_split(scan_folder(str(tmp_path)))
    assert first == again
    assert {f["split"] for f in first["files"]} == set(SPLITS)
    for i in range(25):  # unrelated new images, listed before and after the old ones
        write_image(str(tmp_path / "Real" / f"a_new{i}.jpg"), smooth_image(7000 + i))
        write_image(str(tmp_path / "Fake" / f"z_new{i}.jpg"), smooth_image(8000 + i))
    grown = by_path(make_split(scan_folder(str(tmp_path))))
    for f in first["files"]:
        assert grown[f["path"]]["split"] == f["split"]
    assert first["fingerprint"] == fingerprint(first["files"])


def test_copies_stay_on_one_side(tmp_path):
    make_dataset_dir(tmp_path, n_real=20, n_fake=20)
    src = Image.open(tmp_path / "Real" / "r000.jpg").convert("RGB")
    copies = {
        "flip.jpg": src.transpose(Image.FLIP_LEFT_RIGHT),
        "rot90.png": src.transpose(Image.ROTATE_90),
        "rot180.jpg": src.transpose(Image.ROTATE_180),
        "small.jpg": src.resize((40, 40)),
    }
    for name, img in copies.items():
        write_image(str(tmp_path / "Real" / "copies" / name), img, "PNG" if name.endswith("png") else "JPEG")
    (tmp_path / "Real" / "copies" / "reencoded.jpg").write_bytes(jpeg_bytes(src, quality=55))
    (tmp_path / "Real" / "copies" / "same-bytes.jpg").write_bytes((tmp_path / "Real" / "r000.jpg").read_bytes())
    manifest = make_split(scan_folder(str(tmp_path)))
    files = by_path(manifest)
    family = ["Real/r000.jpg"] + [f"Real/copies/{n}" for n in list(copies) + ["reencoded.jpg", "same-bytes.jpg"]]
    assert len({files[p]["split"] for p in family}) == 1
    assert len({files[p]["group"] for p in family}) == 1
    assert manifest["groups"]["images_in_near_copy_groups"] == len(family)
    # distinct images are not merged
    assert manifest["groups"]["groups"] == 40
    sides = {}
    for f in manifest["files"]:
        sides.setdefault(f["sha256"], set()).add(f["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert any("closest pairs not merged" in line for line in describe(manifest))


def test_same_image_under_both_labels_is_left_out_or_with_strict_an_error_naming_both(tmp_path):
    make_dataset_dir(tmp_path, n_real=3, n_fake=3)
    (tmp_path / "Fake" / "stolen.jpg").write_bytes((tmp_path / "Real" / "r001.jpg").read_bytes())
    manifest = make_split(scan_folder(str(tmp_path)))
    assert {f["path"] for f in manifest["files"]} == {"Real/r000.jpg", "Real/r002.jpg", "Fake/f000.jpg",
                                                      "Fake/f001.jpg", "Fake/f002.jpg"}
    [conflict] = manifest["label_conflicts"]
    assert conflict["files"] == ["Fake/stolen.jpg", "Real/r001.jpg"] and "identical bytes" in conflict["reason"]
    with pytest.raises(UserError, match=r"Real/r001\.jpg and Fake/stolen\.jpg"):
        make_split(scan_folder(str(tmp_path)), strict=True)


def test_near_copy_under_both_labels_is_left_out_or_with_strict_an_error(tmp_path):
    make_dataset_dir(tmp_path, n_real=3, n_fake=3)
    flipped = Image.open(tmp_path / "Real" / "r002.jpg").transpose(Image.FLIP_LEFT_RIGHT)
    write_image(str(tmp_path / "Fake" / "mirror.jpg"), flipped)
    manifest = make_split(scan_folder(str(tmp_path)))
    assert manifest["label_conflicts"][0]["files"] == ["Fake/mirror.jpg", "Real/r002.jpg"]
    assert len(manifest["files"]) == 5
    with pytest.raises(UserError, match=r"Real/r002\.jpg and Fake/mirror\.jpg \(near-copies"):
        make_split(scan_folder(str(tmp_path)), strict=True)


def test_hash_cache_is_used_and_invalidated_by_changes(tmp_path):
    data = make_dataset_dir(tmp_path / "d", n_real=3, n_fake=3)
    cache = str(tmp_path / "cache.json")
    first = scan_folder(data, cache_path=cache)
    entries = json.load(open(cache))["entries"]
    assert len(entries) == 6
    target = os.path.join(data, "Real", "r000.jpg")
    # a poisoned cache entry with the right size and mtime is trusted (proving the cache is read) ...
    entries[target]["sha256"] = "0" * 64
    json.dump({"version": CACHE_VERSION, "entries": entries}, open(cache, "w"))
    assert {r.sha256 for r in scan_folder(data, cache_path=cache).images} >= {"0" * 64}
    # ... and a changed file is hashed again
    write_image(target, smooth_image(4242))
    os.utime(target, ns=(1, 1))
    again = {r.path: r.sha256 for r in scan_folder(data, cache_path=cache).images}
    assert again["Real/r000.jpg"] not in ("0" * 64, {r.path: r.sha256 for r in first.images}["Real/r000.jpg"])


def test_cli_prints_summary_and_writes_manifest(tmp_path):
    data = make_dataset_dir(tmp_path / "d", n_real=8, n_fake=7)
    (tmp_path / "d" / "Real" / "bad.jpg").write_bytes(b"xx")
    out = tmp_path / "split.json"
    proc = subprocess.run([sys.executable, "-m", "data", data, "--split-out", str(out),
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "15 images: 8 real, 7 fake; 1 rejected: Real/bad.jpg" in proc.stdout
    for s in SPLITS:
        assert f"  {s}" in proc.stdout
    manifest = load_manifest(str(out))
    assert all(set(f) >= {"path", "sha256", "label", "split"} for f in manifest["files"])
    assert {f["label"] for f in manifest["files"]} == {0, 1}
    assert {f["split"] for f in manifest["files"]} <= {"train", "val", "test"}


def test_cli_bad_folder_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "data", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path}: no class folders found (saw no sub-folder); expected Real/ and Fake/ (or real/ + fake/, "
        "0_real/ + 1_fake/, nature/ + ai/), possibly inside train/ val/ test/ or one folder per generator"]


def test_edited_manifest_is_refused(tmp_path):
    manifest = make_split(scan_folder(make_dataset_dir(tmp_path / "d", n_real=4, n_fake=4)))
    manifest["files"][0]["split"] = "test" if manifest["files"][0]["split"] != "test" else "train"
    path = tmp_path / "split.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="fingerprint"):
        load_manifest(str(path))
