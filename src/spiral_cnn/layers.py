"""Spiral convolution (thesis section 7.3.2) and the cartesian <-> spiral resampling modules.

A spiral feature map is a tensor of shape ``(batch, channels, n_spls)`` holding values at the
spiral samples of :func:`spiral_cnn.geometry.spiral_points`. A spiral convolution resamples it
onto the ribbon of :func:`spiral_cnn.geometry.ribbon_points` (shape ``(batch, channels, rows,
n_spls + cols - 1)``) with one precomputed sparse matrix and applies an ordinary *valid*
``conv2d`` with a ``(rows, cols)`` kernel, giving ``(batch, out_channels, n_spls)`` again. The
kernel's rows point radially and its columns along the spiral, so rotating the input moves the
pattern along the spiral and the response rotates with it (approximately: up to the
interpolation error and the spiral's curvature near the centre).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spiral_cnn.geometry import (
    SpiralSpec,
    pad_ring,
    pixel_centres,
    ribbon_points,
    spiral_points,
)
from spiral_cnn.resample import CSRPair, Resampling, barycentric_resampling, sparse_resample


@lru_cache(maxsize=32)
def ribbon_resampling(n_wind: int, n_spls: int, rows: int, cols: int) -> Resampling:
    """Spiral -> ribbon matrix, ``(rows * (n_spls + cols - 1), n_spls)`` (memoised, read-only).

    Ribbon points outside the disc interpolate towards a zero-valued ring one winding outside
    (:func:`spiral_cnn.geometry.pad_ring`) and are zero beyond it: the spiral analogue of a
    convolution's zero padding.
    """
    src = np.concatenate([spiral_points(n_wind, n_spls), pad_ring(n_wind)], axis=0)
    dst = ribbon_points(n_wind, n_spls, rows, cols).reshape(-1, 2)
    return barycentric_resampling(src, dst, outside="zero", n_zero_src=src.shape[0] - n_spls)


@lru_cache(maxsize=32)
def image_to_spiral_resampling(size: int, n_wind: int, n_spls: int) -> Resampling:
    """Cartesian ``size x size`` grid -> spiral matrix, ``(n_spls, size * size)`` (memoised).

    Spiral samples beyond the outermost pixel centres (a sliver at the rim) copy the nearest pixel.
    """
    return barycentric_resampling(
        pixel_centres(size), spiral_points(n_wind, n_spls), outside="nearest"
    )


@lru_cache(maxsize=32)
def spiral_to_image_resampling(size: int, n_wind: int, n_spls: int) -> Resampling:
    """Spiral -> cartesian ``size x size`` matrix, ``(size * size, n_spls)`` (memoised).

    Pixels inside the unit disc but outside the spiral's hull copy the nearest spiral sample;
    pixels outside the disc are zero.
    """
    px = pixel_centres(size)
    res = barycentric_resampling(spiral_points(n_wind, n_spls), px, outside="nearest")
    outside = np.hypot(px[:, 0], px[:, 1]) > 1.0
    weight = res.weight.copy()
    weight[outside] = 0.0
    return Resampling(index=res.index, weight=weight, n_src=res.n_src)


def _check_input(x: torch.Tensor, ndim: int, last: tuple[int, ...], what: str) -> None:
    if x.ndim != ndim or tuple(x.shape[-len(last) :]) != last:
        want = "(batch, channels, " + ", ".join(map(str, last)) + ")"
        raise ValueError(f"{what} expects shape {want}, got {tuple(x.shape)}")


class SparseResampler(nn.Module):
    """Applies a fixed :class:`Resampling` along the last axis with CSR products.

    The CSR arrays are non-persistent buffers: they follow ``.to()`` / ``.cuda()`` but stay out
    of the state dict, because the geometry is recomputed from the configuration.
    """

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    val_t: torch.Tensor

    def __init__(self, res: Resampling) -> None:
        super().__init__()
        pair = res.csr(torch.float32)
        self.n_dst, self.n_src = pair.n_dst, pair.n_src
        for name in ("crow", "col", "val", "crow_t", "col_t", "val_t"):
            self.register_buffer(name, getattr(pair, name), persistent=False)

    def pair(self) -> CSRPair:
        """The matrix as a :class:`CSRPair` on the module's device."""
        return CSRPair(
            self.crow,
            self.col,
            self.val,
            self.crow_t,
            self.col_t,
            self.val_t,
            self.n_dst,
            self.n_src,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_resample(x, self.pair())


class ImageToSpiral(nn.Module):
    """Resample ``(B, C, L, L)`` cartesian images to ``(B, C, n_spls)`` spiral maps."""

    def __init__(self, size: int, spec: SpiralSpec) -> None:
        super().__init__()
        self.size, self.n_spls = size, spec.n
        self.res = SparseResampler(image_to_spiral_resampling(size, spec.n_wind, spec.n))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _check_input(img, 4, (self.size, self.size), "ImageToSpiral")
        return self.res(img.flatten(-2))


class SpiralToImage(nn.Module):
    """Resample ``(B, C, n_spls)`` spiral maps to ``(B, C, L, L)`` images (zero off the disc)."""

    def __init__(self, size: int, spec: SpiralSpec) -> None:
        super().__init__()
        self.size, self.n_spls = size, spec.n
        self.res = SparseResampler(spiral_to_image_resampling(size, spec.n_wind, spec.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, 3, (self.n_spls,), "SpiralToImage")
        return self.res(x).unflatten(-1, (self.size, self.size))


def spiral_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ribbon: CSRPair,
) -> torch.Tensor:
    """Spiral convolution: resample onto the ribbon, then valid ``conv2d`` (thesis 7.3.2).

    Args:
        x: ``(B, C_in, n_spls)`` spiral feature map.
        weight: ``(C_out, C_in, rows, cols)`` kernel; rows radial (inner to outer winding),
            columns along the spiral (centre to rim).
        bias: ``(C_out,)`` or ``None``.
        ribbon: spiral -> ribbon matrix from :func:`ribbon_resampling` (as
            :meth:`Resampling.csr`), shape ``(rows * (n_spls + cols - 1), n_spls)``.

    Returns:
        ``(B, C_out, n_spls)``.
    """
    if x.ndim != 3:
        raise ValueError(f"spiral_conv expects (batch, channels, n_spls), got {tuple(x.shape)}")
    rows, cols = weight.shape[-2:]
    n = x.shape[-1]
    if ribbon.n_dst != rows * (n + cols - 1) or ribbon.n_src != n:
        raise ValueError(
            f"ribbon matrix is {ribbon.n_dst}x{ribbon.n_src}, expected {rows * (n + cols - 1)}x{n} "
            f"(rows*(n_spls+cols-1) x n_spls) for input with n_spls={n} and kernel {rows}x{cols}"
        )
    # A valid (rows, cols) conv2d over a rows-high ribbon equals a conv1d whose input channels
    # are (channel, row) pairs; conv1d is 2-3x faster on CPU for such flat inputs.
    rib = sparse_resample(x, ribbon).reshape(x.shape[0], x.shape[1] * rows, n + cols - 1)
    return F.conv1d(rib, weight.reshape(weight.shape[0], -1, cols), bias)


class SpiralConv(nn.Module):
    """Spiral convolution layer on ``(B, C_in, n_spls)`` -> ``(B, C_out, n_spls)``.

    Args:
        in_channels, out_channels: channel counts.
        spec: the spiral; ``spec.rows`` x ``spec.cols`` is the kernel size.
        bias: whether to add a per-channel bias.

    Initialisation matches ``nn.Conv2d`` of the same kernel size.
    """

    def __init__(
        self, in_channels: int, out_channels: int, spec: SpiralSpec, bias: bool = True
    ) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, spec.rows, spec.cols))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.ribbon = SparseResampler(ribbon_resampling(spec.n_wind, spec.n, spec.rows, spec.cols))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform initialisation as in ``nn.Conv2d``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.spec.rows * self.spec.cols
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, 3, (self.spec.n,), "SpiralConv")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"SpiralConv expects {self.in_channels} channels, got {x.shape[1]}")
        return spiral_conv(x, self.weight, self.bias, self.ribbon.pair())

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"{self.in_channels}, {self.out_channels}, kernel=({s.rows}, {s.cols}), "
            f"n_wind={s.n_wind}, n_spls={s.n}"
        )
