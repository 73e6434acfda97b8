"""Tests of the demo scene generator, the shipped demo model and the shipped demo images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from ablation_paths.demo import (
    CLASS_NAMES,
    DemoCNN,
    DemoImage,
    demo_image,
    load_demo_images,
    load_model,
    load_model_info,
)
from ablation_paths.demo.scenes import (
    load_backgrounds,
    make_dataset,
    make_scene,
    shape_alpha,
)


@pytest.fixture(scope="module")
def model() -> DemoCNN:
    torch.set_num_threads(2)
    return load_model()


def test_make_scene_is_deterministic_given_seed() -> None:
    a = make_scene(np.random.default_rng(7))
    b = make_scene(np.random.default_rng(7))
    c = make_scene(np.random.default_rng(8))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.box == b.box and a.label == b.label
    assert not np.array_equal(a.image, c.image)


def test_scene_shapes_dtypes_and_ranges() -> None:
    for size in (64, 128):
        sc = make_scene(np.random.default_rng(1), size=size, label=3)
        assert sc.image.shape == (3, size, size) and sc.image.dtype == np.float32
        assert sc.background.shape == (3, size, size) and sc.background.dtype == np.float32
        assert sc.mask.shape == (size, size) and sc.mask.dtype == bool
        assert 0.0 <= sc.image.min() and sc.image.max() <= 1.0
        assert sc.label == 3 and sc.class_name == CLASS_NAMES[3] == "star"


@pytest.mark.parametrize("seed", range(6))
def test_mask_matches_drawn_object(seed: int) -> None:
    sc = make_scene(np.random.default_rng(seed), label=seed % len(CLASS_NAMES))
    diff = np.abs(sc.image - sc.background).sum(axis=0)
    assert sc.mask.sum() > 50
    # the object stands out from what lies under it ...
    assert diff[sc.mask].mean() > 0.3
    # ... and changes nothing away from its anti-aliased edge
    near = ndimage.binary_dilation(sc.mask, iterations=2)
    assert diff[~near].max() == 0.0
    x0, y0, x1, y1 = sc.box
    ys, xs = np.nonzero(sc.mask)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_shape_alpha_classes_differ_and_ring_has_hole() -> None:
    alphas = {k: shape_alpha(k, 64, (32.0, 32.0), 20.0) for k in CLASS_NAMES}
    for k, a in alphas.items():
        assert a.shape == (64, 64) and 0.0 <= a.min() and a.max() <= 1.0, k
    assert alphas["ring"][32, 32] == 0.0 and alphas["disc"][32, 32] == 1.0
    keys = list(alphas)
    for i, k in enumerate(keys):
        for m in keys[i + 1 :]:
            assert np.abs(alphas[k] - alphas[m]).sum() > 20.0, (k, m)


def test_make_dataset_prefix_stable_and_splits_independent() -> None:
    a = make_dataset(3, seed=5, size=64)
    b = make_dataset(2, seed=5, size=64)
    t = make_dataset(2, seed=5, size=64, split="test")
    assert a.images.shape == (3, 3, 64, 64) and a.images.dtype == torch.float32
    assert a.masks.shape == (3, 64, 64) and a.masks.dtype == torch.bool
    assert a.labels.dtype == torch.int64 and a.boxes.shape == (3, 4)
    torch.testing.assert_close(a.images[:2], b.images)
    assert not torch.equal(a.images[:2], t.images)
    assert a.backgrounds is None
    assert make_dataset(1, seed=5, size=64, return_backgrounds=True).backgrounds is not None


def test_bad_inputs_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        make_scene(rng, size=16)
    with pytest.raises(ValueError):
        make_scene(rng, label=len(CLASS_NAMES))
    with pytest.raises(ValueError):
        make_dataset(2, seed=0, split="validation")
    with pytest.raises(ValueError):
        shape_alpha("hexagon", 64, (32.0, 32.0), 10.0)
    with pytest.raises(ValueError):
        DemoCNN()(torch.zeros(1, 1, 32, 32))
    with pytest.raises(FileNotFoundError):
        load_model("no_such_model")
    with pytest.raises(ValueError):
        load_model("../demo")


def test_sklearn_backgrounds_are_optional() -> None:
    n = len(load_backgrounds())
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="scikit-learn"):
            load_backgrounds(include_sklearn=True)
        assert len(load_backgrounds(include_sklearn=None)) == n
    else:
        assert len(load_backgrounds(include_sklearn=True)) > n


def test_shipped_model_loads_in_eval_mode(model: DemoCNN) -> None:
    assert isinstance(model, DemoCNN) and not model.training
    info = load_model_info("demo")
    assert info.class_names == CLASS_NAMES
    assert info.image_size == 128
    # the recorded test accuracy, measured again on the first 128 scenes of the same split
    data = make_dataset(128, seed=int(info.extra["seed"]), split="test")
    with torch.no_grad():
        acc = float((model(data.images).argmax(1) == data.labels).float().mean())
    p = info.test_accuracy
    assert abs(acc - p) <= 3 * (p * (1 - p) / 128) ** 0.5 + 1 / 128, (acc, p)
    assert "train_demo.py" in info.train_command
    out = model(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, len(CLASS_NAMES))


def test_shipped_demo_images_are_classified_correctly(model: DemoCNN) -> None:
    images = load_demo_images()
    assert 6 <= len(images) <= 8
    assert {im.class_name for im in images} == set(CLASS_NAMES)
    first = demo_image()
    assert isinstance(first, DemoImage) and first.name == images[0].name
    batch = torch.stack([im.image for im in images])
    assert batch.shape[1:] == (3, 128, 128) and batch.dtype == torch.float32
    with torch.no_grad():
        pred = model(batch).argmax(1)
    assert pred.tolist() == [im.label for im in images]
    for im in images:
        assert im.mask.dtype == torch.bool and im.mask.shape == (128, 128) and im.mask.any()
        x0, y0, x1, y1 = im.box
        assert im.mask[y0:y1, x0:x1].sum() == im.mask.sum()


def test_accuracy_on_fresh_seeded_scenes(model: DemoCNN) -> None:
    data = make_dataset(64, seed=2024, split="test", return_backgrounds=True)
    with torch.no_grad():
        probs = torch.softmax(model(data.images), 1)
        probs_removed = torch.softmax(model(data.backgrounds), 1)
    acc = float((probs.argmax(1) == data.labels).float().mean())
    assert acc >= 0.9
    # the evidence is the object: removing it must collapse the class probability
    idx = torch.arange(len(data))
    assert float(probs_removed[idx, data.labels].mean()) < 0.5 * float(
        probs[idx, data.labels].mean()
    )
