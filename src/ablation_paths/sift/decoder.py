"""Sparse, batched, differentiable SIFT decoder (thesis 4.2.4, eq. 4.40-4.41).

One sparse matrix ``Z^rho`` per resolution level maps the gains ``theta in R^K`` to that level's
summed contribution ``sum_{l in level} sum_i theta_i chi^_{i,l} T_l`` (all channels stacked); the
levels are upsampled bilinearly, coarse to fine, and added (:func:`upsample_levels`). The map is
linear, so its Jacobian is the matrix itself; backpropagation multiplies by the stored transpose
(``Z^T``), which is why both are kept.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import scipy.sparse as sp
import torch
from torch import Tensor

from ablation_paths.sift.scale_space import upsample_levels

__all__ = ["SparseLevel", "decode_levels", "sparse_matmul", "to_torch_csr"]


def to_torch_csr(mat: sp.spmatrix, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """SciPy sparse matrix -> torch sparse CSR ``dtype`` tensor on ``device`` (sorted indices)."""
    m = sp.csr_matrix(mat)
    m.sum_duplicates()
    # int32 indices are ~30 % faster to multiply and half the size; int64 only when needed
    idx = "int32" if max(m.nnz, *m.shape) < 2**31 - 1 else "int64"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        out = torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(idx)),
            torch.from_numpy(m.indices.astype(idx)),
            torch.from_numpy(m.data).to(dtype),
            size=m.shape,
            dtype=dtype,
        )
    return out.to(device)


class _SparseMatmul(torch.autograd.Function):
    """``mat @ x`` for a constant sparse ``mat``; the backward pass applies ``mat_t = mat.T``."""

    @staticmethod
    def forward(ctx, x: Tensor, mat: Tensor, mat_t: Tensor) -> Tensor:  # type: ignore[override]
        ctx.mat_t = mat_t
        return mat @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return ctx.mat_t @ grad, None, None


def sparse_matmul(mat: Tensor, mat_t: Tensor, x: Tensor) -> Tensor:
    """Differentiable ``mat @ x`` (``x``: ``[K, B]`` dense) with the gradient ``mat_t @ grad``."""
    out = _SparseMatmul.apply(x, mat, mat_t)
    assert isinstance(out, Tensor)
    return out


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
