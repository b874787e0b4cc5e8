"""The embedded default dataset: drawn faces, generated deterministically in seconds, no download.

Real images are faces drawn at full resolution with natural-image (1/f) texture and sensor noise. Fake
images are the same kind of face drawn at half resolution and brought up by a small fixed random
transposed-convolution upsampler, the last layer of a typical GAN generator: it leaves the period-2
checkerboard and spectral peaks that real GAN detectors learn. Colour, brightness, noise and JPEG quality
come from the same distributions in both classes, so no trivial statistic separates them (a test checks).
It is a smoke test for the pipeline, not a substitute for real faces.
"""
import io
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
IMAGES_PER_CLASS = 360
NEAR_COPY_SHARE = 0.05  # images that also appear flipped and re-encoded, as in padded face datasets
JPEG_QUALITY = (70, 95)
GENERATOR_SEED = 7  # the fake "generator's" weights: one fingerprint shared by every fake
VERSION = "1"
MARKER = "EMBEDDED-DEFAULT.txt"


def _pink_noise(rng, size, alpha=1.0):
    """Noise with a 1/f^alpha spectrum, like natural images."""
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius ** alpha
    spectrum[0, 0] = 0
    noise = np.real(np.fft.ifft2(spectrum))
    return noise / (noise.std() + 1e-8)


def _soft_ellipse(yy, xx, cy, cx, ry, rx, edge):
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1 - d) / edge + 0.5, 0, 1)


