"""Self-contained demo classifier and images (no downloads).

A small CNN (:class:`DemoCNN`) trained by ``scripts/train_demo.py`` on seeded synthetic scenes
(:mod:`ablation_paths.demo.scenes`: one drawn shape of :data:`CLASS_NAMES` on a crop of a natural
photo bundled with scikit-image), shipped as safetensors weights, plus a handful of shipped demo
images that the shipped model classifies correctly.

Example::

    from ablation_paths.demo import demo_image, load_model

    model = load_model()  # eval mode, CPU
    img = demo_image()  # DemoImage: image [3, 128, 128] float32 in [0, 1], mask, label, ...
    logits = model(img.image[None])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ablation_paths.demo.model import (
    DemoCNN,
    ModelInfo,
    available_models,
    load_model,
    load_model_info,
)
from ablation_paths.demo.scenes import CLASS_NAMES, Scene, SceneBatch, make_dataset, make_scene

__all__ = [
    "CLASS_NAMES",
    "IMAGES_DIR",
    "DemoCNN",
    "DemoImage",
    "ModelInfo",
    "Scene",
    "SceneBatch",
    "available_models",
    "demo_image",
    "load_demo_images",
    "load_model",
    "load_model_info",
    "make_dataset",
    "make_scene",
]

#: Folder with the shipped demo images (``*.png``) and their index ``demo_images.json``.
IMAGES_DIR = Path(__file__).resolve().parent / "images"
_INDEX = "demo_images.json"


@dataclass
class DemoImage:
    """One shipped demo image.

    Attributes:
        name: short identifier, e.g. ``"00_star"``.
        image: ``float32 [3, H, W]`` RGB in ``[0, 1]``.
        mask: ``bool [H, W]``, the object's pixels (ground-truth evidence region).
        label: class index into :data:`CLASS_NAMES`.
        class_name: ``CLASS_NAMES[label]``.
        box: object bounding box ``(x0, y0, x1, y1)`` in pixels, ends exclusive.
    """

    name: str
    image: torch.Tensor
    mask: torch.Tensor
    label: int
    class_name: str
    box: tuple[int, int, int, int]


def _read_png(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode != mode:
            raise ValueError(f"{path} has mode {im.mode}, expected {mode}")
        return np.asarray(im).copy()


def load_demo_images(images_dir: str | Path | None = None) -> list[DemoImage]:
    """Load the shipped demo images listed in ``demo_images.json``.

    Args:
        images_dir: folder to read (default: the shipped :data:`IMAGES_DIR`).

    Returns:
        the images in index order (the shipped ``demo`` model classifies each one correctly).
    """
    folder = IMAGES_DIR if images_dir is None else Path(images_dir)
    index_path = folder / _INDEX
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{index_path} not found; regenerate it with `python scripts/train_demo.py`"
        )
    index = json.loads(index_path.read_text())
    out = []
    for entry in index["images"]:
        rgb = _read_png(folder / entry["file"], "RGB")
        mask = _read_png(folder / entry["mask_file"], "L") > 127
        label = int(entry["label"])
        if CLASS_NAMES[label] != entry["class_name"]:
            raise ValueError(f"{index_path}: label {label} does not match {entry['class_name']}")
        out.append(
            DemoImage(
                name=str(entry["name"]),
                image=torch.from_numpy(rgb.astype(np.float32) / 255.0)
                .permute(2, 0, 1)
                .contiguous(),
                mask=torch.from_numpy(mask),
                label=label,
                class_name=str(entry["class_name"]),
                box=(
                    int(entry["box"][0]),
                    int(entry["box"][1]),
                    int(entry["box"][2]),
                    int(entry["box"][3]),
                ),
            )
        )
    return out


def demo_image() -> DemoImage:
    """The first shipped demo image (see :func:`load_demo_images`)."""
    return load_demo_images()[0]
