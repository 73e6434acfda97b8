"""The SIFT feature decomposition: encoder ``decompose`` and decoder ``SiftDecomposition.decode``
(thesis 4.1-4.2, eq. 4.10-4.14, 4.26, 4.34, 4.41).

>>> dec = decompose(image)                       # image [3, H, W] in [0, 1]
>>> dec.num_features                             # K keypoints (x, y, sigma)
>>> dec.decode(torch.ones(1, dec.num_features))  # ~= image   (eq. 4.14)
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ablation_paths.diagnostics import InputWarning
from ablation_paths.sift.cells import assign_cells, blur_cells, hard_cells
from ablation_paths.sift.decoder import SparseLevel, decode_levels, to_torch_csr
from ablation_paths.sift.heatmaps import layer_weights, local_contrast, voronoi_field
from ablation_paths.sift.keypoints import Keypoints, default_keypoint, detect_keypoints, luma
from ablation_paths.sift.scale_space import (
    Layer,
    Level,
    ScaleSpace,
    detection_space,
    resample,
    scale_space,
)

__all__ = ["SiftDecomposition", "SiftParams", "decompose", "find_keypoints"]


@dataclass(frozen=True)
class SiftParams:
    """Parameters of the decomposition (defaults as in SPEC B / thesis 4.2).

    Attributes:
        scales_per_octave: ``rho`` of eq. 4.36 (layers per doubling of sigma).
        sigma_min: first sigma sample ``sigma_0`` in pixels.
        sigma_max: the residual starts at the first sample ``>= sigma_max``; ``None`` = image size.
        level_sigmas: sigma limits of the storage levels (Table 4.1): full resolution up to the
            first, half resolution up to the second, quarter above.
        contrast_threshold: keypoint contrast threshold (OpenCV convention, ``|D| * rho``).
        edge_threshold: Lowe's principal-curvature ratio limit.
        border: keypoint exclusion border in pixels of each level.
        max_keypoints: keep only the strongest keypoints (``None``: all).
        eta: weight of the sigma axis in the Voronoi distance (eq. 4.18).
        smooth_cells: blur each cell indicator with its layer's Gaussian (4.1.3C, eq. 4.27);
            ``False`` gives the hard partition of 4.1.3B (edges imprinted, for comparison).
        cutoff: soft sparsity threshold ``s`` of eq. 4.37 (``0`` disables the cutoff).
        truncate: Gaussian kernels are cut at ``truncate * sigma``.
        field_weights: layer weights ``C_l`` of the Voronoi-field heatmap (eq. 4.47), one of
            :data:`~ablation_paths.sift.heatmaps.FIELD_WEIGHTS`.
    """

    scales_per_octave: int = 3
    sigma_min: float = 0.8
    sigma_max: float | None = None
    level_sigmas: tuple[float, ...] = (4.5, 9.0)
    contrast_threshold: float = 0.04
    edge_threshold: float = 10.0
    border: int = 2
    max_keypoints: int | None = None
    eta: float = 4.0
    smooth_cells: bool = True
    cutoff: float = 0.01
    truncate: float = 4.0
    field_weights: str = "local_energy"


@dataclass
class SiftDecomposition:
    """Result of :func:`decompose`: keypoints plus the sparse decoder of one image.

    Attributes:
        image: the decomposed image ``[C, H, W]`` (dtype and device of all outputs).
        params: the parameters used.
        keypoints: ``K`` keypoints (numpy, original-pixel coordinates).
        layers: the sigma partition of the scale space.
        levels: decoder matrices, one per resolution level (eq. 4.40).
        field_levels: the same cells with the homogeneous field of eq. 4.46-4.47 (one channel).
        n_voxels: number of scale-space voxels (all layers, one channel).
        residual: the low-pass residual layer's own decoder matrix (on the coarsest level), for
            :meth:`mass_weights` without the mean colour.
        field_norm: ``[H, W]`` divisor of the Voronoi heatmap: the field of all-ones values
            (so the heatmap is a per-pixel weighted mean of the feature values), or its mean for
            ``field_weights="local_energy"`` (an energy density); ``None``: no division.
    """

    image: Tensor
    params: SiftParams
    keypoints: Keypoints
    layers: list[Layer]
    levels: list[SparseLevel]
    field_levels: list[SparseLevel]
    n_voxels: int
    field_norm: Tensor | None = field(default=None, repr=False)
    residual: SparseLevel | None = field(default=None, repr=False)
    _mass: dict[bool, Tensor] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        c, h, w = self.image.shape
        return (
            f"SiftDecomposition(K={self.num_features}, image=[{c}, {h}, {w}] {self.dtype} on "
            f"{self.device}, levels={[lv.size for lv in self.levels]}, nnz={self.nnz:,})"
        )

    # ----------------------------------------------------------------------------- basic facts
    @property
    def num_features(self) -> int:
        """``K``, the number of features (keypoints)."""
        return len(self.keypoints)

    K = num_features

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.image.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.image.dtype

    @property
    def device(self) -> torch.device:
        return self.image.device

    @property
    def xy_sigma(self) -> Tensor:
        """Keypoints ``[K, 3]`` as ``(x, y, sigma)`` in original pixels, image dtype and device."""
        return torch.as_tensor(self.keypoints.as_array(), dtype=self.dtype, device=self.device)

    @property
    def nnz(self) -> int:
        """Stored non-zeros of the decoder matrices (transposes and heatmap field not counted)."""
        return sum(lv.nnz for lv in self.levels)

    @property
    def nbytes(self) -> int:
        """Bytes held by all sparse matrices (decoder, transposes, Voronoi field)."""
        total = 0
        for lv in self.levels + self.field_levels:
            for m in (lv.matrix, lv.matrix_t):
                total += m.values().numel() * m.values().element_size()
                total += m.col_indices().numel() * m.col_indices().element_size()
                total += m.crow_indices().numel() * m.crow_indices().element_size()
        return total

    # ----------------------------------------------------------------------------- decoding
    def _check_gains(self, gains: Tensor, name: str = "gains") -> tuple[Tensor, bool]:
        if not isinstance(gains, Tensor):
            gains = torch.as_tensor(gains)
        single = gains.dim() == 1
        g = gains.unsqueeze(0) if single else gains
        if g.dim() != 2 or g.shape[1] != self.num_features:
            raise ValueError(
                f"{name} must be [K] or [B, K] with K = {self.num_features}, "
                f"got shape {tuple(gains.shape)}"
            )
        if not torch.isfinite(g).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        return g.to(dtype=self.dtype, device=self.device).contiguous(), single

    def decode(self, gains: Tensor) -> Tensor:
        """Decoder ``D_SIFT(theta)`` (eq. 4.41): ``[B, K]`` gains -> ``[B, C, H, W]`` images.

        A single ``[K]`` vector gives ``[C, H, W]``. Linear and differentiable in ``gains``; all
        ones reproduce the image (eq. 4.14, Lemma 8/10), all zeros give the zero image.
        """
        g, single = self._check_gains(gains)
        out = decode_levels(self.levels, g, self.image_size)
        return out[0] if single else out

    def features(self, index: Tensor | list[int] | int) -> Tensor:
        """Images of isolated features ``D(e_j)`` ``[n, C, H, W]`` for the given feature indices."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_features):
            raise ValueError(f"feature indices must be in [0, {self.num_features})")
        eye = torch.zeros(idx.numel(), self.num_features, dtype=self.dtype, device=self.device)
        eye[torch.arange(idx.numel(), device=self.device), idx] = 1
        return self.decode(eye)

    def mass_weights(
        self, normalize: bool = False, residual: bool = True, chunk: int = 64
    ) -> Tensor:
        """Per-feature mass ``W_j = ||D(e_j)||_2`` (eq. 4.45), ``[K]``, over all pixels and
        channels. ``normalize=True`` divides by the sum (weights summing to 1).

        ``residual=False`` leaves out each feature's share of the low-pass residual layer (the
        mean colour, eq. 4.31): the feature that owns the residual cells otherwise carries a
        large share of the total mass (48 % on the demo disc), and a feature of weight ``w``
        cannot be switched off faster than ``w`` of the path's time at constant speed, which caps
        the saturation (eq. 2.31) near ``1 - sum_j w_j^2 / 2``."""
        key = bool(residual)
        if key not in self._mass:
            out = []
            with torch.no_grad():
                for start in range(0, self.num_features, chunk):
                    idx = list(range(start, min(start + chunk, self.num_features)))
                    img = self.features(idx)
                    if not residual and self.residual is not None:
                        img = img - self._decode_residual(idx)
                    out.append(torch.linalg.vector_norm(img, dim=(1, 2, 3)))
            self._mass[key] = torch.cat(out)
        w = self._mass[key]
        return w / w.sum().clamp_min(torch.finfo(w.dtype).tiny) if normalize else w.clone()

    def _decode_residual(self, idx: list[int]) -> Tensor:
        """The residual layer's part of ``D(e_j)`` for features ``idx`` -> ``[n, C, H, W]``."""
        assert self.residual is not None
        eye = torch.zeros(len(idx), self.num_features, dtype=self.dtype, device=self.device)
        eye[torch.arange(len(idx), device=self.device), torch.as_tensor(idx)] = 1
        y = decode_levels([self.residual], eye, self.residual.size)
        for lv in self.levels[-2::-1]:
            y = resample(y, lv.size)
        return y

    # ----------------------------------------------------------------------------- heatmaps
    def voronoi_heatmap(self, values: Tensor) -> Tensor:
        """Voronoi-field heatmap (eq. 4.46-4.47) of per-feature values ``[K]`` -> ``[H, W]``
        (or ``[B, K]`` -> ``[B, H, W]``) with the layer weights ``params.field_weights``.
        Homogeneous weights give a per-pixel weighted mean of the values (constant values ``c``
        give the constant map ``c``); ``"local_energy"`` gives the density
        ``sum_i v_i E_i(r) / mean E``, with ``E_i`` feature ``i``'s share of the local band
        energy, which is large where salient features carry image structure."""
        g, single = self._check_gains(values, "values")
        out = voronoi_field(self.field_levels, g, self.image_size)
        if self.field_norm is not None:
            out = out / self.field_norm
        return out[0] if single else out

    def contrast_heatmap(
        self, gains: Tensor, sigma_lp: float = 8.0, sigma_hp: float = 5.0
    ) -> Tensor:
        """Local-contrast heatmap of the decoded images (eq. 4.48).

        ``gains``: ``[K]`` or a path ``[T, K]`` of gains (1 = kept; for ablation masks pass
        ``1 - mask``). Returns ``[H, W]`` or ``[T, H, W]``.
        """
        g, single = self._check_gains(gains)
        out = local_contrast(self.decode(g), sigma_lp, sigma_hp, self.params.truncate)
        return out[0] if single else out


