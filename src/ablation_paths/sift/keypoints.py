"""SIFT keypoint detection in the layered DoG scale space (thesis 4.1.2).

Keypoints are the local extrema of the greyscale DoG stack in ``(x, y, sigma)`` (3x3x3
neighbourhoods, each DoG layer compared with its two sigma-neighbours resampled to its own
resolution), refined to sub-pixel / sub-scale accuracy with the quadratic (second-order Taylor)
fit of Brown & Lowe, and filtered by a contrast threshold and Lowe's edge-response test. The
thresholds follow OpenCV's conventions so that results are directly comparable: a keypoint is kept
when ``|D(x_hat)| * rho >= contrast_threshold`` for greyscale values in ``[0, 1]`` and when the
principal-curvature ratio is below ``edge_threshold``.

Keypoint coordinates are in original pixels (pixel centres at integers); ``sigma`` is on the same
log axis as the layers' representative sigmas, so a keypoint found in the middle of DoG layer ``j``
has exactly that layer's sigma.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ablation_paths.sift.scale_space import ScaleSpace, resample

__all__ = ["Keypoints", "detect_keypoints", "luma"]

_LUMA = (0.299, 0.587, 0.114)


@dataclass
class Keypoints:
    """Keypoints ``kappa_i = (x_i, y_i, sigma_i)`` (thesis 4.1.2), all ``[K]`` float64 numpy arrays.

    Attributes:
        x, y: position in original pixels (column, row).
        sigma: scale in original pixels.
        response: refined DoG value ``D(x_hat)`` (signed contrast; ``> 0`` for bright blobs).
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    response: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def as_array(self) -> np.ndarray:
        """``[K, 3]`` array of ``(x, y, sigma)``."""
        return np.stack([self.x, self.y, self.sigma], axis=1)

    def select(self, idx: np.ndarray) -> Keypoints:
        return Keypoints(self.x[idx], self.y[idx], self.sigma[idx], self.response[idx])


def luma(bands: Tensor) -> Tensor:
    """Greyscale reduction ``[C, h, w] -> [h, w]``: ITU-R 601 luma for RGB, the channel itself for
    one channel, the channel mean otherwise."""
    if bands.shape[0] == 3:
        w = torch.tensor(_LUMA, dtype=bands.dtype, device=bands.device)
        return torch.einsum("c,chw->hw", w, bands)
    return bands.mean(0)


def _stack(space: ScaleSpace, grey: list[Tensor], layer: int) -> np.ndarray:
    """``[3, h, w]`` float64 stack of layers ``layer - 1, layer, layer + 1`` on ``layer``'s grid."""
    size = space.level_of(layer).size
    sl = [resample(grey[j][None], size)[0] for j in (layer - 1, layer, layer + 1)]
    return torch.stack(sl).to(torch.float64).cpu().numpy()


