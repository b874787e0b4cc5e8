import os

import numpy as np
from PIL import Image

from data.synthetic import generate


def auc(neg, pos):
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()


def folder_bytes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = open(os.path.join(dirpath, f), "rb").read()
    return out


def test_embedded_default_is_deterministic(tmp_path):
    a = folder_bytes(generate(str(tmp_path / "a"), images_per_class=20, size=32))
    b = folder_bytes(generate(str(tmp_path / "b"), images_per_class=20, size=32))
    assert a == b
    assert sum(k.startswith("Real") for k in a) >= 20 and sum(k.startswith("Fake") for k in a) >= 20


def test_no_trivial_statistic_separates_the_classes(tmp_path):
    root = generate(str(tmp_path / "d"), images_per_class=150, size=64)
    stats = {}
    for cls in ("Real", "Fake"):
        files = [os.path.join(root, cls, f) for f in sorted(os.listdir(os.path.join(root, cls)))]
        arrs = [np.asarray(Image.open(f), float) for f in files]
        stats[cls] = {
            "file size": [os.path.getsize(f) for f in files],
            "brightness": [a.mean() for a in arrs],
            "red": [a[..., 0].mean() for a in arrs],
            "green": [a[..., 1].mean() for a in arrs],
            "blue": [a[..., 2].mean() for a in arrs],
            "contrast": [a.std() for a in arrs],
        }
    for name in stats["Real"]:
        score = auc(stats["Real"][name], stats["Fake"][name])
        assert 0.35 < score < 0.65, f"{name} separates real from fake (AUC {score:.2f})"


def test_other_families_share_the_faces_but_not_the_fakes(tmp_path):
    from data.synthetic import main

    default = folder_bytes(generate(str(tmp_path / "a"), images_per_class=6, size=32))
    assert main([str(tmp_path / "b"), "--family", "sharpened", "--images-per-class", "6"]) == 0
    other = folder_bytes(str(tmp_path / "b"))
    reals = [k for k in default if k.startswith("Real")]
    fakes = [k for k in default if k.startswith("Fake")]
    assert fakes and all(k in other and other[k] != default[k] for k in fakes)
    assert "family sharpened" in other["EMBEDDED-DEFAULT.txt"].decode()
    assert all(k in other for k in reals)


def test_the_fingerprint_is_there_but_not_on_every_fake(tmp_path):
    """The demo must be able to tell models apart: a hand-made checkerboard detector (the phase pattern the
    default generator leaves) finds the fakes well but not perfectly, because faint fakes look real."""
    root = generate(str(tmp_path / "d"), images_per_class=150, size=64)

    def checkerboard(path):
        g = np.asarray(Image.open(path), float)
        g -= g.mean()
        phase = g[0::2, 0::2] + g[1::2, 1::2] - g[0::2, 1::2] - g[1::2, 0::2]
        return np.abs(phase.mean(axis=(0, 1))).sum() / (np.abs(g).mean() + 1e-9)

    scores = {cls: [checkerboard(os.path.join(root, cls, f)) for f in sorted(os.listdir(os.path.join(root, cls)))]
              for cls in ("Real", "Fake")}
    assert 0.75 < auc(scores["Real"], scores["Fake"]) < 0.99
