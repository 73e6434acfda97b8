"""Denoisers: spiral CNN (thesis 7.3.3), matched cartesian CNN, Wiener filter, C8-steerable CNN.

Every model maps ``(B, 1, L, L)`` noisy particle images to ``(B, 1, L, L)`` signal estimates
(direct signal estimation, as in thesis 6.3). :func:`build_model` creates one from a
:class:`ModelConfig`; configurations are plain dataclasses so they can be stored in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ablation_paths._optional import require
from spiral_cnn.geometry import SpiralSpec
from spiral_cnn.layers import ImageToSpiral, SpiralConv, SpiralToImage

ARCHS = ("spiral", "cartesian", "steerable", "wiener")


@dataclass
class ModelConfig:
    """Network configuration.

    Attributes:
        arch: one of ``spiral``, ``cartesian``, ``steerable`` (e2cnn C8), ``wiener``.
        size: image side ``L`` in pixels.
        channels: hidden channels (steerable: total channels = 8 x fields).
        depth: number of convolution layers (>= 2); all but the last are followed by batch-norm
            and ReLU.
        kernel: kernel size (odd). For ``spiral`` this is ribbon rows x cols.
    """

    arch: str = "spiral"
    size: int = 32
    channels: int = 12
    depth: int = 5
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.depth < 2 or self.channels < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"invalid depth/channels/kernel in {self}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for checkpoints)."""
        return asdict(self)


def _check_images(x: torch.Tensor, size: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[-2:] != (size, size):
        raise ValueError(f"{name} expects (batch, 1, {size}, {size}), got {tuple(x.shape)}")


class SpiralDenoiser(nn.Module):
    """Spiral CNN (thesis 7.3.3): resample to the spiral, conv-BN-ReLU stack, resample back."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spec = SpiralSpec.for_image(cfg.size, rows=cfg.kernel, cols=cfg.kernel)
        self.spec = spec
        self.to_spiral = ImageToSpiral(cfg.size, spec)
        self.to_image = SpiralToImage(cfg.size, spec)
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(cfg.depth - 1):
            layers += [
                SpiralConv(c_in, cfg.channels, spec),
                nn.BatchNorm1d(cfg.channels),
                nn.ReLU(),
            ]
            c_in = cfg.channels
        layers.append(SpiralConv(c_in, 1, spec))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.cfg.size, "SpiralDenoiser")
        return self.to_image(self.body(self.to_spiral(x)))


class CartesianDenoiser(nn.Module):
    """Ordinary CNN of the same depth, width and kernel size (same parameter count)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pad = cfg.kernel // 2
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(cfg.depth - 1):
            layers += [
                nn.Conv2d(c_in, cfg.channels, cfg.kernel, padding=pad),
                nn.BatchNorm2d(cfg.channels),
                nn.ReLU(),
            ]
            c_in = cfg.channels
        layers.append(nn.Conv2d(c_in, 1, cfg.kernel, padding=pad))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.cfg.size, "CartesianDenoiser")
        out: torch.Tensor = self.body(x)
        return out


