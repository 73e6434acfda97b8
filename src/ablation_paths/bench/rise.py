"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko 2018; thesis 1.2.3D).

The saliency of pixel ``r`` is the expected target-class probability over random masks that keep
``r``: ``S(r) = 1 / (N p) * sum_i F_l(x * m_i) m_i(r)``. Masks are coarse ``grid x grid`` binary
grids (keep probability ``p``), bilinearly upsampled to ``(grid + 1)`` cells and randomly shifted
by up to one cell, as in the paper. Removed pixels become 0 (the paper's black baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["rise", "rise_masks"]


def rise_masks(
    n: int,
    size: tuple[int, int],
    *,
    grid: int = 8,
    p_keep: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``n`` smooth random RISE masks ``[n, H, W]`` in ``[0, 1]`` (1 = kept)."""
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    up_h, up_w = (grid + 1) * cell_h, (grid + 1) * cell_w
    coarse = (torch.rand(n, 1, grid, grid, generator=generator) < p_keep).float()
    up = F.interpolate(coarse, size=(up_h, up_w), mode="bilinear", align_corners=False)
    dy = torch.randint(0, cell_h, (n,), generator=generator)
    dx = torch.randint(0, cell_w, (n,), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None, :]  # [n, H]
    cols = dx[:, None] + torch.arange(w)[None, :]  # [n, W]
    idx = torch.arange(n)[:, None, None]
    return up[:, 0][idx, rows[:, :, None], cols[:, None, :]].clamp(0, 1)


@torch.no_grad()
def rise(
    model: nn.Module,
    image: Tensor,
    target: int,
    *,
    n_masks: int = 2000,
    grid: int = 8,
    p_keep: float = 0.5,
    batch_size: int = 100,
    seed: int = 0,
) -> Tensor:
    """RISE saliency ``[H, W]`` of ``image [3, H, W]`` for class ``target`` (larger = more).

    Args:
        model: classifier returning logits ``[B, classes]``.
        n_masks: number of random masks (the paper uses 4000-8000 at 224 px).
        grid: coarse grid side ``s``.
        p_keep: probability that a coarse cell is kept.
        batch_size: masked images per forward pass.
        seed: seed of the mask generator.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got {tuple(image.shape)}")
    device = image.device
    g = torch.Generator().manual_seed(seed)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    sal = torch.zeros(size, dtype=torch.float64, device=device)
    done = 0
    while done < n_masks:
        b = min(batch_size, n_masks - done)
        masks = rise_masks(b, size, grid=grid, p_keep=p_keep, generator=g).to(device)
        probs = torch.softmax(model(image.unsqueeze(0) * masks.unsqueeze(1)).float(), dim=1)
        sal += torch.einsum("b,bhw->hw", probs[:, target].double(), masks.double())
        done += b
    return (sal / (n_masks * p_keep)).float()
