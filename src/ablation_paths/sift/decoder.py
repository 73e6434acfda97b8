"""Sparse, batched, differentiable SIFT decoder (thesis 4.2.4, eq. 4.40-4.41).

One sparse matrix ``Z^rho`` per resolution level maps the gains ``theta in R^K`` to that level's
summed contribution ``sum_{l in level} sum_i theta_i chi^_{i,l} T_l`` (all channels stacked); the
levels are upsampled bilinearly, coarse to fine, and added (as in :func:`upsample_levels`). The
map is linear, so its Jacobian is the matrix itself; backpropagation multiplies by the stored
transpose (``Z^T``), which is why both are kept (:mod:`ablation_paths.sparse`).

On the CPU the finest level is decoded in bands of image rows (:class:`_FineLevel`): each band's
sparse product, the bilinear upsampling of the coarser levels' sum onto the band and the
transpose to ``[B, C, H, W]`` stay in the cache, and the output is the only full-size array.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from ablation_paths.sift.scale_space import resample
from ablation_paths.sparse import _check, _scipy, sparse_matmul, to_torch_csr

__all__ = ["SparseLevel", "decode_levels", "sparse_matmul", "to_torch_csr"]

#: Elements (rows x width x batch) of one band of the finest level: about 1 MB in float32.
_BAND_ELEMENTS = 1 << 18


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


def _level_product(lv: SparseLevel, gt: Tensor) -> Tensor:
    """``Z^rho @ theta^T`` viewed as ``[C, B, h, w]`` with the batch innermost in memory (no
    copy); ``gt`` is ``[K, B]``."""
    y = sparse_matmul(lv.matrix, lv.matrix_t, gt)  # [C*h*w, B]
    return y.view(lv.channels, *lv.size, int(gt.shape[1])).permute(0, 3, 1, 2)


def _sum_levels(levels: list[SparseLevel], gt: Tensor) -> Tensor | None:
    """``sum_rho upsample(Z^rho theta)`` over ``levels`` (fine to coarse) at ``levels[0]``'s size,
    as ``[C, B, h, w]`` with the batch innermost in memory (bilinear upsampling is 3 to 4 times
    faster in that layout than on the strided ``[B, C, h, w]`` view); ``None`` for no levels."""
    acc: Tensor | None = None
    for lv in reversed(levels):
        z = _level_product(lv, gt)
        if acc is None:
            acc = z
        elif tuple(acc.shape[-2:]) == tuple(lv.size):
            acc = acc + z
        else:  # a fresh tensor: add in place (no second temporary)
            acc = resample(acc, lv.size).add_(z)
    return acc


def _linear_weights(n_in: int, n_out: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices ``i0, i1`` (int64, ``[n_out]``) and weights ``t`` (``[n_out]``) of 1-D
    linear resampling from ``n_in`` to ``n_out`` samples, the ``align_corners=False`` convention
    of ``F.interpolate`` (``out = (1 - t) in[i0] + t in[i1]``)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    i1 = (i0 + 1).clamp_max(n_in - 1)
    return i0, i1, (src - i0).to(dtype)


@dataclass
class _Bands:
    """The finest level cut into bands of image rows, with the resampling of the coarse sum."""

    matrix: sp.csr_matrix  # [C*H*W, K], a SciPy view of the finest level's matrix
    channels: int
    size: tuple[int, int]  # (H, W)
    rows: int  # image rows per band
    coarse: Tensor | None  # [C, h, w, B] contiguous: the coarser levels' sum
    weights: tuple[tuple[Tensor, Tensor, Tensor], ...] | None = None  # rows, columns

    def blocks(self) -> list[tuple[int, int, int, sp.csr_matrix]]:
        """``(channel, first row, end row, matrix rows of the band)`` for every band."""
        (hh, ww), m, out = self.size, self.matrix, []
        for c in range(self.channels):
            for y0 in range(0, hh, self.rows):
                y1 = min(hh, y0 + self.rows)
                r0, r1 = (c * hh + y0) * ww, (c * hh + y1) * ww
                s, e = int(m.indptr[r0]), int(m.indptr[r1])
                ptr = m.indptr[r0 : r1 + 1] - m.indptr[r0]
                sub = sp.csr_matrix(
                    (m.data[s:e], m.indices[s:e], ptr), shape=(r1 - r0, m.shape[1]), copy=False
                )
                out.append((c, y0, y1, sub))
        return out

    def upsampled(self, c: int, y0: int, y1: int) -> Tensor | None:
        """Rows ``y0:y1`` of channel ``c`` of the bilinearly upsampled coarse sum,
        ``[y1 - y0, W, B]``."""
        if self.coarse is None:
            return None
        if self.weights is None:
            dt, (h, w) = self.coarse.dtype, self.coarse.shape[1:3]
            self.weights = (
                _linear_weights(int(h), self.size[0], dt),
                _linear_weights(int(w), self.size[1], dt),
            )
        (iy0, iy1, ty), (ix0, ix1, tx) = self.weights
        a = self.coarse[c]  # [h, w, B]
        r = torch.lerp(
            a.index_select(0, iy0[y0:y1]), a.index_select(0, iy1[y0:y1]), ty[y0:y1, None, None]
        )
        return torch.lerp(r.index_select(1, ix0), r.index_select(1, ix1), tx[None, :, None])


def _decode_whole(levels: list[SparseLevel], gt: Tensor) -> Tensor:
    """All levels summed at full size in the batch-innermost layout, then transposed once:
    ``[K, B]`` gains -> ``[B, C, H, W]``. The route for CUDA and other devices (the CPU route
    before the banded finest level; tests compare the two)."""
    acc = _sum_levels(levels, gt)
    assert acc is not None
    return acc.permute(1, 0, 2, 3).contiguous()


class _FineLevel(torch.autograd.Function):
    """``out[B, C, H, W] = (Z^0 theta^T + upsample(coarse))`` transposed, band by band (CPU)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, gt: Tensor, coarse: Tensor | None, level: SparseLevel
    ) -> Tensor:
        b = int(gt.shape[1])
        (hh, ww), ch = level.size, level.channels
        rows = max(1, _BAND_ELEMENTS // max(1, ww * b))
        cs = None if coarse is None else coarse.permute(0, 2, 3, 1).contiguous()
        bands = _Bands(_scipy(level.matrix), ch, (hh, ww), rows, cs)
        g = gt.detach().numpy()
        out = torch.empty(b, ch, hh, ww, dtype=gt.dtype)
        for c, y0, y1, sub in bands.blocks():
            y = torch.from_numpy(np.asarray(sub @ g)).view(y1 - y0, ww, b)
            up = bands.upsampled(c, y0, y1)
            if up is not None:
                y += up
            out[:, c, y0:y1].copy_(y.permute(2, 0, 1))
        ctx.bands = replace(bands, coarse=None)  # the backward needs only the matrix
        ctx.coarse_shape = None if coarse is None else tuple(coarse.shape)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        bands: _Bands = ctx.bands
        b, ch, hh, ww = (int(n) for n in grad.shape)
        g_gt = None
        if ctx.needs_input_grad[0]:
            g_gt = torch.zeros(int(bands.matrix.shape[1]), b, dtype=grad.dtype)
            for c, y0, y1, sub in bands.blocks():  # Z^T grad, band by band: sub^T is CSC
                gb = grad[:, c, y0:y1].permute(1, 2, 0).contiguous().view(-1, b)
                g_gt += torch.from_numpy(np.asarray(sub.T @ gb.numpy()))
        g_coarse = None
        if ctx.coarse_shape is not None and ctx.needs_input_grad[1]:
            g_coarse = torch.ops.aten.upsample_bilinear2d_backward(
                grad.permute(1, 0, 2, 3), [hh, ww], list(ctx.coarse_shape), False
            )
        return g_gt, g_coarse, None


def decode_levels(levels: list[SparseLevel], gains: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Eq. 4.41: ``sum_rho upsample(Z^rho theta)`` for a batch of gain vectors.

    Args:
        levels: decoder matrices (fine to coarse, ``levels[0]`` at the image size).
        gains: ``[B, K]`` gains (any real values; 1 = keep, 0 = remove).
        image_size: ``(H, W)``.

    Returns:
        ``[B, C, H, W]`` (contiguous), differentiable with respect to ``gains``.

    The products ``Z^rho @ theta^T`` come out as ``[C*h*w, B]``, i.e. with the batch innermost;
    the coarser levels are upsampled and added coarse to fine in that layout. On the CPU the finest
    level is then decoded band by band straight into the ``[B, C, H, W]`` output
    (:class:`_FineLevel`); elsewhere the sum is transposed once, at the end. Same operator as
    :func:`~ablation_paths.sift.scale_space.upsample_levels`.
    """
    if not levels:
        raise ValueError("no decoder levels")
    if tuple(levels[0].size) != tuple(image_size):
        raise ValueError(f"finest level {tuple(levels[0].size)} is not the image size {image_size}")
    gt = gains.T.contiguous()  # [K, B]
    _check(levels[0].matrix, levels[0].matrix_t, gt, int(gt.shape[0]))
    if gains.device.type != "cpu":
        return _decode_whole(levels, gt)
    out = _FineLevel.apply(gt, _sum_levels(levels[1:], gt), levels[0])
    assert isinstance(out, Tensor)
    return out