def _as_image(image: Tensor) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be [3, H, W] or [1, H, W], got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a floating-point tensor in [0, 1], got {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    if image.shape[-1] < 4 or image.shape[-2] < 4:
        raise ValueError(f"image too small for a scale space: {tuple(image.shape)}")
    return image


def _layer_sum(blocks: list[np.ndarray], stacked: sp.csr_matrix, hw: int) -> sp.csr_matrix:
    """``sum_l diag(blocks[l]) chi_l`` as one sparse product ``B @ vstack_l(chi_l)`` with the CSR
    matrix ``B = [diag(b_1) ... diag(b_L)]`` ``[hw, L*hw]`` built directly (row ``p`` holds
    ``b_l[p]`` at column ``l*hw + p``): no per-layer additions of growing matrices."""
    n_l = len(blocks)
    data = np.stack(blocks, axis=1).ravel().astype(stacked.dtype, copy=False)  # [hw, L]
    indices = (np.arange(hw, dtype=np.int32)[:, None] + hw * np.arange(n_l, dtype=np.int32)).ravel()
    indptr = np.arange(0, hw * n_l + 1, n_l)
    band = sp.csr_matrix((data, indices, indptr), shape=(hw, n_l * hw), copy=False)
    out = (band @ stacked).tocsr()
    del band, data, indices
    out.eliminate_zeros()
    return out


def _vstack_csr(blocks: list[sp.csr_matrix]) -> sp.csr_matrix:
    """``vstack`` of CSR blocks with equal column counts that frees each block as soon as it is
    copied (``blocks`` is emptied): peak memory about the result plus one block, not twice the
    result."""
    nnz = sum(b.nnz for b in blocks)
    n_rows = sum(b.shape[0] for b in blocks)
    data = np.empty(nnz, dtype=blocks[0].dtype)
    indices = np.empty(nnz, dtype=np.int32 if nnz < 2**31 else np.int64)
    indptr = np.empty(n_rows + 1, dtype=indices.dtype)
    indptr[0] = 0
    n_cols, at, row = blocks[0].shape[1], 0, 0
    while blocks:
        b = blocks.pop(0)
        data[at : at + b.nnz] = b.data
        indices[at : at + b.nnz] = b.indices
        indptr[row + 1 : row + b.shape[0] + 1] = b.indptr[1:] + at
        at, row = at + b.nnz, row + b.shape[0]
        del b
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols), copy=False)


