"""Scale space, DoG bands and their multi-resolution storage (thesis 4.1.1, 4.2).

The sigma axis is sampled logarithmically, ``sigma_l = sigma_min * 2**(l / rho)`` for
``l = 0..M`` (eq. 4.36, Lemma 9). The image is split into ``M + 2`` *layers* ``T`` that tile the
whole sigma axis (eq. 4.29-4.31):

* layer ``0``: the finest band ``x - Gamma(sigma_0)`` (sigma in ``]0, sigma_0]``);
* layers ``1..M``: the DoG bands ``Gamma(sigma_{j-1}) - Gamma(sigma_j)``;
* layer ``M + 1``: the low-pass residual ``Gamma(sigma_M)`` with ``sigma_M >= sigma_max`` (about the
  image size), eq. 4.31.

Every layer is stored at the resolution of its *level* (Table 4.1, intent as in SPEC B): full
resolution while the layer's lower sigma is ``<= 4.5`` px, half resolution up to ``9`` px, quarter
resolution above. Resampling is bilinear (``align_corners=False``).

Exactness (Lemma 8) is kept *by construction* despite the resampling: the levels are built from
the top down, each starting from ``Gamma(sigma_start)`` downsampled to its grid, and the last layer
of each level is its Gaussian minus the (upsampled) start image of the level above, so the small
resampling residue lands in that layer instead of being lost. Levels are recombined coarse to fine
by :func:`upsample_levels`; hence ``reconstruct(scale_space(x)) == x`` up to float rounding.

All sigmas are in pixels of the original image; all coordinates are in original pixels with pixel
centres at integers (``x`` = column, ``y`` = row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ablation_paths.filters import gaussian_blur as blur

__all__ = [
    "Layer",
    "Level",
    "ScaleSpace",
    "DETECTION_OCTAVE_SIGMA",
    "blur",
    "detection_space",
    "level_coords",
    "make_grid",
    "reconstruct",
    "resample",
    "scale_space",
    "upsample_levels",
]


@dataclass(frozen=True)
class Layer:
    """One layer of the sigma partition (an interval ``Sigma_l`` of eq. 4.29).

    Attributes:
        index: position in the layer list (0 = finest band, last = low-pass residual).
        sigma_lo: lower sigma edge in original pixels (0 for the finest band).
        sigma_hi: upper sigma edge (``inf`` for the residual).
        sigma: representative sigma (geometric midpoint of the interval on the log axis), used for
            the keypoint scale, the Voronoi distance (eq. 4.18) and the cell blur (eq. 4.27).
        level: index of the resolution level that stores it.
    """

    index: int
    sigma_lo: float
    sigma_hi: float
    sigma: float
    level: int

    @property
    def is_residual(self) -> bool:
        return math.isinf(self.sigma_hi)


@dataclass(frozen=True)
class Level:
    """One storage resolution (Table 4.1).

    Attributes:
        factor: nominal downsampling factor (1, 2, 4, ...).
        size: ``(h, w)`` = ``(H // factor, W // factor)`` (at least 1).
        layers: indices of the layers stored at this level (contiguous, increasing sigma).
    """

    factor: int
    size: tuple[int, int]
    layers: tuple[int, ...]


@dataclass
class ScaleSpace:
    """The layered scale-space expansion of one image.

    Attributes:
        layers: the sigma partition.
        levels: the storage levels.
        bands: one tensor ``[C, h, w]`` per layer at its level's resolution; their resampled sum is
            the image (eq. 4.30).
        image_size: ``(H, W)`` of the original image.
        scales_per_octave: ``rho`` of eq. 4.36.
        sigma_min: ``sigma_0``.
    """

    layers: list[Layer]
    levels: list[Level]
    bands: list[Tensor]
    image_size: tuple[int, int]
    scales_per_octave: int
    sigma_min: float

    def level_of(self, layer: int) -> Level:
        return self.levels[self.layers[layer].level]


def make_grid(
    image_size: tuple[int, int],
    scales_per_octave: int = 3,
    sigma_min: float = 0.8,
    sigma_max: float | None = None,
    level_sigmas: tuple[float, ...] = (4.5, 9.0),
) -> tuple[list[Layer], list[Level]]:
    """Build the sigma partition and the storage levels for an image of ``(H, W)`` pixels.

    ``sigma_max`` defaults to ``max(H, W)`` (the residual starts at about the image size, 4.1.1C).
    A layer goes to level ``k`` = number of ``level_sigmas`` strictly below its lower sigma edge;
    level ``k`` has factor ``2**k``. Empty levels are dropped.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {image_size}")
    rho = int(scales_per_octave)
    if rho < 1:
        raise ValueError(f"scales_per_octave must be >= 1, got {scales_per_octave}")
    if not sigma_min > 0:
        raise ValueError(f"sigma_min must be > 0, got {sigma_min}")
    smax = float(max(h, w) if sigma_max is None else sigma_max)
    if smax <= sigma_min:
        raise ValueError(f"sigma_max ({smax}) must exceed sigma_min ({sigma_min})")
    n_bands = max(1, math.ceil(rho * math.log2(smax / sigma_min) - 1e-9))
    sig = [sigma_min * 2.0 ** (j / rho) for j in range(n_bands + 1)]
    half = 2.0 ** (0.5 / rho)
    edges = [(0.0, sig[0], sig[0] / half)]
    edges += [(sig[j], sig[j + 1], sig[j] * half) for j in range(n_bands)]
    edges.append((sig[-1], math.inf, sig[-1] * half))
    thresholds = sorted(float(t) for t in level_sigmas)
    raw_levels = [sum(lo > t for t in thresholds) for lo, _, _ in edges]
    used = sorted(set(raw_levels))
    remap = {k: i for i, k in enumerate(used)}
    layers = [
        Layer(index=i, sigma_lo=lo, sigma_hi=hi, sigma=s, level=remap[raw_levels[i]])
        for i, (lo, hi, s) in enumerate(edges)
    ]
    levels = []
    for k in used:
        f = 2**k
        idx = tuple(i for i, lv in enumerate(raw_levels) if lv == k)
        levels.append(Level(factor=f, size=(max(1, h // f), max(1, w // f)), layers=idx))
    return layers, levels


def resample(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resampling of ``[C, h, w]`` / ``[B, C, h, w]`` to ``size`` (align_corners=False)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    squeeze = images.dim() == 3
    x = images.unsqueeze(0) if squeeze else images
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return out.squeeze(0) if squeeze else out


def level_coords(
    size: tuple[int, int], image_size: tuple[int, int], dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Original-pixel coordinates ``(ys [h], xs [w])`` of the pixel centres of a level grid
    (the align_corners=False convention of :func:`resample`)."""
    (h, w), (hh, ww) = size, image_size
    ys = (torch.arange(h, dtype=dtype) + 0.5) * (hh / h) - 0.5
    xs = (torch.arange(w, dtype=dtype) + 0.5) * (ww / w) - 0.5
    return ys, xs


def scale_space(
    image: Tensor,
    scales_per_octave: int = 3,
    sigma_min: float = 0.8,
    sigma_max: float | None = None,
    level_sigmas: tuple[float, ...] = (4.5, 9.0),
    truncate: float = 4.0,
) -> ScaleSpace:
    """Layered DoG expansion of ``image`` ``[C, H, W]`` (eq. 4.29-4.31, Table 4.1).

    Returns a :class:`ScaleSpace` whose bands satisfy ``reconstruct(result) == image`` up to
    rounding (Lemma 8). Keeps dtype and device.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    hh, ww = int(image.shape[-2]), int(image.shape[-1])
    layers, levels = make_grid((hh, ww), scales_per_octave, sigma_min, sigma_max, level_sigmas)
    bands: list[Tensor | None] = [None] * len(layers)
    above: Tensor | None = None  # everything stored above this level, on the previous level's grid
    for lv in reversed(levels):
        lay = [layers[i] for i in lv.layers]
        s_start = lay[0].sigma_lo
        fy, fx = hh / lv.size[0], ww / lv.size[1]
        base = image if lv.factor == 1 else resample(blur(image, s_start, truncate), lv.size)

        def gauss(s: float, base: Tensor = base, s0: float = s_start, f=(fy, fx)) -> Tensor:
            if s <= s0:
                return base
            extra = math.sqrt(s * s - s0 * s0)
            return blur(base, (extra / f[0], extra / f[1]), truncate)

        g_lo = base
        for k, layer in enumerate(lay):
            if layer.is_residual:
                g_hi = torch.zeros_like(g_lo)
            elif k == len(lay) - 1:
                # handover: the levels above, upsampled onto this grid, replace Gamma(sigma_hi);
                # their resampling residue stays in this band, so the sum stays exact.
                assert above is not None
                g_hi = resample(above, lv.size)
            else:
                g_hi = gauss(layer.sigma_hi)
            bands[layer.index] = g_lo - g_hi
            g_lo = g_hi
        above = base  # = sum of this level's bands + upsampled levels above (telescoping)
    return ScaleSpace(
        layers=layers,
        levels=levels,
        bands=[b for b in bands if b is not None],
        image_size=(hh, ww),
        scales_per_octave=int(scales_per_octave),
        sigma_min=float(sigma_min),
    )


DETECTION_OCTAVE_SIGMA = 4.5
"""The detection pyramid halves its resolution each time a layer's lower sigma edge passes
``4.5 * 2**k`` px (k = 0, 1, ...): every DoG layer is sampled at 2.25 to 4.5 grid pixels per sigma,
as in Lowe's octaves. A constant of the detector, not a storage setting."""


def detection_space(
    grey: Tensor,
    scales_per_octave: int = 3,
    sigma_min: float = 0.8,
    sigma_max: float | None = None,
    truncate: float = 4.0,
) -> ScaleSpace:
    """The DoG stack on which keypoints are detected (thesis 4.1.2), independent of storage.

    ``grey`` ``[1, H, W]``. Same sigma partition as :func:`scale_space`, but every layer is the
    *true* band ``Gamma(sigma_lo) - Gamma(sigma_hi)`` of its own grid (no handover residue from
    the storage levels), on an octave pyramid fixed by :data:`DETECTION_OCTAVE_SIGMA`: each level
    starts from the previous level's start image, blurred up to the new start sigma and
    downsampled by 2. The detected keypoints therefore do not depend on
    ``SiftParams.level_sigmas``. Not a reconstruction (its bands do not sum to the image).
    """
    if grey.dim() != 3 or grey.shape[0] != 1:
        raise ValueError(f"grey must be [1, H, W], got shape {tuple(grey.shape)}")
    hh, ww = int(grey.shape[-2]), int(grey.shape[-1])
    smax = float(max(hh, ww) if sigma_max is None else sigma_max)
    octaves = tuple(
        DETECTION_OCTAVE_SIGMA * 2.0**k
        for k in range(max(1, math.ceil(math.log2(max(smax, 1.0) / DETECTION_OCTAVE_SIGMA)) + 1))
    )
    layers, levels = make_grid((hh, ww), scales_per_octave, sigma_min, sigma_max, octaves)
    bands: list[Tensor] = []
    base, s_base, f_base = grey, 0.0, (1.0, 1.0)
    for lv in levels:
        lay = [layers[i] for i in lv.layers]
        s0 = lay[0].sigma_lo
        f = (hh / lv.size[0], ww / lv.size[1])
        if lv.factor > 1:  # blur the previous start image up to s0 on its grid, then downsample
            extra = math.sqrt(max(s0 * s0 - s_base * s_base, 0.0))
            base = resample(blur(base, (extra / f_base[0], extra / f_base[1]), truncate), lv.size)
            s_base, f_base = s0, f

        def gauss(s: float, base: Tensor = base, s0: float = s_base, f=f) -> Tensor:
            extra = math.sqrt(max(s * s - s0 * s0, 0.0))
            return blur(base, (extra / f[0], extra / f[1]), truncate)

        g_lo = gauss(lay[0].sigma_lo)
        for layer in lay:
            g_hi = torch.zeros_like(g_lo) if layer.is_residual else gauss(layer.sigma_hi)
            bands.append(g_lo - g_hi)
            g_lo = g_hi
    return ScaleSpace(
        layers=layers,
        levels=levels,
        bands=bands,
        image_size=(hh, ww),
        scales_per_octave=int(scales_per_octave),
        sigma_min=float(sigma_min),
    )


def upsample_levels(contributions: list[Tensor], sizes: list[tuple[int, int]]) -> Tensor:
    """Add per-level images, coarse to fine: ``acc = resample(acc, size_l) + contribution_l``.

    ``contributions[l]`` is ``[..., h_l, w_l]`` on level ``l``'s grid (levels ordered fine to
    coarse, ``sizes[0]`` = image size). This chained bilinear upsampling is *the* resampling
    operator of the representation: :func:`scale_space` builds its handover bands with it, which is
    what makes the reconstruction exact.
    """
    acc = contributions[-1]
    for y, size in zip(contributions[-2::-1], sizes[-2::-1], strict=True):
        acc = resample(acc, size) + y
    return acc


def reconstruct(space: ScaleSpace, gains: Tensor | None = None) -> Tensor:
    """Sum of the (optionally per-layer scaled) bands over all levels: eq. 4.30.

    ``gains``: optional ``[n_layers]`` factors. Returns ``[C, H, W]``.
    """
    sums = []
    for lv in space.levels:
        acc = None
        for i in lv.layers:
            b = space.bands[i] if gains is None else space.bands[i] * gains[i]
            acc = b if acc is None else acc + b
        assert acc is not None
        sums.append(acc)
    return upsample_levels(sums, [lv.size for lv in space.levels])
