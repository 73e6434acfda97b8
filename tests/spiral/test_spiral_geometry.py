"""Spiral sampling, ribbon and Delaunay-barycentric resampling matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from spiral_cnn.geometry import (
    SpiralSpec,
    isotropic_n_spls,
    pad_ring,
    pixel_centres,
    ribbon_points,
    spiral_points,
)
from spiral_cnn.layers import (
    image_to_spiral_resampling,
    ribbon_resampling,
    spiral_to_image_resampling,
)
from spiral_cnn.resample import apply_resampling, barycentric_resampling, sparse_resample

L = 32


def affine(p: np.ndarray) -> np.ndarray:
    return 0.3 + 1.7 * p[:, 0] - 0.9 * p[:, 1]


def test_spiral_follows_thesis_equations() -> None:
    n_wind, n = 7, 150
    pts = spiral_points(n_wind, n)
    t = np.arange(n) * math.pi / n  # eq. (7.7)
    r = np.sqrt(t / math.pi)  # eq. (7.5)
    theta = 2 * n_wind * np.sqrt(math.pi * t)  # eq. (7.6)
    np.testing.assert_allclose(pts, np.stack([r * np.cos(theta), r * np.sin(theta)], 1), atol=1e-12)


def test_isotropic_spiral_spacing_matches_winding_spacing() -> None:
    n_wind = 16
    pts = spiral_points(n_wind, isotropic_n_spls(n_wind))
    r = np.hypot(pts[:, 0], pts[:, 1])
    d, _ = cKDTree(pts).query(pts, k=2)
    nn = d[(r > 0.3) & (r < 0.9), 1]
    # Nearest neighbours sit about one winding spacing apart: uniform density, no clumping.
    assert abs(np.median(nn) - 1 / n_wind) < 0.15 / n_wind
    assert nn.min() > 0.6 / n_wind
    # Equal area per sample: the count inside radius rho grows like rho^2.
    for rho in (0.4, 0.7):
        assert abs((r < rho).mean() - rho**2) < 0.01


def test_ribbon_rows_are_neighbouring_windings() -> None:
    n_wind, n = 10, isotropic_n_spls(10)
    rib = ribbon_points(n_wind, n, rows=5, cols=3)
    assert rib.shape == (5, n + 2, 2)
    centre = rib[2, 1:-1]
    np.testing.assert_allclose(centre, spiral_points(n_wind, n), atol=1e-12)
    r0 = np.hypot(*centre.T)
    for k in (-2, -1, 1, 2):
        rk = np.hypot(*rib[2 + k, 1:-1].T)
        sel = r0 > 2.5 / n_wind  # away from the fold through the centre
        np.testing.assert_allclose(rk[sel], r0[sel] + k / n_wind, atol=1e-12)
        # Same polar angle: row k is the spiral shifted by k full windings.
        a0 = np.arctan2(centre[sel, 1], centre[sel, 0])
        ak = np.arctan2(rib[2 + k, 1:-1][sel, 1], rib[2 + k, 1:-1][sel, 0])
        np.testing.assert_allclose(np.cos(ak - a0), 1.0, atol=1e-9)


def test_resampling_matrices_reproduce_affine_functions_inside_disc() -> None:
    spec = SpiralSpec.for_image(L)
    px, sp = pixel_centres(L), spiral_points(spec.n_wind, spec.n)
    rib = ribbon_points(spec.n_wind, spec.n, spec.rows, spec.cols).reshape(-1, 2)
    cases = [
        (image_to_spiral_resampling(L, spec.n_wind, spec.n), px, sp, 1 - 1 / L),
        (spiral_to_image_resampling(L, spec.n_wind, spec.n), sp, px, 1 - 1 / spec.n_wind),
        (
            ribbon_resampling(spec.n_wind, spec.n, spec.rows, spec.cols),
            sp,
            rib,
            1 - 1 / spec.n_wind,
        ),
    ]
    for res, src, dst, radius in cases:
        a = res.to_scipy()
        assert a.shape == (dst.shape[0], src.shape[0])
        assert np.diff(a.indptr).max() <= 3  # barycentric: at most three non-zeros per row
        inside = np.hypot(dst[:, 0], dst[:, 1]) <= radius
        assert inside.sum() > 0.5 * dst.shape[0]
        np.testing.assert_allclose((a @ affine(src))[inside], affine(dst)[inside], atol=1e-12)
        np.testing.assert_allclose(np.asarray(a.sum(1)).ravel()[inside], 1.0, atol=1e-12)
        assert a.data.min() >= -1e-12  # convex weights


def test_outside_modes() -> None:
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    dst = np.array([[0.25, 0.5], [3.0, 3.0]])
    z = barycentric_resampling(src, dst, outside="zero").to_scipy().toarray()
    n = barycentric_resampling(src, dst, outside="nearest").to_scipy().toarray()
    np.testing.assert_allclose(z[1], 0.0)
    np.testing.assert_allclose(n[1], [0, 0, 0, 1])
    np.testing.assert_allclose(z[0] @ affine(src), affine(dst[:1]))
    # Padding points are zero-valued: their columns are dropped, weights removed.
    p = barycentric_resampling(src, np.array([[0.9, 0.9]]), n_zero_src=1)
    assert p.n_src == 3 and p.to_scipy().toarray()[0].sum() < 1.0


def test_sparse_resample_matches_dense_and_ellpack() -> None:
    spec = SpiralSpec.for_image(16)
    res = ribbon_resampling(spec.n_wind, spec.n, 3, 3)
    x = torch.randn(2, 3, spec.n, dtype=torch.float64)
    dense = torch.as_tensor(res.to_scipy().toarray())
    want = x @ dense.T
    torch.testing.assert_close(sparse_resample(x, res.csr(torch.float64)), want)
    idx, w = res.tensors(torch.float64)
    torch.testing.assert_close(apply_resampling(x, idx, w), want)
    torch.testing.assert_close(res.to_torch_sparse(torch.float64).to_dense(), dense)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        barycentric_resampling(np.zeros((5, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        barycentric_resampling(np.array([[0, 0], [1, 0], [0, np.nan]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="odd"):
        SpiralSpec(n_wind=4, rows=2)
    spec = SpiralSpec.for_image(16)
    with pytest.raises(ValueError, match="last axis"):
        sparse_resample(torch.zeros(1, 7), ribbon_resampling(spec.n_wind, spec.n, 3, 3).csr())


def test_spec_bounds_and_for_image_keeps_the_kernel() -> None:
    assert SpiralSpec(n_wind=1, n_spls=4).n == 4  # the smallest allowed sample count
    with pytest.raises(ValueError, match="n_spls"):
        SpiralSpec(n_wind=1, n_spls=3)
    spec = SpiralSpec.for_image(16, rows=5, cols=7)
    assert (spec.n_wind, spec.rows, spec.cols) == (8, 5, 7)
    with pytest.raises(ValueError, match="odd"):
        ribbon_points(4, 20, rows=2, cols=3)
    with pytest.raises(ValueError, match="odd"):
        ribbon_points(4, 20, rows=3, cols=2)


def test_ribbon_rows_at_the_centre_sample() -> None:
    """Sample ``j = 0`` sits at the origin with angle 0; row ``k`` is shifted ``k`` windings
    outwards, i.e. to ``(k / n_wind, 0)``."""
    n_wind = 4
    pts = ribbon_points(n_wind, 50, rows=3, cols=1)
    np.testing.assert_allclose(pts[:, 0], [[-1 / n_wind, 0], [0, 0], [1 / n_wind, 0]], atol=1e-15)


@pytest.mark.parametrize("n_wind", [1, 3, 10])
def test_pad_ring_is_an_even_circle_one_winding_out(n_wind: int) -> None:
    rad = 1.0 + 1.0 / n_wind
    pts = pad_ring(n_wind)
    m = max(8, math.ceil(2 * math.pi * rad * n_wind))
    assert pts.shape == (m, 2)
    np.testing.assert_allclose(np.hypot(pts[:, 0], pts[:, 1]), rad, rtol=1e-12)
    np.testing.assert_allclose(pts[0], [rad, 0.0], atol=1e-12)
    # equally spaced once around: equal chords 2 rad sin(pi / m), closing back on the start
    chords = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1)
    np.testing.assert_allclose(chords, 2 * rad * math.sin(math.pi / m), rtol=1e-9)
    np.testing.assert_allclose(pad_ring(n_wind, radius=2.5)[0], [2.5, 0.0], atol=1e-12)


def test_sparse_resample_casts_a_matrix_of_another_dtype() -> None:
    """A float32 CSR pair applied to float64 values: the matrix is cast to the values' dtype
    (forward and backward), so the result is the float64 product with the float32-rounded
    weights, not a float32 product."""
    spec = SpiralSpec.for_image(12)
    res = ribbon_resampling(spec.n_wind, spec.n, 3, 3)
    a32 = res.csr()  # default float32
    assert a32.val.dtype == torch.float32 and a32.val_t.dtype == torch.float32
    assert res.csr(torch.float64).val.dtype == torch.float64
    for name in ("crow", "col", "crow_t", "col_t"):
        assert getattr(a32, name).dtype == torch.long, name
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, spec.n, generator=g, dtype=torch.float64, requires_grad=True)
    dense = torch.as_tensor(res.to_scipy().toarray()).float().double()  # the stored weights
    y = sparse_resample(x, a32)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, x @ dense.T, rtol=1e-13, atol=1e-13)
    up = torch.randn(2, dense.shape[0], generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, up)
    torch.testing.assert_close(grad, up @ dense, rtol=1e-13, atol=1e-13)


def test_resampling_arrays_and_point_checks() -> None:
    src = np.array([[0, 0], [2, 0], [0, 2], [2, 2]])  # integer coordinates
    dst = np.array([[1, 1], [0.5, 1.5]])
    r = barycentric_resampling(src, dst)
    assert r.index.dtype == np.int64 and r.weight.dtype == np.float64
    rf = barycentric_resampling(src.astype(np.float64), dst)
    np.testing.assert_array_equal(r.index, rf.index)
    np.testing.assert_array_equal(r.weight, rf.weight)
    np.testing.assert_allclose(r.to_scipy() @ affine(src.astype(float)), affine(dst))
    with pytest.raises(ValueError, match=r"^dst must have shape"):
        barycentric_resampling(src, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^src must have shape"):
        barycentric_resampling(np.zeros((4, 3)), dst)
