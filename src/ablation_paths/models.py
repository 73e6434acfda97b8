"""Resolving a classifier from a command-line specification."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["LoadedModel", "load_model_spec", "imagenet_normalize"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: Tensor) -> Tensor:
    """Normalise ``[B, 3, H, W]`` images in ``[0, 1]`` with the ImageNet mean and std."""
    mean = torch.tensor(_IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


@dataclass
class LoadedModel:
    """A classifier with what is known about it."""

    model: nn.Module
    class_names: list[str] | None = None
    image_size: int | None = None  # square input size the model was trained on, if known
    transform: Callable[[Tensor], Tensor] | None = None
    description: str = ""


def load_model_spec(spec: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a classifier from ``spec``.

    * ``demo`` (or ``demo:NAME``): the shipped demo classifier;
    * ``package.module:callable``: calls ``callable()``, which must return an ``nn.Module``;
    * a path to a TorchScript file (``.pt``/``.pth``/``.ts``), loaded with ``torch.jit.load``.
      TorchScript files contain code: load only files you trust.

    The model is put in eval mode on ``device``.
    """
    if spec == "demo" or spec.startswith("demo:"):
        from ablation_paths import demo

        name = spec.split(":", 1)[1] if ":" in spec else "demo"
        info = demo.load_model_info(name)
        model = demo.load_model(name)
        return LoadedModel(
            model.to(device).eval(),
            list(info.class_names),
            int(info.image_size),
            None,
            f"shipped demo classifier {name!r}",
        )
    path = Path(spec)
    if path.suffix.lower() in (".pt", ".pth", ".ts", ".torchscript") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            model = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError/ValueError for foreign files
            raise ValueError(
                f"cannot load {path} as a TorchScript model ({type(exc).__name__}: {exc}); "
                f"save models with torch.jit.script(model).save(file), or use "
                f"--model package.module:callable"
            ) from exc
        return LoadedModel(model.eval(), description=f"TorchScript file {path}")
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(
                f"cannot import module {module_name!r} for --model {spec}: {exc}"
            ) from exc
        factory = getattr(module, attr, None)
        if factory is None or not callable(factory):
            raise ValueError(f"{module_name} has no callable {attr!r}")
        model = factory()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
        names = getattr(model, "class_names", None)
        return LoadedModel(
            model.to(device).eval(),
            list(names) if names is not None else None,
            description=f"{spec}",
        )
    raise ValueError(
        f"cannot interpret --model {spec!r}: use 'demo', 'package.module:callable' or a "
        f"TorchScript file"
    )
