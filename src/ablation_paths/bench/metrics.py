"""Saliency evaluation metrics (thesis 1.2.4, 2.7.3; SPEC A6).

All heatmaps are ``[H, W]`` tensors at image resolution where *larger means more important for
the target class*. Ground-truth masks are ``[H, W]`` bool tensors. Images are ``[3, H, W]``
floats in ``[0, 1]``. Every function here is deterministic.

* :func:`pointing_game` -- Zhang et al.'s pointing game with TorchRay's tolerance radius.
* :func:`mass_inside` -- fraction of positive heatmap mass inside the ground truth.
* :func:`ablation_curves` / :func:`deletion_auc` / :func:`insertion_auc` -- ranked pixel
  ablation (Petsiuk et al., thesis 1.2.4C, eq. 2.3-2.4) against a blurred baseline.
* :func:`randomise_top_layers` and :func:`rank_correlation` -- the model-parameter-randomisation
  sanity check of Adebayo et al. (thesis 1.2.4A).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from ablation_paths.devices import model_device
from ablation_paths.filters import gaussian_blur
from ablation_paths.sharpening import top_plateau

__all__ = [
    "AblationCurves",
    "ablation_curves",
    "blurred_baseline",
    "default_tolerance",
    "deletion_auc",
    "disk_dilate",
    "insertion_auc",
    "mass_inside",
    "pointing_game",
    "randomise_top_layers",
    "rank_correlation",
]


def _check_pair(heatmap: Tensor, mask: Tensor) -> None:
    if heatmap.dim() != 2 or mask.shape != heatmap.shape:
        raise ValueError(
            f"heatmap and mask must both be [H, W] of one shape, got {tuple(heatmap.shape)} "
            f"and {tuple(mask.shape)}"
        )


def default_tolerance(image_size: int) -> float:
    """TorchRay's 15 px pointing tolerance, scaled from its 224 px inputs to ``image_size`` px."""
    return 15.0 * image_size / 224.0


def disk_dilate(mask: Tensor, radius: float) -> Tensor:
    """Dilate a bool mask ``[H, W]`` by a closed-open Euclidean disk: ``d^2 < radius^2``.

    Matches TorchRay's acceptance region ``(dv^2 + du^2) < tolerance^2``; ``radius <= 1`` keeps
    only the centre pixel, i.e. returns the mask itself.
    """
    m = mask.to(torch.float32)
    r = int(math.ceil(radius))
    if r <= 0:
        return mask.bool()
    ax = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = ((ax[:, None] ** 2 + ax[None, :] ** 2) < radius**2).to(torch.float32)
    out = F.conv2d(m[None, None], disk[None, None], padding=r)[0, 0]
    return out > 0.5


def pointing_game(heatmap: Tensor, mask: Tensor, tolerance: float = 0.0) -> float:
    """Pointing game (Zhang et al. 2016; TorchRay's benchmark, thesis 2.7.3).

    A hit is scored when a ground-truth pixel lies strictly within ``tolerance`` pixels of the
    heatmap's maximum. Where several pixels tie for the maximum (saturated ablation masks, flat
    baselines) the result is the *expected* hit under a uniformly random choice among them, a
    number in ``[0, 1]``; TorchRay instead takes the first maximum in raster order, which biases
    flat maps towards the top-left corner. For heatmaps with a unique maximum both agree.

    Args:
        heatmap: ``[H, W]`` saliency (larger = more important). NaNs count as ``-inf``.
        mask: ``[H, W]`` bool ground truth.
        tolerance: acceptance radius in pixels (TorchRay: 15 px at 224 px scale).

    Returns:
        Hit rate in ``[0, 1]`` (exactly 0 or 1 unless the maximum is tied).
    """
    _check_pair(heatmap, mask)
    h = torch.nan_to_num(heatmap.detach().to(torch.float64).cpu(), nan=-math.inf)
    peak = h.max()
    if not torch.isfinite(peak):
        ties = torch.ones_like(h, dtype=torch.bool)
    else:  # the same ties the heatmap sharpening breaks, at a tighter tolerance
        ties = top_plateau(h, rtol=1e-7)
    accept = disk_dilate(mask.detach().cpu().bool(), tolerance)
    return float(accept[ties].to(torch.float64).mean())


def mass_inside(heatmap: Tensor, mask: Tensor) -> float:
    """Fraction of the heatmap's positive mass that falls inside the ground truth.

    ``sum(relu(h)[mask]) / sum(relu(h))``. A heatmap without positive mass carries no
    information and is scored like a uniform map, i.e. by the mask's area fraction.
    """
    _check_pair(heatmap, mask)
    h = torch.nan_to_num(heatmap.detach().to(torch.float64).cpu()).clamp_min(0)
    m = mask.detach().cpu().bool()
    total = float(h.sum())
    if total <= 0:
        return float(m.to(torch.float64).mean())
    return float(h[m].sum()) / total


def blurred_baseline(image: Tensor, sigma_fraction: float = 0.08) -> Tensor:
    """Gaussian-blurred copy of ``image [3, H, W]``; sigma = ``sigma_fraction`` x image side."""
    sigma = sigma_fraction * max(image.shape[-2:])
    return gaussian_blur(image.unsqueeze(0), sigma).squeeze(0)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


