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
        mass_residual: count each feature's share of the low-pass residual (the mean colour) in
            its mass. Default ``False``: with it, the one feature owning the residual cells holds
            about half the total mass and the path cannot saturate (see
            :meth:`SiftDecomposition.mass_weights`).

    Attributes:
        mask_shape: ``(K,)``.
        target: ``D(1)`` ``[C, H, W]``, the reconstructed image (equal to the input up to rounding).
        baseline: zeros ``[C, H, W]`` (implicit baseline ``D(0) = 0``, thesis 4.3.1).
    """

    def __init__(
        self,
        decomposition: SiftDecomposition,
        mass_weighted: bool = False,
        mass_residual: bool = False,
    ) -> None:
        self.decomposition = decomposition
        k = decomposition.num_features
        self.mask_shape = (k,)
        with torch.no_grad():
            ones = torch.ones(k, dtype=decomposition.dtype, device=decomposition.device)
            self.target = decomposition.decode(ones)
        self.baseline = torch.zeros_like(self.target)
        self.mass_weighted = bool(mass_weighted)
        self.mass_residual = bool(mass_residual)

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
        return self.decomposition.mass_weights(normalize=True, residual=self.mass_residual)

    def to_image(self, values: Tensor) -> Tensor:
        """Voronoi-field heatmap (eq. 4.46-4.47): per-feature values ``[K]`` -> ``[H, W]``."""
        if tuple(values.shape) != self.mask_shape:
            raise ValueError(
                f"values must be [K] with K = {self.mask_shape[0]}, got {tuple(values.shape)}"
            )
        return self.decomposition.voronoi_heatmap(values)

    def extra_heatmaps(self, path: Tensor, probs: Tensor, target: int) -> dict[str, Tensor]:
        """Heatmaps beyond the per-feature reductions: ``{"sift_contrast": [H, W]}``.

        ``sift_contrast`` is the local contrast (eq. 4.48, ``sigma_LP = 8``, ``sigma_HP = 5`` px)
        of the image decoded from the class-transition reduction (2.7.2B): the features still
        kept at the last time the target class ranks first, ``D(1 - phi(t_clt))`` - the
        combination that scored best in the thesis's Table 4.2.

        Args:
            path: interior samples ``[T, K]`` of the (first) path (1 = removed).
            probs: class probabilities ``[T + 2, n_classes]`` along it, with both ends.
            target: the explained class.
        """
        from ablation_paths.reductions import class_transition_index

        if path.dim() != 2 or tuple(path.shape[1:]) != self.mask_shape:
            raise ValueError(
                f"path must be [T, K] with K = {self.mask_shape[0]}, got {tuple(path.shape)}"
            )
        if probs.dim() != 2 or probs.shape[0] != path.shape[0] + 2:
            raise ValueError(
                f"probs must be [T + 2, n_classes] = [{path.shape[0] + 2}, n], "
                f"got {tuple(probs.shape)}"
            )
        p = path.to(device=self.decomposition.device, dtype=self.decomposition.dtype)
        kept = 1 - p[class_transition_index(probs[1:-1], target)]
        with torch.no_grad():
            heat = self.decomposition.contrast_heatmap(kept)
        return {"sift_contrast": heat}

    def contrast_image(self, masks: Tensor, sigma_lp: float = 8.0, sigma_hp: float = 5.0) -> Tensor:
        """Local-contrast heatmaps (eq. 4.48) of the masked images: masks ``[K]`` or a path
        ``[T, K]`` (1 = removed) -> ``[H, W]`` or ``[T, H, W]``."""
        return self.decomposition.contrast_heatmap(1 - masks, sigma_lp, sigma_hp)


def _pop_weighting(params: dict[str, Any]) -> dict[str, bool]:
    """Take the mass-weighting options of :class:`SiftMaskSpace` out of ``params``."""
    return {
        "mass_weighted": bool(params.pop("mass_weighted", False)),
        "mass_residual": bool(params.pop("mass_residual", False)),
    }


@register_mask_space("sift")
class SiftFeatures(MaskSpaceFactory):
    """The ``"sift"`` mask space: the image's SIFT features (``feature_options`` are
    :class:`SiftParams` fields, ``mass_weighted`` and ``mass_residual``), the implicit all-zero
    baseline (4.3.1) and no spatial regularisation (4.3.2)."""

    options = (
        *(f.name for f in dataclasses.fields(SiftParams)),
        "mass_weighted",
        "mass_residual",
    )
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
        weighting = _pop_weighting(params)
        return SiftMaskSpace(decompose(image, **params), **weighting)

    @classmethod
    def from_result(cls, result: AblationPathResult) -> SiftMaskSpace | None:
        """Decompose the saved image again with the saved ``feature_options`` (deterministic)."""
        saved = result.info.get("feature_options", {})
        params: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()
        }
        weighting = _pop_weighting(params)
        return SiftMaskSpace(decompose(result.image.float(), **params), **weighting)
