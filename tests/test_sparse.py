"""The shared constant-sparse-matrix product (ablation_paths.sparse): values against dense
products, gradients by gradcheck and against the dense transpose, both layouts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ablation_paths.sparse import sparse_apply_last, sparse_matmul, to_torch_csr


def _random(m: int, n: int, density: float, seed: int) -> sp.csr_matrix:
    return sp.random(m, n, density=density, format="csr", random_state=seed, dtype=np.float64)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    m=st.integers(1, 30),
    n=st.integers(1, 30),
    b=st.integers(1, 5),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_dense_products_and_gradients(m, n, b, density, seed):
    a_np = _random(m, n, density, seed)
    dense = torch.from_numpy(a_np.toarray())
    a = to_torch_csr(a_np, torch.float64, "cpu")
    a_t = to_torch_csr(a_np.T, torch.float64, "cpu")
    g = torch.Generator().manual_seed(seed)
    # A @ x, x [n, B]
    x = torch.randn(n, b, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(m, b, generator=g, dtype=torch.float64)
    y = sparse_matmul(a, a_t, x)
    torch.testing.assert_close(y, dense @ x.detach(), rtol=1e-12, atol=1e-12)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, dense.T @ w, rtol=1e-12, atol=1e-12)
    # x @ A^T along the last axis, x [2, B, n]
    x2 = torch.randn(2, b, n, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, b, m, generator=g, dtype=torch.float64)
    y2 = sparse_apply_last(x2, a, a_t)
    assert y2.shape == (2, b, m)
    torch.testing.assert_close(y2, x2.detach() @ dense.T, rtol=1e-12, atol=1e-12)
    (y2 * w2).sum().backward()
    torch.testing.assert_close(x2.grad, w2 @ dense, rtol=1e-12, atol=1e-12)


def test_gradcheck_both_layouts():
    a_np = _random(7, 5, 0.5, 1)
    a = to_torch_csr(a_np, torch.float64, "cpu")
    a_t = to_torch_csr(a_np.T, torch.float64, "cpu")
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sparse_matmul(a, a_t, v), (x,))
    x2 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sparse_apply_last(v, a, a_t), (x2,))


def test_to_torch_csr_sums_duplicates_and_uses_int32():
    coo = sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    t = to_torch_csr(coo, torch.float32, "cpu")
    assert t.crow_indices().dtype == torch.int32
    torch.testing.assert_close(t.to_dense(), torch.tensor([[0.0, 3.0], [3.0, 0.0]]))


def test_shape_errors():
    a_np = _random(4, 3, 0.5, 0)
    a = to_torch_csr(a_np, torch.float64, "cpu")
    a_t = to_torch_csr(a_np.T, torch.float64, "cpu")
    with pytest.raises(ValueError, match="transpose"):
        sparse_matmul(a, a, torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="axis of length 4"):
        sparse_matmul(a, a_t, torch.zeros(4, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="axis of length 5"):
        sparse_apply_last(torch.zeros(2, 5, dtype=torch.float64), a, a_t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    a_np = _random(9, 6, 0.4, 2)
    x = torch.randn(3, 6, dtype=torch.float64)
    outs = []
    for dev in ("cpu", "cuda"):
        a = to_torch_csr(a_np, torch.float64, dev)
        a_t = to_torch_csr(a_np.T, torch.float64, dev)
        xd = x.to(dev).requires_grad_(True)
        y = sparse_apply_last(xd, a, a_t)
        y.sum().backward()
        outs.append((y.detach().cpu(), xd.grad.cpu()))
    torch.testing.assert_close(outs[0], outs[1])


def test_dtype_mismatch_is_named():
    a_np = _random(4, 3, 0.5, 0)
    a = to_torch_csr(a_np, torch.float32, "cpu")
    a_t = to_torch_csr(a_np.T, torch.float32, "cpu")
    with pytest.raises(ValueError, match="dtype and device"):
        sparse_matmul(a, a_t, torch.zeros(3, 1, dtype=torch.float64))
