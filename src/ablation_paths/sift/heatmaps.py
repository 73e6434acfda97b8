"""Spatial heatmaps from SIFT-feature values (thesis 4.3.4A).

* Voronoi field (eq. 4.46-4.47): decode the per-feature values through the same (smoothed,
  sparsified) cells, but with a homogeneous scalar field ``C(sigma)`` in place of the DoG bands.
  With uniform ``C`` summing to 1 over the layers, all-ones values give exactly the all-ones map.
* Local contrast of decoded images (eq. 4.48): ``gamma_LP * |x - gamma_HP * x|``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ablation_paths.sift.decoder import SparseLevel, decode_levels
from ablation_paths.sift.scale_space import blur

__all__ = ["local_contrast", "voronoi_field"]


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
