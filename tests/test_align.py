"""Finding and aligning faces (data/align.py), and classifiers.predict on photos. The faces are the kit's own
drawn ones (data.synthetic.draw_face) at seeds mtcnn finds with confidence above 0.99: nothing is read from
outside the test, nothing downloaded."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from classifiers import train as train_cli
import conftest
from data import align
from data.synthetic import draw_face

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACE_SEEDS = (10, 11)  # draw_face(default_rng(seed), 128): one face each, confidence 0.999
SIZE = 64  # the detector input the crops are made for


def face(seed=FACE_SEEDS[1], size=128):
    return Image.fromarray(np.clip(draw_face(np.random.default_rng(seed), size), 0, 255).astype(np.uint8))


def background(width, height, seed=0):
    """A blurred, textured picture without a face."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 16, width // 16, 3)).astype(np.uint8)
    return Image.fromarray(noise).resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(4))


def placed(pictures, width=480, height=400):
    """pictures: [(image, (x, y) of its centre, scale, degrees)] pasted into one background picture."""
    canvas = background(width, height)
    for img, (cx, cy), scale, degrees in pictures:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
        mask = Image.new("L", img.size, 255).rotate(degrees, Image.BILINEAR, expand=True)
        img = img.rotate(degrees, Image.BILINEAR, expand=True)
        canvas.paste(img, (round(cx - img.width / 2), round(cy - img.height / 2)), mask)
    return canvas


def similarity(a, b):
    """Pearson correlation of two pictures' pixels."""
    a, b = (np.asarray(x, np.float64).ravel() for x in (a, b))
    return float(np.corrcoef(a, b)[0, 1])


def test_a_face_placed_in_a_larger_picture_is_found_and_aligned_as_the_original():
    original = face()
    reference, _, _ = align.frame(original, align.find_faces(original), "ffhq", SIZE)
    picture = placed([(original, (300, 170), 1.5, 7.0)])
    faces = align.find_faces(picture)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 300 - w < x < 300 and 170 - h < y < 170  # the box holds the face's centre
    aligned, found, warped = align.frame(picture, faces, "ffhq", SIZE)
    assert warped and found == faces[0] and aligned.size == (SIZE, SIZE)
    # the aligned crop is the original's own crop: pixels correlated above 0.8 (0.86 to 0.96 measured over
    # three placements of two faces, mtcnn's landmarks moving by a pixel or two), the picture as given at 0
    assert similarity(aligned, reference) > 0.8
    assert similarity(picture.resize((SIZE, SIZE)), reference) < 0.3
    assert np.mean(np.abs(np.asarray(aligned, float) - np.asarray(reference, float))) < 20


def test_alignment_is_deterministic_and_auto_keeps_an_aligned_face_byte_for_byte():
    picture = placed([(face(), (240, 200), 1.2, -5.0)])
    first = [np.asarray(align.frame(picture, align.find_faces(picture), "ffhq", SIZE)[0]) for _ in range(2)]
    assert np.array_equal(*first)
    crop = Image.fromarray(first[0]).resize((128, 128), Image.BICUBIC)  # a face already at the FFHQ framing
    kept, found, warped = align.frame(crop, align.find_faces(crop), "auto", 128)
    assert kept is crop and not warped and found is not None
    assert align.frame(picture, align.find_faces(picture), "auto", SIZE)[2]  # a face in a photo: aligned
    none, _, _ = align.frame(picture, [], "none", SIZE)
    assert none is picture


def test_a_face_at_the_pictures_edge_is_padded_by_reflection_not_black():
    picture = placed([(face(), (40, 200), 1.2, 0.0)], width=400)  # its left side cut by the edge
    aligned = np.asarray(align.frame(picture, align.find_faces(picture), "ffhq", SIZE)[0])
    assert (aligned.max(axis=2) < 8).mean() < 0.01


