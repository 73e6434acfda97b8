"""Delaunay-barycentric resampling precomputed as sparse matrices (thesis section 7.3.2-7.3.3).

A resampling from ``n_src`` scattered points to ``n_dst`` points is linear, so it is one matrix
``A`` of shape ``(n_dst, n_src)``; each row holds the barycentric coordinates of the destination
point in the Delaunay triangle of the source points that contains it, so it has at most three
non-zeros. We store it in ELLPACK form, ``index`` and ``weight`` arrays of shape ``(n_dst, 3)``,
which applies on any device as three gathers (:func:`apply_resampling`), and convert to
``scipy.sparse`` or ``torch.sparse`` on request.

Destination points outside the source convex hull are handled by ``outside``: ``"zero"`` gives
an all-zero row, ``"nearest"`` copies the nearest source point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray
from scipy.spatial import Delaunay, cKDTree

from ablation_paths.sparse import csr_tensor, sparse_apply_last

Outside = Literal["zero", "nearest"]


@dataclass(frozen=True)
class Resampling:
    """A sparse linear resampling in ELLPACK form.

    Attributes:
        index: ``(n_dst, 3)`` int64 source indices (unused slots point at 0 with weight 0).
        weight: ``(n_dst, 3)`` float64 barycentric weights; each row sums to 1 or 0.
        n_src: number of source points (columns of the matrix).
    """

    index: NDArray[np.int64]
    weight: NDArray[np.float64]
    n_src: int

    @property
    def n_dst(self) -> int:
        """Number of destination points (rows of the matrix)."""
        return int(self.index.shape[0])

    def to_scipy(self) -> sp.csr_matrix:
        """The matrix as ``scipy.sparse.csr_matrix`` of shape ``(n_dst, n_src)``."""
        rows = np.repeat(np.arange(self.n_dst), self.index.shape[1])
        m = sp.csr_matrix(
            (self.weight.ravel(), (rows, self.index.ravel())), shape=(self.n_dst, self.n_src)
        )
        m.eliminate_zeros()
        return m

    def to_torch_sparse(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The matrix as a ``torch.sparse_coo_tensor`` of shape ``(n_dst, n_src)``."""
        coo = self.to_scipy().tocoo()
        idx = torch.as_tensor(np.stack([coo.row, coo.col]), dtype=torch.long, device=device)
        val = torch.as_tensor(coo.data, dtype=dtype, device=device)
        return torch.sparse_coo_tensor(idx, val, (self.n_dst, self.n_src)).coalesce()

    def csr(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> CSRPair:
        """The matrix and its transpose as CSR index/value tensors for :func:`sparse_resample`."""
        m = self.to_scipy()
        return CSRPair.from_scipy(m, dtype, device)

    def tensors(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, weight)`` as torch tensors for :func:`apply_resampling`."""
        return (
            torch.as_tensor(self.index, dtype=torch.long, device=device),
            torch.as_tensor(self.weight, dtype=dtype, device=device),
        )


def _check_points(name: str, pts: NDArray[np.float64]) -> NDArray[np.float64]:
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return pts


def barycentric_resampling(
    src: NDArray[np.float64],
    dst: NDArray[np.float64],
    outside: Outside = "zero",
    n_zero_src: int = 0,
) -> Resampling:
    """Linear interpolation from scattered ``src`` points to ``dst`` points via Delaunay.

    Args:
        src: ``(n_src, 2)`` source coordinates.
        dst: ``(n_dst, 2)`` destination coordinates.
        outside: treatment of destination points outside the convex hull of ``src``.
        n_zero_src: the last ``n_zero_src`` source points are fixed zero-valued padding points
            (e.g. :func:`spiral_cnn.geometry.pad_ring`); their columns are dropped, so the result
            has ``n_src - n_zero_src`` columns.

    Returns:
        The :class:`Resampling`; it reproduces affine functions exactly at every destination
        point inside the hull of ``src`` (when no padding point is involved).
    """
    src = _check_points("src", src)
    dst = _check_points("dst", dst)
    if outside not in ("zero", "nearest"):
        raise ValueError(f"outside must be 'zero' or 'nearest', got {outside!r}")
    n_keep = src.shape[0] - n_zero_src
    if n_keep < 3:
        raise ValueError(f"need at least 3 non-padding source points, got {n_keep}")
    tri = Delaunay(src)
    simplex = tri.find_simplex(dst, tol=1e-12)
    inside = simplex >= 0
    s = simplex[inside]
    trans = tri.transform[s]  # (m, 3, 2): affine map to barycentric coordinates
    b01 = np.einsum("mij,mj->mi", trans[:, :2, :], dst[inside] - trans[:, 2, :])
    bary = np.concatenate([b01, 1.0 - b01.sum(axis=1, keepdims=True)], axis=1)
    index = np.zeros((dst.shape[0], 3), dtype=np.int64)
    weight = np.zeros((dst.shape[0], 3), dtype=np.float64)
    index[inside] = tri.simplices[s]
    weight[inside] = bary
    if outside == "nearest" and not np.all(inside):
        _, nn = cKDTree(src[:n_keep]).query(dst[~inside])
        index[~inside, 0] = nn
        weight[~inside, 0] = 1.0
    # Padding points carry value zero: drop their weight and point the slot at column 0.
    pad = index >= n_keep
    weight[pad] = 0.0
    index[pad] = 0
    return Resampling(index=index, weight=weight, n_src=n_keep)


@dataclass(frozen=True)
class CSRPair:
    """CSR arrays of a matrix ``A`` (``(n_dst, n_src)``) and of its transpose.

    Kept as plain dense index/value tensors (so they move with ``.to()`` and can be registered as
    buffers); the sparse tensors are assembled without copying at each call.
    """

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    val_t: torch.Tensor
    n_dst: int
    n_src: int

    @staticmethod
    def from_scipy(
        m: sp.csr_matrix, dtype: torch.dtype, device: torch.device | str | None = None
    ) -> CSRPair:
        """Build from a ``scipy.sparse`` matrix."""
        m = sp.csr_matrix(m)
        mt = sp.csr_matrix(m.T)

        def t(a: NDArray[np.generic], dt: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

        return CSRPair(
            t(m.indptr, torch.long),
            t(m.indices, torch.long),
            t(m.data, dtype),
            t(mt.indptr, torch.long),
            t(mt.indices, torch.long),
            t(mt.data, dtype),
            int(m.shape[0]),
            int(m.shape[1]),
        )


def sparse_resample(x: torch.Tensor, a: CSRPair) -> torch.Tensor:
    """Apply a constant sparse resampling along the last axis: ``(..., n_src) -> (..., n_dst)``.

    Same result as :func:`apply_resampling`, but forward and backward are CSR sparse-dense
    products (CPU: MKL/native; CUDA: cuSPARSE), several times faster than gather/scatter.
    Differentiable with respect to ``x`` only.
    """
    if x.shape[-1] != a.n_src:
        raise ValueError(f"input has {x.shape[-1]} points on the last axis, expected {a.n_src}")
    if x.dtype != a.val.dtype or x.device != a.val.device:
        a = CSRPair(
            a.crow.to(x.device),
            a.col.to(x.device),
            a.val.to(x.device, x.dtype),
            a.crow_t.to(x.device),
            a.col_t.to(x.device),
            a.val_t.to(x.device, x.dtype),
            a.n_dst,
            a.n_src,
        )
    a_mat = csr_tensor(a.crow, a.col, a.val, (a.n_dst, a.n_src))
    a_t = csr_tensor(a.crow_t, a.col_t, a.val_t, (a.n_src, a.n_dst))
    return sparse_apply_last(x, a_mat, a_t)


def apply_resampling(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Apply an ELLPACK resampling along the last axis.

    Args:
        x: ``(..., n_src)`` values at the source points.
        index: ``(n_dst, k)`` long source indices.
        weight: ``(n_dst, k)`` weights, same dtype as ``x``.

    Returns:
        ``(..., n_dst)`` with ``out[..., m] = sum_k weight[m, k] * x[..., index[m, k]]``.
    """
    if index.shape != weight.shape or index.ndim != 2:
        raise ValueError(
            f"index/weight must be equal (n_dst, k), got {index.shape}, {weight.shape}"
        )
    out = x[..., index[:, 0]] * weight[:, 0]
    for k in range(1, index.shape[1]):
        out = out + x[..., index[:, k]] * weight[:, k]
    return out
