"""SIFT features as a mask space for the ablation-path optimiser (thesis 4.3).

A mask is a vector ``theta in [0, 1]^K`` over the SIFT features, 1 meaning "removed". The masked
image is ``D_SIFT(1 - theta)`` (eq. 4.41-4.43): the all-zero mask gives the (reconstructed) image,
the all-one mask the implicit all-zero baseline (4.3.1). No spatial regularisation is needed
(4.3.2); the optional mass-weighted metric uses eq. 4.45 (4.3.3); ``to_image`` is the Voronoi field
heatmap (eq. 4.46-4.47).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ablation_paths.baselines import Baseline
from ablation_paths.mask_spaces import MaskSpace, MaskSpaceFactory, register_mask_space
from ablation_paths.sift.decomposition import SiftDecomposition, SiftParams, decompose

if TYPE_CHECKING:
    from ablation_paths.inputs import ClassifierFn
    from ablation_paths.optimizer import AblationPathConfig
    from ablation_paths.result import AblationPathResult

__all__ = ["SiftFeatures", "SiftMaskSpace"]


class SiftMaskSpace(MaskSpace):
    """Mask space over the ``K`` features of a :class:`SiftDecomposition`.

    Args:
        decomposition: the image's decomposition (fixes dtype and device).
        mass_weighted: if ``True``, :meth:`weights` returns the normalised per-feature masses
            ``W_j / sum W`` (eq. 4.45) for the constant-speed metric; otherwise ``None`` (plain
            mean over features).

    Attributes:
        mask_shape: ``(K,)``.
        target: ``D(1)`` ``[C, H, W]``, the reconstructed image (equal to the input up to rounding).
        baseline: zeros ``[C, H, W]`` (implicit baseline ``D(0) = 0``, thesis 4.3.1).
    """

    def __init__(self, decomposition: SiftDecomposition, mass_weighted: bool = False) -> None:
        self.decomposition = decomposition
        k = decomposition.num_features
        self.mask_shape = (k,)
        with torch.no_grad():
            ones = torch.ones(k, dtype=decomposition.dtype, device=decomposition.device)
            self.target = decomposition.decode(ones)
        self.baseline = torch.zeros_like(self.target)
        self.mass_weighted = bool(mass_weighted)

    @classmethod
    def from_image(
        cls,
        image: Tensor,
        params: SiftParams | None = None,
        mass_weighted: bool = False,
        **overrides,
    ) -> SiftMaskSpace:
        """Decompose ``image`` ``[3|1, H, W]`` (see :func:`decompose`) and wrap it."""
        return cls(decompose(image, params, **overrides), mass_weighted=mass_weighted)

    def _check(self, masks: Tensor) -> Tensor:
        if masks.dim() != 2 or tuple(masks.shape[1:]) != self.mask_shape:
            raise ValueError(
                f"SIFT masks must be [B, K] with K = {self.mask_shape[0]}, "
                f"got shape {tuple(masks.shape)}"
            )
        return masks

    def apply(self, masks: Tensor) -> Tensor:
        """Masks ``[B, K]`` (1 = removed) -> images ``[B, C, H, W]`` = ``D(1 - masks)``;
        differentiable in ``masks``."""
        return self.decomposition.decode(1 - self._check(masks))

    def weights(self) -> Tensor | None:
        """Normalised eq. 4.45 masses ``[K]`` (summing to 1) if ``mass_weighted``, else ``None``."""
        if not self.mass_weighted:
            return None
        return self.decomposition.mass_weights(normalize=True)

    def to_image(self, values: Tensor) -> Tensor:
        """Voronoi-field heatmap (eq. 4.46-4.47): per-feature values ``[K]`` -> ``[H, W]``."""
        if tuple(values.shape) != self.mask_shape:
            raise ValueError(
                f"values must be [K] with K = {self.mask_shape[0]}, got {tuple(values.shape)}"
            )
        return self.decomposition.voronoi_heatmap(values)

    def contrast_image(self, masks: Tensor, sigma_lp: float = 8.0, sigma_hp: float = 5.0) -> Tensor:
        """Local-contrast heatmaps (eq. 4.48) of the masked images: masks ``[K]`` or a path
        ``[T, K]`` (1 = removed) -> ``[H, W]`` or ``[T, H, W]``."""
        return self.decomposition.contrast_heatmap(1 - masks, sigma_lp, sigma_hp)


@register_mask_space("sift")
class SiftFeatures(MaskSpaceFactory):
    """The ``"sift"`` mask space: the image's SIFT features (``feature_options`` are
    :class:`SiftParams` fields and ``mass_weighted``), the implicit all-zero baseline (4.3.1) and
    no spatial regularisation (4.3.2)."""

    options = (*(f.name for f in dataclasses.fields(SiftParams)), "mass_weighted")
    ignored_config = ("mask_size", "regularization")

    @classmethod
    def make_baseline(
        cls, image: Tensor, classifier: ClassifierFn, spec: Any, config: AblationPathConfig
    ) -> Baseline:
        if isinstance(spec, Tensor) or spec not in ("blur", None, "zero"):
            raise ValueError("SIFT features use the implicit all-zero baseline (thesis 4.3.1)")
        return Baseline(torch.zeros_like(image), "zero")

    @classmethod
    def build(
        cls,
        image: Tensor,
        baseline: Baseline,
        config: AblationPathConfig,
        options: Mapping[str, Any],
    ) -> SiftMaskSpace:
        params = dict(options)
        mass_weighted = bool(params.pop("mass_weighted", False))
        return SiftMaskSpace(decompose(image, **params), mass_weighted=mass_weighted)

    @classmethod
    def from_result(cls, result: AblationPathResult) -> SiftMaskSpace | None:
        """Decompose the saved image again with the saved ``feature_options`` (deterministic)."""
        saved = result.info.get("feature_options", {})
        params: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()
        }
        mass_weighted = bool(params.pop("mass_weighted", False))
        return SiftMaskSpace(decompose(result.image.float(), **params), mass_weighted=mass_weighted)
