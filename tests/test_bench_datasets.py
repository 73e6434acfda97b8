"""Tests of the benchmark datasets with known ground truth and their shipped classifiers."""

from __future__ import annotations

import pytest
import torch
from scipy import ndimage

from ablation_paths.bench.datasets import (
    BENCH_DATASETS,
    PLANTED_BIAS_CLASSES,
    BenchSample,
    load_bench_model,
    load_dataset,
)
from ablation_paths.demo import CLASS_NAMES


def _accuracy(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == labels).float().mean())


@pytest.fixture(scope="module")
def planted() -> list[BenchSample]:
    return load_dataset("planted_bias", 64, seed=11, split="test")


@pytest.mark.parametrize("name", BENCH_DATASETS)
def test_load_dataset_is_deterministic_and_split_aware(name: str) -> None:
    a = load_dataset(name, 3, seed=4)
    b = load_dataset(name, 3, seed=4)
    c = load_dataset(name, 3, seed=4, split="train")
    for sa, sb, sc in zip(a, b, c, strict=True):
        assert torch.equal(sa.image, sb.image) and torch.equal(sa.mask, sb.mask)
        assert sa.label == sb.label and sa.box == sb.box and sa.name == sb.name
        assert not torch.equal(sa.image, sc.image)
    assert len({s.name for s in a}) == 3


@pytest.mark.parametrize("name", BENCH_DATASETS)
def test_sample_shapes_and_ground_truth(name: str) -> None:
    classes = CLASS_NAMES if name == "localisation" else PLANTED_BIAS_CLASSES
    for s in load_dataset(name, 4, seed=1):
        assert s.image.shape == (3, 128, 128) and s.image.dtype == torch.float32
        assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
        assert s.mask.shape == (128, 128) and s.mask.dtype == torch.bool
        assert 0 <= s.label < len(classes) and s.class_name == classes[s.label]
        ys, xs = torch.nonzero(s.mask, as_tuple=True)
        assert s.box == (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        # removing the ground-truth element changes the image there and (almost) only there
        key = "object_removed" if name == "localisation" else "marker_removed"
        diff = (s.image - s.counterfactuals[key]).abs().sum(0)
        assert float(diff[s.mask].mean()) > 0.3
        near = torch.from_numpy(ndimage.binary_dilation(s.mask.numpy(), iterations=2))
        assert float(diff[~near].max()) == 0.0


def test_planted_bias_marker_is_a_small_corner_square(planted: list[BenchSample]) -> None:
    corners = set()
    for s in planted[:16]:
        x0, y0, x1, y1 = s.box
        assert (x1 - x0, y1 - y0) == (10, 10) and int(s.mask.sum()) == 100
        assert x0 < 16 or x1 > 112
        assert y0 < 16 or y1 > 112
        corners.add((x0 < 64, y0 < 64))
    assert len(corners) > 1


def test_bad_names_raise() -> None:
    with pytest.raises(ValueError):
        load_dataset("imagenet", 2)
    with pytest.raises(ValueError):
        load_dataset("planted_bias", 2, split="validation")
    with pytest.raises(ValueError):
        load_bench_model("imagenet")


def test_localisation_model_is_the_demo_model() -> None:
    model = load_bench_model("localisation")
    assert not model.training
    samples = load_dataset("localisation", 32, seed=3)
    x = torch.stack([s.image for s in samples])
    labels = torch.tensor([s.label for s in samples])
    assert _accuracy(model, x, labels) >= 0.85


def test_planted_bias_model_uses_the_marker_not_the_object(
    planted: list[BenchSample],
) -> None:
    """Intervention: paint out the marker -> about chance; remove the object -> unchanged."""
    model = load_bench_model("planted_bias")
    assert not model.training
    labels = torch.tensor([s.label for s in planted])
    clean = _accuracy(model, torch.stack([s.image for s in planted]), labels)
    no_marker = _accuracy(
        model, torch.stack([s.counterfactuals["marker_removed"] for s in planted]), labels
    )
    no_object = _accuracy(
        model, torch.stack([s.counterfactuals["object_removed"] for s in planted]), labels
    )
    chance = 1.0 / len(PLANTED_BIAS_CLASSES)
    assert clean >= 0.95
    assert no_object >= 0.95
    assert no_marker <= chance + 0.2
