"""Image rotation for the equivariance metric and for augmentation.

Rotations by arbitrary angles use the three-shear decomposition with band-limited (FFT phase)
shifts (Unser, Thevenaz and Yaroslavsky 1995)::

    R(-a) = X(tan(a/2)) Y(-sin a) X(tan(a/2)),   X(s) = [[1, s], [0, 1]],  Y(s) = [[1, 0], [s, 1]]

Every shear is a unitary shift of each row (column) on a zero-padded periodic grid, so white
noise stays white with the same variance: a bilinear rotation would blur the noise and change
the input statistics the denoiser sees, which would pollute the equivariance measurement.
Angles are reduced to ``[-pi/4, pi/4]`` by exact ``rot90`` steps first.

Convention: images are ``(..., L, L)`` arrays indexed ``[row, col] = [y, x]`` with the pixel
coordinates of :func:`spiral_cnn.geometry.pixel_centres`. A positive angle rotates the content
from the ``+x`` axis towards the ``+y`` axis, i.e. ``rotate_images(img, pi/2)`` equals
``torch.rot90(img, 1, dims=(-1, -2))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _shear_rows(img: torch.Tensor, shift_per_row: torch.Tensor) -> torch.Tensor:
    """``out[..., y, x] = img[..., y, x + s * yc]`` with ``yc`` the centred row coordinate.

    Args:
        img: ``(B, n, n)`` real tensor (padded, periodic).
        shift_per_row: ``(B,)`` shear factor ``s`` per image.
    """
    n = img.shape[-1]
    yc = torch.arange(n, dtype=img.dtype, device=img.device) - (n - 1) / 2.0
    k = torch.fft.rfftfreq(n, device=img.device).to(img.dtype)  # cycles / pixel
    d = shift_per_row[:, None, None] * yc[None, :, None]  # (B, n, 1) shift in pixels
    phase = torch.polar(torch.ones_like(d * k), 2.0 * math.pi * d * k)
    spec = torch.fft.rfft(img, dim=-1) * phase
    return torch.fft.irfft(spec, n=n, dim=-1)


def rotate_images(img: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    """Rotate square images about their centre by ``angle`` radians (see module docstring).

    Args:
        img: ``(..., L, L)`` real tensor.
        angle: scalar or tensor broadcastable to the leading batch shape ``img.shape[:-2]``.

    Returns:
        ``(..., L, L)`` rotated images, same dtype and device; content leaving the ``L x L``
        square is cut off (irrelevant for disc-supported particles).
    """
    if img.ndim < 2 or img.shape[-1] != img.shape[-2]:
        raise ValueError(f"rotate_images expects (..., L, L) square images, got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ValueError(f"rotate_images expects a floating-point tensor, got {img.dtype}")
    lead = img.shape[:-2]
    size = img.shape[-1]
    a = torch.as_tensor(angle, dtype=torch.float64, device=img.device)
    a = torch.broadcast_to(a, lead).reshape(-1)
    x = img.reshape(-1, size, size)
    # Exact quarter turns first, leaving a residual angle in [-pi/4, pi/4].
    quarter = torch.round(a / (math.pi / 2))
    resid = a - quarter * (math.pi / 2)
    q = quarter.remainder(4).to(torch.long)
    out = x.clone()
    for turns in range(1, 4):
        sel = q == turns
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], turns, dims=(-1, -2))
    pad = size // 2 + 1
    p = F.pad(out, (pad, pad, pad, pad))
    t = torch.tan(resid / 2).to(img.dtype)
    s = (-torch.sin(resid)).to(img.dtype)
    p = _shear_rows(p, t)
    p = _shear_rows(p.transpose(-1, -2), s).transpose(-1, -2)
    p = _shear_rows(p, t)
    return p[:, pad : pad + size, pad : pad + size].reshape(*lead, size, size)
