"""Reading and validating images and classifiers given by users."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ImageLike", "load_image", "check_image", "ClassifierFn", "resolve_target"]

ImageLike = Any  # Tensor [C, H, W] | np.ndarray | PIL.Image.Image | str | os.PathLike


def check_image(image: Tensor, name: str = "image") -> Tensor:
    """Validate an image tensor ``[C, H, W]`` (C = 1 or 3) with finite values; return it."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3:
        raise ValueError(f"{name} must have shape [C, H, W], got {tuple(image.shape)}")
    if image.shape[0] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels in the first dimension, got shape "
            f"{tuple(image.shape)} (is it [H, W, C]? use image.permute(2, 0, 1))"
        )
    if image.shape[1] < 2 or image.shape[2] < 2:
        raise ValueError(f"{name} is too small: {tuple(image.shape)}")
    if not torch.is_floating_point(image):
        raise TypeError(f"{name} must be a floating-point tensor, got {image.dtype}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return image


def load_image(image, size: int | tuple[int, int] | None = None) -> Tensor:
    """Turn a tensor ``[C, H, W]``, an array ``[H, W, C]``, a PIL image or a file path into a float
    tensor ``[3, H, W]`` (or ``[1, H, W]`` for greyscale tensors).

    Files and PIL images are converted to RGB in ``[0, 1]``; ``size`` resizes them (bilinear,
    antialiased; an int gives a square). Tensors are validated but neither rescaled nor resized.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Tensor):
        return check_image(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
            arr = np.moveaxis(arr, -1, 0)
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        return check_image(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as img:
                pil = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read image file {path}: {exc}") from exc
    elif isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        raise TypeError(
            f"image must be a tensor [C, H, W], a numpy array, a PIL image or a file path, "
            f"got {type(image).__name__}"
        )
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        pil = pil.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class ClassifierFn:
    """A classifier as the optimiser sees it: images ``[B, C, H, W]`` -> logits ``[B, K]``.

    Wraps an ``nn.Module`` (or any callable) and an optional preprocessing ``transform``
    applied to the images before the model (e.g. normalisation), checks the output shape, and
    evaluates in ``internal_batch_size`` chunks.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        transform: Callable[[Tensor], Tensor] | None = None,
        *,
        require_eval: bool = True,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
        if require_eval and isinstance(model, nn.Module) and model.training:
            raise ValueError(
                "model is in training mode (batch-norm and dropout would make the explanation "
                "depend on the batch); call model.eval() first"
            )
        self.model = model
        self.transform = transform
        self.n_classes: int | None = None

    def __call__(self, images: Tensor) -> Tensor:
        x = self.transform(images) if self.transform is not None else images
        out = self.model(x)
        if not isinstance(out, Tensor):
            raise TypeError(f"model must return a tensor of logits, got {type(out).__name__}")
        if out.dim() != 2 or out.shape[0] != images.shape[0]:
            raise ValueError(
                f"model must return logits of shape [batch, classes]; for a batch of "
                f"{images.shape[0]} images it returned shape {tuple(out.shape)}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("model returned NaN or infinite logits")
        if self.n_classes is None:
            self.n_classes = int(out.shape[1])
        return out

    def probabilities(self, images: Tensor, batch_size: int | None = None) -> Tensor:
        """Softmax probabilities ``[B, K]`` without gradients, evaluated in chunks."""
        chunks = [images] if not batch_size else images.split(batch_size)
        with torch.no_grad():
            return torch.cat([torch.softmax(self(c), dim=1) for c in chunks])


def resolve_target(
    target: int | str | Tensor | None,
    probs: Tensor,
    class_names: Sequence[str] | None = None,
) -> int:
    """Turn a target (``None`` = predicted class, an index or a class name) into an index."""
    n_classes = probs.shape[-1]
    if target is None:
        return int(probs.reshape(-1, n_classes)[0].argmax())
    if isinstance(target, Tensor):
        if target.numel() != 1:
            raise ValueError(
                f"target must be a single class index, got shape {tuple(target.shape)}"
            )
        target = int(target.item())
    if isinstance(target, str):
        if class_names is None:
            try:
                return resolve_target(int(target), probs)
            except ValueError:
                raise ValueError(
                    f"target {target!r} is a name but no class names are known"
                ) from None
        names = list(class_names)
        if target not in names:
            raise ValueError(f"unknown class name {target!r}; known: {', '.join(names)}")
        return names.index(target)
    if isinstance(target, (bool, float)) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target must be an int, a class name or None, got {target!r}")
    if not 0 <= int(target) < n_classes:
        raise ValueError(f"target {target} is out of range for a model with {n_classes} classes")
    return int(target)
