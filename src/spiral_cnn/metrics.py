"""Denoising and equivariance metrics, all evaluated on the particle disc.

* ``mse``: mean squared error over the disc pixels, per image.
* ``psnr``: ``10 log10(peak**2 / mse)`` with ``peak`` the ground truth's max - min on the disc.
* ``frc``: Fourier ring correlation (Saxton and Baumeister 1982; van Heel 1987) of estimate and
  ground truth, per image and ring; the field's resolution measure. ``frc_resolution`` gives the
  spatial frequency (cycles / pixel) where the mean curve first drops below a threshold.
* ``equivariance_error``: ``||F(R x) - R F(x)|| / ||F(x)||`` over the disc (SPEC Part C, thesis
  Figures 7.7-7.9), averaged over images and random angles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from spiral_cnn.geometry import disc_mask
from spiral_cnn.rotate import rotate_images


def _check_pair(est: torch.Tensor, ref: torch.Tensor) -> None:
    if est.shape != ref.shape or est.ndim < 2 or est.shape[-1] != est.shape[-2]:
        raise ValueError(
            f"expected equal (..., L, L) shapes, got {tuple(est.shape)} and {tuple(ref.shape)}"
        )


def disc(size: int, like: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """``(size, size)`` 0/1 disc mask with the dtype and device of ``like``."""
    return torch.as_tensor(disc_mask(size, radius), dtype=like.dtype, device=like.device)


def mse(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the disc, ``(..., L, L) -> (...)``."""
    _check_pair(est, ref)
    m = disc(est.shape[-1], est)
    return (((est - ref) * m) ** 2).sum((-1, -2)) / m.sum()


def psnr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB on the disc, ``(..., L, L) -> (...)``.

    The peak is the ground truth's dynamic range (max - min) over the disc.
    """
    _check_pair(est, ref)
    m = disc_mask(est.shape[-1])
    vals = ref[..., torch.as_tensor(m, device=ref.device)]
    peak = vals.amax(-1) - vals.amin(-1)
    return 10.0 * torch.log10(peak**2 / mse(est, ref).clamp_min(1e-30))


def frc(est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier ring correlation of ``est`` against ``ref``.

    Both are multiplied by the disc mask first. Ring ``k`` (``k = 1 .. L // 2``) holds the Fourier
    pixels with ``k - 1/2 < |f| L < k + 1/2``; the DC pixel is left out (a ring of one real pixel
    has correlation exactly +-1 and says nothing about resolution), as in ASPIRE's
    ``FourierRingCorrelation``, whose curve this equals ring for ring for odd ``L`` (for even
    ``L`` ASPIRE measures ring radii on a half-pixel-shifted grid)::

        FRC(k) = Re sum_ring F_est conj(F_ref) / sqrt(sum_ring |F_est|^2 sum_ring |F_ref|^2)

    Returns:
        ``(freq, curve)``: ``freq`` of shape ``(L // 2,)`` in cycles per pixel (``1/L .. 0.5``)
        and ``curve`` of shape ``(..., L // 2)``.
    """
    _check_pair(est, ref)
    size = est.shape[-1]
    m = disc(size, est)
    fa = torch.fft.fft2(est * m)
    fb = torch.fft.fft2(ref * m)
    k = torch.fft.fftfreq(size, device=est.device, dtype=torch.float64) * size
    rad = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long()
    n_rings = size // 2
    # index 0 = DC (dropped), 1 .. n_rings = rings, n_rings + 1 = corners beyond Nyquist (dropped)
    ring = rad.clamp_max(n_rings + 1).reshape(-1)

    def ring_sum(v: torch.Tensor) -> torch.Tensor:
        flat = v.reshape(*v.shape[:-2], -1)
        out = torch.zeros(*flat.shape[:-1], n_rings + 2, dtype=flat.dtype, device=flat.device)
        return out.index_add_(-1, ring, flat)[..., 1 : n_rings + 1]

    num = ring_sum((fa * fb.conj()).real)
    den = torch.sqrt(ring_sum(fa.abs() ** 2) * ring_sum(fb.abs() ** 2)).clamp_min(1e-30)
    freq = torch.arange(1, n_rings + 1, dtype=est.dtype, device=est.device) / size
    return freq, num / den


def frc_resolution(freq: torch.Tensor, curve: torch.Tensor, threshold: float = 0.5) -> float:
    """First spatial frequency (cycles / pixel) where the mean FRC falls below ``threshold``.

    The curves are averaged over all leading dimensions, then the crossing is found by linear
    interpolation between neighbouring rings. Returns ``freq[-1]`` (Nyquist) if the mean curve
    never drops below ``threshold`` and ``0.0`` if it is already below at the first ring (nothing
    is resolved). Multiply the reciprocal by the pixel size for a resolution in angstrom.
    """
    if freq.ndim != 1 or curve.shape[-1] != freq.shape[0] or freq.shape[0] < 1:
        raise ValueError(
            f"freq must be (n_rings,) matching curve's last axis, got {tuple(freq.shape)} "
            f"and {tuple(curve.shape)}"
        )
    c = curve.reshape(-1, curve.shape[-1]).double().mean(0)
    below = torch.nonzero(c < threshold)
    if below.numel() == 0:
        return float(freq[-1])
    i = int(below[0, 0])
    if i == 0:
        return 0.0
    f0, f1, c0, c1 = float(freq[i - 1]), float(freq[i]), float(c[i - 1]), float(c[i])
    return f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)


@torch.no_grad()
def equivariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_angles: int = 4,
    generator: torch.Generator | None = None,
    radius: float = 1.0,
    angles: Sequence[float] | None = None,
) -> float:
    """Rotation-equivariance error ``||F(R x) - R F(x)|| / ||F(x)||``.

    Inputs are masked to the particle disc; the norms are taken over the disc of ``radius``
    (disc units), so ``radius < 1`` measures the inner disc and leaves out the rim.

    Args:
        model: maps ``(B, 1, L, L)`` to ``(B, 1, L, L)``.
        x: ``(B, 1, L, L)`` inputs (masked to the disc here).
        n_angles: number of random angles, uniform in ``[0, 2 pi)``, one draw per angle.
        generator: random generator for the angles (reproducibility).
        radius: radius of the disc over which the norms are taken.
        angles: explicit angles in radians (overrides ``n_angles``), e.g. multiples of pi/2.

    Returns:
        The ratio averaged over images and angles.
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"equivariance_error expects (B, 1, L, L), got {tuple(x.shape)}")
    if not 0 < radius <= 1:
        raise ValueError(f"radius must be in (0, 1], got {radius}")
    if angles is None:
        if n_angles < 1:
            raise ValueError(f"n_angles must be >= 1, got {n_angles}")
        angles = [
            float(torch.rand((), generator=generator)) * 2.0 * math.pi for _ in range(n_angles)
        ]
    elif len(angles) == 0:
        raise ValueError("angles must not be empty")
    full = disc(x.shape[-1], x)
    m = disc(x.shape[-1], x, radius)
    x = x * full
    fx = model(x) * full
    den = (fx * m).flatten(1).norm(dim=1).clamp_min(1e-30)
    errs = []
    for a in angles:
        f_rx = model(rotate_images(x, a) * full) * m
        r_fx = rotate_images(fx, a) * m
        errs.append(((f_rx - r_fx).flatten(1).norm(dim=1) / den).mean())
    return float(torch.stack(errs).mean())
