"""Reading and validating images and classifiers given by users."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias, Union, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablation_paths.diagnostics import InputWarning

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ImageLike",
    "HasImage",
    "MAX_PIXELS",
    "MAX_DECODE_PIXELS",
    "ImageInputError",
    "ModelOutputError",
    "load_image",
    "Preprocess",
    "resized_size",
    "center_crop_box",
    "check_image",
    "check_size",
    "ClassifierFn",
    "resolve_target",
]

#: Images from files or PIL with more pixels than this are downscaled (with an
#: :class:`InputWarning`) when no size is given: the blur search and the optimiser keep
#: several copies of the image per path sample, so memory grows with the pixel count.
MAX_PIXELS = 512 * 512
#: Image files with more pixels than this are refused before decoding (decompression bombs).
MAX_DECODE_PIXELS = 4096 * 4096


@runtime_checkable
class HasImage(Protocol):
    """An object carrying an image tensor ``[C, H, W]`` in ``.image`` (e.g. the demo's
    :class:`~ablation_paths.demo.DemoImage`)."""

    image: Tensor


#: What :func:`load_image` accepts: a tensor ``[C, H, W]``, an array ``[H, W, C]`` or
#: ``[C, H, W]``, a PIL image, an image file path, or an object with an ``.image`` tensor.
ImageLike: TypeAlias = Union[Tensor, np.ndarray, "PILImage.Image", str, os.PathLike, HasImage]


class ImageInputError(ValueError):
    """An image cannot be used as given; the message names the problem."""


class ModelOutputError(ValueError):
    """The classifier failed on, or returned something unusable for, the given images."""


def check_image(image: Tensor, name: str = "image") -> Tensor:
    """Validate an image tensor ``[C, H, W]`` (C = 1 or 3) with finite values; return it."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3:
        raise ImageInputError(f"{name} must have shape [C, H, W], got {tuple(image.shape)}")
    if image.shape[0] not in (1, 3):
        raise ImageInputError(
            f"{name} must have 1 or 3 channels in the first dimension, got shape "
            f"{tuple(image.shape)} (is it [H, W, C]? use image.permute(2, 0, 1))"
        )
    if image.shape[1] < 2 or image.shape[2] < 2:
        raise ImageInputError(
            f"{name} is too small: {image.shape[1]}x{image.shape[2]} pixels (at least 2x2 are "
            f"needed to ablate anything)"
        )
    if not torch.is_floating_point(image):
        raise TypeError(f"{name} must be a floating-point tensor, got {image.dtype}")
    if not bool(torch.isfinite(image).all()):
        raise ImageInputError(f"{name} contains NaN or infinite values")
    return image


