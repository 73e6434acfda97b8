"""Comparison methods: one interface, sane outputs on a model whose evidence is known."""

from __future__ import annotations

import pytest
import torch

from ablation_paths.bench.extremal import (
    ExtremalConfig,
    area_loss,
    blur_perturb,
    blur_pyramid,
    extremal_perturbation,
    smooth_max_upsample,
)
from ablation_paths.bench.methods import available_methods, compute, get_method
from ablation_paths.bench.metrics import pointing_game
from ablation_paths.bench.rise import rise_masks
from ablation_paths.bench.toy import load_toy_dataset, load_toy_model

FAST = ["ig", "saliency", "gradcam", "occlusion", "centre", "random"]


def test_registry_lists_all_families() -> None:
    names = available_methods()
    for required in [
        "ap-retain",
        "ap-dissipate-win",
        "ap-contrastive",
        "ap-straddle",
        "ap-sift",
        "ap-sift-win",
        "ig",
        "saliency",
        "gradcam",
        "occlusion",
        "rise",
        "sift-rise",
        "extremal",
        "centre",
        "random",
    ]:
        assert required in names
    with pytest.raises(ValueError, match="available"):
        get_method("nope")


@pytest.mark.parametrize("name", FAST)
def test_fast_methods_shape_and_determinism(name: str) -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=5)[0]
    a = compute(name, model, s.image, s.label)
    b = compute(name, model, s.image, s.label)
    assert a.heatmap.shape == (32, 32)
    assert a.heatmap.dtype == torch.float32
    assert torch.allclose(a.heatmap, b.heatmap)
    assert a.seconds is not None and a.seconds >= 0


@pytest.mark.parametrize("name", ["ig", "saliency", "gradcam", "occlusion"])
def test_model_methods_point_at_the_evidence(name: str) -> None:
    model = load_toy_model()
    hits = [
        pointing_game(compute(name, model, s.image, s.label).heatmap, s.mask)
        for s in load_toy_dataset(4, seed=6)
    ]
    assert sum(hits) >= 3


def test_ablation_path_methods_share_cached_path() -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=7)[0]
    a = compute("ap-dissipate", model, s.image, s.label)
    b = compute("ap-dissipate-win", model, s.image, s.label)
    assert a.seconds == b.seconds  # the windowed twin reuses the optimised path
    assert "path_score" in a.info and 0.0 <= a.info["path_score"] <= 1.0
    assert not torch.allclose(a.heatmap, b.heatmap)


def test_ap_sift_runs_over_sift_features_and_points_at_the_evidence() -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=5, size=48)[0]  # 32 px toys have a single SIFT feature
    a = compute("ap-sift", model, s.image, s.label)
    b = compute("ap-sift-win", model, s.image, s.label)
    assert a.heatmap.shape == (48, 48)
    assert a.seconds == b.seconds  # the windowed twin reuses the SIFT path
    assert 0.0 < a.info["path_score"] <= 1.0
    assert pointing_game(a.heatmap, s.mask) == 1.0


def test_sift_rise_method(monkeypatch: pytest.MonkeyPatch) -> None:
    from ablation_paths.bench import methods

    monkeypatch.setattr(methods, "SIFT_RISE_SAMPLES", 200)
    model = load_toy_model()
    s = load_toy_dataset(1, seed=5, size=48)[0]
    a = compute("sift-rise", model, s.image, s.label)
    b = compute("sift-rise", model, s.image, s.label)
    assert a.heatmap.shape == (48, 48)
    assert torch.equal(a.heatmap, b.heatmap)  # seeded
    assert a.info["n_features"] > 1
    assert float(a.heatmap.min()) >= 0 and float(a.heatmap.max()) <= 1  # mean probabilities
    assert pointing_game(a.heatmap, s.mask) == 1.0


def test_rise_masks_properties() -> None:
    g = torch.Generator().manual_seed(0)
    m = rise_masks(500, (24, 20), grid=4, p_keep=0.3, generator=g)
    assert m.shape == (500, 24, 20)
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert float(m.mean()) == pytest.approx(0.3, abs=0.05)


def test_rise_points_at_the_evidence() -> None:
    from ablation_paths.bench.rise import rise

    model = load_toy_model()
    hits = [
        pointing_game(rise(model, s.image, s.label, n_masks=300), s.mask, 3.0)
        for s in load_toy_dataset(3, seed=8)
    ]
    assert sum(hits) >= 2


def test_smooth_max_mask_properties() -> None:
    p = torch.zeros(1, 8, 8)
    p[0, 3, 4] = 0.7
    m = smooth_max_upsample(p, (64, 64), 8, 16.0, tau=0.0)
    assert m.shape == (1, 64, 64)
    assert 0.69 < float(m.max()) <= 0.7 + 1e-6  # peak preserved, never exceeded
    assert float(m.min()) >= 0
    peak = divmod(int(m[0].argmax()), 64)
    assert abs(peak[0] - 27.5) <= 4 and abs(peak[1] - 35.5) <= 4
    ones = smooth_max_upsample(torch.ones(2, 8, 8), (64, 64), 8, 16.0, tau=0.05)
    assert torch.allclose(ones, torch.ones_like(ones), atol=0.02)  # constant: about itself


def test_blur_perturbation_ends() -> None:
    img = torch.rand(3, 16, 16)
    pyr = blur_pyramid(img, 5, 4.0)
    assert torch.allclose(blur_perturb(pyr, torch.ones(1, 16, 16))[0], img)
    assert torch.allclose(blur_perturb(pyr, torch.zeros(1, 16, 16))[0], pyr[-1])


def test_area_loss_zero_at_exact_area() -> None:
    m = torch.zeros(1, 10, 10)
    m[0, :2] = 1.0
    assert float(area_loss(m, torch.tensor([0.2]))) == pytest.approx(0.0)
    assert float(area_loss(m, torch.tensor([0.5]))) > 0.2


def test_extremal_perturbation_finds_the_evidence_with_the_right_area() -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=9, size=48)[0]
    cfg = ExtremalConfig(areas=(0.05,), max_iter=60)
    masks = extremal_perturbation(model, s.image, s.label, cfg, return_masks=True)
    assert masks.shape == (1, 48, 48)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert float((masks[0] > 0.5).float().mean()) == pytest.approx(0.05, abs=0.03)
    assert float(masks[0][s.mask].mean()) > 0.8
    assert pointing_game(masks[0], s.mask) == 1.0
    assert all(p.grad is None for p in model.parameters())


def test_method_options_travel_as_arguments_not_module_state() -> None:
    from ablation_paths.bench import methods
    from ablation_paths.bench.methods import MethodOptions

    assert not hasattr(methods, "AP_OPTIONS") and not hasattr(methods, "EXTREMAL_OPTIONS")
    model = load_toy_model()
    s = load_toy_dataset(1, seed=8)[0]
    one = MethodOptions(ablation_path={"max_iterations": 1, "n_steps": 4})
    a = compute("ap-retain", model, s.image, s.label, one)
    assert a.info["iterations"] == 1
    # the next call without options is not affected by the previous one's options
    b = compute("ap-retain", model, s.image, s.label)
    assert b.info["iterations"] > 1
    ex = compute("extremal", model, s.image, s.label, MethodOptions(extremal={"max_iter": 3}))
    assert ex.info["max_iter"] == 3
    four = MethodOptions(extremal={"max_iter": 4})
    assert compute("extremal", model, s.image, s.label, four).info["max_iter"] == 4
