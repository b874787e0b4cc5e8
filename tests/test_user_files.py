"""What the user gave is never lost or misjudged: an export never deletes a folder or file the kit did not write,
no AUC of nan is stored, a phone photo is judged upright, and a broken run or odd file is one line, nothing
left behind."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import conftest
from conftest import faces_and_family, make_dataset_dir, smooth_image, write_image
from data.runs import read_run
from data.runtime import UserError, printable, run_main
from data.scan import BadImage, decode_bytes, scan_folder
from data.split import describe, make_split, one_class_sides, require_both_classes, split_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIENTATION = 0x0112  # the EXIF tag; 6: the stored picture is to be turned 90 degrees clockwise to be upright
TINY = conftest.TINY + ["--precision", "float32"]


def run(args):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True,
                          errors="backslashreplace")


def tree(folder):
    """{relative path: sha256} of every file below folder: what must survive untouched."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def sideways_png(upright):
    """upright stored turned a quarter (as a phone stores a portrait photo) with EXIF Orientation 6: lossless,
    so the decoded picture can equal the upright one exactly."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buf, "PNG", exif=exif.tobytes())
    return buf.getvalue()


def fakes_all_in_train(root, n_real=24, n_fakes=3):
    """A Real/ + Fake/ folder whose few fakes the kit's split puts on its train side: validation and test get
    none (made by keeping only fakes whose content falls on train)."""
    make_dataset_dir(root, n_real=n_real, n_fake=0)
    kept, seed = 0, 0
    while kept < n_fakes:
        seed += 1
        path = write_image(os.path.join(root, "Fake", f"f{seed:03d}.jpg"), smooth_image(7000 + seed, 48))
        if split_of(hashlib.sha256(open(path, "rb").read()).hexdigest()) == "train":
            kept += 1
        else:
            os.unlink(path)
    return str(root)


# ---- quick: no model needed -----------------------------------------------------------------------------

def test_a_sideways_phone_photo_is_read_upright_everywhere(tmp_path):
    upright = smooth_image(3, 48).resize((48, 64))
    data = sideways_png(upright)
    assert Image.open(io.BytesIO(data)).size == (64, 48)  # stored sideways
    np.testing.assert_array_equal(np.asarray(decode_bytes(data)), np.asarray(upright))
    folder = make_dataset_dir(tmp_path / "d", n_real=3, n_fake=3)
    with open(os.path.join(folder, "Real", "phone.png"), "wb") as f:
        f.write(data)
    upright.save(os.path.join(tmp_path, "upright.png"))
    record = next(r for r in scan_folder(folder).images if r.path == "Real/phone.png")
    assert (record.width, record.height) == (48, 64)
    from data.scan import perceptual_hash
    np.testing.assert_array_equal(record.phash, perceptual_hash(upright))  # the near-copy hash sees it upright
    from data.pipeline import load_images
    x, kept, _ = load_images([os.path.join(folder, "Real", "phone.png"), str(tmp_path / "upright.png")], 32)
    np.testing.assert_array_equal(x[0], x[1])  # decoded for training exactly as the upright file


def test_a_damaged_exif_block_costs_the_turn_not_the_image():
    buf = io.BytesIO()
    smooth_image(4, 40).save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert decode_bytes(buf.getvalue()).size == (40, 40)


def test_the_bomb_guard_names_the_limit_the_readme_gives():
    buf = io.BytesIO()
    Image.new("1", (9100, 9100)).save(buf, "PNG")  # over twice the limit: Pillow's own guard fires first
    with pytest.raises(BadImage, match=r"82,810,000 pixels is over the 40,000,000-pixel limit"):
        decode_bytes(buf.getvalue())


def test_a_side_without_both_classes_is_named_with_its_counts(tmp_path, capsys):
    folder = fakes_all_in_train(tmp_path / "d")
    manifest = make_split(scan_folder(folder))
    assert [s for s, _, fake in one_class_sides(manifest)] == ["val", "test"]
    real = manifest["counts"]["val"]["real"]
    with pytest.raises(UserError, match=f"its val side has {real} real and 0 fake images"):
        require_both_classes(manifest, folder)
    assert any(line.startswith("warning: the val side has") for line in describe(manifest))
    from data.__main__ import main as data_main
    assert data_main([folder, "--runs-dir", str(tmp_path / "runs")]) == 0
    assert f"warning: the val side has {real} real and 0 fake images" in capsys.readouterr().out


def test_names_the_kit_refuses_are_refused_with_the_rule_they_break():
    from data.runs import check_name
    with pytest.raises(UserError, match="must start with a letter or digit.*--family"):
        check_name(".default-data", "family")


def test_a_file_name_with_a_newline_stays_on_one_line():
    assert printable("a\nb\tc.jpg") == "a\\nb\\tc.jpg" and printable("plain é.jpg") == "plain é.jpg"


# ---- end to end: a tiny trained detector ------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from classifiers import train

    root = tmp_path_factory.mktemp("own")
    faces, family = faces_and_family(root)
    runs = str(root / "runs")
    assert train.main(["--model", "baseline", "--data-dir", faces, "--runs-dir", runs, "--epochs", "1"] + TINY) == 0
    return {"faces": faces, "family": family, "runs": runs, "run": os.path.join(runs, "default", "baseline")}


@pytest.mark.end_to_end
def test_no_out_deletes_a_folder_or_file_the_kit_did_not_write(trained, tmp_path, capsys):
    from classifiers import export

    run_dir = trained["run"]
    photos = tmp_path / "photos"
    write_image(str(photos / "holiday.jpg"), smooth_image(1))
    (photos / "notes.txt").write_text("mine")
    mine = tmp_path / "mine.tflite"
    mine.write_bytes(b"the user's own model")
    squatter = tmp_path / "file.savedmodel"
    squatter.write_text("not a folder")
    before = {"photos": tree(photos), "run": tree(run_dir)}
    for fmt, out in [("savedmodel", photos), ("tflite", photos), ("savedmodel", run_dir), ("tflite", run_dir),
                     ("tflite", mine), ("savedmodel", squatter)]:
        for force in ([], ["--force"]):
            code = run_main(lambda: export.main(["--run", run_dir, "--format", fmt, "--out", str(out)] + force))
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1, err
            assert f"--out {out}: a " in err and f"not an earlier {fmt} export" in err and ".export-" not in err
    assert tree(photos) == before["photos"] and tree(run_dir) == before["run"]
    assert mine.read_bytes() == b"the user's own model" and squatter.read_text() == "not a folder"
    assert read_run(run_dir)["model"] == "baseline"  # the run still loads
    assert sorted(os.listdir(tmp_path)) == ["file.savedmodel", "mine.tflite", "photos"]  # nothing staged left


@pytest.mark.end_to_end
def test_an_earlier_export_is_replaced_only_with_force_and_only_when_it_is_one(trained, tmp_path, capsys):
    from classifiers import export

    run_dir, out = trained["run"], str(tmp_path / "det.savedmodel")
    export.export(run_dir, "savedmodel", out)
    stamp = json.load(open(out + ".json"))["exported"]
    assert run_main(lambda: export.main(["--run", run_dir, "--format", "savedmodel", "--out", out])) == 2
    err = capsys.readouterr().err
    assert "an earlier savedmodel export" in err and "--force replaces it" in err
    assert run_main(lambda: export.main(["--run", run_dir, "--format", "savedmodel", "--out", out, "--force"])) == 0
    assert json.load(open(out + ".json"))["written_by"] == "classifiers.export"
    assert sorted(os.listdir(tmp_path)) == ["det.savedmodel", "det.savedmodel.json"] and stamp
    # a tflite export is not a savedmodel one: --format tells which kind may be replaced
    assert run_main(lambda: export.main(["--run", run_dir, "--format", "tflite", "--out", out, "--force"])) == 2
    # a user's file put inside an earlier export makes it the user's folder: never replaced
    (tmp_path / "det.savedmodel" / "my-notes.txt").write_text("mine")
    capsys.readouterr()
    assert run_main(lambda: export.main(["--run", run_dir, "--format", "savedmodel", "--out", out, "--force"])) == 2
    assert "not an earlier savedmodel export" in capsys.readouterr().err
    assert (tmp_path / "det.savedmodel" / "my-notes.txt").read_text() == "mine"


@pytest.mark.end_to_end
def test_a_run_that_does_not_describe_its_model_is_one_line_and_leaves_nothing(trained, tmp_path):
    broken = {}
    for name, change in [("no-size", lambda info: info.pop("image_size")),
                         ("other-size", lambda info: info.update(image_size=24))]:
        folder = tmp_path / name
        shutil.copytree(trained["run"], folder, ignore=shutil.ignore_patterns("export"))
        info = json.load(open(folder / "run.json"))
        change(info)
        (folder / "run.json").write_text(json.dumps(info))
        broken[name] = str(folder)
    for name, message in [("no-size", "no valid image_size"), ("other-size", "from different runs")]:
        for args in (["classifiers.export", "--run", broken[name], "--format", "savedmodel"],
                     ["classifiers.predict", "--run", broken[name], os.path.join(trained["faces"], "Real")]):
            proc = run(args)
            assert proc.returncode == 2 and message in proc.stderr, proc.stderr
            assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert not os.path.exists(os.path.join(broken[name], "export"))


@pytest.mark.end_to_end
def test_predict_refuses_what_the_scan_refuses_and_says_how_many_were_fake(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(["classifiers.predict", "--run", trained["run"], str(empty)])
    assert proc.returncode == 2 and f"no image files in {empty}" in proc.stderr and not proc.stdout

    folder = tmp_path / "mixed"
    write_image(str(folder / "blank.png"), Image.new("RGB", (40, 40), (120, 120, 120)), "PNG")
    write_image(str(folder / "two\nlines.jpg"), smooth_image(5))
    upright = smooth_image(6, 48).resize((40, 56))
    upright.save(folder / "upright.png")
    (folder / "phone.png").write_bytes(sideways_png(upright))
    proc = run(["classifiers.predict", "--run", trained["run"], str(folder)])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and any(line.endswith("two\\nlines.jpg") for line in lines)
    assert "blank.png: no content to judge" in proc.stderr
    p = {os.path.basename(line.split("  ")[-1]): line.split("  ")[0] for line in lines}
    assert p["phone.png"] == p["upright.png"]  # judged as shown, not as stored
    fakes = sum(" fake " in f" {line} " for line in lines)
    assert f"{fakes} of 3 image(s) judged fake at threshold" in proc.stderr and "1 could not be judged" in proc.stderr


@pytest.mark.end_to_end
def test_training_and_adapting_refuse_a_side_without_both_classes(trained, tmp_path):
    folder = fakes_all_in_train(tmp_path / "few-fakes")
    runs = str(tmp_path / "runs")
    proc = run(["classifiers.train", "--data-dir", folder, "--runs-dir", runs, "--epochs", "1"] + TINY)
    assert proc.returncode == 2 and "its val side has" in proc.stderr and "0 fake images" in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(runs, "default", "baseline"))
    proc = run(["classifiers.adapt", "--run", trained["run"], "--data-dir", folder, "--shots", "2", "--epochs", "1",
                "--precision", "float32"])
    assert proc.returncode == 2 and "its val side has" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    family = os.path.join(trained["runs"], "default", "adapted", "few-fakes")
    assert not [d for d, _, names in os.walk(family) if "run.json" in names]  # its split, but no result