def check_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Validate a resize target (an int gives a square); ``None`` passes through."""
    if size is None:
        return None
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in hw
    ):
        raise ImageInputError(f"image size must be an int or (height, width), got {size!r}")
    if min(hw) < 2:
        raise ImageInputError(f"image size must be at least 2 pixels, got {size!r}")
    if hw[0] * hw[1] > MAX_DECODE_PIXELS:
        raise ImageInputError(
            f"image size {hw[0]}x{hw[1]} exceeds the limit of {MAX_DECODE_PIXELS} pixels"
        )
    return int(hw[0]), int(hw[1])


def _fit_pixels(h: int, w: int, max_pixels: int) -> tuple[int, int]:
    scale = math.sqrt(max_pixels / (h * w))
    return max(2, int(h * scale)), max(2, int(w * scale))


def _rescaled(arr: np.ndarray, what: str) -> np.ndarray:
    """Float data: kept if within [0, 1], else mapped linearly onto [0, 1] with a warning."""
    if not np.isfinite(arr).all():
        raise ImageInputError(f"{what} contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        return arr
    warnings.warn(
        f"{what} has values in [{lo:g}, {hi:g}], outside [0, 1]; rescaled linearly to [0, 1]",
        InputWarning,
        stacklevel=4,
    )
    return (arr - lo) / max(hi - lo, 1e-12)


def _pil_to_float(img: PILImage.Image, what: str) -> np.ndarray:
    """Decode a PIL image to ``float32 [H, W, 3]`` in ``[0, 1]`` faithfully: 16-bit images are
    divided by 65535 (not clipped at 255), float images kept (or rescaled with a warning)."""
    mode = img.mode
    if mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float32) / 65535.0
    elif mode == "I":  # 32-bit integers: 16-bit PNGs in older Pillow, integer TIFFs
        raw = np.asarray(img)
        if img.format == "PNG" or (raw.min() >= 0 and raw.max() <= 65535 and raw.max() > 255):
            arr = raw.astype(np.float32) / 65535.0
        else:
            arr = _rescaled(raw.astype(np.float32), what)
    elif mode == "F":
        arr = _rescaled(np.asarray(img, dtype=np.float32), what)
    else:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    return np.repeat(arr[:, :, None], 3, axis=2)


def _open_image_file(path: Path) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"refusing to decode {path}: {exc}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageInputError(f"cannot read image file {path}: {exc}") from exc
    w, h = img.size
    if w * h > MAX_DECODE_PIXELS:
        img.close()
        raise ImageInputError(
            f"refusing to decode {path}: {w}x{h} pixels ({w * h / 1e6:.1f} Mpx) exceed the "
            f"limit of {MAX_DECODE_PIXELS / 1e6:.1f} Mpx (a decompression bomb?); downscale "
            f"the file first"
        )
    try:
        img.load()
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        img.close()
        raise ImageInputError(f"cannot decode image file {path}: {exc}") from exc
    return img


def load_image(
    image: ImageLike,
    size: int | tuple[int, int] | None = None,
    *,
    resize: int | None = None,
    crop: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Tensor:
    """Turn a tensor ``[C, H, W]``, an array ``[H, W, C]``, a PIL image, an image file path or an
    object with an ``.image`` tensor (the demo's ``DemoImage``) into a float tensor ``[3, H, W]``
    (or ``[1, H, W]`` for greyscale tensors and arrays).

    Files and PIL images become RGB in ``[0, 1]``: 8-bit data divided by 255, 16-bit data by
    65535, float data kept when in ``[0, 1]`` and otherwise rescaled linearly with an
    :class:`InputWarning`. Files with more than :data:`MAX_DECODE_PIXELS` pixels are refused
    before decoding.

    Sizes (give ``size`` or ``resize``/``crop``, not both):

    * ``size`` *squashes* files and PIL images to ``size x size`` (or ``(H, W)``; bilinear,
      antialiased), whatever their aspect ratio; tensors and arrays are not resized.
    * ``resize`` / ``crop``: torchvision's evaluation transform, ``Resize(resize)`` then
      ``CenterCrop(crop)``, for every kind of input: the shorter side becomes ``resize`` pixels
      (the longer one ``int(resize * long / short)``; bilinear, antialiased: Pillow's filter for
      8-bit images, ``torch.nn.functional.interpolate(antialias=True)`` otherwise), then the
      central ``crop x crop`` pixels are kept, from row ``round((H - crop) / 2)`` and column
      ``round((W - crop) / 2)`` (Python's ``round``, as torchvision). A crop larger than the
      image is an :class:`ImageInputError` (torchvision would pad with zeros).
    * neither: images with more than ``max_pixels`` pixels are downscaled (aspect kept) with an
      :class:`InputWarning` (``max_pixels=None`` disables this).

    Tensors and arrays are validated but not rescaled (``uint8`` / ``uint16`` arrays are divided
    by 255 / 65535).
    """
    from PIL import Image

    hw = check_size(size)
    if hw is not None and (resize is not None or crop is not None):
        raise ImageInputError(
            "give either size (squash to a fixed size) or resize/crop (shorter side + centre "
            "crop), not both"
        )
    prep = Preprocess(resize, crop)
    if isinstance(image, HasImage) and not isinstance(image, (Tensor, np.ndarray)):
        return load_image(image.image, size, resize=resize, crop=crop, max_pixels=max_pixels)
    if isinstance(image, Tensor):
        return prep.apply_tensor(check_image(image))
    if isinstance(image, np.ndarray):
        return prep.apply_tensor(check_image(torch.from_numpy(_array_to_chw(image))))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        with _open_image_file(path) as img:
            return prep.apply_pil(img, hw, max_pixels, f"image file {path}")
    if isinstance(image, Image.Image):
        return prep.apply_pil(image, hw, max_pixels, "the PIL image")
    raise TypeError(
        f"image must be a tensor [C, H, W], a numpy array, a PIL image, a file path or an object "
        f"with an .image tensor, got {type(image).__name__}"
    )


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """``(H', W')`` after resizing the shorter side to ``shorter`` pixels, aspect kept: the longer
    side becomes ``int(shorter * long / short)`` (truncated, as ``torchvision.transforms.Resize``
    with an int)."""
    if width <= height:
        return int(shorter * height / width), shorter
    return shorter, int(shorter * width / height)


def center_crop_box(height: int, width: int, crop: int, what: str = "the image") -> tuple[int, int]:
    """``(top, left)`` of the central ``crop x crop`` window: ``round((H - crop) / 2)`` and
    ``round((W - crop) / 2)`` with Python's ``round`` (half to even), as torchvision's
    ``center_crop``. Raises :class:`ImageInputError` when ``crop`` exceeds ``H`` or ``W``."""
    if crop > height or crop > width:
        raise ImageInputError(
            f"centre crop {crop}x{crop} is larger than {what} ({width}x{height} pixels, "
            f"width x height); choose a crop of at most {min(height, width)} or a larger resize"
        )
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def _check_side(value: int | None, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageInputError(f"{name} must be an int number of pixels, got {value!r}")
    if value < 2:
        raise ImageInputError(f"{name} must be at least 2 pixels, got {value}")
    if value * value > MAX_DECODE_PIXELS:
        raise ImageInputError(f"{name}={value} exceeds the limit of {MAX_DECODE_PIXELS} pixels")


@dataclass(frozen=True)
class Preprocess:
    """torchvision-style evaluation preprocessing of an image (normalisation aside, which is
    the model's ``transform``): ``Resize(resize)`` -- the shorter side to ``resize`` pixels,
    aspect kept, bilinear, antialiased -- then ``CenterCrop(crop)``. Either may be ``None``
    (skipped). See :func:`load_image` for the exact arithmetic.

    >>> Preprocess(resize=256, crop=224).load("photo.jpg").shape   # a 451x300 photo
    torch.Size([3, 224, 224])
    """

    resize: int | None = None
    crop: int | None = None

    def __post_init__(self) -> None:
        _check_side(self.resize, "resize")
        _check_side(self.crop, "crop")

    @property
    def active(self) -> bool:
        """Whether it changes anything (``resize`` or ``crop`` given)."""
        return self.resize is not None or self.crop is not None

    def load(self, image: ImageLike) -> Tensor:
        """:func:`load_image` with this preprocessing: a float tensor ``[C, crop, crop]``."""
        return load_image(image, resize=self.resize, crop=self.crop)

    def apply_tensor(self, image: Tensor) -> Tensor:
        """Resize and crop an image tensor ``[C, H, W]`` (``F.interpolate``, bilinear,
        antialiased; values stay within the input's range)."""
        if self.resize is not None:
            hw = resized_size(image.shape[-2], image.shape[-1], self.resize)
            if tuple(image.shape[-2:]) != hw:
                image = F.interpolate(image[None], size=hw, mode="bilinear", antialias=True)[
                    0
                ].clamp(float(image.min()), float(image.max()))
        return self._crop(image, "the image")

    def apply_pil(
        self, img: PILImage.Image, hw: tuple[int, int] | None, max_pixels: int | None, what: str
    ) -> Tensor:
        """Decode a PIL image (see :func:`load_image`) and resize and crop it."""
        if not self.active:
            return _finish_pil(img, hw, max_pixels, what)
        w, h = img.size
        hw = resized_size(h, w, self.resize) if self.resize is not None else None
        return self._crop(_finish_pil(img, hw, None, what), what)

    def _crop(self, image: Tensor, what: str) -> Tensor:
        if self.crop is None:
            return image
        h, w = int(image.shape[-2]), int(image.shape[-1])
        if self.resize is not None:
            what = f"{what} after resizing its shorter side to {self.resize}"
        top, left = center_crop_box(h, w, self.crop, what)
        return image[:, top : top + self.crop, left : left + self.crop].contiguous()


def _array_to_chw(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = np.moveaxis(arr, -1, 0)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind not in "f":
        raise ImageInputError(
            f"image array has dtype {arr.dtype}; use float in [0, 1], uint8 or uint16"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _finish_pil(
    img: PILImage.Image, hw: tuple[int, int] | None, max_pixels: int | None, what: str
) -> Tensor:
    from PIL import Image

    w, h = img.size
    if hw is None and max_pixels is not None and w * h > max_pixels:
        hw = _fit_pixels(h, w, max_pixels)
        warnings.warn(
            f"{what} has {w}x{h} pixels; downscaled to {hw[1]}x{hw[0]} (at most {max_pixels} "
            f"pixels when no size is given: pass a size to choose)",
            InputWarning,
            stacklevel=3,
        )
    if "A" in img.getbands():
        alpha = img.getchannel("A")
        if alpha.getextrema()[0] < 255:  # type: ignore[operator]
            warnings.warn(
                f"{what} has transparent pixels; the alpha channel is ignored (the model sees "
                f"their colour as stored)",
                InputWarning,
                stacklevel=3,
            )
    eight_bit = not (img.mode.startswith("I") or img.mode == "F")
    if eight_bit:
        pil = img.convert("RGB")
        if hw is not None and (h, w) != hw:
            pil = pil.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(pil, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    else:
        arr = _pil_to_float(img, what)
        tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if hw is not None and (h, w) != hw:
            tensor = F.interpolate(
                tensor[None], size=hw, mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0, 1)
    return check_image(tensor, what)


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
        #: set on the first call: the model returns probabilities, and their logarithms are
        #: used as logits (so they are not softmaxed twice)
        self.returns_probabilities = False

    def __call__(self, images: Tensor) -> Tensor:
        x = self.transform(images) if self.transform is not None else images
        if not bool(torch.isfinite(x).all()):
            raise ImageInputError(
                "the images given to the model contain NaN or infinite values (check the image, "
                "the baseline and the preprocessing)"
            )
        try:
            out = self.model(x)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelOutputError(
                f"the model failed on images of shape {tuple(x.shape)}: {first} (does it expect "
                f"another number of channels, another size or another device?)"
            ) from exc
        if not isinstance(out, Tensor):
            raise ModelOutputError(
                f"model must return a tensor of logits, got {type(out).__name__}"
            )
        if out.dim() != 2 or out.shape[0] != images.shape[0]:
            raise ModelOutputError(
                f"model must return logits of shape [batch, classes]; for a batch of "
                f"{images.shape[0]} images it returned shape {tuple(out.shape)}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ModelOutputError("model returned NaN or infinite logits")
        if self.n_classes is None:
            self.n_classes = int(out.shape[1])
            self.returns_probabilities = _looks_like_probabilities(out)
            if self.returns_probabilities:
                warnings.warn(
                    "the model seems to return probabilities (non-negative rows summing to 1), "
                    "not logits; their logarithms are used as logits so they are not softmaxed "
                    "twice",
                    InputWarning,
                    stacklevel=2,
                )
        if self.returns_probabilities:
            out = torch.log(out.clamp_min(1e-30))
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


def _looks_like_probabilities(out: Tensor) -> bool:
    """Rows that are non-negative and sum to 1: the output of a softmax, not logits."""
    if out.shape[1] < 2:
        return False
    with torch.no_grad():
        o = out.detach().double()
        return bool((o >= 0).all()) and bool(((o.sum(dim=1) - 1).abs() < 1e-4).all())
