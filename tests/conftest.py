"""Shared helpers: every test builds its own small data in a temporary folder."""
import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The smallest runs the tests train: every test file starts from these and adds what it is about.
TINY = ["--image-size", "16", "--batch-size", "16"]  # a detector (classifiers.train, the search)
GAN_TINY = TINY + ["--gan-batch-size", "8", "--head-epochs", "1", "--seed", "5"]  # gan.train, both stages


def smooth_image(seed, size=48):
    """A distinct, photo-like RGB image: random blobs plus texture with a natural 1/f spectrum."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    texture = np.real(np.fft.ifft2((rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius))
    texture = 25 * texture / texture.std()
    arr = np.asarray(img).astype(float) + texture[..., None] + rng.normal(0, 2, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def jpeg_bytes(img, quality=90):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_image(path, img, fmt="JPEG", **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def make_dataset_dir(root, n_real=6, n_fake=6, size=48, seed=0, real="Real", fake="Fake"):
    for i in range(n_real):
        write_image(os.path.join(root, real, f"r{i:03d}.jpg"), smooth_image(seed * 1000 + i, size))
    for i in range(n_fake):
        write_image(os.path.join(root, fake, f"f{i:03d}.jpg"), smooth_image(seed * 1000 + 500 + i, size))
    return str(root)


@pytest.fixture(autouse=True)
def float32_after_each_test():
    """A command run in-process sets Keras's global dtype policy (bfloat16 on an AVX512-BF16 CPU with
    --precision auto); the next test must not inherit it, or its verdict would depend on what ran before."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


def write_tiny_faces(tmp_path_factory):
    """The kit's own synthetic generator at 32 px, 40 per class: enough to train a few steps; its folder."""
    from data.synthetic import generate

    return generate(str(tmp_path_factory.mktemp("faces") / "data"), images_per_class=40, size=32)


@pytest.fixture
def tiny_faces(tmp_path_factory):
    return write_tiny_faces(tmp_path_factory)


def faces_and_family(root):
    """The kit's synthetic faces at 32 px (40 per class) and a folder of the other family (over-sharpened fakes),
    below root: a source experiment's data and a new family to adapt it to or judge it on."""
    from data.synthetic import generate

    return (generate(str(root / "faces"), images_per_class=40, size=32),
            generate(str(root / "sharp"), images_per_class=40, size=32, seed=9, family="sharpened"))


def write_bad_corpus(folder):
    """Every kind of bad or unusual file the kit must survive. Returns {name: expected 'used'|'rejected'|'skipped'}."""
    import os

    os.makedirs(folder, exist_ok=True)
    expect = {}

    def put(name, data, outcome):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        expect[name] = outcome

    def save(name, img, fmt, outcome, **kw):
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img.save(path, fmt, **kw)
        expect[name] = outcome

    good = smooth_image(9001, 40)
    whole = jpeg_bytes(good)
    put("zero.jpg", b"", "rejected")
    put("truncated.jpg", whole[: len(whole) * 2 // 3], "rejected")
    put("random.jpg", np.random.default_rng(1).bytes(2048), "rejected")
    put("notes.txt", b"just text", "rejected")
    put(".DS_Store", b"\0\0\0\1Bud1", "skipped")
    put("Thumbs.db", b"\xd0\xcf\x11\xe0", "skipped")
    save("grey.png", good.convert("L"), "PNG", "used")
    save("palette.png", good.convert("P"), "PNG", "used")
    save("rgba.png", good.convert("RGBA"), "PNG", "used")
    save("cmyk.jpg", good.convert("CMYK"), "JPEG", "used")
    Image.fromarray(np.asarray(good.convert("L"), np.uint16) * 257).save(os.path.join(folder, "deep16.png"))
    expect["deep16.png"] = "used"
    save("one-pixel.png", Image.new("RGB", (1, 1)), "PNG", "rejected")
    Image.new("1", (8000, 8000)).save(os.path.join(folder, "bomb.png"))
    expect["bomb.png"] = "rejected"
    frames = [smooth_image(9100 + i, 40).convert("P") for i in range(3)]
    frames[0].save(os.path.join(folder, "animated.gif"), save_all=True, append_images=frames[1:], duration=100)
    expect["animated.gif"] = "used"
    save("nested/deeper/face.webp", good, "WEBP", "used")
    with open(os.path.join(os.fsencode(folder), b"bad-\xff-name.jpg"), "wb") as f:
        f.write(whole)
    expect[os.fsdecode(b"bad-\xff-name.jpg")] = "used"
    os.symlink("loop.jpg", os.path.join(folder, "loop.jpg"))
    expect["loop.jpg"] = "rejected"
    return expect


def kill_when(cmd, ready, cwd, timeout=180):
    """Start cmd, SIGKILL it as soon as ready() is true (or at the timeout): a crash at a random point."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def epochs_recorded(progress_path):
    """Finished epochs in a run's progress file (0 while it does not exist yet)."""
    import json

    try:
        return len(json.load(open(progress_path))["epochs"])
    except (OSError, ValueError):
        return 0


def completed_trials(tuner_dir):
    """Ids of the keras-tuner trials recorded as COMPLETED in a tuner folder."""
    import json

    done = []
    if not os.path.isdir(tuner_dir):
        return done
    for name in sorted(os.listdir(tuner_dir)):
        path = os.path.join(tuner_dir, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            try:
                trial = json.load(open(path))
            except ValueError:
                continue
            if trial.get("status") == "COMPLETED":
                done.append(trial["trial_id"])
    return done


def reduced_precision():
    """A mixed precision this machine runs: bfloat16, or float16 where oneDNN is capped below bfloat16
    (ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU, where TensorFlow's bfloat16 convolutions fail)."""
    from data.runtime import bfloat16_refused

    return "mixed_float16" if bfloat16_refused() else "mixed_bfloat16"
