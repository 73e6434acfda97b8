"""Ablation paths and their projections onto the path axioms (thesis 2.2, 2.6.2).

A path is stored as its interior time samples: a tensor ``[T, *mask_shape]`` holding
``phi(t_k)`` for ``t_k = k / (T + 1)``, ``k = 1..T`` (thesis eq. 2.30). The ends ``phi(0) = 0``
and ``phi(1) = 1`` are implicit and read-only. Values are in ``[0, 1]`` with ``1`` meaning
"removed" (replaced by the baseline).

The three axioms of Definition 1 are

* boundary conditions: ``phi(0) = 0`` and ``phi(1) = 1`` (implicit in the storage),
* monotonicity: ``phi(t1) <= phi(t2)`` pixel-wise for ``t1 <= t2``,
* constant speed: the (weighted) mean of ``phi(t)`` over the mask equals ``t``.

:func:`project` restores all three after an unconstrained update (Algorithm 2, lines 12-15).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "path_times",
    "affine_path",
    "resample_path",
    "monotonize",
    "clamp_path",
    "reparametrize_constant_speed",
    "project",
    "path_masses",
    "saturation",
    "check_axioms",
]


def path_times(n_steps: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Interior times ``t_k = k / (T + 1)``, ``k = 1..T`` (thesis eq. 2.30); shape ``[T]``."""
    if n_steps < 1:
        raise ValueError(f"a path needs at least one interior time sample, got n_steps={n_steps}")
    return torch.arange(1, n_steps + 1, dtype=dtype, device=device) / (n_steps + 1)


