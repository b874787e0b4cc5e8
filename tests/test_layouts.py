"""The field's data-set layouts, read by folder name: the 140k Real and Fake Faces set's given split,
CNNDetection / UniversalFakeDetect's per-generator 0_real/ + 1_fake/, GenImage's {train,val}/{ai,nature} per
generator; the given split honoured and checked; bad trees refused in one line. Built here from small images."""
import json
import os
import shutil

import pytest
from PIL import Image

from conftest import smooth_image, write_image
from data.layout import find_layout
from data.runtime import UserError
from data.scan import scan_folder
from data.split import describe, make_split


def put(root, rel, n, seed, size=24):
    """n distinct images in root/rel; returns their paths relative to root."""
    out = []
    for i in range(n):
        path = os.path.join(root, rel, f"{i:03d}.jpg")
        write_image(path, smooth_image(seed * 100 + i, size))
        out.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return out


def faces_140k(root, n=4):
    """real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}, and the CSV files that sit beside it."""
    os.makedirs(root, exist_ok=True)
    open(os.path.join(root, "train.csv"), "w").write("id,label\n")
    sides = {}
    for k, (side, name) in enumerate([("train", "train"), ("val", "valid"), ("test", "test")]):
        for label, cls in ((0, "real"), (1, "fake")):
            for path in put(root, f"real_vs_fake/real-vs-fake/{name}/{cls}", n + 2 * (side == "train"), 10 * k + label + 1):
                sides[path] = (side, label)
    return sides


def test_the_140k_faces_layout_is_a_given_split_honoured_exactly(tmp_path):
    root = str(tmp_path / "140k")
    sides = faces_140k(root)
    layout = find_layout(root)
    assert layout.given_sides == ["train", "val", "test"] and layout.generators == []
    assert "real/ + fake/ class folders" in layout.describe() and "a given split: train, val, test" in layout.describe()
    manifest = make_split(scan_folder(root))
    assert manifest["split_source"] == "given"
    assert {f["path"]: (f["split"], f["label"]) for f in manifest["files"]} == sides
    assert manifest["given_split_crossings"] == []
    made = make_split(scan_folder(root), split="made")  # the kit's own split, asked for
    assert "split_source" not in made and {f["path"] for f in made["files"]} == set(sides)


def test_per_generator_layouts_name_each_generator_and_keep_deeper_object_classes_with_it(tmp_path):
    root = str(tmp_path / "cnndetection")
    put(root, "biggan/0_real", 3, 1)
    put(root, "biggan/1_fake", 3, 2)
    put(root, "cyclegan/apple/0_real", 2, 3)
    put(root, "cyclegan/apple/1_fake", 2, 4)
    put(root, "cyclegan/horse/0_REAL", 2, 5)  # matched whole, in any letter case
    put(root, "cyclegan/horse/1_fake", 2, 6)
    os.makedirs(os.path.join(root, "notes"))
    layout = find_layout(root)
    assert layout.generators == ["biggan", "cyclegan"] and layout.given_sides == [] and layout.ignored == ["notes"]
    assert "CNNDetection" in layout.describe() and "2 generators: biggan, cyclegan" in layout.describe()
    scan = scan_folder(root)
    got = {(r.generator, r.label) for r in scan.images}
    assert got == {("biggan", 0), ("biggan", 1), ("cyclegan", 0), ("cyclegan", 1)}
    assert sum(r.generator == "cyclegan" and r.label == 0 for r in scan.images) == 4
    assert all((r.label == 1) == ("1_fake" in r.path) for r in scan.images)


def test_genimage_given_train_and_val_val_is_the_test_side_and_validation_comes_from_train(tmp_path):
    root = str(tmp_path / "genimage")
    given = {}
    for g, gen in enumerate(("ADM", "BigGAN")):
        for k, side in enumerate(("train", "val")):
            for label, cls in ((0, "nature"), (1, "ai")):
                for p in put(root, f"{gen}/imagenet_ai_{gen.lower()}/{side}/{cls}", 12 if side == "train" else 3,
                             100 + 10 * g + 4 * k + label):
                    given[p] = (side, label, gen)
    layout = find_layout(root)
    assert layout.given_sides == ["train", "val"] and layout.generators == ["ADM", "BigGAN"]
    assert "GenImage" in layout.describe()
    manifest = make_split(scan_folder(root))
    sides = {f["path"]: f["split"] for f in manifest["files"]}
    assert {p for p, s in sides.items() if s == "test"} == {p for p, g in given.items() if g[0] == "val"}
    carved = {p for p, s in sides.items() if s == "val"}
    assert carved and carved < {p for p, g in given.items() if g[0] == "train"}
    assert {f["generator"] for f in manifest["files"]} == {"ADM", "BigGAN"}
    assert any("its val side is the test side" in line for line in describe(manifest))
    assert make_split(scan_folder(root))["fingerprint"] == manifest["fingerprint"]  # deterministic