def test_landmarks_that_make_no_face_and_a_tiny_face_are_refused_with_the_reason():
    upright = align.Face((0, 0, 40, 50), ((10, 20), (30, 20), (20, 30), (12, 40), (28, 40)), 0.99)
    assert align.face_problem(upright, 64) is None
    flipped = align.Face((0, 0, 40, 50), ((10, 40), (30, 40), (20, 30), (12, 20), (28, 20)), 0.99)
    assert "eyes are not above the mouth" in align.face_problem(flipped, 64)
    message = align.face_problem(upright, 256)
    assert "eye distance is 20.0 px, the minimum 32.0 px (for a 256 px detector)" in message
    with pytest.raises(align.NoFace, match="no face found"):
        align.frame(background(200, 200), align.find_faces(background(200, 200)), "auto", SIZE)


def test_the_landmark_cache_finds_each_files_faces_once(tmp_path, monkeypatch):
    calls = []
    real = align.find_faces
    monkeypatch.setattr(align, "find_faces", lambda img: calls.append(1) or real(img))
    path = str(tmp_path / "landmarks.json")
    cache = align.LandmarkCache(path)
    found = cache.get("sha-a", face())
    cache.get("sha-a", face())
    cache.save()
    again = align.LandmarkCache(path)
    assert again.get("sha-a", None) == found and len(calls) == 1
    with open(path, "w") as f:
        f.write('{"detector": "mtcnn-1.0.0", "faces": {"sha-a": [{"box": ')  # half-written: started afresh
    assert align.LandmarkCache(path).entries == {}


