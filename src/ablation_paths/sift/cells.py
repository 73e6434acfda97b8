"""Feature cells: anisotropic Voronoi assignment, smoothed indicators and sparsification
(thesis 4.1.3B-C, 4.2.3).

For every layer ``l`` of the scale space and every voxel centre ``(r, sigma_l)`` of that layer's
grid, the owning feature is the nearest keypoint in the anisotropic distance of eq. 4.18,
``d^2 = |r - r_i|^2 + eta^2 (sigma_l - sigma_i)^2`` (a k-d tree over ``(x, y, eta * sigma)``). The
cell indicators ``chi_{i,l}`` are then blurred with the Gaussian of the layer's own sigma
(eq. 4.27), which makes them a partition of unity ``sum_i chi~_{i,l} = 1``; a soft cutoff
(eq. 4.37) makes them sparse and a mass redistribution (eq. 4.39, denominator guarded by
``max(m, 1e-3)``) restores the partition of unity (Lemma 10).

Everything here is sparse (SciPy CSR, rows = voxels of one layer in row-major order, columns =
features): memory scales with the number of (voxel, feature) pairs that matter, not with
``voxels x K``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

from ablation_paths.filters import gaussian_blur, gaussian_operator
from ablation_paths.sift.scale_space import level_coords

__all__ = ["assign_cells", "blur_cells", "hard_cells", "sparsify"]

MIN_MASS = 1e-3
"""Guard of the redistribution denominator, ``max(m, 1e-3)`` (thesis 4.2.3B)."""


def _query(tree: cKDTree, ys: np.ndarray, xs: np.ndarray, z: float) -> np.ndarray:
    pts = np.stack([xs, ys, np.full(xs.shape, z)], axis=1)
    _, idx = tree.query(pts, k=1)
    return np.asarray(idx, dtype=np.int64)


def assign_cells(
    tree: cKDTree,
    size: tuple[int, int],
    image_size: tuple[int, int],
    sigma: float,
    eta: float,
    block: int = 8,
) -> np.ndarray:
    """Voronoi labels ``[h, w]`` (int64 feature index) of one layer's voxels (eq. 4.18-4.19).

    Args:
        tree: k-d tree over the keypoints' ``(x, y, eta * sigma)``.
        size: ``(h, w)`` of the layer's grid.
        image_size: ``(H, W)`` of the original image (coordinates are in original pixels).
        sigma: the layer's representative sigma.
        eta: weight of the sigma axis.
        block: side of the blocks of the exact shortcut below (``1`` queries every voxel).

    At a fixed layer sigma the cells are those of a power diagram in the image plane
    (``|r - r_i|^2 + c_i`` with ``c_i = eta^2 (sigma - sigma_i)^2``), whose cells are convex. So
    when the four corners of a ``block x block`` block of voxels have one owner, every voxel of the
    block has it; only the other blocks are queried voxel by voxel. Same labels, far fewer
    nearest-neighbour queries on large layers (ties between equidistant keypoints aside).
    """
    h, w = size
    ys_t, xs_t = level_coords(size, image_size)
    ys, xs = ys_t.numpy(), xs_t.numpy()
    z = eta * sigma
    if block < 2 or h < 2 * block or w < 2 * block:
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        return _query(tree, gy.ravel(), gx.ravel(), z).reshape(size)
    ry = np.unique(np.r_[np.arange(0, h, block), h - 1])  # corner rows / columns
    rx = np.unique(np.r_[np.arange(0, w, block), w - 1])
    cy, cx = np.meshgrid(ys[ry], xs[rx], indexing="ij")
    corner = _query(tree, cy.ravel(), cx.ravel(), z).reshape(ry.size, rx.size)
    uniform = (
        (corner[:-1, :-1] == corner[1:, :-1])
        & (corner[:-1, :-1] == corner[:-1, 1:])
        & (corner[:-1, :-1] == corner[1:, 1:])
    )
    by = np.minimum(np.searchsorted(ry, np.arange(h), side="right") - 1, ry.size - 2)
    bx = np.minimum(np.searchsorted(rx, np.arange(w), side="right") - 1, rx.size - 2)
    known = uniform[by[:, None], bx[None, :]]
    labels = corner[by[:, None], bx[None, :]].copy()
    qy, qx = np.nonzero(~known)
    if qy.size:
        span = (ys[ry], xs[rx])
        labels[qy, qx] = _block_owners(tree, span, (by[qy], bx[qx]), ys[qy], xs[qx], z)
    return labels


CANDIDATES = 16
"""Nearest keypoints fetched per mixed block by :func:`_block_owners` (more are rarely needed;
a block that might need more is queried voxel by voxel)."""

VOXEL_CHUNK = 32768
"""Voxels per brute-force chunk in :func:`_block_owners` (bounds its temporaries)."""


def _block_owners(
    tree: cKDTree,
    span: tuple[np.ndarray, np.ndarray],
    blocks: tuple[np.ndarray, np.ndarray],
    ys: np.ndarray,
    xs: np.ndarray,
    z: float,
) -> np.ndarray:
    """Owners of voxels ``(ys, xs)`` (original pixels) in mixed blocks: exact nearest keypoints.

    ``span``: the corner coordinates (rows, columns) of the block grid; ``blocks``: each voxel's
    block (row, column). Block ``b`` has centre ``c`` and half-diagonal ``delta`` (over its
    corners). For a voxel ``r`` of the block, ``|d_i(r) - d_i(c)| <= delta`` (triangle
    inequality in the ``(x, y, eta sigma)`` metric), so its owner ``o`` has
    ``d_o(c) <= d_min(c) + 2 delta``: one query of the :data:`CANDIDATES` nearest keypoints of
    ``c`` per block, then a brute-force argmin over them per voxel. Blocks whose candidate ball
    may hold more keypoints than that are queried voxel by voxel.
    """
    (sy, sx), (vby, vbx) = span, blocks
    ub, inv = np.unique(vby * sx.size + vbx, return_inverse=True)
    ub_y, ub_x = np.divmod(ub, sx.size)
    cy, cx = (sy[ub_y] + sy[ub_y + 1]) / 2, (sx[ub_x] + sx[ub_x + 1]) / 2
    delta = np.hypot(sy[ub_y + 1] - sy[ub_y], sx[ub_x + 1] - sx[ub_x]) / 2
    k = min(CANDIDATES, tree.n)
    dist, idx = tree.query(np.stack([cx, cy, np.full(cx.shape, z)], axis=1), k=k)
    dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
    bound = dist[:, :1] + 2 * delta[:, None] + 1e-9 * (1.0 + dist[:, :1])
    cand = np.where(dist <= bound, idx, -1)  # [n_blocks, k]; -1 = not a candidate
    pts = tree.data[np.maximum(cand, 0)]  # [n_blocks, k, 3]
    pz2 = np.where(cand >= 0, (pts[..., 2] - z) ** 2, np.inf)
    out = np.empty(ys.size, dtype=np.int64)
    for lo in range(0, ys.size, VOXEL_CHUNK):  # [chunk, k] temporaries, not [n_voxels, k]
        b, sl = inv[lo : lo + VOXEL_CHUNK], slice(lo, lo + VOXEL_CHUNK)
        d2 = (pts[b, :, 0] - xs[sl, None]) ** 2 + (pts[b, :, 1] - ys[sl, None]) ** 2 + pz2[b]
        out[sl] = cand[b, np.argmin(d2, axis=1)]
    full = (dist[:, -1] <= bound[:, 0]) if k < tree.n else np.zeros(ub.size, dtype=bool)
    redo = full[inv]  # the ball may hold more than k keypoints
    if redo.any():
        out[redo] = _query(tree, ys[redo], xs[redo], z)
    return out


def hard_cells(labels: np.ndarray, n_features: int) -> sp.csr_matrix:
    """One-hot indicators ``chi`` as CSR ``[h * w, K]`` (eq. 4.22: the hard partition of 4.1.3B)."""
    n = labels.size
    return sp.csr_matrix(
        (np.ones(n), (np.arange(n), labels.ravel())), shape=(n, n_features), dtype=np.float64
    )


def _blur_axis(
    op: sp.csr_matrix,
    axis_idx: np.ndarray,
    other_idx: np.ndarray,
    col: np.ndarray,
    data: np.ndarray,
    n_other: int,
    n_features: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply the 1-D operator ``op`` along one grid axis of sparse entries
    ``(axis_idx, other_idx, feature col) -> data``: one product ``op @ M`` with
    ``M = [n_axis, n_other * K]``, no Kronecker matrices."""
    key = other_idx * n_features + col
    m = sp.csr_matrix((data, (axis_idx, key)), shape=(op.shape[1], n_other * n_features))
    out = (op @ m).tocoo()
    return out.row, out.col // n_features, out.col % n_features, out.data