def test_a_picture_on_two_sides_of_a_given_split_is_reported_not_moved_and_strict_refuses_it(tmp_path):
    root = str(tmp_path / "140k")
    sides = faces_140k(root)
    train_file = next(p for p, (s, label) in sides.items() if s == "train" and label == 0)
    copy = train_file.replace("/train/", "/test/").replace(".jpg", "-copy.jpg")
    mirrored = Image.open(os.path.join(root, train_file)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    write_image(os.path.join(root, copy), mirrored)  # a mirrored copy of a training picture in the test side
    manifest = make_split(scan_folder(root))
    sides_now = {f["path"]: f["split"] for f in manifest["files"]}
    assert sides_now[train_file] == "train" and sides_now[copy] == "test"  # as given
    [crossing] = manifest["given_split_crossings"]
    assert set(crossing["files"]) == {train_file, copy} and crossing["sides"] == ["train", "test"]
    assert any("on more than one side of the given split" in line for line in describe(manifest))
    with pytest.raises(UserError, match="the same picture on the train and test sides of the given split"):
        make_split(scan_folder(root), strict=True)


@pytest.mark.parametrize("tree, message", [
    ({"Real": 2, "0_real": 2, "Fake": 2}, r"two folders for the real class \(0_real/ and Real/\)"),
    ({"train/real": 2, "train/fake": 2, "test/real": 2}, "the test side has no fake class folder"),
    ({"Real": 2, "Fake": 0}, r"Fake/ folder has no usable images \(0 files tried"),
    ({"train/real": 2, "train/fake": 2, "real": 2}, "both class folders"),
    ({"photos": 2}, r"no class folders found \(saw photos/\)"),
    ({"a/train/real": 1, "a/train/fake": 1, "b/Real": 1, "b/Fake": 1}, "some class folders are inside train/"),
])
def test_bad_trees_are_refused_in_one_line(tmp_path, tree, message):
    root = str(tmp_path / "bad")
    for k, (rel, n) in enumerate(tree.items()):
        os.makedirs(os.path.join(root, rel), exist_ok=True)
        put(root, rel, n, 300 + k)
    with pytest.raises(UserError, match=message):
        scan_folder(root)


def test_a_given_split_with_no_train_side_is_a_test_set_not_a_training_set(tmp_path):
    root = str(tmp_path / "only-test")
    put(root, "test/0_real", 2, 1)
    put(root, "test/1_fake", 2, 2)
    with pytest.raises(UserError, match="no train side"):
        make_split(scan_folder(root))
    shutil.rmtree(os.path.join(root, "test"))
    put(root, "Real", 2, 3)
    put(root, "Fake", 2, 4)
    with pytest.raises(UserError, match="brings no split of its own"):
        make_split(scan_folder(root), split="given")


@pytest.mark.end_to_end
def test_a_given_split_is_what_training_and_the_report_use_and_a_per_generator_test_folder_gives_one_set_each(tmp_path):
    from classifiers import train as train_cli
    from compare import report as report_cli
    from data.runs import read_run

    data, runs = str(tmp_path / "140k"), str(tmp_path / "runs")
    sides = faces_140k(data, n=6)
    assert train_cli.main(["--data-dir", data, "--runs-dir", runs, "--experiment", "x", "--epochs", "1",
                           "--image-size", "16", "--batch-size", "8", "--precision", "float32"]) == 0
    run_split = json.load(open(os.path.join(runs, "x", "baseline", "split.json")))
    assert {f["path"]: (f["split"], f["label"]) for f in run_split["files"]} == sides
    assert read_run(os.path.join(runs, "x", "baseline"))["config"]["split"] == "auto"

    external = str(tmp_path / "cnndetection")
    for k, gen in enumerate(("biggan", "stylegan")):
        put(external, f"{gen}/0_real", 3, 500 + 2 * k)
        put(external, f"{gen}/1_fake", 4, 501 + 2 * k)
    assert report_cli.main(["--runs-dir", runs, "--experiment", "x", "--test-dir", external, "--no-timing",
                            "--no-saliency"]) == 0
    metrics = json.load(open(os.path.join(runs, "x", "report", "metrics.json")))
    assert metrics["test_images"] == sum(1 for s, _ in sides.values() if s == "test")
    assert metrics["test_dirs"] == {g: os.path.join(external, g) for g in ("biggan", "stylegan")}
    external_sets = metrics["models"]["baseline"]["external"]
    assert {name: s["images"] for name, s in external_sets.items()} == {"biggan": 7, "stylegan": 7}
    # the learning curve's label subsets are drawn from the given train side and judged on the given test side
    from compare.bench import cli as bench

    assert bench.main(["--learning-curve", "--labels", "4", "--recipes", "baseline", "--seeds", "1", "--data-dir", data,
                       "--runs-dir", runs, "--experiment", "x", "--precision", "float32",
                       "--detector-args", "--image-size 16 --epochs 1 --batch-size 8"]) == 0
    point = read_run(os.path.join(runs, "x", "baseline-labels4.seed1337"))
    assert point["split_fingerprint"] == run_split["fingerprint"] and point["train_images"] == 4
    with pytest.raises(UserError, match="uses the data set's own split, not --split made"):
        train_cli.main(["--data-dir", data, "--runs-dir", runs, "--experiment", "x", "--epochs", "1",
                        "--image-size", "16", "--split", "made"])
