"""Resolving a classifier from a command-line specification."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "LoadedModel",
    "load_model_spec",
    "import_model_module",
    "resolve_device",
    "imagenet_normalize",
    "NORMALIZATIONS",
    "PREPROCESS_PRESETS",
    "TORCHVISION_PREFIX",
]

#: Model specs ``torchvision:NAME`` build ``torchvision.models.NAME(weights=None, **model_args)``.
TORCHVISION_PREFIX = "torchvision:"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: Tensor) -> Tensor:
    """Normalise ``[B, 3, H, W]`` images in ``[0, 1]`` with the ImageNet mean and std."""
    mean = torch.tensor(_IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


#: Named normalisations (``--normalize NAME``): images in ``[0, 1]`` -> what the model expects.
NORMALIZATIONS: dict[str, Callable[[Tensor], Tensor] | None] = {
    "none": None,
    "imagenet": imagenet_normalize,
}

#: Named preprocessing (``--preprocess NAME``): torchvision's evaluation transform for ImageNet
#: classifiers, ``Resize(256)``, ``CenterCrop(224)``, ``Normalize(mean, std)``.
PREPROCESS_PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"resize": 256, "crop": 224, "normalize": "imagenet"},
}


@dataclass
class LoadedModel:
    """A classifier with what is known about it."""

    model: nn.Module
    class_names: list[str] | None = None
    image_size: int | None = None  # square input size the model was trained on, if known
    transform: Callable[[Tensor], Tensor] | None = None
    description: str = ""


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The device to compute on: ``spec`` checked against what this machine has (``None`` =
    CUDA if available, else CPU). Raises ``ValueError`` naming the problem."""
    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {spec!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {spec!r}: CUDA is not available on this machine (no GPU, or PyTorch "
                f"built without CUDA); use cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {spec!r}: MPS is not available on this machine; use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {spec!r} is not supported: use cpu, cuda, cuda:N or mps")
    return dev


def _is_cwd(entry: str, cwd: Path) -> bool:
    if entry in ("", "."):
        return True
    try:
        return Path(entry).resolve() == cwd
    except OSError:
        return False


def import_model_module(name: str) -> ModuleType:
    """Import ``name`` for a ``module:callable`` model spec, installed modules first.

    The current directory is removed from the front of ``sys.path`` for the import (``python -m``
    and some shells put it there), so a stray ``ray.py`` or ``torch.py`` in the working directory
    never shadows an installed package. Only a module found nowhere else is looked up in the
    current directory, last.
    """
    cwd = Path.cwd().resolve()
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not _is_cwd(p, cwd)]
    try:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or name.split(".")[0] != exc.name.split(".")[0]:
                raise
            sys.path.append(str(cwd))
            return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "pretrained=false"]`` -> ``{"num_classes": 10, "pretrained": False}``.

    Values are read as int, float, ``true``/``false``/``none`` (any case) or else kept as text.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg {pair!r}: expected KEY=VALUE with a Python name as KEY")
        out[key] = _model_arg_value(text.strip())
    return out


