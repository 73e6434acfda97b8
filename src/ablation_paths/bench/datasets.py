"""Benchmark datasets with known ground-truth evidence regions, and their classifiers.

Two seeded synthetic datasets over natural-photo backgrounds (see
:mod:`ablation_paths.demo.scenes`):

``"localisation"``
    One object of one of the six demo classes (:data:`ablation_paths.demo.CLASS_NAMES`) plus
    0-2 class-free distractors. The ground-truth mask is the object. Same distribution as the
    demo model's training data, so its classifier is the shipped ``demo`` model.

``"planted_bias"``
    A random, class-free object (an irregular blob) plus distractors, and a small square marker
    (10x10 px at 128 px) of one of :data:`PLANTED_BIAS_CLASSES`' colours at a random image
    corner. The label is carried *only* by the marker colour, so a faithful saliency method must
    point at the marker, not at the conspicuous object. The ground-truth mask is the marker.
    Its classifier ``bench_planted_bias`` is trained by ``scripts/train_bench_models.py``, which
    also proves by intervention that the classifier uses the marker (``docs/datasets.md``).

Every sample also carries exact counterfactual images (``"object_removed"``, and for
``planted_bias`` also ``"marker_removed"``): the same scene rendered without that element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ablation_paths.demo.model import DemoCNN, load_model
from ablation_paths.demo.scenes import (
    add_distractors,
    box_from_mask,
    composite,
    load_backgrounds,
    make_scene,
    pick_contrasting_colour,
    random_background,
    random_blob_alpha,
    split_seed,
)

__all__ = [
    "BENCH_DATASETS",
    "MARKER_COLOURS",
    "PLANTED_BIAS_CLASSES",
    "BenchSample",
    "PlantedBiasScene",
    "load_bench_model",
    "load_dataset",
    "make_planted_bias_scene",
]

#: Names accepted by :func:`load_dataset` and :func:`load_bench_model`.
BENCH_DATASETS: tuple[str, ...] = ("localisation", "planted_bias")

#: Class names of the planted-bias dataset (the marker colour is the class).
PLANTED_BIAS_CLASSES: tuple[str, ...] = ("red", "green", "blue", "magenta")

#: RGB marker colour in ``[0, 1]`` per planted-bias class.
MARKER_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.1, 0.1),
    "green": (0.1, 0.85, 0.15),
    "blue": (0.15, 0.25, 1.0),
    "magenta": (0.95, 0.1, 0.95),
}

_STREAMS = {"localisation": 1, "planted_bias": 2}
_MODEL_FILES = {"localisation": "demo", "planted_bias": "bench_planted_bias"}


@dataclass
class BenchSample:
    """One benchmark sample.

    Attributes:
        image: ``float32 [3, H, W]`` RGB in ``[0, 1]``.
        mask: ``bool [H, W]``, the ground-truth evidence region (object or marker).
        box: bounding box of ``mask``, ``(x0, y0, x1, y1)`` in pixels, ends exclusive.
        label: class index.
        name: unique sample name, e.g. ``"planted_bias/test/0003"``.
        class_name: the class's name.
        counterfactuals: ``float32 [3, H, W]`` images of the same scene with one element not
            drawn: ``"object_removed"`` (both datasets) and ``"marker_removed"``
            (``planted_bias`` only).
    """

    image: torch.Tensor
    mask: torch.Tensor
    box: tuple[int, int, int, int]
    label: int
    name: str
    class_name: str = ""
    counterfactuals: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class PlantedBiasScene:
    """One planted-bias scene (numpy, channel first) and its counterfactuals.

    Attributes:
        image: ``float32 [3, H, W]`` the full scene.
        object_removed: ``float32 [3, H, W]`` the scene rendered without the object.
        marker_removed: ``float32 [3, H, W]`` the scene rendered without the marker.
        mask: ``bool [H, W]`` the marker (ground-truth evidence).
        object_mask: ``bool [H, W]`` the uninformative object.
        box: marker box ``(x0, y0, x1, y1)``, ends exclusive.
        label: index into :data:`PLANTED_BIAS_CLASSES`.
    """

    image: np.ndarray
    object_removed: np.ndarray
    marker_removed: np.ndarray
    mask: np.ndarray
    object_mask: np.ndarray
    box: tuple[int, int, int, int]
    label: int


def make_planted_bias_scene(
    rng: np.random.Generator,
    size: int = 128,
    label: int | None = None,
    max_distractors: int = 2,
) -> PlantedBiasScene:
    """Render one planted-bias scene and its counterfactuals.

    Args:
        rng: the only source of randomness.
        size: image side in pixels (marker side ``round(10 * size / 128)``).
        label: index into :data:`PLANTED_BIAS_CLASSES`, or ``None`` for a random class.
        max_distractors: up to this many class-free distractors.

    Returns:
        a :class:`PlantedBiasScene`.
    """
    n_classes = len(PLANTED_BIAS_CLASSES)
    if label is None:
        label = int(rng.integers(n_classes))
    if not 0 <= label < n_classes:
        raise ValueError(f"label must be in [0, {n_classes}), got {label}")
    canvas = random_background(rng, size)
    canvas = add_distractors(rng, canvas, int(rng.integers(max_distractors + 1)))

    # the uninformative object: a random irregular blob in a random contrasting colour
    radius = float(rng.uniform(0.11, 0.22)) * size
    margin = radius * 1.3 + 1.0
    centre = (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
    alpha = random_blob_alpha(rng, size, centre, radius)
    with_object = composite(canvas, alpha, pick_contrasting_colour(rng, canvas, alpha))

    # the marker: a solid square at a random corner
    side = max(2, round(10 * size / 128))
    gap = max(1, round(3 * size / 128))
    corner = int(rng.integers(4))
    x0 = gap if corner % 2 == 0 else size - gap - side
    y0 = gap if corner < 2 else size - gap - side
    marker = np.zeros((size, size), np.float32)
    marker[y0 : y0 + side, x0 : x0 + side] = 1.0
    colour = np.asarray(MARKER_COLOURS[PLANTED_BIAS_CLASSES[label]], np.float32)
    image = composite(with_object, marker, colour)
    object_removed = composite(canvas, marker, colour)

    def chw(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)

    mask = marker > 0.5
    return PlantedBiasScene(
        image=chw(image),
        object_removed=chw(object_removed),
        marker_removed=chw(with_object),
        mask=mask,
        object_mask=alpha >= 0.5,
        box=box_from_mask(mask),
        label=int(label),
    )


def load_dataset(name: str, n: int, seed: int = 0, split: str = "test") -> list[BenchSample]:
    """Generate ``n`` seeded samples of benchmark dataset ``name``.

    Args:
        name: one of :data:`BENCH_DATASETS`.
        n: number of samples (``>= 0``).
        seed: dataset seed; sample ``i`` depends only on ``(name, seed, split, i)``.
        split: ``"train"`` or ``"test"`` (independent random streams).

    Returns:
        list of :class:`BenchSample` (128x128 images).
    """
    if name not in BENCH_DATASETS:
        raise ValueError(f"unknown benchmark dataset {name!r}; expected one of {BENCH_DATASETS}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    children = split_seed(seed, split, stream=_STREAMS[name]).spawn(int(n))
    backgrounds = load_backgrounds()
    width = max(4, math.ceil(math.log10(max(n, 1) + 1)))
    out: list[BenchSample] = []
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        sample_name = f"{name}/{split}/{i:0{width}d}"
        if name == "localisation":
            sc = make_scene(rng, size=128, max_distractors=2, backgrounds=backgrounds)
            out.append(
                BenchSample(
                    image=torch.from_numpy(sc.image),
                    mask=torch.from_numpy(sc.mask),
                    box=sc.box,
                    label=sc.label,
                    name=sample_name,
                    class_name=sc.class_name,
                    counterfactuals={"object_removed": torch.from_numpy(sc.background)},
                )
            )
        else:
            pb = make_planted_bias_scene(rng, size=128)
            out.append(
                BenchSample(
                    image=torch.from_numpy(pb.image),
                    mask=torch.from_numpy(pb.mask),
                    box=pb.box,
                    label=pb.label,
                    name=sample_name,
                    class_name=PLANTED_BIAS_CLASSES[pb.label],
                    counterfactuals={
                        "object_removed": torch.from_numpy(pb.object_removed),
                        "marker_removed": torch.from_numpy(pb.marker_removed),
                    },
                )
            )
    return out


def load_bench_model(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The shipped classifier of benchmark dataset ``name``, in eval mode.

    ``"localisation"`` is the demo model (``demo.safetensors``, same scene distribution);
    ``"planted_bias"`` loads ``bench_planted_bias.safetensors``.
    """
    if name not in BENCH_DATASETS:
        raise ValueError(f"unknown benchmark dataset {name!r}; expected one of {BENCH_DATASETS}")
    model: DemoCNN = load_model(_MODEL_FILES[name], device=device)
    return model