def test_faces_are_found_with_the_network_closed(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("the test closed the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(align, "_detector", None)  # the weights load again, from the wheel
    assert len(align.find_faces(face(FACE_SEEDS[0]))) == 1


@pytest.mark.end_to_end
def test_predict_judges_every_face_of_a_photo_and_names_the_pictures_it_cannot(tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    assert train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + conftest.TINY) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    placed([(face(FACE_SEEDS[0]), (130, 200), 1.3, 4.0), (face(), (350, 200), 1.0, -3.0)]).save(photos / "two.jpg")
    background(300, 300).save(photos / "none.jpg")
    drawn = tmp_path / "drawn"
    cmd = [sys.executable, "-m", "classifiers.predict", "--run", os.path.join(runs, "default", "baseline"), "--json",
           "--align", "auto", "--draw", str(drawn), str(photos)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    two = [r for r in rows if r["path"].endswith("two.jpg")]
    assert [r["face"] for r in two] == [1, 2] and all(0 <= r["p_fake"] <= 1 and r["aligned"] for r in two)
    centres = sorted(r["box"][0] + r["box"][2] / 2 for r in two)
    assert abs(centres[0] - 130) < 40 and abs(centres[1] - 350) < 40
    assert set(two[0]["landmarks"]) == set(align.LANDMARKS)
    assert [r["error"] for r in rows if r["path"].endswith("none.jpg")] == ["no face found"]
    assert f"error: {photos / 'none.jpg'}: no face found" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(drawn)) == ["none.png", "two.png"]
    assert Image.open(drawn / "two.png").size == (480, 400)


def test_a_folder_survey_names_what_it_cannot_judge_and_finds_each_face_once(tmp_path, monkeypatch):
    from data.scan import scan_folder
    aligned = align.frame(face(), align.find_faces(face()), "ffhq", 128)[0]
    pictures = {"Real/aligned.png": aligned, "Real/in-photo.png": placed([(face(FACE_SEEDS[0]), (200, 200), 1.2, 5.0)]),
                "Fake/two.png": placed([(face(FACE_SEEDS[0]), (130, 200), 1.3, 4.0), (face(), (350, 200), 1.0, -3.0)]),
                "Fake/none.png": background(160, 160)}
    for name, img in pictures.items():
        os.makedirs(tmp_path / "faces" / os.path.dirname(name), exist_ok=True)
        img.save(tmp_path / "faces" / name)
    root = str(tmp_path / "faces")
    records = scan_folder(root).images
    cache = align.LandmarkCache(str(tmp_path / "landmarks.json"))
    result = align.survey(root, records, "auto", SIZE, cache)
    assert (result.kept, result.aligned) == (1, 2)
    assert result.refused == [("Fake/none.png", "no face found")] and result.several == [("Fake/two.png", 2)]
    lines = result.lines("auto")
    assert "1 kept as they are, 2 aligned, 1 cannot be judged, 1 with several faces" in lines[0]
    assert "  no face to judge in Fake/none.png: no face found" in lines
    assert "  2 faces in Fake/two.png: the largest taken" in lines

    def refuse(img):
        raise AssertionError("the faces were looked for again")
    monkeypatch.setattr(align, "find_faces", refuse)
    again = align.survey(root, records, "ffhq", SIZE, align.LandmarkCache(str(tmp_path / "landmarks.json")))
    assert (again.kept, again.aligned) == (0, 3) and again.several == result.several


def face_at(cx, cy, eye_distance):
    """A Face whose FFHQ crop is the square of side 4 x eye_distance centred at (cx, cy), upright."""
    d = eye_distance
    eyes_y = cy - 0.1 * d  # FFHQ's centre lies a tenth of the eye-to-mouth vector below the eyes
    landmarks = ((cx - d / 2, eyes_y), (cx + d / 2, eyes_y), (cx, eyes_y + d / 2), (cx - d / 3, eyes_y + d),
                 (cx + d / 3, eyes_y + d))
    return align.Face((cx - d, cy - d, 2 * d, 2.5 * d), tuple((round(x, 2), round(y, 2)) for x, y in landmarks), 0.99)


def test_face_at_gives_the_crop_it_says():
    quad = align.ffhq_quad(face_at(40, 30, 5).landmarks)
    assert np.allclose(quad, [[30, 20], [30, 40], [50, 40], [50, 20]], atol=0.02)
    assert align.is_aligned((64, 64), align.ffhq_quad(face_at(32, 32, 16).landmarks))


def filled_cache(tmp_path, entries):
    """A LandmarkCache holding [(sha, picture size, [Face])]: resolve and the Aligner read it, nothing is found."""
    cache = align.LandmarkCache(str(tmp_path / "landmarks.json"))
    for sha, size, faces in entries:
        cache.put(sha, size, faces)
    return cache


def test_auto_uses_an_aligned_folder_as_given_aligns_others_and_leaves_faceless_ones_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(align, "find_faces", lambda img: pytest.fail("a face was looked for outside the cache"))
    shas = [f"{k:064x}" for k in range(80)]
    pictures = [align.Picture(f"Real/{k}.png", sha) for k, sha in enumerate(shas)]

    def framing(faces_of):
        return align.resolve("auto", str(tmp_path), pictures, filled_cache(tmp_path, [(s, (64, 64), faces_of(k))
                                                                                      for k, s in enumerate(shas)]), 32)
    at_ffhq, in_a_photo = [face_at(32, 32, 16)], [face_at(20, 24, 6)]
    aligned = framing(lambda k: at_ffhq if k % 20 else in_a_photo)  # 1 in 20 framed otherwise: still aligned
    assert (aligned.decode, aligned.judge) == ("none", "auto") and "47 of 50 faces already at FFHQ" in aligned.why
    other = framing(lambda k: in_a_photo if k % 2 else at_ffhq)
    assert (other.decode, other.judge) == ("auto", "auto") and "each picture is aligned" in other.why
    drawn = framing(lambda k: at_ffhq if k % 3 else [])  # a face found in two pictures of three
    assert (drawn.decode, drawn.judge) == ("none", "none") and "looked at" in drawn.why
    # it stops as soon as the answer is certain: the sixth picture without a face of 50 settles it
    assert "a face to judge in only 10 of the 16 pictures looked at" in drawn.why
    too_small = framing(lambda k: [face_at(32, 32, 3)])  # eye distance 3 px, under 32 / 8: none to judge
    assert too_small.decode == "none" and too_small.judge == "none"
    assert align.resolve("ffhq", "", pictures, None, 32).decode == "ffhq"
    assert align.resolve("none", "", pictures, None, 32) == align.AS_GIVEN


def test_a_split_decoded_aligned_holds_each_faces_crop_and_names_the_faceless_file(tmp_path, capsys):
    from data.cache import cached_split
    from data.scan import scan_folder
    from data.split import make_split
    root = conftest.make_dataset_dir(tmp_path / "data", n_real=8, n_fake=8, size=64)
    manifest = make_split(scan_folder(root))
    for f in manifest["files"]:
        f["split"] = "train"
    faceless = manifest["files"][3]
    cache = filled_cache(tmp_path, [(f["sha256"], (64, 64), [] if f is faceless else [face_at(24 + k, 30, 6)])
                                    for k, f in enumerate(manifest["files"])])
    folder = str(tmp_path / "decoded")
    given, _, _ = cached_split(manifest, "train", 16, "resize", folder, log=lambda line: None)
    x, y, paths = cached_split(manifest, "train", 16, "resize", folder, log=lambda line: None,
                               aligner=align.Aligner("auto", cache, 16))
    assert len(given) == 16 and len(x) == 15 and faceless["path"] not in paths
    assert f"skipping {faceless['path']}: no face to judge: no face found" in capsys.readouterr().err
    for k, f in enumerate(manifest["files"]):
        if f is not faceless:
            img = Image.open(os.path.join(root, f["path"])).convert("RGB")
            expected = align.warp(img, align.ffhq_quad(face_at(24 + k, 30, 6).landmarks), 16)
            assert np.array_equal(x[paths.index(f["path"])], np.asarray(expected))
    names = sorted(n for n in os.listdir(folder) if n.endswith(".npy"))
    assert len(names) == 2 and names[0].startswith("train-16px-resize-auto-")  # both kept, side by side


def fill_landmarks(runs, root, faces_of):
    """The runs folder's landmark cache, written as if mtcnn had found faces_of(record) in each file of root."""
    from data.scan import scan_folder
    records = scan_folder(root).images
    cache = align.LandmarkCache(align.landmarks_path(runs))
    for record in records:
        cache.put(record.sha256, (record.width, record.height), faces_of(record))
    cache.save()
    return records


@pytest.mark.end_to_end
def test_a_run_trained_on_faces_in_photos_is_aligned_and_judged_aligned_beside_one_as_given(tiny_faces, tmp_path,
                                                                                             monkeypatch, capsys):
    from compare import report as report_cli
    from data.scan import scan_folder
    from data.split import make_split
    runs = str(tmp_path / "runs")
    split = {f["path"]: f["split"] for f in make_split(scan_folder(tiny_faces))["files"]}  # the experiment's split
    faceless = sorted(p for p, side in split.items() if side == "test")[0]
    fill_landmarks(runs, tiny_faces, lambda r: [] if r.path == faceless else [face_at(12 + r.sha256.count("a") % 8,
                                                                                         14, 3)])
    monkeypatch.setattr(align, "find_faces", lambda img: pytest.fail("a face was looked for outside the cache"))
    assert train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1"] + conftest.TINY) == 0
    assert "each picture is aligned" in capsys.readouterr().out
    assert train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--epochs", "1", "--align", "none",
                           "--augment", "none"] + conftest.TINY) == 0
    with open(os.path.join(runs, "default", "baseline", "run.json")) as f:
        aligned = json.load(f)
    with open(os.path.join(runs, "default", "baseline-aug-none", "run.json")) as f:
        given = json.load(f)
    assert (aligned["align"], aligned["alignment"]["decoded"], aligned["config"]["align"]) == ("auto", "auto", "auto")
    assert (given["align"], given["alignment"]["decoded"]) == ("none", "none")
    assert aligned["train_images"] == given["train_images"] == sum(side == "train" for side in split.values())
    decoded = os.listdir(os.path.join(runs, "default", ".decoded"))
    assert any(n.startswith("train-16px-resize-auto-") for n in decoded)
    assert any(n.startswith("train-16px-resize-") and "-auto-" not in n for n in decoded)
    capsys.readouterr()
    assert report_cli.main(["--runs-dir", runs, "--no-timing", "--no-saliency"]) == 0
    out = capsys.readouterr().out
    tests = sum(side == "test" for side in split.values())
    assert f"baseline on test: 1 of {tests} pictures have no face to judge; each counts as undecided" in out
    with open(os.path.join(runs, "default", "report", "metrics.json")) as f:
        models = json.load(f)["models"]
    assert {"baseline", "baseline-aug-none"} <= set(models)
    assert models["baseline"]["test"]["images"] == models["baseline-aug-none"]["test"]["images"] == tests


