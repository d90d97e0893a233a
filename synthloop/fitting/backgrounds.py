"""Target-domain backgrounds: the labeled objects of real photos removed, for support textures.

A procedural table cannot imitate a terry towel or a ribbed plastic tray, and whole-image features
see mostly the table. The real training photos already show it: remove their labeled objects and the
rest is the target domain's background, which a recipe can use as ``support.material
.texture_folder``.

Removal (:func:`fill_holes`) copies real pixels into each hole, never synthesises new ones: the
photo shifted by a random offset (seeded) fills a whole hole where it can, else the hole pixels
whose source is neither a hole nor outside the image, and the next offset fills what is left; a
thin band along each hole's border is then smoothed (``cv2.inpaint``) so that the seams do not read
as edges. With ``relight`` the copy is of the pixel's reflectance (the pixel over the photo's
illumination, :func:`illumination`), relit with the illumination at the hole: a patch copied from
a brighter corner of the table does not show as a bright blob. Unlabeled things (the gold foil
sweets of fruits-nuts) stay, and may be copied into a hole, as the domain's own distractors.

Scale: :func:`metres_per_pixel` compares each labeled real object's long box side (pixels) with the
recipe's size of its class (metres), so :func:`texture_scale` gives the ``image_scale`` at which a
texture is as large on the table as the photographed area was.

Conventions: images (H, W, 3) uint8; masks (H, W) bool, True = an object's pixel; boxes pixel x1, y1,
x2, y2. Pure functions apart from :func:`write_backgrounds`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from synthloop.atomic import atomic_save_image
from synthloop.dataset.staging import staged_dir
from synthloop.dataset.types import Dataset, Frame
from synthloop.errors import SynthloopError
from synthloop.gap.images import load_rgb
from synthloop.geometry.masks import rle_to_mask
from synthloop.geometry.properties import box_mask
from synthloop.scenes.recipe import Recipe

DILATE_FRACTION = 0.02  # hole margin, fraction of the image width (shadows and soft edges)
LIGHT_SIGMA_FRACTION = 0.04  # illumination low-pass: Gaussian sigma, fraction of the image width
SEAM_PX = 3
MAX_SHIFTS = 400
SIZE_SAMPLES = 256


@dataclass(frozen=True)
class Backgrounds:
    """What :func:`write_backgrounds` made: the texture files, the ``image_scale`` they need, the
    metres per photo pixel it came from and the fraction of photo pixels that were filled."""

    paths: list[Path]
    image_scale: float
    metres_per_pixel: float
    filled_fraction: float


def objects_mask(frame: Frame, dilate_px: int) -> np.ndarray:
    """(H, W) bool: every object of ``frame`` (its mask, or its box when it has none), crowd
    regions included, grown by ``dilate_px`` pixels."""
    hole: np.ndarray = np.zeros((frame.height, frame.width), dtype=np.uint8)
    for obj in frame.objects:
        m = rle_to_mask(obj.mask) if obj.mask is not None else box_mask(np.asarray(obj.bbox), *hole.shape)
        hole |= m.astype(np.uint8)
    if dilate_px > 0:
        k = 2 * int(dilate_px) + 1
        hole = cv2.dilate(hole, np.ones((k, k), dtype=np.uint8))
    return hole.astype(bool)


def _shifted(arr: np.ndarray, dy: int, dx: int, fill: object) -> np.ndarray:
    """``arr`` moved by (dy, dx) pixels (out[y, x] = arr[y - dy, x - dx]); uncovered cells = ``fill``."""
    out = np.full_like(arr, fill)
    h, w = arr.shape[:2]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = arr[ys, xs]
    return out


def _offset(rng: np.random.Generator, width: int, shift_range: tuple[float, float]) -> tuple[int, int]:
    """A random (dy, dx) of length ``shift_range`` (fractions of ``width``) in a random direction."""
    ang = rng.uniform(0.0, 2.0 * np.pi)
    r = rng.uniform(*shift_range) * width
    return int(round(r * np.sin(ang))), int(round(r * np.cos(ang)))


def _fill_whole_components(
    out: np.ndarray,
    hole: np.ndarray,
    blocked: np.ndarray,
    rng: np.random.Generator,
    shift_range: tuple[float, float],
    tries: int,
) -> np.ndarray:
    """Fill each connected hole in one piece from one offset whose source lies wholly outside the
    ``blocked`` pixels and inside the image (one seam per hole); returns the pixels left unfilled."""
    left = hole.copy()
    n, labels = cv2.connectedComponents(hole.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        comp = labels == k
        for _ in range(tries):
            dy, dx = _offset(rng, hole.shape[1], shift_range)
            if not (comp & _shifted(blocked, dy, dx, True)).any():
                out[comp] = _shifted(out, dy, dx, 0)[comp]
                left &= ~comp
                break
    return left


def _lowpass(img: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian low-pass of ``img`` ((H, W) or (H, W, C) float32, each channel alike) over ``valid``
    pixels only (normalised convolution); where no valid pixel is near, their mean."""
    w = cv2.GaussianBlur(valid.astype(np.float32), (0, 0), sigma_px)
    mask = valid if img.ndim == 2 else valid[..., None]
    num = cv2.GaussianBlur(img * mask, (0, 0), sigma_px)
    mean = img[valid].mean(axis=0) if valid.any() else 1.0
    if img.ndim == 3:
        w = w[..., None]
    return np.where(w > 1e-3, num / np.maximum(w, 1e-3), mean).astype(np.float32)


