"""Where a model computes: the one device helper of the package."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_device"]


def model_device(model: object) -> torch.device | None:
    """The device of a module's first parameter (or buffer, for parameter-free modules);
    ``None`` for modules without tensors and for plain callables."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return None