class SteerableDenoiser(nn.Module):
    """C8 group-equivariant CNN (e2cnn ``R2Conv`` with regular fields) as an equivariant anchor.

    Hidden layers carry ``max(1, channels // 8)`` regular C8 fields (8 channels each), so the
    feature-map size matches ``channels``; input and output are scalar (trivial) fields.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        require("e2cnn", extra="steerable", purpose="arch 'steerable'")
        from e2cnn import gspaces
        from e2cnn import nn as enn

        self.cfg = cfg
        self._enn = enn
        g = gspaces.Rot2dOnR2(N=8)
        self.in_type = enn.FieldType(g, [g.trivial_repr])
        hid = enn.FieldType(g, max(1, cfg.channels // 8) * [g.regular_repr])
        out = enn.FieldType(g, [g.trivial_repr])
        pad = cfg.kernel // 2
        layers: list[Any] = []
        t = self.in_type
        for _ in range(cfg.depth - 1):
            layers += [
                enn.R2Conv(t, hid, cfg.kernel, padding=pad),
                enn.InnerBatchNorm(hid),
                enn.ReLU(hid),
            ]
            t = hid
        layers.append(enn.R2Conv(t, out, cfg.kernel, padding=pad))
        self.body = enn.SequentialModule(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.cfg.size, "SteerableDenoiser")
        y = self.body(self._enn.GeometricTensor(x, self.in_type))
        return y.tensor  # type: ignore[no-any-return]


class WienerFilter(nn.Module):
    """Radial linear filter ``W(|k|)`` fitted by least squares (the empirical Wiener filter).

    For additive noise independent of the signal the least-squares radial filter is
    ``W = S / (S + N)`` per Fourier ring (thesis 6.3, ref. [110]); fitting it from training pairs
    avoids estimating ``S`` and ``N`` separately and also covers Poisson noise. It is rotation
    equivariant up to the pixel grid. Call :meth:`fit` before use.
    """

    gain: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_rings = int(math.ceil(math.sqrt(2) * (cfg.size // 2))) + 2
        self.register_buffer("gain", torch.ones(self.n_rings))

    def _radius(self, device: torch.device, grid: int | None = None) -> torch.Tensor:
        """``|k|`` in Fourier pixels of the ``L``-grid on a ``grid``-point ``rfft2`` grid."""
        size = self.cfg.size
        n = grid or size
        ky = torch.fft.fftfreq(n, device=device, dtype=torch.float64) * size
        kx = torch.fft.rfftfreq(n, device=device, dtype=torch.float64) * size
        return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)

    def _rings(self, device: torch.device) -> torch.Tensor:
        return self._radius(device).round().long()

    def response(self, device: torch.device | None = None, grid: int | None = None) -> torch.Tensor:
        """The 2-D ``rfft2`` filter on a ``grid``-point grid (default ``L``): ring gains linearly
        interpolated in ``|k|``, so it is isotropic."""
        k = self._radius(device or self.gain.device, grid)
        i0 = k.floor().long().clamp_max(self.n_rings - 2)
        frac = (k - i0).clamp(0, 1).to(self.gain.dtype)
        return self.gain[i0] * (1 - frac) + self.gain[i0 + 1] * frac

    @torch.no_grad()
    def fit(self, noisy: torch.Tensor, clean: torch.Tensor) -> WienerFilter:
        """Least-squares fit of the ring gains on ``(B, 1, L, L)`` training pairs."""
        _check_images(noisy, self.cfg.size, "WienerFilter.fit")
        _check_images(clean, self.cfg.size, "WienerFilter.fit")
        fx = torch.fft.rfft2(noisy.double())
        fc = torch.fft.rfft2(clean.double())
        rings = self._rings(noisy.device).reshape(-1)
        num = torch.zeros(self.n_rings, dtype=torch.float64, device=noisy.device)
        den = torch.zeros_like(num)
        # rfft2 stores half the spectrum; all columns but 0 (and Nyquist) stand for two bins,
        # which scales numerator and denominator alike, so the plain sum is fine.
        num.index_add_(0, rings, (fc * fx.conj()).real.sum((0, 1)).reshape(-1))
        den.index_add_(0, rings, (fx.abs() ** 2).sum((0, 1)).reshape(-1))
        self.gain.copy_((num / den.clamp_min(1e-30)).to(self.gain.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.cfg.size, "WienerFilter")
        # Zero-pad to 2L: a periodic L-grid filter would wrap the rim onto the opposite side,
        # which is not rotation equivariant.
        size = self.cfg.size
        n = 2 * size
        w = self.response(x.device, n).to(x.dtype)
        y = torch.fft.irfft2(torch.fft.rfft2(x, s=(n, n)) * w, s=(n, n))
        return y[..., :size, :size]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the model named by ``cfg.arch``."""
    if cfg.arch == "spiral":
        return SpiralDenoiser(cfg)
    if cfg.arch == "cartesian":
        return CartesianDenoiser(cfg)
    if cfg.arch == "steerable":
        return SteerableDenoiser(cfg)
    return WienerFilter(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
