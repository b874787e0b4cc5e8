"""Shared helpers: every test builds its own small data in a temporary folder."""
import io
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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


@pytest.fixture
def tiny_faces(tmp_path_factory):
    """The kit's own synthetic generator at 32 px, 40 per class: enough to train a few steps."""
    from data.synthetic import generate

    dest = tmp_path_factory.mktemp("faces") / "data"
    return generate(str(dest), images_per_class=40, size=32)