def table_outliers(rgb: np.ndarray, valid: np.ndarray, sigma_px: float, outlier: float = 0.3) -> np.ndarray:
    """(H, W) bool: ``valid`` pixels unlike the table around them (bright foil, dark crevices): a
    channel's log level differs from its low-pass (sigma ``sigma_px``) by more than ``outlier``;
    specks smaller than 5 x 5 pixels are dropped (the table's own grain is not an outlier), and
    the rest grown by 3 pixels (a foil's thin rim goes with it)."""
    lin = rgb.astype(np.float32) + 1.0
    dev = np.abs(np.log(lin / _lowpass(lin, valid, sigma_px))).max(axis=2)
    out = ((dev > outlier) & valid).astype(np.uint8)
    out = cv2.morphologyEx(out, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return (cv2.dilate(out, np.ones((7, 7), np.uint8)).astype(bool)) & valid


def illumination(rgb: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """(H, W) float32 >= 1: the photo's light on the table, a low-pass (Gaussian, sigma ``sigma_px``
    pixels) of the grey level of its ``valid`` pixels, defined inside the holes too from the table
    around them."""
    grey = rgb.astype(np.float32).mean(axis=2) + 1.0
    return np.maximum(_lowpass(grey, valid, sigma_px), 1.0)


def fill_holes(
    rgb: np.ndarray,
    hole: np.ndarray,
    rng: np.random.Generator,
    *,
    shift_range: tuple[float, float] = (0.1, 0.4),
    max_shifts: int = MAX_SHIFTS,
    seam_px: int = SEAM_PX,
    light_sigma_px: float | None = None,
) -> np.ndarray:
    """``rgb`` with every ``hole`` pixel replaced by a real pixel of the same photo.

    With ``light_sigma_px`` the copies are relit: a source pixel is copied as its reflectance
    (pixel / :func:`illumination` there) times the illumination at the hole, and only table pixels
    are sources (not :func:`table_outliers`: no cut-off piece of a foil sweet lands in a hole);
    pixels outside the holes stay as they were. Without it, copies are as is.

    Each connected hole is first copied whole from the first of ``max_shifts // 4`` random offsets
    (direction random, length ``shift_range`` of the width) whose source is clear of holes and
    inside the image. The holes no offset fits whole are filled pixel by pixel: each further offset
    (at most ``max_shifts``) fills the pixels still empty whose source pixel is clear; pixels no
    offset reached are inpainted.
    A band of ``seam_px`` around each hole's border is inpainted to soften the seams. Raises
    SynthloopError when the photo has no pixel outside the holes."""
    if hole.shape != rgb.shape[:2]:
        raise SynthloopError(f"mask {hole.shape} does not match image {rgb.shape[:2]}")
    if hole.all():
        raise SynthloopError("nothing of the photo is left outside its objects")
    blocked, light = hole, None
    if light_sigma_px:
        blocked = hole | table_outliers(rgb, ~hole, light_sigma_px)
        light = illumination(rgb, ~blocked, light_sigma_px)
    out = rgb.astype(np.float32) / light[..., None] if light is not None else rgb.copy()
    left = _fill_whole_components(out, hole, blocked, rng, shift_range, tries=max_shifts // 4)
    for _ in range(max_shifts):
        if not left.any():
            break
        dy, dx = _offset(rng, rgb.shape[1], shift_range)
        take = left & ~_shifted(blocked, dy, dx, True)
        out[take] = _shifted(out, dy, dx, 0)[take]
        left &= ~take
    if light is not None:
        relit = np.clip(np.rint(out * light[..., None]), 0, 255)
        out = np.where(hole[..., None], relit, rgb).astype(np.uint8)
    kernel = np.ones((2 * seam_px + 1,) * 2, np.uint8)
    h8 = hole.astype(np.uint8)
    band = (cv2.dilate(h8, kernel) - cv2.erode(h8, kernel)).astype(bool)
    return cv2.inpaint(out, ((band | left) * 255).astype(np.uint8), seam_px, cv2.INPAINT_TELEA)


def class_long_side(recipe: Recipe, rng: np.random.Generator) -> dict[str, float]:
    """Median long side (metres: max of ``dimensions`` times ``scale``) of each recipe class with
    fixed dimensions, over :data:`SIZE_SAMPLES` draws of its distributions."""
    out: dict[str, float] = {}
    for cls in recipe.classes:
        dims = cls.shape.dimensions
        if dims is None:
            continue
        sides = [
            max(d.sample_float(rng) for d in dims) * cls.shape.scale.sample_float(rng)
            for _ in range(SIZE_SAMPLES)
        ]
        out[cls.name] = float(np.median(sides))
    return out


def metres_per_pixel(real: Dataset, long_side: dict[str, float]) -> float:
    """Median over the labeled real objects of their class's long side (metres) / their box's
    long side (pixels). SynthloopError when no real class has a size in ``long_side``."""
    names = {c.id: c.name for c in real.categories}
    sized = [
        (long_side[names[o.category_id]], max(o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]))
        for f in real.frames
        for o in f.objects
        if not o.iscrowd and names.get(o.category_id) in long_side
    ]
    ratios = [metres / px for metres, px in sized if px > 0]
    if not ratios:
        raise SynthloopError(
            f"no labeled object of a class with a known size ({', '.join(sorted(long_side)) or 'none'})"
        )
    return float(np.median(ratios))


def square_centre(rgb: np.ndarray) -> np.ndarray:
    """The largest centred square of ``rgb`` (a box-projected texture is square)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return rgb[y0 : y0 + s, x0 : x0 + s]


def texture_scale(side_px: float, m_per_px: float) -> float:
    """``image_scale`` (repeats per metre) of a square texture of ``side_px`` photo pixels."""
    size_m = side_px * m_per_px
    if not np.isfinite(size_m) or size_m <= 0:
        raise SynthloopError(f"texture size must be a positive number of metres, got {size_m}")
    return float(1.0 / size_m)


def write_backgrounds(
    real: Dataset,
    recipe: Recipe,
    out: str | Path,
    rng: np.random.Generator,
    on_frame: Callable[[], None] | None = None,
    *,
    relight: bool = False,
    check: Callable[[Path, Backgrounds], None] | None = None,
) -> Backgrounds:
    """One JPEG per real frame in ``out`` (published when all are written): its objects removed,
    the centre square kept. Returns the files and the ``image_scale`` for them (from the median
    square side: photos of one size, as a camera takes them, share one scale). ``relight``: relit
    copies from table pixels only (:func:`fill_holes` with a low-pass of
    :data:`LIGHT_SIGMA_FRACTION` of the width). ``on_frame`` is called after each frame.
    ``check(staged, made)`` runs on the complete staged folder (a sibling of ``out``) before it is
    published, e.g. to validate the recipe that will name it; if it raises, ``out`` is left as it
    was."""
    m_px = metres_per_pixel(real, class_long_side(recipe, rng))
    sides: list[int] = []
    filled = total = 0
    names: list[str] = []
    with staged_dir(out) as tmp:
        for i, frame in enumerate(real.frames):
            rgb = load_rgb(frame)
            hole = objects_mask(frame, int(round(DILATE_FRACTION * frame.width)))
            sigma = LIGHT_SIGMA_FRACTION * frame.width if relight else None
            sq = square_centre(fill_holes(rgb, hole, rng, light_sigma_px=sigma))
            name = f"background_{i:04d}.jpg"
            atomic_save_image(tmp / name, Image.fromarray(sq), quality=92)
            names.append(name)
            sides.append(sq.shape[0])
            filled, total = filled + int(hole.sum()), total + hole.size
            if on_frame is not None:
                on_frame()
        made = Backgrounds(
            paths=[Path(out) / n for n in names],
            image_scale=texture_scale(float(np.median(sides)), m_px),
            metres_per_pixel=m_px,
            filled_fraction=filled / max(total, 1),
        )
        if check is not None:
            check(tmp, made)
    return made


def with_backgrounds(recipe_dict: dict, folder: str, image_scale: float) -> dict:
    """A copy of a recipe dict (:func:`~synthloop.scenes.recipe.recipe_to_dict`) whose support
    shows one texture of ``folder`` (chosen per frame) at ``image_scale`` repeats per metre."""
    out = {**recipe_dict, "support": {**recipe_dict["support"]}}
    out["support"]["material"] = {
        **recipe_dict["support"]["material"],
        "texture_folder": folder,
        "image_scale": round(float(image_scale), 4),
    }
    return out
