"""Sparse, batched, differentiable SIFT decoder (thesis 4.2.4, eq. 4.40-4.41).

One sparse matrix ``Z^rho`` per resolution level maps the gains ``theta in R^K`` to that level's
summed contribution ``sum_{l in level} sum_i theta_i chi^_{i,l} T_l`` (all channels stacked); the
levels are upsampled bilinearly, coarse to fine, and added (as in :func:`upsample_levels`). The
map is linear, so its Jacobian is the matrix itself; backpropagation multiplies by the stored
transpose (``Z^T``), which is why both are kept (:mod:`ablation_paths.sparse`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ablation_paths.sift.scale_space import resample
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
        levels: decoder matrices (fine to coarse, ``levels[0]`` at the image size).
        gains: ``[B, K]`` gains (any real values; 1 = keep, 0 = remove).
        image_size: ``(H, W)``.

    Returns:
        ``[B, C, H, W]`` (contiguous), differentiable with respect to ``gains``.

    The products ``Z^rho @ theta^T`` come out as ``[C*h*w, B]``, i.e. with the batch innermost.
    Each is viewed as ``[C, B, h, w]`` in channels-last memory (no copy), the levels are upsampled
    and added coarse to fine in that layout (bilinear upsampling is 3 to 4 times faster there than
    on the strided ``[B, C, h, w]`` view), and the sum is transposed to ``[B, C, H, W]`` once, at
    the end. Same operator as :func:`~ablation_paths.sift.scale_space.upsample_levels`.
    """
    b = int(gains.shape[0])
    gt = gains.T.contiguous()  # [K, B]
    acc: Tensor | None = None
    for lv in reversed(levels):
        y = sparse_matmul(lv.matrix, lv.matrix_t, gt)  # [C*h*w, B]
        z = y.view(lv.channels, *lv.size, b).permute(0, 3, 1, 2)  # [C, B, h, w], B innermost
        if acc is None:
            acc = z
        elif tuple(acc.shape[-2:]) == tuple(lv.size):
            acc = acc + z
        else:  # a fresh tensor: add in place (no second full-size temporary)
            acc = resample(acc, lv.size).add_(z)
    if acc is None:
        raise ValueError("no decoder levels")
    if tuple(acc.shape[-2:]) != tuple(image_size):
        raise ValueError(f"finest level {tuple(acc.shape[-2:])} is not the image size {image_size}")
    return acc.permute(1, 0, 2, 3).contiguous()
