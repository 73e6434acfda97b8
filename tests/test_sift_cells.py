"""Feature cells: Voronoi assignment (eq. 4.18-4.19), smoothed indicators (eq. 4.27), soft cutoff
(eq. 4.37) and mass redistribution (eq. 4.39, Lemma 10)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ablation_paths.sift.cells import MIN_MASS, assign_cells, blur_cells, hard_cells, sparsify


def _random_keypoints(k: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(0, size - 1, k), rng.uniform(0, size - 1, k), rng.exponential(3.0, k) + 1],
        axis=1,
    )


@pytest.mark.parametrize("eta", [1.0, 4.0])
def test_voronoi_assignment_matches_brute_force_anisotropic_metric(eta):
    kp = _random_keypoints(30, 40)
    tree = cKDTree(np.stack([kp[:, 0], kp[:, 1], eta * kp[:, 2]], 1))
    sigma = 2.5
    labels = assign_cells(tree, (20, 20), (40, 40), sigma, eta)  # a half-resolution layer
    ys = (np.arange(20) + 0.5) * 2 - 0.5
    gy, gx = np.meshgrid(ys, ys, indexing="ij")
    d2 = (
        (gx[..., None] - kp[:, 0]) ** 2
        + (gy[..., None] - kp[:, 1]) ** 2
        + eta**2 * (sigma - kp[:, 2]) ** 2
    )
    np.testing.assert_array_equal(labels, d2.argmin(-1))


@pytest.mark.parametrize("block", [2, 4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_shortcut_equals_brute_force_on_large_grids(block, seed):
    # the convex-cell shortcut must give every voxel its true owner, on non-square grids whose
    # sides are not multiples of the block
    rng = np.random.default_rng(seed)
    h, w, eta, sigma = 57, 83, 4.0, 1.7
    kp = np.stack(
        [rng.uniform(0, w - 1, 60), rng.uniform(0, h - 1, 60), rng.exponential(2.0, 60) + 0.8], 1
    )
    tree = cKDTree(np.stack([kp[:, 0], kp[:, 1], eta * kp[:, 2]], 1))
    labels = assign_cells(tree, (h, w), (h, w), sigma, eta, block=block)
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    d2 = (
        (gx[..., None] - kp[:, 0]) ** 2
        + (gy[..., None] - kp[:, 1]) ** 2
        + eta**2 * (sigma - kp[:, 2]) ** 2
    )
    np.testing.assert_array_equal(labels, d2.argmin(-1))
    np.testing.assert_array_equal(labels, assign_cells(tree, (h, w), (h, w), sigma, eta, 1))


@pytest.mark.parametrize("candidates", [1, 3, 16])
def test_mixed_blocks_are_exact_with_any_candidate_count(monkeypatch, candidates):
    # mixed blocks take each voxel's owner among the block centre's nearest keypoints within
    # d_min + 2 delta, or query voxel by voxel when the ball may hold more: with 1 or 3
    # candidates most blocks fall back, with 16 few do; small chunks exercise the chunk loop
    from ablation_paths.sift import cells

    monkeypatch.setattr(cells, "CANDIDATES", candidates)
    monkeypatch.setattr(cells, "VOXEL_CHUNK", 37)
    rng = np.random.default_rng(candidates)
    h, w, eta, sigma = 64, 72, 4.0, 1.3
    kp = np.stack(
        [rng.uniform(0, w - 1, 90), rng.uniform(0, h - 1, 90), rng.exponential(1.0, 90) + 0.8], 1
    )
    tree = cKDTree(np.stack([kp[:, 0], kp[:, 1], eta * kp[:, 2]], 1))
    labels = assign_cells(tree, (h // 2, w // 2), (h, w), sigma, eta, block=4)
    ys, xs = (np.arange(h // 2) + 0.5) * 2 - 0.5, (np.arange(w // 2) + 0.5) * 2 - 0.5
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    d2 = (
        (gx[..., None] - kp[:, 0]) ** 2
        + (gy[..., None] - kp[:, 1]) ** 2
        + eta**2 * (sigma - kp[:, 2]) ** 2
    )
    np.testing.assert_array_equal(labels, d2.argmin(-1))


def test_larger_eta_prefers_keypoints_of_the_layer_scale():
    # two keypoints at the same place, different scales: each layer goes to the nearer scale
    kp = np.array([[10.0, 10.0, 1.0], [30.0, 30.0, 20.0]])
    for eta, expect_far in [(0.01, 0), (4.0, 1)]:
        tree = cKDTree(np.stack([kp[:, 0], kp[:, 1], eta * kp[:, 2]], 1))
        labels = assign_cells(tree, (40, 40), (40, 40), 20.0, eta)
        assert labels[10, 10] == (1 if expect_far else 0)


@pytest.mark.parametrize("sigma", [(0.7, 0.7), (3.0, 2.0), (30.0, 30.0)])
def test_blurred_cells_form_a_partition_of_unity(sigma):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=(17, 23))
    chi = blur_cells(labels, 8, sigma)
    assert chi.shape == (17 * 23, 8)
    np.testing.assert_allclose(np.asarray(chi.sum(1)).ravel(), 1.0, atol=1e-12)
    assert chi.data.min() >= 0
    # unused features stay empty; a blurred cell is spread beyond its hard support
    assert chi[:, 6:].nnz == 0
    hard = hard_cells(labels, 8)
    assert chi.nnz > hard.nnz


def test_soft_cutoff_and_redistribution():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, size=(20, 20))
    chi = blur_cells(labels, 5, (2.0, 2.0))
    for s in [0.0, 0.01, 0.2]:
        out = sparsify(chi, s)
        # Lemma 10: rows sum to one again, zeros stay zeros, sparsity grows with s
        np.testing.assert_allclose(np.asarray(out.sum(1)).ravel(), 1.0, atol=1e-12)
        assert out.nnz <= chi.nnz
        support = sp.csr_matrix(chi.multiply(chi > s))
        assert (out != 0).sum() == support.nnz
    assert sparsify(chi, 0.2).nnz < sparsify(chi, 0.01).nnz
    # order of importance within a voxel is preserved (redistribution proportional to chi^s)
    a, b = chi.toarray(), sparsify(chi, 0.1).toarray()
    for r in range(0, 400, 37):
        keep = b[r] > 0
        assert np.array_equal(np.argsort(a[r][keep]), np.argsort(b[r][keep]))


def test_redistribution_guard_for_vanishing_mass():
    chi = sp.csr_matrix(np.array([[0.5, 0.5], [0.0005, 0.0]]))
    out = sparsify(chi, 0.0).toarray()
    np.testing.assert_allclose(out[0], [0.5, 0.5])
    # m = 5e-4 < 1e-3: factor 1 + (1 - m) / 1e-3, the row sums to about m / 1e-3 < 1: voxels with
    # almost no mass fade out instead of being blown up to 1
    np.testing.assert_allclose(out[1, 0], 0.0005 * (1 + (1 - 0.0005) / MIN_MASS))
    with pytest.raises(ValueError, match="cutoff"):
        sparsify(chi, 1.0)


@pytest.mark.parametrize("cutoff", [None, 0.0, 0.05])
def test_chunked_vertical_pass_equals_one_pass(monkeypatch, cutoff):
    import ablation_paths.sift.cells as cells

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 9, size=(31, 45))
    labels[:, 20:] = 3  # a large cell, so chunks see different feature sets
    one = blur_cells(labels, 9, (2.5, 1.5))
    if cutoff is not None:
        one = sparsify(one, cutoff)
    monkeypatch.setattr(cells, "CHUNK_ENTRIES", 500)  # many column chunks
    many = blur_cells(labels, 9, (2.5, 1.5), cutoff=cutoff)
    np.testing.assert_allclose(many.toarray(), one.toarray(), atol=1e-14)


def _reference_cells(labels, n_features, sigma, cutoff):
    """Eq. 4.27, 4.37, 4.39 written out densely: SciPy's reflect-boundary blur of each one-hot
    indicator, then the soft cutoff and the redistribution per voxel."""
    from scipy.ndimage import gaussian_filter

    chi = np.stack(
        [
            gaussian_filter((labels == i).astype(float), sigma, mode="reflect", truncate=4.0)
            for i in range(n_features)
        ],
        axis=-1,
    ).reshape(labels.size, n_features)
    if cutoff is None:
        return chi
    chi = np.where(chi > cutoff, (chi - cutoff) / (1 - cutoff), 0.0)
    m = chi.sum(1, keepdims=True)
    return chi * (1 + (1 - m) / np.maximum(m, MIN_MASS))


@pytest.mark.parametrize("route", ["dense", "sparse"])
@pytest.mark.parametrize("cutoff", [None, 0.0, 0.05])
@pytest.mark.parametrize("sigma", [(1.2, 0.8), (3.0, 2.0), (40.0, 25.0)])
def test_both_blur_routes_equal_scipy_per_cell(monkeypatch, route, cutoff, sigma):
    # the dense route (per-cell dense blurs, cutoff on the stack) and the sparse route (sparse
    # products, then sparsify) against SciPy's gaussian_filter of every indicator; also in
    # float32; kernels wider than the grid (40 px on 19 x 26) fold at the boundaries
    from ablation_paths.sift import cells

    if route == "dense":
        monkeypatch.setattr(cells, "_sparse_cost", lambda *a: np.inf)
    else:
        monkeypatch.setattr(cells, "DENSE_CHUNK", 0)
    rng = np.random.default_rng(5)
    labels = rng.integers(1, 7, size=(19, 26))
    labels[:9, :12] = 2
    want = _reference_cells(labels, 8, sigma, cutoff)
    for dtype, tol in [(np.float64, 1e-12), (np.float32, 2e-6)]:
        chi = blur_cells(labels, 8, sigma, cutoff=cutoff, dtype=dtype)
        assert chi.shape == (19 * 26, 8) and chi.dtype == dtype
        np.testing.assert_allclose(chi.toarray(), want, atol=tol)
        assert chi.nnz == np.count_nonzero(want)  # no stored zeros, nothing below the cutoff
        assert chi.has_sorted_indices or route == "sparse"


def test_blur_route_choice_follows_the_cost_model():
    # few cells and a wide (folded) kernel: the dense route; many cells and a small kernel: sparse
    from ablation_paths.sift import cells

    assert cells._dense_cost(4, (175, 250), (90.0, 90.0), 4.0) < cells._sparse_cost(
        (175, 250), (90.0, 90.0), 4.0
    )
    assert cells._dense_cost(1000, (700, 1000), (2.0, 2.0), 4.0) > cells._sparse_cost(
        (700, 1000), (2.0, 2.0), 4.0
    )
