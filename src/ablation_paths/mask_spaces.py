"""Mask spaces: how a mask is applied to an image.

This is the one seam between the optimiser and the feature representation (thesis 2.1.1 "Masks",
4.3). The optimiser works on paths ``[T, *mask_shape]`` with values in ``[0, 1]`` where ``1`` means
"removed" and only ever calls the methods below, so pixel masks and SIFT feature gains plug in the
same way.
"""

from __future__ import annotations

import abc

import torch.nn.functional as F
from torch import Tensor

from ablation_paths.filters import gaussian_blur

__all__ = ["MaskSpace", "PixelMaskSpace"]


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

    def upsample(self, masks: Tensor) -> Tensor:
        """Bilinear upsampling ``[B, h, w] -> [B, 1, H, W]`` (align_corners=False)."""
        return F.interpolate(
            masks.unsqueeze(1), size=self.image_size, mode="bilinear", align_corners=False
        )

    def apply(self, masks: Tensor) -> Tensor:
        theta = self.upsample(masks.to(self.target.dtype))
        return self.target.unsqueeze(0) + theta * (self.baseline - self.target).unsqueeze(0)

    def regularize(self, masks: Tensor) -> Tensor:
        if self.sigma_reg <= 0:
            return masks
        return gaussian_blur(masks, self.sigma_reg)

    def to_image(self, values: Tensor) -> Tensor:
        return self.upsample(values.unsqueeze(0)).squeeze(0).squeeze(0)
