"""Heatmap reductions of ablation paths (thesis 2.7.2) and the boundary window (eq. 2.37).

All reductions work in the mask space (``[T, *mask_shape]`` paths) and return a saliency map
``[*mask_shape]`` where *higher means more important for the target class*; the mask space's
``to_image`` turns it into an image heatmap. Paths follow the convention ``phi = 1`` = removed.

* ``average`` (eq. 2.33): time-mean of the path; for a retaining path the salient features are
  removed last, so saliency is ``1 - mean_t phi``; for a dissipating path ``mean_t phi``.
* ``class_transition`` (2.7.2B): the mask at ``t_clt``, the largest ``t`` at which the target class
  still ranks first, else the ``t`` of highest target probability; oriented like ``average``.
* ``influence`` (eq. 2.35): ``-int dphi/dt * dF_l/dt dt``, signed: negative values mark
  counter-evidence (removing them *raised* the target probability).
* ``contrastive`` (eq. 2.36, straddling pair only): ``mean_t (phi_down - phi_up)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "average",
    "class_transition_index",
    "class_transition",
    "influence",
    "contrastive_average",
    "boundary_window",
    "natural_reduction",
]

REDUCTIONS = ("average", "class_transition", "influence", "contrastive")


def _orient(values: Tensor, orientation: str) -> Tensor:
    if orientation == "retain":
        return 1.0 - values
    if orientation == "dissipate":
        return values
    raise ValueError(f"orientation must be 'retain' or 'dissipate', got {orientation!r}")


def average(path: Tensor, orientation: str = "retain") -> Tensor:
    """Average reduction (eq. 2.33) of ``path [T, *mask_shape]``."""
    return _orient(path.mean(dim=0), orientation)


def class_transition_index(probs: Tensor, target: int) -> int:
    """Index ``k`` (into the ``T`` interior samples) of the class transition (2.7.2B).

    Args:
        probs: class probabilities ``[T, C]`` at the interior samples.
        target: class of interest.

    Returns:
        The largest ``k`` at which ``target`` ranks first; if there is none, ``argmax_k`` of the
        target probability.
    """
    dominant = (probs.argmax(dim=1) == target).nonzero()
    if dominant.numel() > 0:
        return int(dominant.max())
    return int(probs[:, target].argmax())


def class_transition(
    path: Tensor, probs: Tensor, target: int, orientation: str = "retain"
) -> Tensor:
    """Class-transition reduction (eq. 2.34): the oriented mask at ``t_clt``.

    Saturated masks are nearly binary, so many features tie at the maximum; ties are broken by
    adding ``1e-3`` times the oriented :func:`average` (features kept longer / removed earlier
    rank first). This changes values by at most ``1e-3`` and makes the maximum meaningful.
    """
    mask = _orient(path[class_transition_index(probs, target)], orientation)
    return mask + 1e-3 * average(path, orientation)


def influence(path: Tensor, target_probs: Tensor) -> Tensor:
    """Influence-weighted average (eq. 2.35), discretised over the full path with its ends.

    Args:
        path: interior samples ``[T, *mask_shape]``.
        target_probs: target probability ``[T + 2]`` at ``t = 0, t_1..t_T, 1``.
    """
    n_t = path.shape[0]
    if target_probs.shape[0] != n_t + 2:
        raise ValueError(
            f"influence needs {n_t + 2} probabilities (with ends), got {target_probs.shape[0]}"
        )
    zeros = torch.zeros_like(path[:1])
    full = torch.cat([zeros, path, torch.ones_like(zeros)], dim=0)
    dphi = full[1:] - full[:-1]  # [T + 1, ...]
    dprob = (target_probs[1:] - target_probs[:-1]).to(path.dtype)
    dt = 1.0 / (n_t + 1)
    shape = (-1,) + (1,) * (path.dim() - 1)
    return -(dphi * dprob.view(shape)).sum(dim=0) / dt


def contrastive_average(path_up: Tensor, path_down: Tensor) -> Tensor:
    """Contrastive average (eq. 2.36) of a straddling pair: ``mean_t (phi_down - phi_up)``."""
    return (path_down - path_up).mean(dim=0)


def boundary_window(height: int, width: int, *, dtype=torch.float32, device=None) -> Tensor:
    """Window ``sqrt(sin(pi x) sin(pi y))`` at pixel centres (eq. 2.37); shape ``[H, W]``."""
    y = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height
    x = (torch.arange(width, dtype=dtype, device=device) + 0.5) / width
    return torch.sqrt(torch.sin(math.pi * y)[:, None] * torch.sin(math.pi * x)[None, :])


def natural_reduction(score: str) -> str:
    """Default reduction per score (thesis Table 2.3): class transition, or the contrastive
    average for the straddling pair."""
    return "contrastive" if score == "straddle" else "class_transition"