CHUNK_ENTRIES = 4_000_000
"""Target number of intermediate entries per column chunk of the vertical blur pass."""


def blur_cells(
    labels: np.ndarray,
    n_features: int,
    sigma: tuple[float, float],
    truncate: float = 4.0,
    cutoff: float | None = None,
    dtype: type[np.floating] = np.float64,
) -> sp.csr_matrix:
    """Smoothed indicators ``chi~_{i,l} = gamma_sigma * chi_{i,l}`` (eq. 4.27) as CSR ``[h*w, K]``.

    ``sigma = (sigma_y, sigma_x)`` in pixels of the layer's grid. Uses the same folded-boundary
    Gaussian as the scale space, so each row sums to 1 (partition of unity). With ``cutoff`` the
    result is sparsified (:func:`sparsify`); ``cutoff=None`` returns the plain blur. ``dtype``: of
    the values (float32 halves memory and time; rows then sum to 1 within ~1e-7).

    Two exact routes, whichever :func:`_dense_cost` and :func:`_sparse_cost` predict to be
    cheaper: a dense blur of each cell's indicator (:func:`_blur_cells_dense`, for layers with
    few cells, such as the coarse layers, where the sparse products spend most of their time on
    bookkeeping) or sparse products (:func:`_blur_cells_sparse`).
    """
    h, w = labels.shape
    n_cells = int(np.count_nonzero(np.bincount(labels.ravel(), minlength=1)))
    dense = n_cells * h * w <= DENSE_CHUNK
    if dense and _dense_cost(n_cells, (h, w), sigma, truncate) < _sparse_cost(
        (h, w), sigma, truncate
    ):
        return _blur_cells_dense(labels, n_features, sigma, truncate, cutoff, dtype)
    return _blur_cells_sparse(labels, n_features, sigma, truncate, cutoff, dtype)


