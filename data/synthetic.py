"""The embedded default dataset: drawn faces, generated deterministically in seconds, no download.

Every face is drawn at twice the size with natural-image (1/f) texture and averaged down (natural
anti-aliasing). A real image is that face plus sensor noise. A fake is the same face rebuilt the way a
GAN's last layer would, from a half-resolution version by a small fixed random transposed-convolution
upsampler (the period-2 checkerboard and spectral peaks real GAN detectors learn), blended with the clean
face at a strength drawn per image: some fakes carry a strong fingerprint, some a faint one, so a
detector has something to learn and something to miss. Colour, brightness, noise and JPEG quality come
from the same distributions in both classes, so no trivial statistic separates them (a test checks).

Other families, for external test sets (`python -m data.synthetic DEST --family NAME`):
  other-upsampler  the same kind of generator with other weights (another fingerprint, same family);
  sharpened        fakes that are over-sharpened full-resolution faces, no upsampling at all: the other
                   family's artefact, which a detector of upsampling blur can find *more* real than real.
  zoomed-reals     smoothed fakes (full resolution, no upsampling) beside reals that carry a faint trace of
                   the default generator's upsampling (as a camera's digital zoom leaves one): a family the
                   default detector sees inverted, its reals looking more fake than its fakes, mostly without
                   accusing them.
It is a smoke test for the pipeline, not a substitute for real faces.
"""
import argparse
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
OTHER_GENERATOR_SEED = 11
FINGERPRINT_STRENGTH = (0.4, 1.6)  # per fake, uniform: the share of the upsampled rebuild in the blend
SHARPEN_AMOUNT = (0.4, 0.9)  # the sharpened family's unsharp-mask strength, per fake
ZOOM_TRACE = (0.0, 0.25)  # zoomed-reals: the share of the default generator's artefact in each real, under its fakes'
SMOOTH_AMOUNT = (0.3, 0.6)  # zoomed-reals: each fake's negative unsharp-mask strength
FAMILIES = ("upsampler", "other-upsampler", "sharpened", "zoomed-reals")
VERSION = "2"  # 2: fakes blended with the clean face at a random strength
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

    def __init__(self, seed=GENERATOR_SEED, fingerprint=True, phase_pattern=((1, -1), (-1, 1))):
        rng = np.random.default_rng(seed)
        base = np.outer([0.5, 1, 0.5], [0.5, 1, 0.5])
        # fingerprint=False: the plain bilinear upsampler, the reference the artefact is measured against
        noise = rng.normal(0, 0.04, (3, 3, 3, 3)) if fingerprint else 0
        self.kernel = base[:, :, None, None] * np.eye(3)[None, None] + noise
        for py in (0, 1):  # normalise each output phase's gain to 1 +- a small fixed offset
            for px in (0, 1):
                taps = self.kernel[py::2 if py == 0 else 2, px::2 if px == 0 else 2]
                gain = taps.sum(axis=(0, 1, 2))
                taps /= gain[None, None, None, :]
        self.phase_gain = 1 + 0.025 * np.array(phase_pattern, float) * fingerprint

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


def _box_down(img, factor):
    h, w, c = img.shape
    return img.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def _unsharp(img, amount):
    """img + amount * (img - its 3x3 blur): crisper edges and texture than any camera gives here."""
    padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w, _ = img.shape
    blur = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9
    return img + amount * (img - blur)


PLAIN_UPSAMPLER = Upsampler(fingerprint=False)


