"""Metrics at their edges: shape checks, any number of leading dimensions, the device and dtype
of every output, FRC on a large image against a NumPy reference with exact integer rings, and a
single-ring resolution (issue 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spiral_cnn.geometry import disc_mask
from spiral_cnn.metrics import disc, frc, frc_resolution, mse, psnr

META = torch.device("meta")


def test_shapes_must_be_equal_and_square_images() -> None:
    for a in (torch.zeros(5), torch.zeros(4, 5), torch.zeros(2, 6, 7)):
        for f in (mse, psnr, frc):
            with pytest.raises(ValueError, match="shapes"):
                f(a, a)  # type: ignore[operator]


@pytest.mark.parametrize("lead", [(), (3,), (2, 1)])
def test_mse_over_the_disc_for_any_leading_dimensions(lead: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    est = torch.randn(*lead, 9, 9, generator=g, dtype=torch.float64)
    ref = torch.randn(*lead, 9, 9, generator=g, dtype=torch.float64)
    m = disc_mask(9)
    e, r = est.reshape(-1, 9, 9).numpy(), ref.reshape(-1, 9, 9).numpy()
    want = np.array([((e[b] - r[b])[m] ** 2).mean() for b in range(e.shape[0])]).reshape(lead)
    got = mse(est, ref)
    assert got.shape == lead
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_disc_has_the_dtype_and_device_of_like() -> None:
    for dtype in (torch.float32, torch.float64):
        d = disc(7, torch.zeros(1, dtype=dtype), 0.6)
        assert d.dtype == dtype
        np.testing.assert_array_equal(d.numpy(), disc_mask(7, 0.6).astype(float))
    assert disc(7, torch.zeros(1, device=META)).device == META


def test_frc_stays_on_the_images_device() -> None:
    """``meta`` tensors carry shape, dtype and device only: every intermediate of the FRC must
    be built on the images' device, or mixing devices raises."""
    x = torch.zeros(2, 9, 9, dtype=torch.float64, device=META)
    freq, curve = frc(x, x)
    assert freq.device == META and curve.device == META
    assert freq.shape == (4,) and curve.shape == (2, 4) and freq.dtype == torch.float64


def frc_integer_rings(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FRC with ring membership decided in integer arithmetic: pixel ``(u, v)`` (signed
    frequency indices) is in ring ``k >= 1`` iff ``(2k - 1)^2 < 4 (u^2 + v^2) < (2k + 1)^2``,
    i.e. ``k = (isqrt(4 (u^2 + v^2)) + 1) // 2`` (``4 r^2`` is never an odd square)."""
    size = a.shape[-1]
    m = disc_mask(size)
    fa, fb = np.fft.fft2(a * m), np.fft.fft2(b * m)
    u = np.fft.fftfreq(size, 1.0 / size).round().astype(np.int64)
    r2 = (u[:, None] ** 2 + u[None, :] ** 2).ravel()
    four = 4 * r2
    root = np.floor(np.sqrt(four)).astype(np.int64)  # then corrected to the exact isqrt
    root -= root * root > four
    root += (root + 1) ** 2 <= four
    assert all(int(root[i]) == math.isqrt(int(four[i])) for i in range(0, four.size, 997))
    k = (root + 1) // 2
    n = size // 2
    keep = (k >= 1) & (k <= n)

    def ring_sum(v: np.ndarray) -> np.ndarray:
        return np.bincount(k[keep] - 1, weights=v.ravel()[keep], minlength=n)

    num = ring_sum((fa * np.conj(fb)).real)
    return num / np.sqrt(ring_sum(np.abs(fa) ** 2) * ring_sum(np.abs(fb) ** 2))


def test_frc_rings_of_a_large_image_match_integer_arithmetic() -> None:
    """At ``L = 1928`` (the smallest such size) eight Fourier pixels lie within float32
    rounding of a ring boundary: ring radii must be computed in float64 to put them right."""
    size = 1928
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(size, size))
    est = ref + rng.normal(size=(size, size))
    _, curve = frc(torch.as_tensor(est), torch.as_tensor(ref))
    np.testing.assert_allclose(curve.numpy(), frc_integer_rings(est, ref), rtol=0, atol=1e-12)


def test_frc_resolution_with_a_single_ring() -> None:
    freq = torch.tensor([0.25])
    assert frc_resolution(freq, torch.tensor([0.9])) == pytest.approx(0.25)
    assert frc_resolution(freq, torch.tensor([[0.2], [0.3]])) == 0.0
    with pytest.raises(ValueError, match="freq"):
        frc_resolution(torch.zeros(0), torch.zeros(0))