@dataclass
class AblationCurves:
    """Deletion and insertion curves (thesis 1.2.4C).

    ``fractions[k]`` is the fraction of pixels ablated/inserted at step k (0 to 1 inclusive);
    ``deletion[k]`` and ``insertion[k]`` are the target-class softmax probabilities there.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve (trapezoid rule over ``fractions``); lower is better."""
        return _trapezoid(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve; higher is better."""
        return _trapezoid(self.insertion, self.fractions)


def _pixel_order(heatmap: Tensor, seed: int) -> Tensor:
    """Pixel indices from most to least important; ties broken by a seeded random permutation."""
    flat = heatmap.detach().to(torch.float64).cpu().reshape(-1)
    flat = torch.nan_to_num(flat, nan=-math.inf)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=g)
    # stable sort of a random permutation = random tie-breaking
    order = torch.sort(flat[perm], descending=True, stable=True).indices
    return perm[order]


@torch.no_grad()
def ablation_curves(
    model: nn.Module,
    image: Tensor,
    heatmap: Tensor,
    target: int,
    *,
    baseline: Tensor | None = None,
    steps: int = 32,
    batch_size: int = 33,
    seed: int = 0,
) -> AblationCurves:
    """Ranked pixel ablation (Petsiuk et al. 2018; thesis eq. 2.3-2.4).

    Pixels are ranked by ``heatmap`` (ties broken randomly with ``seed``). The deletion curve
    replaces the top-``k`` pixels of ``image`` by ``baseline``; the insertion curve starts from
    ``baseline`` and inserts the top-``k`` pixels of ``image``; ``k`` runs over ``steps + 1``
    evenly spaced counts from 0 to all pixels.

    Args:
        model: classifier taking ``[B, 3, H, W]`` and returning logits ``[B, classes]``.
        image: ``[3, H, W]``.
        heatmap: ``[H, W]``.
        target: class index whose softmax probability is tracked.
        baseline: ``[3, H, W]``; default :func:`blurred_baseline`.
        steps: number of ablation increments.
        batch_size: images per forward pass.
        seed: tie-breaking seed.
    """
    if image.dim() != 3 or heatmap.shape != image.shape[-2:]:
        raise ValueError(
            f"expected image [3, H, W] and heatmap [H, W], got {tuple(image.shape)} and "
            f"{tuple(heatmap.shape)}"
        )
    device = model_device(model) or torch.device("cpu")
    image = image.to(device)
    base = (blurred_baseline(image) if baseline is None else baseline).to(device)
    hw = heatmap.numel()
    order = _pixel_order(heatmap, seed).to(device)
    rank = torch.empty(hw, dtype=torch.long, device=device)
    rank[order] = torch.arange(hw, device=device)
    rank = rank.reshape(heatmap.shape)
    counts = torch.round(torch.linspace(0, hw, steps + 1)).long().tolist()

    def run(kind: str) -> np.ndarray:
        probs: list[Tensor] = []
        for start in range(0, len(counts), batch_size):
            ks = torch.tensor(counts[start : start + batch_size], device=device)
            chosen = (rank.unsqueeze(0) < ks[:, None, None]).unsqueeze(1)  # [b,1,H,W]
            if kind == "deletion":
                x = torch.where(chosen, base.unsqueeze(0), image.unsqueeze(0))
            else:
                x = torch.where(chosen, image.unsqueeze(0), base.unsqueeze(0))
            probs.append(torch.softmax(model(x).float(), dim=1)[:, target].cpu())
        return torch.cat(probs).numpy().astype(np.float64)

    return AblationCurves(
        fractions=np.asarray(counts, dtype=np.float64) / hw,
        deletion=run("deletion"),
        insertion=run("insertion"),
    )


def deletion_auc(model: nn.Module, image: Tensor, heatmap: Tensor, target: int, **kw) -> float:
    """Deletion AUC (lower = more faithful); keywords as in :func:`ablation_curves`."""
    return ablation_curves(model, image, heatmap, target, **kw).deletion_auc


def insertion_auc(model: nn.Module, image: Tensor, heatmap: Tensor, target: int, **kw) -> float:
    """Insertion AUC (higher = more faithful); keywords as in :func:`ablation_curves`."""
    return ablation_curves(model, image, heatmap, target, **kw).insertion_auc


def _parametrised_layers(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if any(p.requires_grad for p in m.parameters(recurse=False))
        and not isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm))
    ]


def randomise_top_layers(model: nn.Module, n_layers: int = 2, seed: int = 0) -> nn.Module:
    """Copy of ``model`` with its last ``n_layers`` weight layers re-initialised (Adebayo et al.).

    "Last" follows ``model.modules()`` order (the output end for sequential networks);
    normalisation layers are skipped. Layers with ``reset_parameters`` use their own default
    initialisation, others get weights redrawn from ``N(0, std(weights))``. The original model
    is untouched.
    """
    if n_layers < 1:
        raise ValueError("n_layers must be >= 1")
    rand = copy.deepcopy(model).eval()
    layers = _parametrised_layers(rand)
    if not layers:
        raise ValueError("model has no parametrised layers to randomise")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for layer in layers[-n_layers:]:
                reset = getattr(layer, "reset_parameters", None)
                if callable(reset):
                    reset()
                else:
                    for p in layer.parameters(recurse=False):
                        p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)
    finally:
        torch.random.set_rng_state(state)
    return rand


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two heatmaps ``[H, W]``; 0.0 where either is constant."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    x = torch.nan_to_num(a.detach().double().cpu()).reshape(-1).numpy()
    y = torch.nan_to_num(b.detach().double().cpu()).reshape(-1).numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)