def draw_face(rng, size):
    """One face as float RGB in [0, 255], drawn at `size` pixels."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3))
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    img[:] = top + (bottom - top) * yy[..., None]
    img += 18 * _pink_noise(rng, size)[..., None] * rng.uniform(0.5, 1.5, 3)
    edge = 1.5 / size / 0.3
    cy, cx = 0.52 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02)
    ry, rx = rng.uniform(0.30, 0.36), rng.uniform(0.22, 0.27)
    hair = rng.uniform(10, 160, 3)
    skin = np.array([rng.uniform(120, 235), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.7, 0.85)
    skin[2] = skin[1] * rng.uniform(0.75, 0.9)

    def paint(mask, colour):
        img[:] = img * (1 - mask[..., None]) + mask[..., None] * colour

    paint(_soft_ellipse(yy, xx, cy - ry * 0.35, cx, ry * 0.85, rx * 1.15, edge), hair)
    face = _soft_ellipse(yy, xx, cy, cx, ry, rx, edge)
    shading = 1 + 0.12 * (xx - cx) / rx * rng.choice([-1, 1])
    img[:] = img * (1 - face[..., None]) + face[..., None] * skin * shading[..., None]
    eye_y, eye_dx = cy - ry * 0.15, rx * rng.uniform(0.38, 0.48)
    iris = rng.uniform(20, 120, 3)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        paint(_soft_ellipse(yy, xx, eye_y, ex, ry * 0.08, rx * 0.22, edge), np.array([235.0, 235, 230]))
        paint(_soft_ellipse(yy, xx, eye_y, ex, ry * 0.07, rx * 0.09, edge), iris)
        paint(_soft_ellipse(yy, xx, eye_y - ry * 0.17, ex, ry * 0.03, rx * 0.25, edge), hair * 0.8)
    paint(_soft_ellipse(yy, xx, cy + ry * 0.12, cx, ry * 0.16, rx * 0.07, edge) * 0.3, skin * 0.75)
    lips = np.array([rng.uniform(150, 200), rng.uniform(60, 100), rng.uniform(60, 100)])
    paint(_soft_ellipse(yy, xx, cy + ry * 0.5, cx, ry * 0.06, rx * rng.uniform(0.3, 0.45), edge), lips)
    img += 6 * _pink_noise(rng, size, alpha=0.5)[..., None]  # skin and fabric texture
    return img


class Upsampler:
    """A fixed random 2x transposed convolution (3x3 kernel, channel mixing): a GAN's last layer.

    A 3x3 kernel at stride 2 overlaps unevenly, so the four output phases respond differently: the
    checkerboard. The phase gains average to one, so the mean colour is unchanged.
    """

    def __init__(self, seed=GENERATOR_SEED):
        rng = np.random.default_rng(seed)
        base = np.outer([0.5, 1, 0.5], [0.5, 1, 0.5])
        self.kernel = base[:, :, None, None] * np.eye(3)[None, None] + rng.normal(0, 0.04, (3, 3, 3, 3))
        for py in (0, 1):  # normalise each output phase's gain to 1 +- a small fixed offset
            for px in (0, 1):
                taps = self.kernel[py::2 if py == 0 else 2, px::2 if px == 0 else 2]
                gain = taps.sum(axis=(0, 1, 2))
                taps /= gain[None, None, None, :]
        self.phase_gain = 1 + np.array([[0.025, -0.025], [-0.025, 0.025]])

    def __call__(self, img):
        h, w, _ = img.shape
        sparse = np.zeros((2 * h + 2, 2 * w + 2, 3))
        sparse[1:-1:2, 1:-1:2] = img
        out = np.zeros((2 * h, 2 * w, 3))
        for dy in range(3):
            for dx in range(3):
                out += np.einsum("hwc,cd->hwd", sparse[dy:dy + 2 * h, dx:dx + 2 * w], self.kernel[dy, dx])
        out *= np.tile(self.phase_gain, (h, w))[..., None]
        return out


def _jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def make_image(rng, fake, upsampler, size=IMAGE_SIZE):
    if fake:
        img = upsampler(draw_face(rng, size // 2))
    else:
        big = draw_face(rng, size * 2)  # drawn at 2x and averaged down: natural anti-aliasing
        img = big.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    img = img + rng.normal(0, rng.uniform(1.0, 4.0), img.shape)  # sensor / dithering noise, both classes
    return _jpeg(img, rng.integers(*JPEG_QUALITY, endpoint=True))


def generate(dest, images_per_class=IMAGES_PER_CLASS, size=IMAGE_SIZE, seed=0):
    """Write Real/ and Fake/ JPEGs to dest (atomically: a temporary folder renamed at the end)."""
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".default-data-", dir=parent)
    upsampler = Upsampler()
    try:
        for fake, folder in ((False, "Real"), (True, "Fake")):
            os.makedirs(os.path.join(tmp, folder))
            rng = np.random.default_rng([seed, int(fake)])
            for i in range(images_per_class):
                data = make_image(rng, fake, upsampler, size)
                with open(os.path.join(tmp, folder, f"{folder.lower()}_{i:04d}.jpg"), "wb") as f:
                    f.write(data)
                if rng.random() < NEAR_COPY_SHARE:
                    copy = np.asarray(Image.open(io.BytesIO(data)))[:, ::-1]
                    with open(os.path.join(tmp, folder, f"{folder.lower()}_{i:04d}_flipped.jpg"), "wb") as f:
                        f.write(_jpeg(copy, rng.integers(*JPEG_QUALITY, endpoint=True)))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(f"version {VERSION} images_per_class {images_per_class} size {size} seed {seed}\n"
                    "Synthetic drawn faces made by data.synthetic: NOT real photographs.\n")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def default_data_dir(runs_dir):
    """The embedded default under the runs folder, generated on first use and then reused."""
    dest = os.path.join(os.path.abspath(runs_dir), ".default-data")
    marker = os.path.join(dest, MARKER)
    expected = f"version {VERSION} images_per_class {IMAGES_PER_CLASS} size {IMAGE_SIZE} seed 0"
    fresh = not (os.path.exists(marker) and open(marker).readline().strip() == expected)
    print("=" * 78, file=sys.stderr)
    print("NO --data-dir GIVEN: using the EMBEDDED SYNTHETIC DEFAULT dataset", file=sys.stderr)
    print(f"  {dest}: {2 * IMAGES_PER_CLASS} drawn {IMAGE_SIZE}px faces (+ a few flipped copies),"
          f" {'generating now' if fresh else 'already generated'}.", file=sys.stderr)
    print("  Drawn faces are NOT real photos: results on them say nothing about real deepfakes.",
          file=sys.stderr)
    print("  For real data: --data-dir DIR (with Real/ and Fake/) or DEEPFAKE_KIT_DATA=DIR.", file=sys.stderr)
    print("=" * 78, file=sys.stderr)
    if fresh:
        generate(dest)
    return dest


def resolve_data_dir(data_dir, runs_dir):
    return os.path.abspath(data_dir) if data_dir else default_data_dir(runs_dir)
