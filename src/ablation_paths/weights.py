"""Loading weights files into a model: state dicts (``torch.load(weights_only=True)``) and
safetensors, e.g. inside a ``package.module:callable`` model factory for the command line.

>>> from ablation_paths.weights import load_weights
>>> model = load_weights(torchvision.models.resnet50(), "resnet50.pth").eval()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_weights"]


def load_weights(
    model: nn.Module, file: str | os.PathLike[str], *, strict: bool = True
) -> nn.Module:
    """Load the weights in ``file`` into ``model`` and return it.

    ``.safetensors`` files are read with :mod:`safetensors`; anything else with
    ``torch.load(file, map_location="cpu", weights_only=True)`` (no arbitrary code runs). A
    checkpoint dict holding the weights under ``"state_dict"`` or ``"model"`` is unwrapped, and a
    ``"module."`` prefix (``DataParallel``) is dropped.
    """
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors of foreign files come in many types
            raise ValueError(
                f"cannot load {path} as a state dict with weights_only=True "
                f"({type(exc).__name__}: {exc}); save weights with "
                f"torch.save(model.state_dict(), file)"
            ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise ValueError(f"the weights in {path} do not fit the model: {exc}") from exc
    return model