def make_image(rng, fake, upsampler, size=IMAGE_SIZE, family="upsampler"):
    big = draw_face(rng, size * 2)  # drawn at 2x and averaged down: natural anti-aliasing
    img = _box_down(big, 2)
    if fake and family == "sharpened":
        img = _unsharp(img, rng.uniform(*SHARPEN_AMOUNT))
    elif fake and family == "zoomed-reals":
        img = _unsharp(img, -rng.uniform(*SMOOTH_AMOUNT))  # smoother than any camera here
    elif fake or family == "zoomed-reals":
        # the generator's artefact alone (its upsampling minus a plain bilinear one of the same half-size
        # face), added at a strength drawn per fake: the face keeps the real one's detail, so blur and
        # file size give nothing away, and a faint fingerprint is genuinely hard to see
        half = _box_down(big, 4)
        strength = rng.uniform(*(FINGERPRINT_STRENGTH if fake else ZOOM_TRACE))
        img = img + strength * (upsampler(half) - PLAIN_UPSAMPLER(half))
    img = img + rng.normal(0, rng.uniform(1.0, 4.0), img.shape)  # sensor / dithering noise, both classes
    return _jpeg(img, rng.integers(*JPEG_QUALITY, endpoint=True))


def generate(dest, images_per_class=IMAGES_PER_CLASS, size=IMAGE_SIZE, seed=0, family="upsampler"):
    """Write Real/ and Fake/ JPEGs to dest (atomically: a temporary folder renamed at the end)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".default-data-", dir=parent)
    # another generator: other weights, and its phases out of step by rows rather than as a checkerboard
    upsampler = (Upsampler(OTHER_GENERATOR_SEED, phase_pattern=((1, 1), (-1, -1))) if family == "other-upsampler"
                 else Upsampler())
    try:
        for fake, folder in ((False, "Real"), (True, "Fake")):
            os.makedirs(os.path.join(tmp, folder))
            rng = np.random.default_rng([seed, int(fake)])
            for i in range(images_per_class):
                data = make_image(rng, fake, upsampler, size, family)
                with open(os.path.join(tmp, folder, f"{folder.lower()}_{i:04d}.jpg"), "wb") as f:
                    f.write(data)
                if rng.random() < NEAR_COPY_SHARE:
                    copy = np.asarray(Image.open(io.BytesIO(data)))[:, ::-1]
                    with open(os.path.join(tmp, folder, f"{folder.lower()}_{i:04d}_flipped.jpg"), "wb") as f:
                        f.write(_jpeg(copy, rng.integers(*JPEG_QUALITY, endpoint=True)))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(f"version {VERSION} images_per_class {images_per_class} size {size} seed {seed}"
                    + ("" if family == "upsampler" else f" family {family}") + "\n"
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
    if not fresh:  # said loudly once, when it is made; one line every later time
        print(f"data: the embedded synthetic default ({dest}: drawn faces, NOT real photos; --data-dir DIR for "
              "your own)", file=sys.stderr)
        return dest
    print("=" * 78, file=sys.stderr)
    print("NO --data-dir GIVEN: using the EMBEDDED SYNTHETIC DEFAULT dataset", file=sys.stderr)
    print(f"  {dest}: {2 * IMAGES_PER_CLASS} drawn {IMAGE_SIZE}px faces (+ a few flipped copies), generating now.",
          file=sys.stderr)
    print("  Drawn faces are NOT real photos: results on them say nothing about real deepfakes.",
          file=sys.stderr)
    print("  For real data: --data-dir DIR (with Real/ and Fake/) or DEEPFAKE_KIT_DATA=DIR.", file=sys.stderr)
    print("=" * 78, file=sys.stderr)
    generate(dest)
    return dest


def resolve_data_dir(data_dir, runs_dir):
    return os.path.abspath(data_dir) if data_dir else default_data_dir(runs_dir)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m data.synthetic",
                                description="Write a synthetic Real/ + Fake/ set of drawn faces (NOT real photos).")
    p.add_argument("dest")
    p.add_argument("--family", choices=FAMILIES, default="upsampler")
    p.add_argument("--images-per-class", type=int, default=IMAGES_PER_CLASS)
    p.add_argument("--seed", type=int, default=0, help="faces other than the default's need another seed")
    args = p.parse_args(argv)
    generate(args.dest, args.images_per_class, IMAGE_SIZE, args.seed, args.family)
    print(f"{args.dest}: {args.images_per_class} real and {args.images_per_class} {args.family} fake drawn faces "
          "(synthetic, not real photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