def _derivatives(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ``[n, 3]`` and Hessian ``[n, 3, 3]`` in (x, y, s) by central differences from
    cubes ``[n, 3(s), 3(y), 3(x)]``."""
    c = cube[:, 1, 1, 1]
    dx = (cube[:, 1, 1, 2] - cube[:, 1, 1, 0]) / 2
    dy = (cube[:, 1, 2, 1] - cube[:, 1, 0, 1]) / 2
    ds = (cube[:, 2, 1, 1] - cube[:, 0, 1, 1]) / 2
    dxx = cube[:, 1, 1, 2] + cube[:, 1, 1, 0] - 2 * c
    dyy = cube[:, 1, 2, 1] + cube[:, 1, 0, 1] - 2 * c
    dss = cube[:, 2, 1, 1] + cube[:, 0, 1, 1] - 2 * c
    dxy = (cube[:, 1, 2, 2] - cube[:, 1, 2, 0] - cube[:, 1, 0, 2] + cube[:, 1, 0, 0]) / 4
    dxs = (cube[:, 2, 1, 2] - cube[:, 2, 1, 0] - cube[:, 0, 1, 2] + cube[:, 0, 1, 0]) / 4
    dys = (cube[:, 2, 2, 1] - cube[:, 2, 0, 1] - cube[:, 0, 2, 1] + cube[:, 0, 0, 1]) / 4
    g = np.stack([dx, dy, ds], axis=1)
    hess = np.stack(
        [
            np.stack([dxx, dxy, dxs], axis=1),
            np.stack([dxy, dyy, dys], axis=1),
            np.stack([dxs, dys, dss], axis=1),
        ],
        axis=1,
    )
    return g, hess


@dataclass
class _Stacks:
    """Lazily built, cached :func:`_stack` of the greyscale DoG layers ``grey`` of ``space``."""

    space: ScaleSpace
    grey: list[Tensor]
    cache: dict[int, np.ndarray] = field(default_factory=dict)

    def __call__(self, layer: int) -> np.ndarray:
        """``[3, h, w]`` float64 stack of layers ``layer - 1, layer, layer + 1``."""
        if layer not in self.cache:
            self.cache[layer] = _stack(self.space, self.grey, layer)
        return self.cache[layer]


@dataclass
class _Candidates:
    """``n`` extremum candidates during Brown-Lowe refinement (all numpy arrays, updated in place).

    ``lay``, ``ys``, ``xs``: ``[n]`` int DoG layer and pixel position on that layer's level;
    ``active``: not lost; ``done``: converged; ``offset`` ``[n, 3]``: the last quadratic fit's
    offset in (x, y, s); ``value`` ``[n]``: the DoG value at the candidate; ``grad`` ``[n, 3]``
    and ``hess`` ``[n, 3, 3]``: derivatives there.
    """

    lay: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    active: np.ndarray
    done: np.ndarray
    offset: np.ndarray
    value: np.ndarray
    grad: np.ndarray
    hess: np.ndarray

    @classmethod
    def start(cls, lay: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> _Candidates:
        """Candidates at ``(lay, ys, xs)``, all active, none converged, no fit yet."""
        n = lay.shape[0]
        return cls(
            lay=lay,
            ys=ys,
            xs=xs,
            active=np.ones(n, dtype=bool),
            done=np.zeros(n, dtype=bool),
            offset=np.zeros((n, 3)),
            value=np.zeros(n),
            grad=np.zeros((n, 3)),
            hess=np.zeros((n, 3, 3)),
        )


def _max3x3(a: np.ndarray) -> np.ndarray:
    """Maximum over each pixel's 3x3 neighbourhood of ``a`` ``[h, w]`` (the edge clipped, as
    ``max_pool2d(a, 3, 1, 1)``), as two separable passes of shifted maxima."""
    m = a.copy()
    np.maximum(m[:, 1:], a[:, :-1], out=m[:, 1:])
    np.maximum(m[:, :-1], a[:, 1:], out=m[:, :-1])
    out = m.copy()
    np.maximum(out[1:], m[:-1], out=out[1:])
    np.maximum(out[:-1], m[1:], out=out[:-1])
    return out


def _layer_extrema(st: np.ndarray, border: int, pre: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and columns of the 3x3x3 extrema of the middle layer of ``st`` ``[3, h, w]``.

    An extremum needs ``|D| > pre`` and at least ``border`` pixels to the edge; ``None`` if the
    level is too small to have such pixels.
    """
    h, w = st.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        return None
    mx = _max3x3(st.max(0))
    mn = -_max3x3(-st.min(0))
    c = st[1]
    is_ext = ((c >= mx) & (c > pre)) | ((c <= mn) & (c < -pre))
    is_ext[:border] = False
    is_ext[h - border :] = False
    is_ext[:, :border] = False
    is_ext[:, w - border :] = False
    yy, xx = np.nonzero(is_ext)
    return yy, xx


def _find_candidates(stacks: _Stacks, layers: range, border: int, pre: float) -> _Candidates | None:
    """DoG extrema on the candidate ``layers`` as :class:`_Candidates`; ``None`` if none."""
    cand_l, cand_y, cand_x = [], [], []
    for j in layers:
        found = _layer_extrema(stacks(j), border, pre)
        if found is None:
            continue
        yy, xx = found
        cand_l.append(np.full(yy.size, j))
        cand_y.append(yy)
        cand_x.append(xx)
    if not cand_l:
        return None
    lay = np.concatenate(cand_l)
    ys = np.concatenate(cand_y).astype(np.int64)
    xs = np.concatenate(cand_x).astype(np.int64)
    return _Candidates.start(lay, ys, xs)