RANGE_TOLERANCE = 0.5
"""Values up to this far outside ``[0, 1]`` (overshoot of decoded or sharpened images) are taken
as they are; beyond it the image is in another range."""


def _unit_range(image: Tensor) -> Tensor:
    """The image for keypoint detection: itself when its values lie in ``[0, 1]`` (up to
    :data:`RANGE_TOLERANCE`); otherwise
    rescaled to ``[0, 1]`` (``/ 255`` when they fit ``[0, 255]``, else min-max) with an
    :class:`~ablation_paths.diagnostics.InputWarning`, because the contrast threshold assumes
    ``[0, 1]`` (a ``[0, 255]`` image would pass 255 times more keypoints)."""
    lo, hi = float(image.min()), float(image.max())
    if lo >= -RANGE_TOLERANCE and hi <= 1.0 + RANGE_TOLERANCE:
        return image
    if lo >= 0.0 and hi <= 255.0 + 1e-3:
        how, out = "divided by 255", image / 255.0
    else:
        how, out = "min-max rescaled", (image - lo) / max(hi - lo, 1e-12)
    warnings.warn(
        f"image values lie in [{lo:.3g}, {hi:.3g}], not [0, 1]: keypoints are detected on the "
        f"image {how} (the contrast threshold assumes [0, 1]); the decomposition still "
        "reconstructs the image as given",
        InputWarning,
        stacklevel=3,
    )
    return out


