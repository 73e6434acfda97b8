"""Spatial heatmaps from SIFT-feature values (thesis 4.3.4A).

* Voronoi field (eq. 4.46-4.47): decode the per-feature values through the same (smoothed,
  sparsified) cells, but with a scalar field ``C`` in place of the DoG bands. The layer weights
  ``C_l`` sum to 1 over the layers, so all-ones values give the all-ones map. Which weights
  (:data:`FIELD_WEIGHTS`, :func:`layer_weights`):

  - ``"uniform"``: ``C_l = 1 / n_layers`` (the thesis's homogeneous field). Every layer counts
    alike, including the many layers above the largest keypoint sigma, whose cells belong to the
    few largest-sigma keypoints: those few features own a large share of the map.
  - ``"keypoint_range"``: uniform over the layers whose sigma interval meets the keypoints' sigma
    range ``[min sigma_i, max sigma_i]``, zero elsewhere.
  - ``"band_energy"``: ``C_l`` proportional to the image's energy in band ``l``
    (``||T_l||^2`` per pixel area, the low-pass residual excluded).
  - ``"local_energy"``: per pixel, ``C_l(r)`` = the local RMS amplitude of band ``l``,
    ``sqrt(gamma_{sigma_l} * |T_l|^2)`` (all channels; residual excluded). Not homogeneous and
    not normalised per pixel: the heatmap becomes an energy density ``sum_i v_i E_i(r)``
    (divided by its mean for all-ones values), large where features with high values carry
    image structure - the Voronoi analogue of the contrast heatmap of eq. 4.48.

* Local contrast of decoded images (eq. 4.48): ``gamma_LP * |x - gamma_HP * x|``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ablation_paths.sift.decoder import SparseLevel, decode_levels
from ablation_paths.sift.keypoints import Keypoints
from ablation_paths.sift.scale_space import ScaleSpace, blur

__all__ = ["FIELD_WEIGHTS", "layer_weights", "local_contrast", "voronoi_field"]

FIELD_WEIGHTS = ("uniform", "keypoint_range", "band_energy", "local_energy")


def layer_weights(space: ScaleSpace, keypoints: Keypoints, kind: str) -> list[np.ndarray]:
    """Field weights ``C_l`` of eq. 4.47 per layer: a ``[1]`` array (homogeneous) or ``[h*w]``
    (per pixel of the layer's grid, ``"local_energy"``); see the module docstring for ``kind``."""
    n = len(space.layers)
    if kind == "uniform":
        w = np.full(n, 1.0 / n)
    elif kind == "keypoint_range":
        lo, hi = float(np.min(keypoints.sigma)), float(np.max(keypoints.sigma))
        w = np.array([float(ly.sigma_hi >= lo and ly.sigma_lo <= hi) for ly in space.layers])
        w = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)
    elif kind == "band_energy":
        e = np.array([float(b.double().pow(2).mean()) for b in space.bands])
        e[-1] = 0.0  # the low-pass residual: the mean colour, not structure
        w = e / e.sum() if e.sum() > 0 else np.full(n, 1.0 / n)
    elif kind == "local_energy":
        return _local_energy(space)
    else:
        raise ValueError(f"unknown field weights {kind!r}; use one of {', '.join(FIELD_WEIGHTS)}")
    return [np.array([v]) for v in w]


def _local_energy(space: ScaleSpace) -> list[np.ndarray]:
    hh, ww = space.image_size
    energy: list[Tensor] = []  # on each layer's own grid
    for layer, band in zip(space.layers, space.bands, strict=True):
        e = band.pow(2).sum(0)  # image dtype (float32 convolutions are twice as fast)
        if layer.is_residual:
            e = torch.zeros_like(e)
        else:
            h, w = e.shape
            e = blur(e, (layer.sigma * h / hh, layer.sigma * w / ww)).clamp_min(0).sqrt()
        energy.append(e)
    out = [e.reshape(-1).numpy() for e in energy]
    return out


def voronoi_field(levels: list[SparseLevel], values: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Eq. 4.46: ``sum_rho upsample(V^rho values)``; ``values`` ``[B, K]`` -> ``[B, H, W]``."""
    return decode_levels(levels, values, image_size)[:, 0]


def local_contrast(
    images: Tensor, sigma_lp: float = 8.0, sigma_hp: float = 5.0, truncate: float = 4.0
) -> Tensor:
    """Eq. 4.48: ``gamma_{sigma_LP} * |x - gamma_{sigma_HP} * x|`` for ``[B, C, H, W]``.

    The rectifier is the Euclidean norm over colour channels. Sigmas in pixels. Returns
    ``[B, H, W]`` (non-negative).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    high = images - blur(images, sigma_hp, truncate)
    amp = torch.linalg.vector_norm(high, dim=1)
    return blur(amp, sigma_lp, truncate)