def _fit(c: _Candidates, todo: np.ndarray, stacks: _Stacks) -> None:
    """Quadratic (Taylor) fit at candidates ``todo``: store derivatives, value and offset.

    A singular Hessian gives an infinite offset (the candidate is then lost).
    """
    offs = np.arange(-1, 2)
    for j in np.unique(c.lay[todo]):
        sel = todo[c.lay[todo] == j]
        st = stacks(int(j))
        cube = st[
            :,
            c.ys[sel][:, None, None] + offs[None, :, None],
            c.xs[sel][:, None, None] + offs[None, None, :],
        ].transpose(1, 0, 2, 3)
        g, hm = _derivatives(cube)
        try:
            off = -np.linalg.solve(hm, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            det = np.linalg.det(hm)
            ok = np.abs(det) > 1e-300
            off = np.full_like(g, np.inf)
            off[ok] = -np.linalg.solve(hm[ok], g[ok][..., None])[..., 0]
        c.grad[sel], c.hess[sel], c.offset[sel], c.value[sel] = g, hm, off, cube[:, 1, 1, 1]


def _settle(c: _Candidates, todo: np.ndarray) -> np.ndarray:
    """Mark candidates ``todo`` converged (offset below half a step) or lost (non-finite offset).

    Returns the indices of the others, which must move.
    """
    o = c.offset[todo]
    finite = np.isfinite(o).all(1)
    conv = finite & (np.abs(o) < 0.5).all(1)
    c.done[todo[conv]] = True
    move = todo[finite & ~conv]
    c.active[todo[~finite]] = False
    return move


def _move(c: _Candidates, move: np.ndarray, space: ScaleSpace, layers: range, border: int) -> None:
    """Move candidates ``move`` by their rounded offsets, possibly to another layer's grid.

    Candidates that leave the candidate ``layers``, come within ``border`` pixels of the edge or
    have absurd offsets are lost.
    """
    hh, ww = space.image_size
    step = np.round(c.offset[move]).astype(np.int64)
    too_far = (np.abs(c.offset[move]) > 1e6).any(1)
    new_l = c.lay[move] + np.where(too_far, 0, step[:, 2])
    # positions in original pixels, then in the (possibly different) new layer's grid
    fx = np.empty(move.size)
    fy = np.empty(move.size)
    for k, m in enumerate(move):
        sz = space.level_of(int(c.lay[m])).size
        fx[k] = (c.xs[m] + step[k, 0] + 0.5) * (ww / sz[1]) - 0.5
        fy[k] = (c.ys[m] + step[k, 1] + 0.5) * (hh / sz[0]) - 0.5
    ok = (~too_far) & (new_l >= layers[0]) & (new_l <= layers[-1])
    for k, m in enumerate(move):
        if not ok[k]:
            c.active[m] = False
            continue
        sz = space.level_of(int(new_l[k])).size
        nx = int(round((fx[k] + 0.5) * (sz[1] / ww) - 0.5))
        ny = int(round((fy[k] + 0.5) * (sz[0] / hh) - 0.5))
        if not (border <= nx < sz[1] - border and border <= ny < sz[0] - border):
            c.active[m] = False
            continue
        c.lay[m], c.xs[m], c.ys[m] = new_l[k], nx, ny


def _refine(
    c: _Candidates, stacks: _Stacks, layers: range, border: int, max_iterations: int
) -> None:
    """Brown-Lowe relocation: up to ``max_iterations`` rounds of fit, settle and move."""
    for _ in range(max_iterations):
        todo = np.nonzero(c.active & ~c.done)[0]
        if todo.size == 0:
            break
        _fit(c, todo, stacks)
        move = _settle(c, todo)
        if move.size:
            _move(c, move, stacks.space, layers, border)


def _accept(
    c: _Candidates, space: ScaleSpace, contrast_threshold: float, edge_threshold: float
) -> Keypoints:
    """Keypoints of the converged candidates passing the contrast and edge tests.

    Positions and sigmas in original pixels, sorted by decreasing ``|response|`` (not merged).
    """
    rho = space.scales_per_octave
    hh, ww = space.image_size
    keep = c.done & c.active
    o, g, hm = c.offset[keep], c.grad[keep], c.hess[keep]
    contrast = c.value[keep] + 0.5 * (g * o).sum(1)
    tr = hm[:, 0, 0] + hm[:, 1, 1]
    det = hm[:, 0, 0] * hm[:, 1, 1] - hm[:, 0, 1] ** 2
    r = edge_threshold
    strong = np.abs(contrast) * rho >= contrast_threshold
    good = strong & (det > 0) & (tr * tr * r < (r + 1) ** 2 * det)
    idx = np.nonzero(keep)[0][good]
    o, contrast = o[good], contrast[good]
    sizes = np.array([space.level_of(int(j)).size for j in c.lay[idx]]).reshape(-1, 2)
    x = (c.xs[idx] + o[:, 0] + 0.5) * (ww / sizes[:, 1]) - 0.5
    y = (c.ys[idx] + o[:, 1] + 0.5) * (hh / sizes[:, 0]) - 0.5
    # layer j (DoG band between sigma_{j-1} and sigma_j) has representative sigma
    # sigma_min * 2**((j - 1 + 0.5) / rho); the refined scale moves along that log axis.
    sigma = space.sigma_min * 2.0 ** ((c.lay[idx] - 0.5 + o[:, 2]) / rho)
    order = np.argsort(-np.abs(contrast), kind="stable")
    return Keypoints(x[order], y[order], sigma[order], contrast[order])


def detect_keypoints(
    space: ScaleSpace,
    contrast_threshold: float = 0.04,
    edge_threshold: float = 10.0,
    border: int = 2,
    max_iterations: int = 5,
    max_keypoints: int | None = None,
) -> Keypoints:
    """Detect refined DoG extrema of the greyscale scale space.

    Args:
        space: scale space of the image (:func:`~ablation_paths.sift.scale_space.scale_space`).
        contrast_threshold: keep ``|D(x_hat)| * rho >= contrast_threshold`` (OpenCV convention,
            greyscale in ``[0, 1]``); candidates need ``|D| > contrast_threshold / (2 rho)`` first.
        edge_threshold: Lowe's ``r``; reject ``tr(H)^2 / det(H) >= (r + 1)^2 / r``.
        border: candidates closer than this many pixels of their level to the image edge are
            ignored (the symmetric boundary makes spurious extrema there).
        max_iterations: Brown-Lowe relocation steps.
        max_keypoints: keep at most this many, the strongest ``|response|`` first.

    Candidate layers are the DoG layers whose two sigma-neighbours are DoG-like (layers ``2..M-1``
    of the partition; see :mod:`~ablation_paths.sift.scale_space`). Returns keypoints sorted by
    decreasing ``|response|``; exact duplicates (converged to the same point) are merged.
    """
    rho = space.scales_per_octave
    stacks = _Stacks(space, [luma(b) for b in space.bands])
    # candidate DoG layers (need DoG neighbours on both sides)
    layers = range(2, len(space.layers) - 3 + 1)
    c = _find_candidates(stacks, layers, border, 0.5 * contrast_threshold / rho)
    if c is None:
        empty = np.zeros(0)
        return Keypoints(empty, empty, empty, empty)
    _refine(c, stacks, layers, border, max_iterations)
    kp = _merge_duplicates(_accept(c, space, contrast_threshold, edge_threshold), rho)
    if max_keypoints is not None and len(kp) > max_keypoints:
        kp = kp.select(np.arange(max_keypoints))
    return kp


def _merge_duplicates(kp: Keypoints, rho: int) -> Keypoints:
    """Drop keypoints within half a pixel and a sixth of a scale step of a stronger one."""
    if len(kp) < 2:
        return kp
    pts = np.stack([kp.x, kp.y, 3.0 * rho * np.log2(kp.sigma)], axis=1)
    pairs = cKDTree(pts).query_pairs(0.5, output_type="ndarray")
    if pairs.size == 0:
        return kp
    drop = np.zeros(len(kp), dtype=bool)
    for a, b in sorted(map(tuple, pairs)):
        if not drop[a]:
            drop[b] = True  # sorted by strength: a < b means a is stronger
    return kp.select(np.nonzero(~drop)[0])


def default_keypoint(space: ScaleSpace) -> Keypoints:
    """A single keypoint at the image centre on the coarsest DoG layer, used when detection finds
    nothing (e.g. a constant image): the whole image becomes one feature."""
    hh, ww = space.image_size
    j = len(space.layers) - 2
    s = space.layers[j].sigma
    one = np.ones(1)
    return Keypoints(one * (ww - 1) / 2, one * (hh - 1) / 2, one * s, one * 0.0)
