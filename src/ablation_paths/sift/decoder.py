"""Sparse, batched, differentiable SIFT decoder (thesis 4.2.4, eq. 4.40-4.41).

One sparse matrix ``Z^rho`` per resolution level maps the gains ``theta in R^K`` to that level's
summed contribution ``sum_{l in level} sum_i theta_i chi^_{i,l} T_l`` (all channels stacked); the
levels are upsampled bilinearly, coarse to fine, and added (as in :func:`upsample_levels`). The
map is linear, so its Jacobian is the matrix itself: backpropagation multiplies by ``Z^T``.

On the CPU each level is decoded in bands of image rows (:class:`_BandedLevel`): each band's
sparse product, the bilinear upsampling of the coarser levels' sum onto the band and, at the
finest level, the transpose to ``[B, C, H, W]`` stay in the cache, and the output is the only
full-size array; the backward pass reads the bands of ``Z`` column-wise. On other devices the
products run through :mod:`ablation_paths.sparse`, whose backward uses the stored transpose
(``matrix_t``).
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

try:  # SciPy's CSR kernels, called on row ranges of a matrix without slicing it
    from scipy.sparse import _sparsetools as _st
except ImportError:  # pragma: no cover - a SciPy without the module: public API, slower
    _st = None

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


def _rows_matmul_add(m: sp.csr_matrix, r0: int, r1: int, x: np.ndarray, y: np.ndarray) -> None:
    """``y += m[r0:r1] @ x`` in place, for dense ``x`` ``[n, B]`` and C-contiguous ``y``
    ``[r1 - r0, B]``. SciPy's CSR kernel runs on the row range directly (no sliced copy of the
    matrix, no temporary result) when the dtypes agree."""
    ptr = m.indptr[r0 : r1 + 1]
    if _st is not None and m.data.dtype == x.dtype == y.dtype and y.flags.c_contiguous:
        x = np.ascontiguousarray(x)
        _st.csr_matvecs(
            r1 - r0, m.shape[1], x.shape[1], ptr, m.indices, m.data, x.ravel(), y.ravel()
        )
    else:
        y += _row_slice(m, r0, r1) @ x


def _rows_rmatmul_add(m: sp.csr_matrix, r0: int, r1: int, g: np.ndarray, y: np.ndarray) -> None:
    """``y += m[r0:r1]^T @ g`` in place, for dense ``g`` ``[r1 - r0, B]`` and C-contiguous ``y``
    ``[n, B]`` (the CSR rows read as the CSC columns of the transpose)."""
    ptr = m.indptr[r0 : r1 + 1]
    if _st is not None and m.data.dtype == g.dtype == y.dtype and y.flags.c_contiguous:
        g = np.ascontiguousarray(g)
        _st.csc_matvecs(
            m.shape[1], r1 - r0, g.shape[1], ptr, m.indices, m.data, g.ravel(), y.ravel()
        )
    else:
        y += _row_slice(m, r0, r1).T @ g


def _row_slice(m: sp.csr_matrix, r0: int, r1: int) -> sp.csr_matrix:
    """Rows ``r0:r1`` of ``m`` sharing its data and indices."""
    s, e = int(m.indptr[r0]), int(m.indptr[r1])
    ptr = m.indptr[r0 : r1 + 1] - m.indptr[r0]
    return sp.csr_matrix((m.data[s:e], m.indices[s:e], ptr), shape=(r1 - r0, m.shape[1]))


@dataclass
class _Bands:
    """One level cut into bands of image rows, with the resampling of the coarse sum."""

    matrix: sp.csr_matrix  # [C*H*W, K], a SciPy view of the level's matrix
    channels: int
    size: tuple[int, int]  # (H, W)
    rows: int  # image rows per band
    coarse: Tensor | None  # [C, h, w, B] contiguous: the coarser levels' sum
    weights: tuple[tuple[Tensor, Tensor, Tensor], ...] | None = None  # rows, columns

    def blocks(self) -> list[tuple[int, int, int, int, int]]:
        """``(channel, first row, end row, first matrix row, end matrix row)`` of every band."""
        (hh, ww), out = self.size, []
        for c in range(self.channels):
            for y0 in range(0, hh, self.rows):
                y1 = min(hh, y0 + self.rows)
                out.append((c, y0, y1, (c * hh + y0) * ww, (c * hh + y1) * ww))
        return out

    def upsample_into(self, c: int, y0: int, y1: int, out: Tensor) -> None:
        """Writes rows ``y0:y1`` of channel ``c`` of the bilinearly upsampled coarse sum (zeros
        without one) into ``out`` ``[y1 - y0, W, B]``."""
        if self.coarse is None:
            out.zero_()
            return
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
        torch.lerp(r.index_select(1, ix0), r.index_select(1, ix1), tx[None, :, None], out=out)


def _decode_whole(levels: list[SparseLevel], gt: Tensor) -> Tensor:
    """All levels summed at full size in the batch-innermost layout, then transposed once:
    ``[K, B]`` gains -> ``[B, C, H, W]``. The route for CUDA and other devices (the CPU route
    before the banded finest level; tests compare the two)."""
    acc = _sum_levels(levels, gt)
    assert acc is not None
    return acc.permute(1, 0, 2, 3).contiguous()


class _BandedLevel(torch.autograd.Function):
    """One level on the CPU, band by band: ``Z theta^T + upsample(coarse)`` (``coarse``
    ``[C, h, w, B]`` contiguous, the coarser levels' sum, or ``None``) -> ``[C, H, W, B]``, or the
    transpose ``[B, C, H, W]`` for the finest level (``final``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, gt: Tensor, coarse: Tensor | None, level: SparseLevel, final: bool
    ) -> Tensor:
        b = int(gt.shape[1])
        (hh, ww), ch = level.size, level.channels
        rows = max(1, _BAND_ELEMENTS // max(1, ww * b))
        bands = _Bands(_scipy(level.matrix), ch, (hh, ww), rows, coarse)
        g = gt.detach().numpy()
        shape = (b, ch, hh, ww) if final else (ch, hh, ww, b)
        out = torch.empty(shape, dtype=gt.dtype)
        buf = torch.empty(min(rows, hh), ww, b, dtype=gt.dtype) if final else None
        for c, y0, y1, r0, r1 in bands.blocks():
            y = out[c, y0:y1] if buf is None else buf[: y1 - y0]  # [rows, W, B], contiguous
            bands.upsample_into(c, y0, y1, y)
            _rows_matmul_add(bands.matrix, r0, r1, g, y.numpy().reshape(-1, b))
            if final:
                out[:, c, y0:y1].copy_(y.permute(2, 0, 1))
        ctx.bands = replace(bands, coarse=None)  # the backward needs only the matrix
        ctx.final = final
        ctx.coarse_shape = None if coarse is None else tuple(coarse.permute(0, 3, 1, 2).shape)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        bands: _Bands = ctx.bands
        (hh, ww), b = bands.size, int(grad.shape[0] if ctx.final else grad.shape[-1])
        g_gt = None
        if ctx.needs_input_grad[0]:
            g_gt = torch.zeros(int(bands.matrix.shape[1]), b, dtype=grad.dtype)
            acc = g_gt.numpy()
            for c, y0, y1, r0, r1 in bands.blocks():  # Z^T grad, band by band
                gb = grad[:, c, y0:y1].permute(1, 2, 0) if ctx.final else grad[c, y0:y1]
                _rows_rmatmul_add(bands.matrix, r0, r1, gb.contiguous().view(-1, b).numpy(), acc)
        g_coarse = None
        if ctx.coarse_shape is not None and ctx.needs_input_grad[1]:
            g_up = grad.permute(1, 0, 2, 3) if ctx.final else grad.permute(0, 3, 1, 2)
            g_coarse = torch.ops.aten.upsample_bilinear2d_backward(
                g_up, [hh, ww], list(ctx.coarse_shape), False
            ).permute(0, 2, 3, 1)
        return g_gt, g_coarse, None, None


def decode_levels(levels: list[SparseLevel], gains: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Eq. 4.41: ``sum_rho upsample(Z^rho theta)`` for a batch of gain vectors.

    Args:
        levels: decoder matrices (fine to coarse, ``levels[0]`` at the image size).
        gains: ``[B, K]`` gains (any real values; 1 = keep, 0 = remove).
        image_size: ``(H, W)``.

    Returns:
        ``[B, C, H, W]`` (contiguous), differentiable with respect to ``gains``.

    The products ``Z^rho @ theta^T`` come out as ``[C*h*w, B]``, i.e. with the batch innermost;
    on the CPU each level is decoded in bands of rows, coarse to fine, adding the coarser levels'
    sum upsampled onto the band (:class:`_BandedLevel`), and the finest level's bands are
    transposed straight into the ``[B, C, H, W]`` output; elsewhere the levels are upsampled and
    added in the batch-innermost layout and the sum is transposed once, at the end. Same operator as
    :func:`~ablation_paths.sift.scale_space.upsample_levels`.
    """
    if not levels:
        raise ValueError("no decoder levels")
    if tuple(levels[0].size) != tuple(image_size):
        raise ValueError(f"finest level {tuple(levels[0].size)} is not the image size {image_size}")
    gt = gains.T.contiguous()  # [K, B]
    for lv in levels:
        _check(lv.matrix, lv.matrix_t, gt, int(gt.shape[0]))
    if gains.device.type != "cpu":
        return _decode_whole(levels, gt)
    acc: Tensor | None = None  # [C, h, w, B]: the levels so far, coarse to fine
    for i in range(len(levels) - 1, -1, -1):
        acc = _BandedLevel.apply(gt, acc, levels[i], i == 0)
    assert isinstance(acc, Tensor)
    return acc
