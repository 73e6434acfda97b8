"""Pixel masks: the ``"pixel"`` mask space (thesis 2.6.1).

Masks are low-resolution images ``[h, w]`` (64 x 64 for 224 px images), bilinearly upsampled to
the image and blended with an image baseline: ``x = x_tg + theta (x_bl - x_tg)``. The
regularisation blur (eq. 2.24) is applied to the masks after every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor

from ablation_paths.filters import gaussian_blur
from ablation_paths.mask_spaces import MaskSpace, register_mask_space
from ablation_paths.optimizer import AblationPathConfig, regularization_sigma

if TYPE_CHECKING:
    from ablation_paths.baselines import Baseline
    from ablation_paths.result import AblationPathResult

__all__ = ["PixelMaskSpace"]


@register_mask_space("pixel")
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

    @classmethod
    def build(
        cls,
        image: Tensor,
        baseline: Baseline,
        config: AblationPathConfig,
        options: Mapping[str, Any],
    ) -> PixelMaskSpace:
        """Masks of ``config.resolved_mask_size`` with the config's regularisation blur."""
        mask_size = config.resolved_mask_size(int(image.shape[1]), int(image.shape[2]))
        return cls(image, baseline.image, mask_size, regularization_sigma(config, mask_size))

    @classmethod
    def from_result(cls, result: AblationPathResult) -> PixelMaskSpace | None:
        """The space of a saved pixel-mask result (image, baseline, mask size from the path)."""
        if result.path.dim() != 3:
            return None
        sigma = float(result.info.get("regularization_sigma_mask_px", 0.0))
        image = result.image.float()
        mask_size = (int(result.path.shape[1]), int(result.path.shape[2]))
        return cls(image, result.baseline_image.float(), mask_size, sigma)

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

    def describe(self) -> dict[str, Any]:
        return {"regularization_sigma_mask_px": self.sigma_reg}
