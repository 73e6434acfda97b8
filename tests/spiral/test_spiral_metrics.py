"""Rotation operator and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from spiral_cnn.geometry import disc_mask, pixel_centres
from spiral_cnn.metrics import equivariance_error, frc, frc_resolution, mse, psnr
from spiral_cnn.models import ModelConfig, WienerFilter
from spiral_cnn.rotate import rotate_images


def gauss(size: int, cx: float, cy: float, s: float = 0.1) -> torch.Tensor:
    xy = torch.as_tensor(pixel_centres(size)).reshape(size, size, 2)
    return torch.exp(-((xy[..., 0] - cx) ** 2 + (xy[..., 1] - cy) ** 2) / (2 * s**2))


def test_rotation_moves_content_and_quarter_turns_are_exact() -> None:
    img = gauss(32, 0.5, 0.0)[None]
    for a in (0.3, -1.0, 2.5):
        want = gauss(32, 0.5 * math.cos(a), 0.5 * math.sin(a))
        got = rotate_images(img, a)[0]
        assert float((got - want).norm() / want.norm()) < 1e-4
    torch.testing.assert_close(
        rotate_images(img, math.pi / 2), torch.rot90(img, 1, dims=(-1, -2)), atol=1e-12, rtol=0
    )
    batch = torch.stack([img[0], img[0]])
    out = rotate_images(batch, torch.tensor([0.0, math.pi], dtype=torch.float64))
    torch.testing.assert_close(out[0], img[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[1], img[0].flip(-1).flip(-2), atol=1e-12, rtol=0)


def test_rotation_keeps_white_noise_white() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.as_tensor(disc_mask(32, 0.7))
    n = torch.randn(200, 32, 32, generator=g, dtype=torch.float64) * torch.as_tensor(disc_mask(32))
    r = rotate_images(n, 0.6)
    # Band-limited rotation loses only the spectrum corners beyond the Nyquist disc (< 10 %).
    assert 0.9 < float(r[:, m].var() / n[:, m].var()) <= 1.0


def test_metrics_on_known_cases() -> None:
    ref = gauss(32, 0.1, -0.2)[None, None].float()
    est = ref + 0.1
    torch.testing.assert_close(mse(est, ref), torch.tensor([[0.01]]))
    peak = float(ref[0, 0][torch.as_tensor(disc_mask(32))].max() - ref[0, 0][disc_mask(32)].min())
    torch.testing.assert_close(psnr(est, ref), 10 * torch.log10(torch.tensor([[peak**2 / 0.01]])))
    freq, curve = frc(ref, ref)
    assert freq.shape == (16,) and float(freq[-1]) == 0.5
    torch.testing.assert_close(curve, torch.ones(1, 1, 16))
    noise = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    _, c_noise = frc(noise, torch.randn_like(noise))
    assert float(c_noise.mean(0)[..., 3:].abs().max()) < 0.2
    assert frc_resolution(freq, curve) == 0.5
    with pytest.raises(ValueError, match="shapes"):
        mse(ref, ref[..., :-1])


def test_equivariance_error_separates_isotropic_from_directional_filters() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 32, 32, generator=g)
    wf = WienerFilter(ModelConfig(arch="wiener", size=32))
    with torch.no_grad():
        wf.gain.copy_(torch.exp(-torch.arange(wf.n_rings, dtype=torch.float32) / 4))
    directional = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        directional.weight.copy_(torch.tensor([[[[0, 0, 0], [-1.0, 0, 1.0], [0, 0, 0]]]]))
    e_iso = equivariance_error(wf, x, 4, generator=g)
    e_dir = equivariance_error(directional, x, 4, generator=g)
    assert e_iso < 0.1 < e_dir
    assert equivariance_error(lambda z: z, x, 2, generator=g) == 0.0