def _radius(sigma: float, truncate: float) -> int:
    """Radius of the sampled Gaussian (SciPy's ``int(truncate * sigma + 0.5)``)."""
    return int(truncate * sigma + 0.5)


def _axis_cost(n: int, sigma: float, truncate: float) -> float:
    """Rough CPU nanoseconds per pixel of one dense 1-D blur along an axis of ``n`` pixels:
    ``2r + 1`` shifted additions, or a BLAS product with the folded ``n x n`` matrix."""
    r = _radius(sigma, truncate)
    return 0.03 * n if 2 * r + 1 > n else 0.25 * (2 * r + 1)


def _dense_cost(
    n_cells: int, size: tuple[int, int], sigma: tuple[float, float], truncate: float
) -> float:
    """Predicted nanoseconds per pixel of :func:`_blur_cells_dense` (both axes plus the
    extraction of the non-zeros), measured on one core."""
    ay = _axis_cost(size[0], sigma[0], truncate)
    ax = _axis_cost(size[1], sigma[1], truncate)
    return n_cells * (ay + ax + 4.0)


def _sparse_cost(size: tuple[int, int], sigma: tuple[float, float], truncate: float) -> float:
    """Predicted nanoseconds per pixel of :func:`_blur_cells_sparse` (measured on one core:
    about 130 ns at radius 3, 460 ns at radius 18, more for folded kernels)."""
    r = [min(_radius(s, truncate), n) for s, n in zip(sigma, size, strict=True)]
    return 64.0 + 11.0 * (r[0] + r[1])


DENSE_CHUNK = 4_000_000
"""The dense route of :func:`blur_cells` is taken only when cells x pixels is at most this
(16 MB per stack in float32)."""


def _blur_cells_dense(
    labels: np.ndarray,
    n_features: int,
    sigma: tuple[float, float],
    truncate: float,
    cutoff: float | None,
    dtype: type[np.floating],
) -> sp.csr_matrix:
    """The dense route of :func:`blur_cells`, for layers with few cells: one dense Gaussian blur
    (:func:`~ablation_paths.filters.gaussian_blur`, the scale space's blur) of each cell's
    indicator, stacked ``[n_cells, h*w]``; the cutoff and the redistribution (eq. 4.37, 4.39, as
    in :func:`sparsify`) are applied on the stack, and its non-zeros, pixel by pixel, are the CSR
    entries (rows in order, columns sorted)."""
    h, w = labels.shape
    cells = np.unique(labels)  # sorted: the columns of each row come out sorted
    onehot = torch.from_numpy((labels[None] == cells[:, None, None]).astype(dtype))
    v = gaussian_blur(onehot, sigma, truncate).numpy().reshape(cells.size, h * w).T  # [hw, n]
    if cutoff is not None:
        _check_cutoff(cutoff)
        v = np.where(v > cutoff, (v - cutoff) / (1.0 - cutoff), 0.0).astype(dtype)
        m = v.sum(axis=1, keepdims=True)
        v *= (1.0 + (1.0 - m) / np.maximum(m, MIN_MASS)).astype(dtype)
    pix, k = np.nonzero(v > 0)
    indptr = np.searchsorted(pix, np.arange(h * w + 1))
    return sp.csr_matrix((v[pix, k], cells[k], indptr), shape=(h * w, n_features))