def _residual_matrix(space: ScaleSpace, chi: sp.csr_matrix) -> sp.csr_matrix:
    """``vstack_c(diag(T_res[c]) chi_res)`` ``[C*h*w, K]``: the residual layer alone."""
    band = space.bands[-1].detach().to(torch.float64).cpu().numpy()
    n_ch, hw = band.shape[0], band.shape[1] * band.shape[2]
    blocks = [sp.diags(band[c].reshape(hw)) @ chi for c in range(n_ch)]
    return sp.vstack(blocks, format="csr")


def _level_matrices(
    space: ScaleSpace,
    level: int,
    stacked: sp.csr_matrix,
    field_weights: list[np.ndarray],
    dtype: type[np.floating],
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """One level's ``Z = sum_l vstack_c(diag(T_l[c]) chi^_l)`` ``[C*h*w, K]`` (eq. 4.33, 4.40) and
    its field ``V = sum_l C_l chi^_l`` ``[h*w, K]`` (eq. 4.46), from the stacked cells
    ``vstack_l(chi^_l)`` ``[L*h*w, K]`` of the level's layers (in order) and the field weights
    ``C_l`` of all layers (``[1]`` or ``[h*w]``), in ``dtype``."""
    lv = space.levels[level]
    hw = lv.size[0] * lv.size[1]
    n_ch = int(space.bands[lv.layers[0]].shape[0])
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    bands = [  # views when the bands are already CPU tensors of that dtype
        space.bands[i].detach().to(device="cpu", dtype=tdtype).numpy().reshape(n_ch, hw)
        for i in lv.layers
    ]
    z = _vstack_csr([_layer_sum([b[c] for b in bands], stacked, hw) for c in range(n_ch)])
    ones = np.ones(hw, dtype=dtype)
    field = _layer_sum([ones * field_weights[i] for i in lv.layers], stacked, hw)  # broadcast
    return z, field


def find_keypoints(image: Tensor, params: SiftParams | None = None, **overrides) -> Keypoints:
    """The keypoints of :func:`decompose` without the decoder: refined extrema of the luma's
    detection pyramid (:func:`~ablation_paths.sift.scale_space.detection_space`), which does not
    depend on the storage setting ``level_sigmas``. Falls back to one centre keypoint on the
    coarsest DoG layer when nothing passes the thresholds (so ``K >= 1``)."""
    p = dataclasses.replace(params or SiftParams(), **overrides)
    x = _unit_range(_as_image(image).detach())
    det = detection_space(luma(x)[None], p.scales_per_octave, p.sigma_min, p.sigma_max, p.truncate)
    kp = detect_keypoints(
        det,
        contrast_threshold=p.contrast_threshold,
        edge_threshold=p.edge_threshold,
        border=p.border,
        max_keypoints=p.max_keypoints,
    )
    return kp if len(kp) else default_keypoint(det)


def _sparse_level(lv: Level, m: sp.csr_matrix, channels: int, x: Tensor) -> SparseLevel:
    """The decoder matrix ``m`` ``[channels * h * w, K]`` of level ``lv`` as a
    :class:`SparseLevel` on the dtype and device of the image ``x``."""
    return SparseLevel(
        factor=lv.factor,
        size=lv.size,
        channels=channels,
        matrix=to_torch_csr(m, x.dtype, x.device),
        matrix_t=to_torch_csr(m.T, x.dtype, x.device),
    )


def _field_norm(
    field_levels: list[SparseLevel], k: int, x: Tensor, size: tuple[int, int], field_weights: str
) -> Tensor:
    """``[H, W]`` divisor of the Voronoi heatmap: the field of all-ones values of the ``k``
    keypoints (eq. 4.46-4.47), or its mean for ``field_weights="local_energy"`` (a density: only
    its overall scale is removed), kept positive; on ``x``'s dtype and device."""
    with torch.no_grad():
        ones = torch.ones(1, k, dtype=x.dtype, device=x.device)
        norm = voronoi_field(field_levels, ones, size)[0]
        if field_weights == "local_energy":
            norm = norm.mean().expand_as(norm)
        return norm.clamp_min(float(norm.max()) * 1e-6 + torch.finfo(x.dtype).tiny)


def decompose(image: Tensor, params: SiftParams | None = None, **overrides) -> SiftDecomposition:
    """SIFT feature decomposition of one image (encoder ``E_SIFT``, eq. 4.10; decoder eq. 4.41).

    Args:
        image: ``[3, H, W]`` (RGB) or ``[1, H, W]`` (grey) float tensor, values in ``[0, 1]``
            (other ranges are reconstructed as given, but keypoints are detected on the image
            rescaled to ``[0, 1]``, with an :class:`~ablation_paths.diagnostics.InputWarning`).
        params: :class:`SiftParams`; keyword ``overrides`` replace single fields
            (e.g. ``decompose(x, eta=2.0, cutoff=0.0)``).

    Returns:
        :class:`SiftDecomposition` on the image's dtype and device. Keypoints are detected on the
        greyscale image; if none pass the thresholds (e.g. a flat image) a single keypoint at the
        centre on the coarsest DoG layer is used, so ``K >= 1``.
    """
    p = dataclasses.replace(params or SiftParams(), **overrides)
    x = _as_image(image)
    space = scale_space(
        x.detach(), p.scales_per_octave, p.sigma_min, p.sigma_max, p.level_sigmas, p.truncate
    )
    kp = find_keypoints(x, p)
    k = len(kp)
    tree = cKDTree(np.stack([kp.x, kp.y, p.eta * kp.sigma], axis=1))
    hh, ww = space.image_size
    field_weights = layer_weights(space, kp, p.field_weights)
    np_dtype = np.float64 if x.dtype == torch.float64 else np.float32
    levels: list[SparseLevel] = []
    field_levels: list[SparseLevel] = []
    residual: SparseLevel | None = None
    n_vox = 0
    for li, lv in enumerate(space.levels):  # one level at a time: peak memory ~ one level
        cells: list[sp.csr_matrix] = []
        for i in lv.layers:
            layer = space.layers[i]
            n_vox += lv.size[0] * lv.size[1]
            labels = assign_cells(tree, lv.size, (hh, ww), layer.sigma, p.eta)
            if p.smooth_cells:
                s = (layer.sigma * lv.size[0] / hh, layer.sigma * lv.size[1] / ww)
                chi = blur_cells(labels, k, s, p.truncate, cutoff=p.cutoff, dtype=np_dtype)
            else:
                chi = hard_cells(labels, k)
            cells.append(chi.astype(np_dtype))  # float32 storage for float32 images
        if li == len(space.levels) - 1:  # the low-pass residual is the last layer
            zr = _residual_matrix(space, cells[-1])
            residual = _sparse_level(lv, zr, x.shape[0], x)
        stacked = _vstack_csr(cells)  # [L*hw, K]; empties `cells` while copying
        z, v = _level_matrices(space, li, stacked, field_weights, np_dtype)
        del stacked
        levels.append(_sparse_level(lv, z, x.shape[0], x))
        del z
        field_levels.append(_sparse_level(lv, v, 1, x))
        del v
    norm = _field_norm(field_levels, k, x, (hh, ww), p.field_weights)
    return SiftDecomposition(
        image=x.detach(),
        params=p,
        keypoints=kp,
        layers=space.layers,
        levels=levels,
        field_levels=field_levels,
        n_voxels=n_vox,
        field_norm=norm,
        residual=residual,
    )
