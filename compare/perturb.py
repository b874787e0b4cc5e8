"""Perturbations a detector meets in the wild, applied to test images at their own resolution.

SPEC is a comma-separated subset of: jpeg=QUALITY (re-compression), blur=SIGMA (Gaussian, pixels),
resize=FACTOR (down by FACTOR, then back up). Each is evaluated on its own.
"""
import io

from PIL import Image, ImageFilter

from data.runtime import UserError

KINDS = {"jpeg": (1, 100), "blur": (0.0, 50.0), "resize": (0.05, 1.0)}


def parse_spec(spec):
    """'jpeg=50,blur=1.0' -> [('jpeg', 50.0), ('blur', 1.0)], with a clear error for anything else."""
    out = []
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = part.partition("=")
        if name not in KINDS:
            raise UserError(f"--perturb: unknown perturbation {name!r} (use {', '.join(KINDS)})")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--perturb: {part!r} needs a number, like {name}={KINDS[name][0] or 1}")
        low, high = KINDS[name]
        if not low <= number <= high:
            raise UserError(f"--perturb: {name} must be between {low} and {high}, got {value}")
        out.append((name, number))
    return out


def label(name, value):
    return f"{name}={value:g}"


def transform(name, value):
    """A function Pillow RGB image -> perturbed RGB image."""
    if name == "jpeg":
        def recompress(img):
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=int(value))
            return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        return recompress
    if name == "blur":
        return lambda img: img.filter(ImageFilter.GaussianBlur(value))
    if name == "resize":
        def down_up(img):
            small = (max(1, round(img.width * value)), max(1, round(img.height * value)))
            return img.resize(small, Image.BILINEAR).resize(img.size, Image.BILINEAR)
        return down_up
    raise UserError(f"unknown perturbation {name!r}")