def _model_arg_value(text: str) -> Any:
    named = {"true": True, "false": False, "none": None}
    if text.lower() in named:
        return named[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_model_spec(
    spec: str,
    device: str | torch.device = "cpu",
    *,
    model_args: Mapping[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load a classifier from ``spec``.

    * ``demo`` (or ``demo:NAME``): the shipped demo classifier;
    * ``torchvision:NAME`` (e.g. ``torchvision:resnet50``): builds
      ``torchvision.models.NAME(weights=None, **model_args)`` (needs the ``torchvision``
      package), then loads ``weights``; a model with 1000 outputs (``num_classes`` not given
      or 1000) gets the bundled ImageNet class names (:mod:`ablation_paths.labels`);
    * ``package.module:callable``: calls ``callable(**model_args)``, which must return an
      ``nn.Module`` (installed modules win over files in the current directory, see
      :func:`import_model_module`); ``weights`` (a state dict read with ``weights_only=True``, or
      a safetensors file) are then loaded into it (:func:`ablation_paths.weights.load_weights`);
    * a path to a TorchScript file (``.pt``/``.pth``/``.ts``), loaded with ``torch.jit.load``.

    Trust: a ``module:callable`` spec and a TorchScript file run code (the module's, the
    script's): use only ones you trust. Weights alone (the demo's safetensors files, state dicts
    read with ``torch.load(..., weights_only=True)``) run no code.

    The model is put in eval mode on ``device``.
    """
    is_demo = spec == "demo" or spec.startswith("demo:")
    is_callable_spec = ":" in spec and not is_demo and not Path(spec).is_file()
    if (model_args or weights is not None) and not is_callable_spec:
        raise ValueError(
            "--model-arg and --weights apply to 'torchvision:NAME' and 'package.module:callable' "
            "models only, "
            f"not to {spec!r}"
        )
    if is_demo:
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
    if spec.startswith(TORCHVISION_PREFIX):
        return _load_torchvision(spec, device, model_args, weights)
    if ":" in spec:
        return _load_callable(spec, device, model_args, weights)
    raise ValueError(
        f"cannot interpret --model {spec!r}: use 'demo', 'torchvision:NAME', "
        f"'package.module:callable' or a TorchScript file"
    )


def _load_callable(
    spec: str,
    device: str | torch.device,
    model_args: Mapping[str, Any] | None,
    weights: str | os.PathLike[str] | None,
) -> LoadedModel:
    """A ``package.module:callable`` spec: import, call with ``model_args``, load ``weights``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--model {spec!r}: expected package.module:callable")
    try:
        module = import_model_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} for --model {spec}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{module_name} has no callable {attr!r}")
    try:
        model = factory(**dict(model_args or {}))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"--model {spec}: calling {attr}() failed: {type(exc).__name__}: {first}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        from ablation_paths.weights import load_weights

        load_weights(model, weights)  # in place
    names = getattr(model, "class_names", None)
    return LoadedModel(
        model.to(device).eval(),
        list(names) if names is not None else None,
        description=f"{spec}",
    )


def _torchvision_models() -> ModuleType:
    """``torchvision.models``, or an ImportError that names the ``torchvision`` package."""
    from ablation_paths._optional import MissingOptionalDependency

    try:
        return importlib.import_module("torchvision.models")
    except ModuleNotFoundError as exc:
        if (exc.name or "torchvision").split(".")[0] == "torchvision":
            raise MissingOptionalDependency(
                "--model torchvision:NAME needs the torchvision package, which is not "
                f"installed: pip install torchvision (the release made for torch "
                f"{torch.__version__})"
            ) from exc
        reason: BaseException = exc
    except Exception as exc:  # a torchvision built for another torch fails in many ways
        reason = exc
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    raise MissingOptionalDependency(
        f"--model torchvision:NAME: the torchvision package is installed but cannot be imported "
        f"({type(reason).__name__}: {first}); install the torchvision release made for torch "
        f"{torch.__version__}"
    ) from reason


def torchvision_model_names() -> list[str]:
    """The classification models of the installed torchvision (``torchvision.models``)."""
    models = _torchvision_models()
    if not hasattr(models, "list_models"):
        raise ValueError("--model torchvision:NAME needs torchvision >= 0.14 (list_models)")
    return sorted(models.list_models(module=models))


def _load_torchvision(
    spec: str,
    device: str | torch.device,
    model_args: Mapping[str, Any] | None,
    weights: str | os.PathLike[str] | None,
) -> LoadedModel:
    """A ``torchvision:NAME`` spec: ``torchvision.models.NAME(weights=None, **model_args)``,
    then ``weights`` from a local file (:func:`ablation_paths.weights.load_weights`)."""
    name = spec[len(TORCHVISION_PREFIX) :].strip()
    names = torchvision_model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"known: {', '.join(names)}"
        raise ValueError(
            f"--model {spec}: torchvision has no classification model {name!r}; {hint}"
        )
    kwargs = dict(model_args or {})
    if weights is not None and kwargs.get("weights") is not None:
        raise ValueError("give either --weights FILE or --model-arg weights=..., not both")
    kwargs.setdefault("weights", None)
    builder = _torchvision_models().get_model_builder(name)
    try:
        model = builder(**kwargs)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(
            f"--model {spec}: torchvision.models.{name}() failed: {type(exc).__name__}: {first}"
        ) from exc
    description = f"torchvision.models.{name}"
    if weights is not None:
        from ablation_paths.weights import load_weights

        load_weights(model, weights)
        description += f" with weights {weights}"
    class_names = None
    if kwargs.get("num_classes", 1000) == 1000:
        from ablation_paths.labels import imagenet_class_names

        class_names = imagenet_class_names()
    return LoadedModel(model.to(device).eval(), class_names, description=description)