@pytest.mark.end_to_end
def test_auto_on_pictures_without_faces_trains_the_same_model_as_none(tmp_path, monkeypatch):
    root = conftest.make_dataset_dir(tmp_path / "data", n_real=12, n_fake=12, size=32)
    monkeypatch.setattr(align, "_detector", None)  # mtcnn's networks built anew, inside this run
    aucs = []
    for mode in ("auto", "none"):
        runs = str(tmp_path / f"runs-{mode}")
        assert train_cli.main(["--data-dir", root, "--runs-dir", runs, "--epochs", "2", "--align", mode]
                              + conftest.TINY) == 0
        with open(os.path.join(runs, "default", "baseline", "run.json")) as f:
            info = json.load(f)
        assert info["align"] == "none" and info["alignment"]["requested"] == mode
        aucs.append((info["validation"], info["history"]))
    assert aucs[0] == aucs[1]


def test_pictures_of_one_size_searched_together_give_each_its_own_faces():
    pictures = [face(FACE_SEEDS[0]), background(128, 128), face(FACE_SEEDS[1])]
    together = align.find_faces_together(pictures)
    alone = [align.find_faces(img) for img in pictures]
    assert [len(f) for f in together] == [len(f) for f in alone] == [1, 0, 1]
    for a, b in zip(together, alone):
        if a:  # the same face, its landmarks within FIND_BATCH's stated 5 px
            assert np.max(np.abs(np.subtract(a[0].landmarks, b[0].landmarks))) < 5


