"""Products with a constant sparse matrix, differentiable, on CPU and CUDA alike.

A linear operator ``A`` (``[m, n]``) that never changes (a SIFT decoder matrix, thesis eq. 4.40; a
Delaunay resampling, thesis 7.3.2) is stored as two torch sparse CSR tensors, ``A`` and ``A^T``.
Its Jacobian is the matrix itself, so the backward pass is one more sparse product with the stored
other matrix; no gradient flows into the matrix. Two layouts are served by one autograd function:

* :func:`sparse_matmul` - ``A @ x`` for ``x`` ``[n, B]`` (columns are the batch);
* :func:`sparse_apply_last` - ``x @ A^T`` along the last axis of ``x`` ``[..., n]``.

:func:`to_torch_csr` converts a SciPy matrix into the torch CSR form used here.

On the CPU the products run through SciPy on the same arrays (no copy): SciPy's CSR @ dense
kernel is 3 to 4 times faster than torch's there (3.2 M non-zeros times 16 columns: 12-17 ms
against 51 ms, one thread). Other devices use torch's kernels (cuSPARSE on CUDA).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["csr_tensor", "sparse_apply_last", "sparse_matmul", "to_torch_csr"]


def csr_tensor(crow: Tensor, col: Tensor, val: Tensor, shape: tuple[int, int]) -> Tensor:
    """Assemble a torch sparse CSR tensor from its arrays (no copy), silencing torch's "sparse CSR
    support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape)


def to_torch_csr(mat: sp.spmatrix, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """SciPy sparse matrix -> torch sparse CSR ``dtype`` tensor on ``device`` (sorted indices,
    duplicates summed). Indices are int32 when they fit (about 30 % faster to multiply on the CPU
    and half the size), int64 otherwise."""
    m = sp.csr_matrix(mat)
    m.sum_duplicates()
    idx = "int32" if max(m.nnz, *m.shape) < 2**31 - 1 else "int64"
    out = csr_tensor(
        torch.from_numpy(m.indptr.astype(idx, copy=False)),
        torch.from_numpy(m.indices.astype(idx, copy=False)),
        torch.from_numpy(m.data).to(dtype),
        (int(m.shape[0]), int(m.shape[1])),
    )
    return out.to(device)


def _scipy(m: Tensor) -> sp.csr_matrix:
    """A SciPy view (no copy) of a CPU torch CSR tensor."""
    return sp.csr_matrix(
        (m.values().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()),
        shape=(int(m.shape[0]), int(m.shape[1])),
        copy=False,
    )


def _left(m: Tensor, x: Tensor) -> Tensor:
    """``M @ x`` for CSR ``m`` ``[k, n]`` and dense ``x`` ``[n, B]``."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.asarray(_scipy(m) @ x.detach().numpy()))
    return m @ x


def _right(x: Tensor, m: Tensor, m_t: Tensor) -> Tensor:
    """``x @ M^T`` for dense ``x`` ``[B, n]`` and CSR ``m`` ``[k, n]`` (``m_t`` = ``M^T``), as
    ``(M @ x^T)^T``, the well-supported CSR @ dense form, made contiguous."""
    if x.device.type == "cpu":
        out = np.asarray(_scipy(m) @ x.detach().numpy().T).T
        return torch.from_numpy(np.ascontiguousarray(out))
    return (m @ x.T).T.contiguous()


class _ConstSparseMatmul(torch.autograd.Function):
    """``A @ x`` (``right=False``) or ``x @ A^T`` (``right=True``) for a constant sparse ``A``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, a: Tensor, a_t: Tensor, right: bool
    ) -> Tensor:
        ctx.a, ctx.a_t, ctx.right = a, a_t, right
        return _right(x, a, a_t) if right else _left(a, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        if ctx.right:  # d(x A^T) -> grad @ A = grad @ (A^T)^T
            return _right(grad.contiguous(), ctx.a_t, ctx.a), None, None, None
        return _left(ctx.a_t, grad.contiguous()), None, None, None


def _check(a: Tensor, a_t: Tensor, x: Tensor, n: int) -> None:
    if a.dim() != 2 or tuple(a_t.shape) != (a.shape[1], a.shape[0]):
        raise ValueError(
            f"a_t must be the transpose of a: got shapes {tuple(a.shape)} and {tuple(a_t.shape)}"
        )
    if a.shape[1] != n:
        raise ValueError(f"sparse matrix {tuple(a.shape)} cannot multiply an axis of length {n}")
    if a.dtype != x.dtype or a_t.dtype != x.dtype or a.device != x.device:
        raise ValueError(
            f"sparse matrix ({a.dtype} on {a.device}) and input ({x.dtype} on {x.device}) "
            "must share dtype and device"
        )


def sparse_matmul(a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:
    """Differentiable ``A @ x`` for sparse CSR ``a`` ``[m, n]``, its transpose ``a_t`` ``[n, m]``
    and dense ``x`` ``[n, B]`` -> ``[m, B]``; the gradient with respect to ``x`` is
    ``A^T @ grad``."""
    _check(a, a_t, x, int(x.shape[0]))
    out = _ConstSparseMatmul.apply(x, a, a_t, False)
    assert isinstance(out, Tensor)
    return out


def sparse_apply_last(x: Tensor, a: Tensor, a_t: Tensor) -> Tensor:
    """Differentiable ``x @ A^T`` along the last axis: ``[..., n]`` -> ``[..., m]`` for sparse CSR
    ``a`` ``[m, n]`` with transpose ``a_t``; the gradient with respect to ``x`` is
    ``grad @ A``."""
    n = int(x.shape[-1])
    _check(a, a_t, x, n)
    flat = x.contiguous().reshape(-1, n)
    out = _ConstSparseMatmul.apply(flat, a, a_t, True)
    assert isinstance(out, Tensor)
    return out.reshape(*x.shape[:-1], int(a.shape[0]))