def _blur_cells_sparse(
    labels: np.ndarray,
    n_features: int,
    sigma: tuple[float, float],
    truncate: float = 4.0,
    cutoff: float | None = None,
    dtype: type[np.floating] = np.float64,
) -> sp.csr_matrix:
    """The sparse route of :func:`blur_cells`: two sparse products, horizontal then vertical,
    on the one-hot indicators. The vertical pass runs on column chunks of about
    :data:`CHUNK_ENTRIES` intermediate entries; with ``cutoff`` each chunk is sparsified
    (:func:`sparsify`, which works row by row) before the next, so the unsparsified blur of the
    whole layer is never held at once."""
    h, w = labels.shape
    yy, xx = np.divmod(np.arange(h * w), w)
    lab = labels.ravel()
    ones = np.ones(h * w, dtype=dtype)
    kx = gaussian_operator(w, sigma[1], truncate).astype(dtype)
    ky = gaussian_operator(h, sigma[0], truncate).astype(dtype)
    # horizontal: axis x, other y
    x1, y1, c1, d1 = _blur_axis(kx, xx, yy, lab, ones, h, n_features)
    # vertical: axis y, other x; chunks of whole columns hold whole pixels (rows of the result)
    taps = max(1, ky.nnz // max(h, 1))
    n_chunks = int(min(w, max(1, np.ceil(x1.size * taps / CHUNK_ENTRIES))))
    bounds = np.linspace(0, w, n_chunks + 1).round().astype(np.int64)
    order = np.argsort(x1, kind="stable") if n_chunks > 1 else np.arange(x1.size)
    starts = np.searchsorted(x1[order], bounds)
    parts: list[sp.coo_matrix] = []
    for k in range(n_chunks):
        sel = order[starts[k] : starts[k + 1]]
        x0, xw = int(bounds[k]), int(bounds[k + 1] - bounds[k])
        y2, x2, c2, d2 = _blur_axis(ky, y1[sel], x1[sel] - x0, c1[sel], d1[sel], xw, n_features)
        if n_chunks == 1:
            part = sp.csr_matrix((d2, (y2 * w + x2, c2)), shape=(h * w, n_features))
            return part if cutoff is None else sparsify(part, cutoff)
        # rows of the chunk's own pixels (y, x - x0), mapped back to the layer's rows after
        part = sp.csr_matrix((d2, (y2 * xw + x2, c2)), shape=(h * xw, n_features))
        q = (part if cutoff is None else sparsify(part, cutoff)).tocoo()
        yq, xq = np.divmod(q.row.astype(np.int64), xw)
        parts.append(sp.coo_matrix((q.data, (yq * w + xq + x0, q.col)), shape=(h * w, n_features)))
    # the chunks hold disjoint rows (pixels): concatenating their entries is their sum
    return sp.csr_matrix(
        (
            np.concatenate([q.data for q in parts]),
            (np.concatenate([q.row for q in parts]), np.concatenate([q.col for q in parts])),
        ),
        shape=(h * w, n_features),
    )


def _check_cutoff(cutoff: float) -> None:
    if not 0.0 <= cutoff < 1.0:
        raise ValueError(f"cutoff must be in [0, 1), got {cutoff}")


def sparsify(chi: sp.csr_matrix, cutoff: float) -> sp.csr_matrix:
    """Soft cutoff (eq. 4.37) and mass redistribution (eq. 4.39) of a partition of unity.

    ``chi^s = (chi - s) / (1 - s)`` where ``chi > s``, else 0; then every row is rescaled by
    ``1 + (1 - m) / max(m, 1e-3)`` with ``m`` the row sum of ``chi^s``, which makes the rows sum
    to 1 again wherever ``m >= 1e-3`` (Lemma 10) and keeps the sparsity pattern. ``cutoff = 0`` only
    removes exact zeros.
    """
    _check_cutoff(cutoff)
    out = chi.tocsr(copy=True)
    if cutoff > 0:
        d = out.data
        out.data = np.where(d > cutoff, (d - cutoff) / (1.0 - cutoff), 0.0)
    out.eliminate_zeros()
    m = np.asarray(out.sum(axis=1)).ravel()
    scale = 1.0 + (1.0 - m) / np.maximum(m, MIN_MASS)
    out.data *= np.repeat(scale, np.diff(out.indptr))
    return out
