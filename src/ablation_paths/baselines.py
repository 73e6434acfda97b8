"""Baseline images (thesis 2.7.1): what a fully ablated image looks like."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor

from ablation_paths.filters import gaussian_blur, gaussian_blur_fft
from ablation_paths.inputs import ClassifierFn, ImageLike, check_image, load_image

__all__ = ["Baseline", "blurred_baseline", "constant_baseline", "make_baseline"]


@dataclass
class Baseline:
    """A baseline image ``[C, H, W]`` and how it was made."""

    image: Tensor
    kind: str  # "blur", "constant", "image" or "zero"
    sigma: float | None = None  # blur sigma in image pixels
    flips_class: bool | None = None  # whether argmax F(baseline) != argmax F(target)
    note: str = ""


#: Bytes of FFT work memory per blur-sigma chunk: the search blurs as many sigmas at once as fit.
BLUR_SEARCH_BYTES = 256 * 1024**2


def _sigmas_per_chunk(image: Tensor, budget: int = BLUR_SEARCH_BYTES) -> int:
    """How many sigmas one float32 FFT blur can take within ``budget`` bytes (at least 1): each
    sigma holds a complex ``[C, 2H, W + 1]`` spectrum and a real ``[C, 2H, 2W]`` result."""
    c, h, w = (int(n) for n in image.shape)
    per_sigma = c * 2 * h * (w + 1) * 8 + c * 4 * h * w * 4
    return max(1, budget // per_sigma)


def blurred_baseline(
    classifier: ClassifierFn,
    image: Tensor,
    *,
    sigma_min: float = 4.0,
    sigma_max: float = 100.0,
    n_candidates: int = 16,
    batch_size: int | None = 32,
    memory_budget: int = BLUR_SEARCH_BYTES,
    search_chunk: int = 4,
) -> Baseline:
    """Gaussian blur of the target with the smallest sigma that changes the predicted class.

    Sigmas (image pixels) are searched on a geometric grid from ``sigma_min`` to ``sigma_max``
    (thesis eq. 2.32: at least 4, at most 100 px; 16 candidates about 24 % apart), smallest first.
    Candidates are blurred with a float32 FFT and classified ``search_chunk`` at a time
    (fewer where ``memory_budget`` bytes do not hold that many: one for multi-megapixel
    images), in batches of ``batch_size``, and the search stops at the first sigma that changes
    the class, so memory stays bounded whatever the image size. On the benchmark scenes the
    class flips within the first 8 sigmas of the grid, so chunks of 4 classify 4-8 candidates
    instead of all 16.
    If no candidate changes the class, ``sigma_max`` is used and the result says so.
    """
    image = check_image(image)
    sigmas = np.geomspace(sigma_min, sigma_max, n_candidates)
    original = int(classifier.probabilities(image.unsqueeze(0))[0].argmax())
    if search_chunk < 1:
        raise ValueError(f"search_chunk must be >= 1, got {search_chunk}")
    chunk = min(search_chunk, _sigmas_per_chunk(image, memory_budget))
    last = image
    for start in range(0, len(sigmas), chunk):
        part = sigmas[start : start + chunk]
        blurred = gaussian_blur_fft(image, torch.from_numpy(part), dtype=torch.float32)
        probs = classifier.probabilities(blurred, batch_size)
        flipped = (probs.argmax(dim=1) != original).nonzero()
        if flipped.numel() > 0:
            i = int(flipped.min())
            return Baseline(blurred[i].clone(), "blur", float(part[i]), True)
        last = blurred[-1].clone()
        del blurred, probs
    return Baseline(
        last,
        "blur",
        float(sigmas[-1]),
        False,
        note=f"no blur up to sigma={sigma_max:g}px changed the predicted class",
    )


def constant_baseline(image: Tensor, value: float | tuple[float, ...] | Tensor) -> Baseline:
    """A constant-colour baseline: one value or one value per channel."""
    v = torch.as_tensor(value, dtype=image.dtype, device=image.device).reshape(-1, 1, 1)
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"constant baseline values must be finite, got {v.flatten().tolist()}")
    if v.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"constant baseline needs 1 or {image.shape[0]} values, got {v.shape[0]}")
    return Baseline(v.expand_as(image).clone(), "constant")


def make_baseline(
    spec: str | float | Tensor | object,
    classifier: ClassifierFn,
    image: Tensor,
    *,
    batch_size: int | None = 32,
) -> Baseline:
    """Resolve a baseline specification.

    ``"blur"`` (default search), ``"blur:SIGMA"`` (fixed sigma in pixels), ``"black"``,
    ``"white"``, ``"gray"``/``"grey"``, ``"mean"`` (mean colour of the image), a number (constant),
    a tensor ``[C, H, W]``, a PIL image or an image file path (resized to the target's size).
    """
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "blur":
            return blurred_baseline(classifier, image, batch_size=batch_size)
        if s.startswith("blur:"):
            try:
                sigma = float(s.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"blur sigma must be a number, got {spec!r}") from None
            if not (sigma > 0 and math.isfinite(sigma)):
                raise ValueError(f"blur sigma must be positive and finite, got {sigma}")
            return Baseline(gaussian_blur(image.unsqueeze(0), sigma)[0], "blur", sigma)
        named = {"black": 0.0, "white": 1.0, "gray": 0.5, "grey": 0.5}
        if s in named:
            return constant_baseline(image, named[s])
        if s == "mean":
            return constant_baseline(image, image.mean(dim=(1, 2)))
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return constant_baseline(image, float(spec))
    if isinstance(spec, str) and not any(
        spec.lower().endswith(e)
        for e in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
    ):
        raise ValueError(
            f"unknown baseline {spec!r}: use 'blur', 'blur:SIGMA', 'black', 'white', 'gray', "
            f"'mean', a number, a tensor or an image file"
        )
    size = (int(image.shape[1]), int(image.shape[2]))
    other = (
        load_image(cast(ImageLike, spec), size=size)
        if not isinstance(spec, Tensor)
        else check_image(spec, "baseline")
    )
    other = other.to(dtype=image.dtype, device=image.device)
    if other.shape != image.shape:
        raise ValueError(
            f"baseline image has shape {tuple(other.shape)} but the target has {tuple(image.shape)}"
        )
    return Baseline(other, "image")
