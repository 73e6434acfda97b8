"""The small demo CNN and loading of its shipped weights.

Weights live in ``ablation_paths/demo/weights/<name>.safetensors``; the file's safetensors
metadata (string key/value pairs) records the architecture, the class names, the image size, the
test accuracy and the command that trained it. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "DemoCNN",
    "ModelInfo",
    "WEIGHTS_DIR",
    "available_models",
    "load_model",
    "load_model_info",
    "save_model",
]

#: Folder holding the shipped ``*.safetensors`` weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# Mean/std of the training scenes per RGB channel (inputs are in [0, 1]).
_MEAN = (0.45, 0.42, 0.39)
_STD = (0.26, 0.25, 0.26)
_MID_END = 9  # index in DemoCNN.features after the last stride-4 block
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _block(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    pad = 0 if kernel == stride else kernel // 2
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class DemoCNN(nn.Module):
    """A small CNN classifier: seven conv-bn-relu blocks, global pooling, linear.

    The head sees the concatenation of global average and global max pooling of the last
    feature map (max pooling makes a small, localised object easy to detect; average pooling
    keeps gradients spread over the image).

    Input ``[B, 3, H, W]`` RGB in ``[0, 1]`` (``H, W`` multiples of 16 work best; trained at
    128x128); the per-channel normalisation happens inside the model. Output: logits
    ``[B, num_classes]``. About 0.3 M parameters and 45 M multiply-adds per 128x128 image at
    ``width=32``; receptive field 87 px; last feature map ``H/16 x W/16``.

    Args:
        num_classes: number of output classes.
        width: channels after the stem; the two later stages use ``2 * width`` and ``4 * width``.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, num_classes: int = 6, width: int = 32) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if width < 2 or width % 2:
            raise ValueError(f"width must be an even number >= 2, got {width}")
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        c = self.width
        self.features = nn.Sequential(
            *_block(3, c // 2, 3, 2),  # H/2
            *_block(c // 2, c, 3, 2),  # H/4
            *_block(c, c, 3, 1),
            *_block(c, 2 * c, 3, 2),  # H/8
            *_block(2 * c, 2 * c, 3, 1),
            *_block(2 * c, 4 * c, 3, 2),  # H/16
            *_block(4 * c, 4 * c, 3, 1),
        )
        self.head = nn.Linear(8 * c, self.num_classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Feature maps ``([B, width, H/4, W/4], [B, 4 width, H/16, W/16])`` of ``x``.

        The second one is what the head pools (e.g. the layer for Grad-CAM).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DemoCNN expects [B, 3, H, W] images, got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        mid = self.features[:_MID_END](x)
        return mid, self.features[_MID_END:](mid)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of images ``[B, 3, H, W]`` in ``[0, 1]``."""
        f = self.forward_features(x)[1]
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


@dataclass
class ModelInfo:
    """Metadata of shipped weights.

    Attributes:
        name: weights name (file stem).
        class_names: class names in label order.
        image_size: side in pixels of the training images.
        width: ``DemoCNN`` width.
        test_accuracy: accuracy on the seeded held-out test set, in ``[0, 1]``.
        n_test: size of that test set.
        train_command: the command that produced the weights.
        extra: any other metadata fields (strings).
    """

    name: str
    class_names: tuple[str, ...]
    image_size: int
    width: int
    test_accuracy: float
    n_test: int
    train_command: str
    extra: dict[str, str]


def available_models() -> list[str]:
    """Names of the shipped weights (file stems in :data:`WEIGHTS_DIR`)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def _weights_path(name: str) -> Path:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}")
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped weights named {name!r} (looked for {path}); available: "
            f"{available_models()}"
        )
    return path


def load_model_info(name: str = "demo") -> ModelInfo:
    """Read the metadata of the shipped weights ``name`` without loading the tensors."""
    path = _weights_path(name)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    try:
        info = ModelInfo(
            name=name,
            class_names=tuple(json.loads(meta.pop("class_names"))),
            image_size=int(meta.pop("image_size")),
            width=int(meta.pop("width")),
            test_accuracy=float(meta.pop("test_accuracy")),
            n_test=int(meta.pop("n_test")),
            train_command=meta.pop("train_command"),
            extra=meta,
        )
    except (KeyError, ValueError) as err:
        raise ValueError(f"weights {path} have missing or malformed metadata: {err}") from err
    return info


def load_model(name: str = "demo", device: str | torch.device = "cpu") -> DemoCNN:
    """Load shipped weights into a :class:`DemoCNN` in eval mode.

    Args:
        name: weights name, e.g. ``"demo"`` or ``"bench_planted_bias"``
            (see :func:`available_models`).
        device: where to put the model.

    Returns:
        the model (``eval()`` mode, gradients enabled for its parameters).
    """
    info = load_model_info(name)
    model = DemoCNN(num_classes=len(info.class_names), width=info.width)
    state = load_file(str(_weights_path(name)), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def save_model(model: DemoCNN, path: str | Path, metadata: dict[str, str]) -> None:
    """Save ``model``'s state dict as safetensors with string ``metadata``.

    ``metadata`` must contain ``class_names`` (JSON list), ``image_size``, ``test_accuracy``,
    ``n_test`` and ``train_command``; ``width`` is added from the model.
    """
    required = {"class_names", "image_size", "test_accuracy", "n_test", "train_command"}
    missing = required - set(metadata)
    if missing:
        raise ValueError(f"metadata is missing {sorted(missing)}")
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta["width"] = str(model.width)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
