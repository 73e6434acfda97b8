"""Seeded procedural scenes: one drawn object on a crop of a natural photo.

Every scene is a random crop (random scale and flips) of one of the photos that ship inside
scikit-image (no download needed), optionally with class-free distractors (thick lines and
irregular translucent blobs) and one anti-aliased object of one of :data:`CLASS_NAMES` on top.
The object's exact binary mask and bounding box are recorded, and so is the image without the
object (the counterfactual "object removed" image).

Conventions used throughout:

* images are ``float32`` arrays ``[3, H, W]`` with values in ``[0, 1]`` (channel first, RGB);
* masks are ``bool`` arrays ``[H, W]``;
* boxes are ``(x0, y0, x1, y1)`` in pixels, ``x`` = column, ``y`` = row, ends exclusive;
* randomness only comes from an explicit :class:`numpy.random.Generator`.

The low-level pieces (:func:`random_background`, :func:`shape_alpha`, :func:`composite`,
:func:`add_distractors`) are public so that other generators (e.g. the planted-bias benchmark in
:mod:`ablation_paths.bench.datasets`) can reuse them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUND_NAMES",
    "CLASS_NAMES",
    "Scene",
    "SceneBatch",
    "add_distractors",
    "box_from_mask",
    "composite",
    "load_backgrounds",
    "make_dataset",
    "make_scene",
    "pick_contrasting_colour",
    "random_background",
    "random_blob_alpha",
    "shape_alpha",
    "split_seed",
]

#: The object classes of the demo classifier, in label order.
CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "star", "cross", "ring")

#: ``skimage.data`` photos used as backgrounds (all bundled with scikit-image, no download).
BACKGROUND_NAMES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "coins",
    "camera",
    "moon",
    "grass",
    "gravel",
    "brick",
)

_SPLITS: dict[str, int] = {"train": 0, "test": 1, "demo": 2}
_SUPERSAMPLE = 4


@dataclass
class Scene:
    """One generated scene.

    Attributes:
        image: ``float32 [3, H, W]`` in ``[0, 1]``, the full scene.
        mask: ``bool [H, W]``, pixels where the object covers at least half of the pixel.
        box: ``(x0, y0, x1, y1)`` bounding box of ``mask`` in pixels, ends exclusive.
        label: class index into :data:`CLASS_NAMES`.
        class_name: ``CLASS_NAMES[label]``.
        background: ``float32 [3, H, W]``, the same scene without the object (distractors kept).
    """

    image: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    class_name: str
    background: np.ndarray


@dataclass
class SceneBatch:
    """A batch of scenes as tensors.

    Attributes:
        images: ``float32 [N, 3, H, W]`` in ``[0, 1]``.
        masks: ``bool [N, H, W]`` object masks.
        boxes: ``int64 [N, 4]`` boxes ``(x0, y0, x1, y1)``, ends exclusive.
        labels: ``int64 [N]`` class indices.
        backgrounds: ``float32 [N, 3, H, W]`` scenes without the object, or ``None`` if not
            requested.
    """

    images: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    backgrounds: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------


def _to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


@functools.lru_cache(maxsize=4)
def _background_images(include_sklearn: bool) -> tuple[Image.Image, ...]:
    import skimage.data

    photos = [_to_rgb_uint8(getattr(skimage.data, name)()) for name in BACKGROUND_NAMES]
    if include_sklearn:
        try:
            from sklearn.datasets import load_sample_images
        except ImportError as err:  # only a missing scikit-learn is expected here
            raise ImportError(
                "include_sklearn=True needs scikit-learn (pip install scikit-learn)"
            ) from err
        photos.extend(_to_rgb_uint8(im) for im in load_sample_images().images)
    return tuple(Image.fromarray(p, mode="RGB") for p in photos)


def _sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def load_backgrounds(include_sklearn: bool | None = False) -> tuple[Image.Image, ...]:
    """Return the background photos as RGB PIL images (cached, treat as read-only).

    Args:
        include_sklearn: ``False`` (default) uses only the scikit-image photos, so that seeded
            datasets are identical on every installation. ``True`` adds the two photos of
            ``sklearn.datasets.load_sample_images`` and raises :class:`ImportError` if
            scikit-learn is missing; ``None`` adds them only if scikit-learn is installed.
    """
    if include_sklearn is None:
        include_sklearn = _sklearn_available()
    return _background_images(bool(include_sklearn))


def random_background(
    rng: np.random.Generator,
    size: int = 128,
    backgrounds: Sequence[Image.Image] | None = None,
) -> np.ndarray:
    """A random crop of a random photo, resized to ``size x size``.

    The crop side is between 25% and 100% of the photo's shorter side (and at least ``0.75 *
    size`` pixels), with random horizontal/vertical flips and a mild brightness/contrast jitter.

    Returns:
        ``float32 [size, size, 3]`` in ``[0, 1]`` (channel last; see :func:`make_scene`).
    """
    _check_size(size)
    photos = load_backgrounds() if backgrounds is None else backgrounds
    if len(photos) == 0:
        raise ValueError("backgrounds must not be empty")
    photo = photos[int(rng.integers(len(photos)))]
    w, h = photo.size
    short = min(w, h)
    lo = min(short, max(0.75 * size, 0.25 * short))
    side = float(rng.uniform(lo, short))
    x0 = float(rng.uniform(0.0, w - side))
    y0 = float(rng.uniform(0.0, h - side))
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    arr = np.asarray(crop, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    if rng.random() < 0.25:
        arr = arr[::-1]
    contrast = float(rng.uniform(0.8, 1.1))
    brightness = float(rng.uniform(-0.08, 0.08))
    arr = (arr - 0.5) * contrast + 0.5 + brightness
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def _polygon(kind: str, inner: float) -> list[np.ndarray]:
    """Unit-radius outlines ``[K, 2]`` (x, y) of a shape; later ones are holes."""
    if kind in ("disc", "ring"):
        a = np.linspace(0.0, 2.0 * math.pi, 72, endpoint=False)
        outer = np.stack([np.cos(a), np.sin(a)], axis=1)
        return [outer, inner * outer] if kind == "ring" else [outer]
    if kind == "square":
        a = math.pi / 4 + np.arange(4) * math.pi / 2
        return [np.stack([np.cos(a), np.sin(a)], axis=1)]
    if kind == "triangle":
        a = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        # equilateral triangle with its centroid at the origin, scaled to similar area
        return [1.2 * np.stack([np.cos(a), np.sin(a)], axis=1)]
    if kind == "star":
        a = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.1, 1.1 * inner)
        return [np.stack([r * np.cos(a), r * np.sin(a)], axis=1)]
    if kind == "cross":
        t = inner
        pts = [(t, 1), (t, t), (1, t), (1, -t), (t, -t), (t, -1)]
        pts += [(-t, -1), (-t, -t), (-1, -t), (-1, t), (-t, t), (-t, 1)]
        return [np.asarray(pts, dtype=np.float64)]
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {CLASS_NAMES}")


_DEFAULT_INNER = {"ring": 0.55, "star": 0.45, "cross": 0.32}


def _rasterise(outlines: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Anti-aliased coverage ``float32 [size, size]`` of pixel-space outlines (first filled,
    the rest cut out), by 4x supersampling of the outlines' bounding box only."""
    s = _SUPERSAMPLE
    out = np.zeros((size, size), np.float32)
    allpts = np.concatenate(list(outlines), axis=0)
    x0 = max(0, int(math.floor(allpts[:, 0].min())) - 1)
    y0 = max(0, int(math.floor(allpts[:, 1].min())) - 1)
    x1 = min(size, int(math.ceil(allpts[:, 0].max())) + 1)
    y1 = min(size, int(math.ceil(allpts[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(canvas)
    for i, pts in enumerate(outlines):
        flat = [((float(x) - x0) * s, (float(y) - y0) * s) for x, y in pts]
        draw.polygon(flat, fill=255 if i == 0 else 0)
    small = canvas.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    out[y0:y1, x0:x1] = np.asarray(small, dtype=np.float32) / 255.0
    return out


def shape_alpha(
    kind: str,
    size: int,
    centre: tuple[float, float],
    radius: float,
    angle: float = 0.0,
    aspect: float = 1.0,
    inner: float | None = None,
) -> np.ndarray:
    """Anti-aliased coverage of one shape.

    Args:
        kind: one of :data:`CLASS_NAMES`.
        size: image side in pixels.
        centre: ``(x, y)`` centre in pixels.
        radius: outer radius in pixels (circumradius for polygons).
        angle: rotation in radians.
        aspect: horizontal stretch before rotation (1 = regular shape).
        inner: inner radius ratio for ring/star and arm half-width for cross (``None``: default).

    Returns:
        ``float32 [size, size]`` coverage in ``[0, 1]``.
    """
    if kind not in CLASS_NAMES:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {CLASS_NAMES}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    inner = _DEFAULT_INNER.get(kind, 0.5) if inner is None else inner
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    outlines = []
    for pts in _polygon(kind, inner):
        p = pts * np.array([aspect, 1.0]) * radius
        outlines.append(p @ rot.T + np.asarray(centre))
    return _rasterise(outlines, size)


def random_blob_alpha(
    rng: np.random.Generator,
    size: int,
    centre: tuple[float, float],
    radius: float,
    n_vertices: int | None = None,
) -> np.ndarray:
    """An irregular, class-free shape: a random star-convex polygon with smooth radius noise.

    Returns:
        ``float32 [size, size]`` coverage in ``[0, 1]``.
    """
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    k = int(rng.integers(5, 9)) if n_vertices is None else int(n_vertices)
    # a few random Fourier modes give a lumpy, non-geometric outline
    a = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
    r = np.ones_like(a)
    for m in range(2, k):
        r += rng.uniform(-0.35, 0.35) / (m - 1) ** 0.7 * np.cos(m * a + rng.uniform(0, 2 * math.pi))
    r = np.clip(r, 0.35, 1.6)
    stretch = rng.uniform(0.6, 1.0)
    rot = float(rng.uniform(0.0, 2 * math.pi))
    x = r * np.cos(a) * stretch
    y = r * np.sin(a)
    xr = x * math.cos(rot) - y * math.sin(rot)
    yr = x * math.sin(rot) + y * math.cos(rot)
    pts = np.stack([xr, yr], axis=1) * radius + np.asarray(centre)
    return _rasterise([pts], size)


# --------------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------------


def composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` over ``canvas``.

    Args:
        canvas: ``float32 [H, W, 3]``.
        alpha: ``float32 [H, W]`` in ``[0, 1]``.
        colour: ``[3]`` constant colour or ``[H, W, 3]`` colour field.

    Returns:
        a new ``float32 [H, W, 3]`` array.
    """
    a = alpha[..., None].astype(np.float32)
    return (canvas * (1.0 - a) + np.asarray(colour, dtype=np.float32) * a).astype(np.float32)


def pick_contrasting_colour(
    rng: np.random.Generator,
    canvas: np.ndarray,
    alpha: np.ndarray,
    min_contrast: float = 0.45,
    tries: int = 24,
) -> np.ndarray:
    """A random saturated colour that stands out against ``canvas`` under ``alpha``.

    The contrast is the mean over covered pixels of the L1 distance (sum over RGB, so in
    ``[0, 3]``). Returns the first candidate with contrast ``>= min_contrast``, else the best one.

    Returns:
        ``float32 [3]`` RGB colour in ``[0, 1]``.
    """
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        raise ValueError("alpha is empty")
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    canvas, alpha = canvas[sl], alpha[sl]
    w = alpha / max(float(alpha.sum()), 1e-6)
    best, best_c = None, -1.0
    for _ in range(tries):
        hue = rng.uniform(0.0, 1.0)
        sat = rng.uniform(0.35, 1.0)
        val = rng.uniform(0.25, 1.0)
        colour = _hsv_to_rgb(hue, sat, val) if rng.random() < 0.85 else np.full(3, rng.random())
        c = float((np.abs(canvas - colour).sum(axis=-1) * w).sum())
        if c >= min_contrast:
            return colour.astype(np.float32)
        if c > best_c:
            best, best_c = colour, c
    assert best is not None
    return best.astype(np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _shaded(rng: np.random.Generator, colour: np.ndarray, size: int) -> np.ndarray:
    """A colour field ``[size, size, 3]`` with a gentle linear shading gradient."""
    d = rng.normal(size=2)
    d /= np.linalg.norm(d) + 1e-9
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    g = 1.0 + rng.uniform(0.0, 0.3) * (d[0] * xx + d[1] * yy)
    return np.clip(colour[None, None, :] * g[..., None], 0.0, 1.0).astype(np.float32)


def add_distractors(rng: np.random.Generator, canvas: np.ndarray, n: int) -> np.ndarray:
    """Draw ``n`` class-free distractors (thick lines, translucent irregular blobs).

    Args:
        canvas: ``float32 [H, W, 3]`` (square).
        n: number of distractors (``>= 0``).

    Returns:
        a new ``float32 [H, W, 3]`` array.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    size = canvas.shape[0]
    out = canvas
    for _ in range(n):
        if rng.random() < 0.5:
            s = _SUPERSAMPLE
            img = Image.new("L", (size * s, size * s), 0)
            p = rng.uniform(0, size, size=4) * s
            width = int(rng.uniform(1.5, 4.0) * s)
            ImageDraw.Draw(img).line([(p[0], p[1]), (p[2], p[3])], fill=255, width=width)
            alpha = np.asarray(img.resize((size, size), Image.Resampling.BOX), np.float32) / 255
        else:
            r = rng.uniform(0.06, 0.16) * size
            c = (float(rng.uniform(r, size - r)), float(rng.uniform(r, size - r)))
            alpha = random_blob_alpha(rng, size, c, r) * rng.uniform(0.35, 0.8)
        colour = pick_contrasting_colour(rng, out, alpha, min_contrast=0.2, tries=4)
        out = composite(out, alpha, colour)
    return out


def box_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(x0, y0, x1, y1)`` (ends exclusive) of a non-empty ``bool [H, W]`` mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask is empty")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _check_size(size: int) -> None:
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")


# --------------------------------------------------------------------------------------------
# Scenes and datasets
# --------------------------------------------------------------------------------------------


def make_scene(
    rng: np.random.Generator,
    size: int = 128,
    label: int | None = None,
    max_distractors: int = 2,
    radius_range: tuple[float, float] = (0.11, 0.22),
    backgrounds: Sequence[Image.Image] | None = None,
) -> Scene:
    """Generate one scene with one object of class ``label`` (random if ``None``).

    Args:
        rng: the only source of randomness.
        size: image side in pixels (``>= 32``).
        label: class index into :data:`CLASS_NAMES`, or ``None`` for a uniformly random class.
        max_distractors: a uniform number in ``0..max_distractors`` of distractors is drawn
            under the object.
        radius_range: object radius range as fractions of ``size``.
        backgrounds: photos to crop from (default: :func:`load_backgrounds`).

    Returns:
        a :class:`Scene` (images channel first, ``float32`` in ``[0, 1]``).
    """
    _check_size(size)
    if label is None:
        label = int(rng.integers(len(CLASS_NAMES)))
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    if max_distractors < 0:
        raise ValueError(f"max_distractors must be >= 0, got {max_distractors}")
    lo, hi = radius_range
    if not 0 < lo <= hi < 0.5:
        raise ValueError(f"radius_range must satisfy 0 < lo <= hi < 0.5, got {radius_range}")
    kind = CLASS_NAMES[label]
    canvas = random_background(rng, size, backgrounds)
    canvas = add_distractors(rng, canvas, int(rng.integers(max_distractors + 1)))

    radius = float(rng.uniform(lo, hi)) * size
    margin = radius * 1.2 + 1.0
    centre = (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
    inner = _DEFAULT_INNER.get(kind, 0.5) * float(rng.uniform(0.9, 1.1))
    alpha = shape_alpha(
        kind,
        size,
        centre,
        radius,
        angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        aspect=float(rng.uniform(0.85, 1.15)),
        inner=inner,
    )
    colour = pick_contrasting_colour(rng, canvas, alpha)
    image = composite(canvas, alpha, _shaded(rng, colour, size))
    mask = alpha >= 0.5
    return Scene(
        image=np.ascontiguousarray(image.transpose(2, 0, 1)),
        mask=mask,
        box=box_from_mask(mask),
        label=int(label),
        class_name=kind,
        background=np.ascontiguousarray(canvas.transpose(2, 0, 1)),
    )


def split_seed(seed: int, split: str, stream: int = 0) -> np.random.SeedSequence:
    """The seed sequence of one ``split`` (``"train"``, ``"test"`` or ``"demo"``) of a dataset.

    Different ``split`` or ``stream`` values give independent streams for the same ``seed``.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence([int(seed), _SPLITS[split], int(stream)])


def make_dataset(
    n: int,
    seed: int = 0,
    size: int = 128,
    split: str = "train",
    max_distractors: int = 2,
    return_backgrounds: bool = False,
) -> SceneBatch:
    """Generate ``n`` scenes with balanced-in-expectation random classes.

    Scene ``i`` depends only on ``(seed, split, i)``, so ``make_dataset(n, s)`` is a prefix of
    ``make_dataset(m, s)`` for ``n <= m``, and the ``"train"`` and ``"test"`` splits never share
    a random stream.

    Returns:
        a :class:`SceneBatch` of tensors (see there for shapes).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    _check_size(size)
    children = split_seed(seed, split).spawn(int(n))
    backgrounds = load_backgrounds()
    images = np.empty((n, 3, size, size), np.float32)
    bgs = np.empty((n, 3, size, size), np.float32) if return_backgrounds else None
    masks = np.empty((n, size, size), bool)
    boxes = np.empty((n, 4), np.int64)
    labels = np.empty(n, np.int64)
    for i, child in enumerate(children):
        sc = make_scene(
            np.random.default_rng(child),
            size=size,
            max_distractors=max_distractors,
            backgrounds=backgrounds,
        )
        images[i], masks[i], boxes[i], labels[i] = sc.image, sc.mask, sc.box, sc.label
        if bgs is not None:
            bgs[i] = sc.background
    return SceneBatch(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(masks),
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels),
        backgrounds=None if bgs is None else torch.from_numpy(bgs),
    )
