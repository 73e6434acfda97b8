"""The equivariance metric against a direct computation (full and inner disc, given angles)."""

from __future__ import annotations

import math

import pytest
import torch

from spiral_cnn.geometry import disc_mask
from spiral_cnn.metrics import equivariance_error, frc_resolution
from spiral_cnn.rotate import rotate_images


def reference(model, x: torch.Tensor, angle: float, radius: float) -> float:  # type: ignore[no-untyped-def]
    """``||(F(R x) - R F(x)) m_r|| / ||F(x) m_r||`` with inputs on the full disc, per image."""
    full = torch.as_tensor(disc_mask(x.shape[-1]), dtype=x.dtype)
    m = torch.as_tensor(disc_mask(x.shape[-1], radius), dtype=x.dtype)
    xin = x * full
    fx = model(xin) * full
    num = ((model(rotate_images(xin, angle) * full) - rotate_images(fx, angle)) * m).flatten(1)
    return float((num.norm(dim=1) / (fx * m).flatten(1).norm(dim=1)).mean())


def shift_model(x: torch.Tensor) -> torch.Tensor:
    """Not equivariant, and reads pixels outside the inner disc: a one-pixel shift plus a
    response to the rim."""
    return x.roll(1, -1) + 0.5 * x.roll(3, -2)


@pytest.mark.parametrize("radius", [1.0, 0.5])
@pytest.mark.parametrize("angle", [math.pi / 2, 0.7])
def test_equivariance_error_matches_direct_computation(radius: float, angle: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 24, 24, generator=g, dtype=torch.float64)
    got = equivariance_error(shift_model, x, angles=[angle], radius=radius)
    assert got == pytest.approx(reference(shift_model, x, angle, radius), rel=1e-9)
    assert got > 0.1


def test_quarter_turns_of_a_rotation_invariant_filter_are_exact() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():  # a kernel invariant under 90-degree turns
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]]))
    quarter = [math.pi / 2, math.pi, 3 * math.pi / 2]
    assert equivariance_error(conv, x, angles=quarter) < 1e-12
    assert equivariance_error(conv, x, angles=quarter, radius=0.5) < 1e-12
    with pytest.raises(ValueError, match="radius"):
        equivariance_error(conv, x, radius=0.0)
    with pytest.raises(ValueError, match="angles"):
        equivariance_error(conv, x, angles=[])


def test_frc_resolution_at_exactly_the_threshold_is_not_below() -> None:
    freq = torch.tensor([0.1, 0.2, 0.3])
    # At the first ring the curve *equals* the threshold: not below, so the crossing is found
    # between rings 1 and 2, at ring 1 itself.
    assert frc_resolution(freq, torch.tensor([0.5, 0.3, 0.1]), 0.5) == pytest.approx(0.1)


def test_psnr_peak_is_the_range_of_the_truth_on_the_disc() -> None:
    from spiral_cnn.metrics import mse, psnr

    g = torch.Generator().manual_seed(2)
    ref = torch.randn(3, 1, 16, 16, generator=g, dtype=torch.float64)
    est = ref + 0.1 * torch.randn(3, 1, 16, 16, generator=g, dtype=torch.float64)
    m = torch.as_tensor(disc_mask(16))
    vals = ref[..., m]
    peak = vals.amax(-1) - vals.amin(-1)
    want = 10 * torch.log10(peak**2 / mse(est, ref))
    torch.testing.assert_close(psnr(est, ref), want)
    # A constant offset of both images changes neither the error nor the range.
    torch.testing.assert_close(psnr(est + 7.0, ref + 7.0), want)
    # Pixels outside the disc do not count.
    ref_out = ref.clone()
    ref_out[..., 0, 0] = 1e3
    torch.testing.assert_close(psnr(est, ref_out), want)
