"""Sparse, batched, differentiable SIFT decoder (thesis 4.2.4, eq. 4.40-4.41).

One sparse matrix ``Z^rho`` per resolution level maps the gains ``theta in R^K`` to that level's
summed contribution ``sum_{l in level} sum_i theta_i chi^_{i,l} T_l`` (all channels stacked); the
levels are upsampled bilinearly, coarse to fine, and added (:func:`upsample_levels`). The map is
linear, so its Jacobian is the matrix itself; backpropagation multiplies by the stored transpose
(``Z^T``), which is why both are kept (:mod:`ablation_paths.sparse`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ablation_paths.sift.scale_space import upsample_levels
from ablation_paths.sparse import sparse_matmul, to_torch_csr

__all__ = ["SparseLevel", "decode_levels", "sparse_matmul", "to_torch_csr"]


@dataclass
class SparseLevel:
    """The decoder matrix of one resolution level.

    Attributes:
        factor: nominal downsampling factor of the level.
        size: ``(h, w)`` of the level grid.
        channels: ``C``.
        matrix: sparse CSR ``[C * h * w, K]`` (``bar Z^{Delta, rho}`` of eq. 4.40).
        matrix_t: its transpose ``[K, C * h * w]`` (CSR) for backpropagation.
    """

    factor: int
    size: tuple[int, int]
    channels: int
    matrix: Tensor
    matrix_t: Tensor

    @property
    def nnz(self) -> int:
        return int(self.matrix.values().numel())


def decode_levels(levels: list[SparseLevel], gains: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Eq. 4.41: ``sum_rho upsample(Z^rho theta)`` for a batch of gain vectors.

    Args:
        levels: decoder matrices.
        gains: ``[B, K]`` gains (any real values; 1 = keep, 0 = remove).
        image_size: ``(H, W)``.

    Returns:
        ``[B, C, H, W]``, differentiable with respect to ``gains``.
    """
    ys = []
    gt = gains.T.contiguous()
    for lv in levels:
        y = sparse_matmul(lv.matrix, lv.matrix_t, gt)  # [C*h*w, B]
        ys.append(y.T.reshape(gains.shape[0], lv.channels, *lv.size))
    out = upsample_levels(ys, [lv.size for lv in levels])
    if tuple(out.shape[-2:]) != tuple(image_size):
        raise ValueError(f"finest level {tuple(out.shape[-2:])} is not the image size {image_size}")
    return out