def affine_path(
    n_steps: int,
    mask_shape: tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """The affine start path ``phi(t, r) = t`` (thesis eq. 2.17); shape ``[T, *mask_shape]``."""
    t = path_times(n_steps, dtype=dtype, device=device)
    return t.view(-1, *([1] * len(mask_shape))).expand(n_steps, *mask_shape).clone()


def resample_path(path: Tensor, n_steps: int) -> Tensor:
    """The path ``[T, *mask_shape]`` at ``n_steps`` interior times, piecewise linear in ``t``.

    The stored samples at ``t_k = k / (T + 1)`` and the fixed ends ``phi(0) = 0``,
    ``phi(1) = 1`` are joined by straight segments and read at ``t'_j = j / (n_steps + 1)``.
    Linear interpolation keeps the boundary conditions and monotonicity, and keeps constant
    speed exactly (the mass is linear in ``phi``, so it interpolates ``t`` linearly): a valid
    path stays valid. Used by the coarse-to-fine schedule of the optimiser. Returns
    ``[n_steps, *mask_shape]``.
    """
    if n_steps < 1:
        raise ValueError(f"a path needs at least one interior time sample, got n_steps={n_steps}")
    t_count = path.shape[0]
    if n_steps == t_count:
        return path.clone()
    zero = torch.zeros_like(path[:1])
    full = torch.cat([zero, path, torch.ones_like(zero)])  # samples at k / (T + 1), k = 0..T+1
    pos = path_times(n_steps, dtype=torch.float64) * (t_count + 1)  # fractional sample index
    lower = pos.floor().long().clamp(max=t_count)
    frac = (pos - lower).to(path.dtype).to(path.device).view(-1, *([1] * (path.dim() - 1)))
    lower = lower.to(path.device)
    return full[lower] * (1.0 - frac) + full[lower + 1] * frac


def _range_tables(p: Tensor) -> tuple[Tensor, Tensor]:
    """Sparse tables of window max / min for series ``p [N, T]`` (time last).

    Returns two tensors ``[N, L * T]``: entry ``j * T + i`` holds the max / min of
    ``p[:, i : i + 2**j]`` (windows clipped at the end), so any range extremum is the extremum
    of two table entries.
    """
    hi_levels = [p]
    lo_levels = [p]
    width = 1
    n_t = p.shape[1]
    while width * 2 <= n_t:
        hi_prev, lo_prev = hi_levels[-1], lo_levels[-1]
        hi_next, lo_next = hi_prev.clone(), lo_prev.clone()
        hi_next[:, : n_t - width] = torch.maximum(hi_prev[:, : n_t - width], hi_prev[:, width:])
        lo_next[:, : n_t - width] = torch.minimum(lo_prev[:, : n_t - width], lo_prev[:, width:])
        hi_levels.append(hi_next)
        lo_levels.append(lo_next)
        width *= 2
    return torch.cat(hi_levels, dim=1), torch.cat(lo_levels, dim=1)


def monotonize(series: Tensor, dim: int = 0, *, method: str = "minimax") -> Tensor:
    """L-infinity-optimal non-decreasing approximation of every series along ``dim``.

    Both methods return, for every series ``p``, a non-decreasing ``q`` that

    * equals ``p`` at every sample that takes part in no descent (no earlier sample is larger
      and no later sample is smaller),
    * deviates from ``p`` by exactly ``max_{s < t} (p(s) - p(t)) / 2``, the lower bound for any
      non-decreasing function (thesis Lemma 6), so it is L-infinity optimal.

    ``method="minimax"`` (default) is the closed form
    ``q(t) = (max_{s <= t} p(s) + min_{s >= t} p(s)) / 2``: two cumulative scans, fully
    vectorised on any device. ``method="flatten"`` is the descent flattening of thesis
    Algorithm 1 (Figure 2.5): every violating run is replaced by the centre value of the samples
    it covers, and runs are merged while neighbours still violate monotonicity. It moves fewer
    samples (a sample next to a descent that already fits is kept) but needs one vectorised
    merge round per nesting level of descents, which is 10-60x slower; both are property-tested.

    Args:
        series: floating-point tensor of any shape; the time axis is ``dim``.
        dim: the axis along which to make the series non-decreasing.
        method: ``"minimax"`` or ``"flatten"``.

    Returns:
        Tensor of the same shape, dtype and device.
    """
    if not torch.is_floating_point(series):
        raise TypeError(f"monotonize needs a floating-point tensor, got {series.dtype}")
    if method not in ("minimax", "flatten"):
        raise ValueError(f"unknown monotonisation method {method!r}; use 'minimax' or 'flatten'")
    if series.numel() == 0 or series.shape[dim] < 2:
        return series.clone()
    if method == "minimax":
        prefix_max = series.cummax(dim=dim).values
        suffix_min = series.flip(dim).cummin(dim=dim).values.flip(dim)
        # where p(t) is both the running max and the remaining min this is (p + p) / 2 == p
        return 0.5 * (prefix_max + suffix_min)
    moved = series.movedim(dim, 0)
    shape = moved.shape
    p = moved.reshape(shape[0], -1)
    out = p.clone()
    # Only series with at least one descent need work; the rest are returned unchanged.
    active = (p[1:] < p[:-1]).any(dim=0).nonzero().squeeze(1)
    if active.numel() > 0:
        out[:, active] = _flatten_descents(p[:, active].t().contiguous()).t()
    return out.reshape(shape).movedim(0, dim)


def _flatten_descents(p: Tensor) -> Tensor:
    """Run-merging core of :func:`monotonize` for series ``p [N, T]`` (time last, contiguous)."""
    n, n_t = p.shape
    hi_table, lo_table = _range_tables(p)
    idx = torch.arange(n_t, device=p.device).expand(n, n_t)
    last = torch.full_like(idx, n_t - 1)
    # starts[:, k] is True when a new run begins at sample k (sample 0 always starts one)
    starts = torch.ones(n, n_t, dtype=torch.bool, device=p.device)
    ends = torch.ones_like(starts)
    value = p
    for _ in range(n_t):
        run_start = torch.where(starts, idx, 0).cummax(dim=1).values
        ends[:, :-1] = starts[:, 1:]
        run_end = torch.where(ends, idx, last).flip(1).cummin(dim=1).values.flip(1)
        # largest power of two not exceeding the run length, as a table level
        level = _LOG2[: n_t + 1].to(p.device)[run_end - run_start + 1]
        a = level * n_t + run_start
        b = level * n_t + run_end - _POW2.to(p.device)[level] + 1
        hi = torch.maximum(hi_table.gather(1, a), hi_table.gather(1, b))
        lo = torch.minimum(lo_table.gather(1, a), lo_table.gather(1, b))
        value = 0.5 * (hi + lo)
        violation = starts[:, 1:] & (value[:, 1:] < value[:, :-1])
        if not bool(violation.any()):
            break
        starts[:, 1:] &= ~violation
    # a run of length one has value (p + p) / 2 == p exactly, so untouched samples are kept
    return value


# floor(log2(k)) and 2**j lookup tables for run lengths (paths have far fewer than 4096 samples)
_LOG2 = torch.tensor([0, 0] + [int(k).bit_length() - 1 for k in range(2, 4097)])
_POW2 = torch.tensor([1 << j for j in range(13)])


def clamp_path(path: Tensor) -> Tensor:
    """Clamp to ``[0, 1]`` (Algorithm 2, line 14); keeps monotonicity and the implicit ends."""
    return path.clamp(0.0, 1.0)


def _flat_weights(weights: Tensor | None, n: int, like: Tensor) -> Tensor | None:
    if weights is None:
        return None
    w = weights.to(dtype=like.dtype, device=like.device).reshape(-1)
    if w.numel() != n:
        raise ValueError(f"weights have {w.numel()} entries but a mask has {n}")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("mass weights must be finite and non-negative")
    total = w.sum()
    if float(total) <= 0:
        raise ValueError("mass weights must not all be zero")
    return w / total


def path_masses(path: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mass ``|phi(t_k)|`` of every slice: (weighted) mean over the mask; shape ``[T]``."""
    flat = path.reshape(path.shape[0], -1)
    w = _flat_weights(weights, flat.shape[1], flat)
    if w is None:
        return flat.mean(dim=1)
    return flat @ w


def reparametrize_constant_speed(path: Tensor, weights: Tensor | None = None) -> Tensor:
    """Constant-speed representative of a monotone path (thesis Lemma 7).

    For each target mass ``t_k = k / (T + 1)`` the two neighbouring samples of the input whose
    masses bracket ``t_k`` are found (the implicit ends with masses 0 and 1 included) and
    interpolated linearly. Where a sample's mass equals ``t_k`` exactly, that mask is returned
    unchanged ("faithful" case of the lemma).

    Args:
        path: monotone path ``[T, *mask_shape]`` with values in ``[0, 1]``.
        weights: optional per-feature mass weights ``[*mask_shape]`` (thesis 4.3.3).

    Returns:
        Path ``[T, *mask_shape]`` whose slice masses equal ``t_k``.
    """
    n_t = path.shape[0]
    mask_shape = path.shape[1:]
    flat = path.reshape(n_t, -1)
    zeros = torch.zeros_like(flat[:1])
    ones = torch.ones_like(flat[:1])
    full = torch.cat([zeros, flat, ones], dim=0)  # [T + 2, N]
    masses = path_masses(full, weights)
    masses[0] = 0.0
    masses[-1] = 1.0
    # Masses of a monotone path are non-decreasing; guard against float noise.
    masses = torch.cummax(masses, dim=0).values
    targets = path_times(n_t, dtype=flat.dtype, device=flat.device)
    # lower index k with masses[k] <= target < masses[k + 1]
    lower = torch.searchsorted(masses.contiguous(), targets.contiguous(), right=True) - 1
    lower = lower.clamp(0, n_t)
    upper = lower + 1
    m_lo = masses[lower]
    m_hi = masses[upper]
    gap = m_hi - m_lo
    eta = torch.where(gap > 0, (targets - m_lo) / torch.where(gap > 0, gap, 1.0), 0.0)
    eta = eta.clamp(0.0, 1.0).unsqueeze(1)
    out = full[lower] * (1 - eta) + full[upper] * eta
    # exact copies where the mass matches (eta == 0 gives full[lower] * 1 + full[upper] * 0)
    return out.reshape(n_t, *mask_shape)


def project(
    path: Tensor,
    weights: Tensor | None = None,
    *,
    monotonize_method: str = "minimax",
    check_finite: bool = True,
) -> Tensor:
    """Project an arbitrary path ``[T, *mask_shape]`` onto the ablation path axioms.

    Monotonise each feature's time series (Algorithm 1), clamp to ``[0, 1]`` and re-parametrise
    to constant speed (Lemma 7), in this order (Algorithm 2, lines 12-15).
    """
    if path.dim() < 2:
        raise ValueError(f"a path is [T, *mask_shape], got shape {tuple(path.shape)}")
    if check_finite and not bool(torch.isfinite(path).all()):
        raise ValueError("path contains NaN or infinite values")
    monotone = monotonize(path, dim=0, method=monotonize_method)
    return reparametrize_constant_speed(clamp_path(monotone), weights)


def saturation(path: Tensor, weights: Tensor | None = None) -> float:
    """Saturation level: mean of ``2 |phi - 1/2|`` over time samples and mask (thesis eq. 2.31)."""
    return float(path_masses((2.0 * (path - 0.5).abs()), weights).mean())


def check_axioms(path: Tensor, weights: Tensor | None = None, atol: float = 1e-5) -> list[str]:
    """Return a list of violated axioms (empty when the path is a valid ablation path)."""
    problems: list[str] = []
    if bool((path < -atol).any()) or bool((path > 1 + atol).any()):
        problems.append("values outside [0, 1] (boundary conditions with monotonicity)")
    if path.shape[0] > 1 and bool((path[1:] - path[:-1] < -atol).any()):
        problems.append("not monotone in t")
    masses = path_masses(path, weights)
    t = path_times(path.shape[0], dtype=path.dtype, device=path.device)
    err = float((masses - t).abs().max())
    if err > atol:
        problems.append(f"not constant speed (max |mass - t| = {err:.2e})")
    return problems
