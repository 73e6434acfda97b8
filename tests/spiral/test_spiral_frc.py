"""Fourier ring correlation against ASPIRE and an independent NumPy reference (issues 10, 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_cnn.geometry import disc_mask
from spiral_cnn.metrics import frc, frc_resolution


def frc_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain-loop FRC of two ``(L, L)`` images, rings ``k - 1/2 < |f| L < k + 1/2``, k >= 1."""
    size = a.shape[-1]
    m = disc_mask(size)
    fa, fb = np.fft.fft2(a * m), np.fft.fft2(b * m)
    num = np.zeros(size // 2)
    na = np.zeros(size // 2)
    nb = np.zeros(size // 2)
    for i in range(size):
        for j in range(size):
            u = i if i <= size // 2 else i - size  # signed frequency index
            v = j if j <= size // 2 else j - size
            r = math.hypot(u, v)
            for k in range(1, size // 2 + 1):
                if k - 0.5 < r < k + 0.5:
                    num[k - 1] += (fa[i, j] * np.conj(fb[i, j])).real
                    na[k - 1] += abs(fa[i, j]) ** 2
                    nb[k - 1] += abs(fb[i, j]) ** 2
    return num / np.sqrt(na * nb)


def _pair(seed: int, size: int, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(size, size))
    est = ref + noise * rng.normal(size=(size, size))
    return torch.as_tensor(est), torch.as_tensor(ref)


@pytest.mark.parametrize("size", [16, 17, 32])
def test_frc_matches_loop_reference(size: int) -> None:
    est, ref = _pair(size, size)
    freq, curve = frc(est, ref)
    assert freq.shape == (size // 2,)
    np.testing.assert_allclose(freq.numpy(), np.arange(1, size // 2 + 1) / size)
    np.testing.assert_allclose(curve.numpy(), frc_reference(est.numpy(), ref.numpy()), atol=1e-12)


def test_frc_matches_aspire() -> None:
    """ASPIRE's ``FourierRingCorrelation`` (FFT method) as an independent implementation. For
    even ``L`` ASPIRE measures ring radii on a grid shifted by half a pixel (``grid_2d(shifted=
    True)``), so its rings are not centred on the DC pixel; for odd ``L`` the grids agree."""
    from spiral_cnn.data import _aspire_env

    _aspire_env()
    from aspire.utils import FourierRingCorrelation

    size = 33
    est, ref = _pair(3, size, 0.7)
    m = disc_mask(size)
    want = FourierRingCorrelation(est.numpy() * m, ref.numpy() * m).correlations
    _, curve = frc(est, ref)
    np.testing.assert_allclose(curve.numpy(), np.asarray(want).reshape(-1), atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0))
def test_frc_is_scale_invariant_and_symmetric(seed: int, scale: float) -> None:
    est, ref = _pair(seed, 16)
    _, c = frc(est, ref)
    _, c_scaled = frc(scale * est, ref / scale)
    _, c_swapped = frc(ref, est)
    torch.testing.assert_close(c_scaled, c, atol=1e-10, rtol=0)
    torch.testing.assert_close(c_swapped, c, atol=1e-12, rtol=0)
    assert float(c.abs().max()) <= 1.0 + 1e-12
    _, c_neg = frc(-est, ref)
    torch.testing.assert_close(c_neg, -c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("noise_var", [1.0, 3.0])
def test_frc_of_white_signal_plus_white_noise_is_flat_at_the_analytic_value(
    noise_var: float,
) -> None:
    """White signal of unit variance plus independent white noise of variance s2: the expected
    ring correlation is ``1 / sqrt(1 + s2)`` at every frequency (0.707 and 0.5 here)."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(400, 32, 32, generator=g, dtype=torch.float64)
    est = ref + math.sqrt(noise_var) * torch.randn(400, 32, 32, generator=g, dtype=torch.float64)
    freq, curve = frc(est, ref)
    want = 1.0 / math.sqrt(1.0 + noise_var)
    mean = curve.mean(0)
    assert float((mean[2:] - want).abs().max()) < 0.03  # first rings hold few pixels
    # The DC pixel is not a ring: the first ring is 1/L, and it is not +-1.
    assert float(freq[0]) == pytest.approx(1 / 32)
    assert float((mean[0] - want).abs()) < 0.1
    # A resolution is never reported as 0 for a well-correlated pair.
    if noise_var == 1.0:
        assert frc_resolution(freq, curve, 0.5) == 0.5


def test_frc_resolution_interpolates_linearly_between_rings() -> None:
    freq = torch.tensor([0.1, 0.2, 0.3, 0.4])
    curve = torch.tensor([[0.9, 0.7, 0.3, 0.1], [0.9, 0.7, 0.3, 0.1]])
    assert frc_resolution(freq, curve, 0.5) == pytest.approx(0.25)
    assert frc_resolution(freq, curve, 0.8) == pytest.approx(0.15)
    # Mean over images first: curves (1, 0.6, ...) and (1, 0.2, ...) average to 0.4 at ring 2.
    two = torch.tensor([[1.0, 0.6, 0.0, 0.0], [1.0, 0.2, 0.0, 0.0]])
    assert frc_resolution(freq, two, 0.5) == pytest.approx(0.1 + 0.5 / 0.6 * 0.1)
    assert frc_resolution(freq, torch.ones(4), 0.5) == pytest.approx(0.4)
    assert frc_resolution(freq, torch.zeros(4), 0.5) == 0.0
    with pytest.raises(ValueError, match="freq"):
        frc_resolution(freq, torch.ones(3))


def test_frc_resolution_tracks_a_known_band_limit() -> None:
    """``est`` equals ``ref`` below 0.25 cycles/px and is independent above: the 0.5 crossing
    lies between the last correlated ring and the first uncorrelated one."""
    size = 32
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(64, size, size, generator=g, dtype=torch.float64)
    other = torch.randn(64, size, size, generator=g, dtype=torch.float64)
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    low = (torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2) < 0.25).to(torch.float64)
    mix = torch.fft.ifft2(torch.fft.fft2(ref) * low + torch.fft.fft2(other) * (1 - low)).real
    freq, curve = frc(mix, ref)
    res = frc_resolution(freq, curve, 0.5)
    assert 0.2 <= res <= 0.3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frc_frequencies_in_the_images_dtype(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(9, 9, generator=g, dtype=dtype)
    freq, curve = frc(a, a)
    assert freq.dtype == dtype and curve.dtype == dtype
    # ring k at k / L cycles per pixel, computed in the images' dtype
    want = torch.tensor([k / 9 for k in range(1, 5)], dtype=torch.float64).to(dtype)
    assert torch.equal(freq, want)
