"""SpiralConv: shapes, gradients, and near-rotation-equivariance (thesis Figure 7.5)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spiral_cnn.geometry import SpiralSpec, pixel_centres
from spiral_cnn.layers import (
    ImageToSpiral,
    SpiralConv,
    SpiralToImage,
    ribbon_resampling,
    spiral_conv,
)
from spiral_cnn.metrics import equivariance_error
from spiral_cnn.rotate import rotate_images

L = 32


def blob(size: int, r: float, phi: float, width_px: float) -> torch.Tensor:
    """``(1, 1, L, L)`` Gaussian spot at polar position (r, phi), ``width_px`` pixels wide."""
    xy = torch.as_tensor(pixel_centres(size), dtype=torch.float32).reshape(size, size, 2)
    c = torch.tensor([r * math.cos(phi), r * math.sin(phi)])
    s = width_px * 2.0 / size
    return torch.exp(-((xy - c) ** 2).sum(-1) / (2 * s**2))[None, None]


def test_shapes_channels_and_batch_independence() -> None:
    spec = SpiralSpec.for_image(16, rows=5, cols=3)
    conv = SpiralConv(3, 4, spec)
    x = torch.randn(5, 3, spec.n)
    y = conv(x)
    assert y.shape == (5, 4, spec.n) and y.dtype == x.dtype
    torch.testing.assert_close(conv(x[2:3]), y[2:3])
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(5, 2, spec.n))
    with pytest.raises(ValueError, match="expects shape"):
        conv(torch.randn(5, 3, spec.n + 1))
    assert conv.double()(x.double()).dtype == torch.float64


def test_linearity_and_translation_along_spiral_of_the_kernel() -> None:
    """On the spiral itself a Dirac at sample j comes out as the kernel laid around j."""
    spec = SpiralSpec.for_image(32, rows=3, cols=3)
    conv = SpiralConv(1, 1, spec, bias=False)
    j = spec.n // 2
    x = torch.zeros(1, 1, spec.n)
    x[0, 0, j] = 1.0
    y = conv(x)[0, 0].detach()
    # Along its own winding the response at j-1, j, j+1 is the central kernel row, flipped
    # (convolution-as-correlation): neighbours on the same winding are exact samples.
    w = conv.weight.detach()[0, 0]
    tol = 0.02 * float(w.abs().max())  # other ribbon rows may touch sample j slightly
    torch.testing.assert_close(y[j - 1 : j + 2], w[1].flip(0), atol=tol, rtol=0)
    # Superposition.
    x2 = torch.zeros_like(x)
    x2[0, 0, j // 2] = 2.0
    torch.testing.assert_close(conv(x + x2), conv(x) + conv(x2))


def test_dirac_patterns_become_rotated_copies_of_the_kernel() -> None:
    """Thesis Figure 7.5: spots at the same radius, different angles, give rotated responses."""
    torch.manual_seed(1)
    spec = SpiralSpec.for_image(L, rows=3, cols=3)
    to_sp, to_img = ImageToSpiral(L, spec), SpiralToImage(L, spec)
    sconv = SpiralConv(1, 1, spec, bias=False)
    cconv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        cconv.weight.copy_(sconv.weight)
    phis = [k * 2 * math.pi / 7 for k in range(1, 7)]
    errs: dict[str, float] = {}
    with torch.no_grad():
        for name, f in {"spiral": lambda x: to_img(sconv(to_sp(x))), "cartesian": cconv}.items():
            e = []
            for r in (0.3, 0.6):
                ref = f(blob(L, r, 0.0, 1.0))
                for p in phis:
                    back = rotate_images(f(blob(L, r, p, 1.0)), -p)
                    e.append(float((back - ref).norm() / ref.norm()))
            errs[name] = sum(e) / len(e)
    assert errs["spiral"] < 0.35
    assert errs["spiral"] < 0.3 * errs["cartesian"]


def test_random_spiral_layer_is_far_more_equivariant_than_cartesian_conv() -> None:
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, L, L)
    k = torch.exp(-(torch.linspace(-2, 2, 7) ** 2))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    x = nn.functional.conv2d(x, k[None, None], padding=3)  # smooth, ~1.5 px correlation
    for kern in (3, 5):
        spec = SpiralSpec.for_image(L, rows=kern, cols=kern)
        spiral_f = nn.Sequential(
            ImageToSpiral(L, spec), SpiralConv(1, 1, spec, bias=False), SpiralToImage(L, spec)
        )
        cconv = nn.Conv2d(1, 1, kern, padding=kern // 2, bias=False)
        e_s = equivariance_error(spiral_f, x, n_angles=4, generator=g, radius=0.9)
        e_c = equivariance_error(cconv, x, n_angles=4, generator=g, radius=0.9)
        assert e_s < 0.3
        assert e_s < 0.5 * e_c


def test_gradcheck_tiny_spiral_conv() -> None:
    spec = SpiralSpec(n_wind=2, rows=3, cols=3)
    rib = ribbon_resampling(spec.n_wind, spec.n, 3, 3).csr(torch.float64)
    x = torch.randn(2, 1, spec.n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: spiral_conv(x, w, b, rib), (x, w, b))


def test_gradcheck_image_to_spiral_to_image() -> None:
    spec = SpiralSpec.for_image(8)
    to_sp, to_img = ImageToSpiral(8, spec).double(), SpiralToImage(8, spec).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: to_img(to_sp(z)), (x,), fast_mode=True)
