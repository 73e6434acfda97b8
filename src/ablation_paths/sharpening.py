"""Sharpening: pixel-precise ranking inside a heatmap's top plateau.

A constant-speed path with ``T`` interior samples removes (retaining path) or keeps
(dissipating path) at least ``1 / (T + 1)`` of the mass in its last (first) segment, so the
average and class-transition reductions (thesis 2.7.2) rank features only in tiers of that
size: their maximum is a plateau of about ``1 / (T + 1)`` of the image, blurred by the
regularisation (e.g. about 960 pixels of a 128 x 128 image for ``T = 16``, ten times the
planted-bias marker). Which pixel of that plateau matters most is a question the path cannot
answer at its resolution in ``t``; the classifier can, along the segment in which the plateau is
removed.

:func:`segment_attribution` attributes the change of the target probability over one straight
segment of the path to pixels, with the trapezoid rule of Integrated Gradients on that segment
(the per-pixel form of the influence reduction, eq. 2.35, on one segment; by Theorem 5 this is
what IG would say there). :func:`sharpen` adds it to a heatmap at a scale far below the gaps
between the path's tiers, so it only orders pixels that the path left tied: the map a user
sees, and every tier, stay as they are (values move by at most ``scale``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import MaskSpace

__all__ = ["SHARPEN_SCALE", "segment_attribution", "top_segment", "sharpen"]

#: Largest change :func:`sharpen` makes to a heatmap. The tiers of a class-transition or
#: average map with ``T`` samples are ``1e-3 / T`` (its tie-break) or ``1 / T`` apart, so up to
#: ``T = 64`` this cannot reorder tiers; float32 still resolves about 80 levels below it.
SHARPEN_SCALE: float = 1e-5


def segment_attribution(
    classifier: ClassifierFn, start: Tensor, end: Tensor, target: int
) -> Tensor:
    """Per-pixel attribution of ``p(start) - p(end)`` along the straight segment between two
    images (trapezoid rule of Integrated Gradients with two points).

    ``A(x) = -sum_c (grad p(start) + grad p(end))_c(x) / 2 * (end - start)_c(x)``, where ``p``
    is the target's softmax probability. Positive where going from ``start`` to ``end`` lowers
    the target probability. Summed over pixels it approximates ``p(start) - p(end)``.

    Args:
        classifier: the model with its preprocessing.
        start, end: images ``[C, H, W]`` on the classifier's device.
        target: class index.

    Returns:
        ``[H, W]`` attribution (same dtype and device as the images).
    """
    if start.shape != end.shape or start.dim() != 3:
        raise ValueError(
            f"segment ends must be two [C, H, W] images, got {tuple(start.shape)} and "
            f"{tuple(end.shape)}"
        )
    images = torch.stack([start, end]).detach().requires_grad_(True)
    with torch.enable_grad():
        probs = torch.softmax(classifier(images), dim=1)[:, target]
        (grad,) = torch.autograd.grad(probs.sum(), images)
    return -(0.5 * (grad[0] + grad[1]) * (end - start)).sum(dim=0).detach()


def top_segment(space: MaskSpace, path: Tensor, orientation: str) -> tuple[Tensor, Tensor]:
    """The images ``([C, H, W], [C, H, W])`` at the ends of the segment in which the top tier of
    an oriented reduction changes: the last segment ``(phi(t_T), phi(1) = 1)`` of a retaining
    path (the features kept longest), the first ``(phi(0) = 0, phi(t_1))`` of a dissipating one
    (the features removed first). ``path``: interior samples ``[T, *mask_shape]``."""
    if orientation == "retain":
        masks = torch.stack([path[-1], torch.ones_like(path[-1])])
    elif orientation == "dissipate":
        masks = torch.stack([torch.zeros_like(path[0]), path[0]])
    else:
        raise ValueError(f"orientation must be 'retain' or 'dissipate', got {orientation!r}")
    with torch.no_grad():
        images = space.apply(masks)
    return images[0], images[1]


def sharpen(heatmap: Tensor, attribution: Tensor, scale: float = SHARPEN_SCALE) -> Tensor:
    """``heatmap + scale * attribution / max|attribution|`` (both ``[H, W]``): breaks the ties
    of ``heatmap`` by ``attribution`` and changes no value by more than ``scale``. An
    attribution that is zero everywhere leaves the heatmap unchanged; a non-finite one is an
    error (the classifier's gradient was not finite)."""
    if heatmap.shape != attribution.shape:
        raise ValueError(
            f"heatmap {tuple(heatmap.shape)} and attribution {tuple(attribution.shape)} differ"
        )
    a = attribution.to(heatmap.dtype)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("the segment attribution contains NaN or infinite values")
    peak = float(a.abs().max()) if a.numel() else 0.0
    if peak == 0:
        return heatmap.clone()
    return heatmap + (scale / peak) * a
