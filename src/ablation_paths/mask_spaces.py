"""Mask spaces: how a mask is applied to an image.

This is the one seam between the optimiser and the feature representation (thesis 2.1.1 "Masks",
4.3). The optimiser works on paths ``[T, *mask_shape]`` with values in ``[0, 1]`` where ``1`` means
"removed" and only ever calls the methods below, so pixel masks and SIFT feature gains plug in the
same way.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MaskSpace", "PixelMaskSpace", "gaussian_blur"]


class MaskSpace(abc.ABC):
    """Abstract mask space.

    Subclasses define ``mask_shape`` (shape of one mask, e.g. ``(h, w)`` for pixels or ``(K,)`` for
    features) and :meth:`apply`. ``target`` and ``baseline`` are the images ``[C, H, W]`` that the
    masks ``0`` (all kept) and ``1`` (all removed) produce.
    """

    mask_shape: tuple[int, ...]
    target: Tensor
    baseline: Tensor

    @abc.abstractmethod
    def apply(self, masks: Tensor) -> Tensor:
        """Apply masks ``[B, *mask_shape]`` and return images ``[B, C, H, W]``.

        Must be differentiable with respect to ``masks``.
        """

    def regularize(self, masks: Tensor) -> Tensor:
        """Smooth a batch of masks ``[B, *mask_shape]`` (thesis eq. 2.24). Identity by default."""
        return masks

    def weights(self) -> Tensor | None:
        """Per-feature mass weights ``[*mask_shape]`` summing to 1 for the constant-speed metric.

        ``None`` means the plain mean (thesis 2.2 "Constant speed"; weighted variant 4.3.3).
        """
        return None

    @abc.abstractmethod
    def to_image(self, values: Tensor) -> Tensor:
        """Turn a per-feature map ``[*mask_shape]`` into an image-resolution heatmap ``[H, W]``."""

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.target.shape[-2]), int(self.target.shape[-1])


def _gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _symmetric_indices(n: int, radius: int, device: torch.device) -> Tensor:
    """Indices of a half-sample symmetric extension by ``radius`` (works for any radius)."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur_fft(image: Tensor, sigmas: Tensor) -> Tensor:
    """Gaussian blurs of one image ``[C, H, W]`` at ``sigmas [S]`` (pixels) -> ``[S, C, H, W]``.

    Uses the symmetric (mirror) extension, which is periodic with period ``2H x 2W``, so one FFT
    serves every sigma, however wide the kernel; the transfer function is the continuous
    Gaussian's, ``exp(-2 pi^2 sigma^2 f^2)``. Agrees with :func:`gaussian_blur` to about 1e-3 for
    ``sigma >= 1``. Keeps dtype and device.
    """
    c, h, w = image.shape
    ext = torch.cat([image, image.flip(-1)], dim=-1)
    ext = torch.cat([ext, ext.flip(-2)], dim=-2)  # [C, 2H, 2W], periodic mirror extension
    spec = torch.fft.rfft2(ext.double())
    fy = torch.fft.fftfreq(2 * h, dtype=torch.float64, device=image.device)
    fx = torch.fft.rfftfreq(2 * w, dtype=torch.float64, device=image.device)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    s2 = sigmas.to(device=image.device, dtype=torch.float64).view(-1, 1, 1, 1) ** 2
    transfer = torch.exp(-2.0 * math.pi**2 * s2 * f2)
    out = torch.fft.irfft2(spec.unsqueeze(0) * transfer, s=(2 * h, 2 * w))
    return out[..., :h, :w].to(image.dtype).contiguous()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (thesis eq. 2.25) of ``[B, C, H, W]``; ``sigma`` in pixels.

    The image is extended symmetrically at its borders (also for kernels wider than the image),
    so a constant image stays constant and no mass leaks out. ``sigma <= 0`` returns the input.
    Keeps dtype and device; differentiable.
    """
    if images.dim() != 4:
        raise ValueError(f"gaussian_blur expects [B, C, H, W], got shape {tuple(images.shape)}")
    if sigma <= 0:
        return images
    k = _gaussian_kernel1d(float(sigma), images.dtype, images.device)
    radius = (k.numel() - 1) // 2
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    x = x.index_select(3, _symmetric_indices(w, radius, images.device))
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = x.index_select(2, _symmetric_indices(h, radius, images.device))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


class PixelMaskSpace(MaskSpace):
    """Low-resolution pixel masks, bilinearly upsampled to the image (thesis 2.6.1).

    Args:
        target: image ``[C, H, W]`` (what the classifier sees, after any preprocessing).
        baseline: image ``[C, H, W]`` of the same shape, dtype and device.
        mask_size: ``(h, w)`` of the masks.
        sigma_reg: Gaussian regularisation blur in *mask* pixels (eq. 2.24); ``0`` disables it.
    """

    def __init__(
        self,
        target: Tensor,
        baseline: Tensor,
        mask_size: tuple[int, int],
        sigma_reg: float = 0.0,
    ) -> None:
        if target.dim() != 3 or baseline.shape != target.shape:
            raise ValueError(
                f"target and baseline must both be [C, H, W] of one shape, got "
                f"{tuple(target.shape)} and {tuple(baseline.shape)}"
            )
        self.target = target
        self.baseline = baseline.to(dtype=target.dtype, device=target.device)
        self.mask_shape = (int(mask_size[0]), int(mask_size[1]))
        self.sigma_reg = float(sigma_reg)
        self._blur: tuple[Tensor, Tensor, Tensor] | None = None
        if self.sigma_reg > 0:
            k = _gaussian_kernel1d(self.sigma_reg, target.dtype, target.device)
            r = (k.numel() - 1) // 2
            h, w = self.mask_shape
            self._blur = (
                k,
                _symmetric_indices(h, r, target.device),
                _symmetric_indices(w, r, target.device),
            )

    def upsample(self, masks: Tensor) -> Tensor:
        """Bilinear upsampling ``[B, h, w] -> [B, 1, H, W]`` (align_corners=False)."""
        return F.interpolate(
            masks.unsqueeze(1), size=self.image_size, mode="bilinear", align_corners=False
        )

    def apply(self, masks: Tensor) -> Tensor:
        theta = self.upsample(masks.to(self.target.dtype))
        return self.target.unsqueeze(0) + theta * (self.baseline - self.target).unsqueeze(0)

    def regularize(self, masks: Tensor) -> Tensor:
        if self._blur is None:
            return masks
        k, rows, cols = self._blur
        k = k.to(masks.dtype)
        x = masks.unsqueeze(1).index_select(3, cols)
        x = F.conv2d(x, k.view(1, 1, 1, -1)).index_select(2, rows)
        return F.conv2d(x, k.view(1, 1, -1, 1)).squeeze(1)

    def to_image(self, values: Tensor) -> Tensor:
        return self.upsample(values.unsqueeze(0)).squeeze(0).squeeze(0)