@pytest.mark.end_to_end
def test_the_faces_in_pictures_bench_judges_seeds_alike_and_refuses_another_split(tiny_faces, tmp_path, capsys):
    from compare.bench import cli as bench_cli
    from data.runtime import UserError
    runs = str(tmp_path / "runs")
    for experiment, seed in (("a", "1337"), ("b", "1338")):
        assert train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--experiment", experiment, "--epochs",
                               "1", "--seed", seed] + conftest.TINY) == 0
    capsys.readouterr()
    seeds = [os.path.join(runs, e, "baseline") for e in ("a", "b")]
    assert bench_cli.main(["--faces-in-pictures"] + seeds + ["--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "--align auto (2)" in out and "trained with --align auto" in out
    rows = [line for line in out.splitlines() if line.startswith(("faces as given", "in pictures"))]
    assert len(rows) == 4 and all(line.count("+-") == 1 for line in rows)
    other = conftest.make_dataset_dir(tmp_path / "other", n_real=10, n_fake=10, size=32)
    assert train_cli.main(["--data-dir", other, "--runs-dir", runs, "--experiment", "c", "--epochs", "1"]
                          + conftest.TINY) == 0
    with pytest.raises(UserError, match="trained on another split"):
        bench_cli.main(["--faces-in-pictures", seeds[0], os.path.join(runs, "c", "baseline")])
