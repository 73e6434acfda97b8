"""The one Gaussian blur of the package against SciPy's reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ablation_paths.filters import (
    GaussianBlur2d,
    gaussian_blur,
    gaussian_blur_fft,
    gaussian_matrix,
    reflect_index,
)


def _scipy(x: np.ndarray, sy: float, sx: float, truncate: float = 4.0) -> np.ndarray:
    sig = (0,) * (x.ndim - 2) + (sy, sx)
    return ndimage.gaussian_filter(x, sig, mode="reflect", truncate=truncate)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    sy=st.floats(0.3, 40.0),
    sx=st.floats(0.3, 40.0),
    truncate=st.sampled_from([3.0, 4.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_blur_matches_scipy_reflect(
    h: int, w: int, sy: float, sx: float, truncate: float, seed: int
) -> None:
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w))
    ours = gaussian_blur(torch.from_numpy(x), (sy, sx), truncate).numpy()
    np.testing.assert_allclose(ours, _scipy(x, sy, sx, truncate), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blur_keeps_dtype_shape_and_constants(dtype: torch.dtype) -> None:
    x = torch.full((4, 9, 7), 0.37, dtype=dtype)
    y = gaussian_blur(x, 3.0)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, x)


def test_zero_sigma_skips_an_axis() -> None:
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = gaussian_blur(x, (0.0, 2.0))
    np.testing.assert_allclose(y.numpy(), _scipy(x.numpy(), 0.0, 2.0), atol=1e-12)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_blur_gradcheck() -> None:
    x = torch.randn(1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, (1.3, 0.8)), (x,))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="H, W"):
        gaussian_blur(torch.zeros(5), 1.0)
    with pytest.raises(TypeError, match="floating"):
        gaussian_blur(torch.zeros(3, 3, dtype=torch.int64), 1.0)
    with pytest.raises(ValueError, match="finite"):
        gaussian_blur(torch.zeros(3, 3), float("inf"))


def test_matrix_rows_sum_to_one_and_match_blur() -> None:
    m = gaussian_matrix(7, 2.5)
    torch.testing.assert_close(m.sum(1), torch.ones(7, dtype=torch.float64))
    x = torch.randn(7, 1, dtype=torch.float64)
    torch.testing.assert_close(m @ x, gaussian_blur(x, (2.5, 0.0)))


def test_reflect_index_is_half_sample_symmetric() -> None:
    idx = reflect_index(torch.arange(-4, 8), 4)
    assert idx.tolist() == [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]


def test_fft_blur_agrees_with_spatial_blur() -> None:
    img = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = torch.tensor([1.5, 4.0, 30.0])
    fft = gaussian_blur_fft(img, sigmas)
    for i, s in enumerate(sigmas.tolist()):
        torch.testing.assert_close(fft[i], gaussian_blur(img, s), atol=2e-3, rtol=0)


def test_module_twin() -> None:
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(GaussianBlur2d((1.0, 2.0))(x), gaussian_blur(x, (1.0, 2.0)))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(n=st.integers(1, 40), sigma=st.floats(0.2, 60.0), truncate=st.sampled_from([3.0, 4.0]))
def test_sparse_operator_equals_dense_matrix(n: int, sigma: float, truncate: float) -> None:
    from ablation_paths.filters import gaussian_operator

    op = gaussian_operator(n, sigma, truncate)
    dense = gaussian_matrix(n, sigma, truncate).numpy()
    np.testing.assert_allclose(op.toarray(), dense, atol=1e-15)
    assert op.nnz <= min(n * (2 * int(truncate * sigma + 0.5) + 1), n * n)
    x = np.random.default_rng(n).standard_normal(n)
    want = ndimage.gaussian_filter1d(x, sigma, mode="reflect", truncate=truncate)
    np.testing.assert_allclose(op @ x, want, atol=1e-10)


def test_sparse_operator_identity_and_errors() -> None:
    from ablation_paths.filters import gaussian_operator

    np.testing.assert_array_equal(gaussian_operator(5, 0.0).toarray(), np.eye(5))
    with pytest.raises(ValueError, match="n must be"):
        gaussian_operator(0, 1.0)


@pytest.mark.parametrize("n,sigma", [(9, 2.0), (9, 3.0), (16, 40.0), (50, 7.0)])
def test_wide_and_narrow_kernels_agree_with_scipy(n: int, sigma: float) -> None:
    # both branches of the axis blur (padded convolution; folded matrix when 2r + 1 > n)
    x = np.random.default_rng(1).standard_normal((1, n, n))
    ours = gaussian_blur(torch.from_numpy(x), sigma).numpy()
    np.testing.assert_allclose(ours, _scipy(x, sigma, sigma), atol=1e-10)
