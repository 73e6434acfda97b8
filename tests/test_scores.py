"""Scores (thesis 2.3) and their gradients, against references written from the definitions.

The reference scores below are written from eq. 2.13-2.16 directly (not from ``score_terms``):
a bug in the term table (a missing complement, a wrong sign, the straddle's second term on the
complement) changes :func:`score_gradient` but not these, so the finite-difference checks fail.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ablation_paths import AblationPathConfig
from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.optimizer import score_gradient
from ablation_paths.paths import affine_path
from ablation_paths.scores import SCORES, max_score, n_paths, orientation, score_value

TARGET = 2


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(4 * 9, 4),
        )
        .double()
        .eval()
    )


def make_space(seed: int = 1) -> PixelMaskSpace:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 12, 12, dtype=torch.float64, generator=g)
    baseline = torch.rand(3, 12, 12, dtype=torch.float64, generator=g) * 0.3
    return PixelMaskSpace(image, baseline, (4, 4), sigma_reg=0.0)


def prob(model: nn.Module, space: PixelMaskSpace, masks: torch.Tensor) -> torch.Tensor:
    """Target probability of each mask's image ``[T]``."""
    with torch.no_grad():
        return torch.softmax(model(space.apply(masks)), dim=1)[:, TARGET]


def reference_score(score: str, model: nn.Module, space: PixelMaskSpace, paths) -> float:
    """Eq. 2.13-2.16 written out."""
    up = prob(model, space, paths[0]).mean()
    if score == "retain":
        return float(up)
    if score == "dissipate":
        return float(1 - up)
    if score == "contrastive":  # P_up(phi) + P_down(1 - phi)
        return float(up + 1 - prob(model, space, 1 - paths[0]).mean())
    if score == "straddle":  # P_up(phi_up) + P_down(phi_down)
        return float(up + 1 - prob(model, space, paths[1]).mean())
    raise AssertionError(score)


@pytest.mark.parametrize("score", SCORES)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_gradient_matches_finite_differences(score: str, seed: int) -> None:
    model = small_model()
    space = make_space()
    g = torch.Generator().manual_seed(seed)
    shape = (n_paths(score), 5, 4, 4)
    paths = torch.rand(shape, dtype=torch.float64, generator=g)
    direction = torch.randn(shape, dtype=torch.float64, generator=g)
    sg = score_gradient(ClassifierFn(model), space, paths, TARGET, score, batch_size=3)
    assert sg.value == pytest.approx(reference_score(score, model, space, paths), abs=1e-12)
    assert sg.grad.shape == shape
    eps = 1e-5
    plus = reference_score(score, model, space, paths + eps * direction)
    minus = reference_score(score, model, space, paths - eps * direction)
    fd = (plus - minus) / (2 * eps)
    analytic = float((sg.grad * direction).sum())
    assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("score", SCORES)
def test_gradient_of_each_path_separately(score: str) -> None:
    """Perturbing one path at a time: catches a gradient accumulated on the wrong path."""
    model = small_model()
    space = make_space(2)
    g = torch.Generator().manual_seed(7)
    paths = torch.rand(n_paths(score), 4, 4, 4, dtype=torch.float64, generator=g)
    sg = score_gradient(ClassifierFn(model), space, paths, TARGET, score)
    for i in range(n_paths(score)):
        d = torch.zeros_like(paths)
        d[i] = torch.randn(paths.shape[1:], dtype=torch.float64, generator=g)
        eps = 1e-5
        fd = (
            reference_score(score, model, space, paths + eps * d)
            - reference_score(score, model, space, paths - eps * d)
        ) / (2 * eps)
        assert float((sg.grad * d).sum()) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_term_values_and_path_shares() -> None:
    model = small_model()
    space = make_space(3)
    g = torch.Generator().manual_seed(0)
    paths = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g)
    sg = score_gradient(ClassifierFn(model), space, paths, TARGET, "straddle")
    up = float(prob(model, space, paths[0]).mean())
    down = float(prob(model, space, paths[1]).mean())
    assert sg.term_values == pytest.approx([up, 1 - down], abs=1e-12)
    assert sg.path_values("straddle") == pytest.approx([up, 1 - down], abs=1e-12)
    one = paths[:1]
    sg = score_gradient(ClassifierFn(model), space, one, TARGET, "contrastive")
    comp = float(prob(model, space, 1 - one[0]).mean())
    assert sg.path_values("contrastive") == pytest.approx([up + 1 - comp], abs=1e-12)
    assert sg.value == pytest.approx(score_value("contrastive", sg.target_probs), abs=1e-12)


def test_score_value_from_definitions() -> None:
    a = torch.tensor([0.2, 0.4, 0.9])
    b = torch.tensor([0.1, 0.1, 0.4])
    assert score_value("retain", [a]) == pytest.approx(0.5)
    assert score_value("dissipate", [a]) == pytest.approx(0.5)
    assert score_value("dissipate", [b]) == pytest.approx(0.8)
    assert score_value("contrastive", [a, b]) == pytest.approx(0.5 + 0.8)
    assert score_value("straddle", [b, a]) == pytest.approx(0.2 + 0.5)
    with pytest.raises(ValueError, match="2 terms"):
        score_value("straddle", [a])
    with pytest.raises(ValueError, match="unknown score"):
        score_value("insertion", [a])


def test_score_facts() -> None:
    assert [max_score(s) for s in SCORES] == [1.0, 1.0, 2.0, 2.0]
    assert [n_paths(s) for s in SCORES] == [1, 1, 1, 2]
    assert [orientation(s) for s in SCORES] == ["retain", "dissipate", "retain", "retain"]
    with pytest.raises(ValueError, match="unknown score"):
        orientation("insertion")


@pytest.mark.parametrize("score", SCORES)
def test_optimiser_ascends_from_the_affine_start(score: str) -> None:
    """A few iterations raise every score above the affine path's (the reference score)."""
    from ablation_paths.optimizer import optimize_paths

    model = small_model()
    space = make_space(4)
    cfg = AblationPathConfig(
        n_steps=5,
        max_iterations=4,
        step_size=0.2,
        saturation=0.0,
        stop_saturation=1.0,
        n_steps_start=None,  # the affine start at T = 5 (not coarse to fine)
    )
    res = optimize_paths(ClassifierFn(model), space, TARGET, score, cfg)
    start = affine_path(5, (4, 4), dtype=torch.float64).expand(n_paths(score), 5, 4, 4)
    before = reference_score(score, model, space, start)
    after = reference_score(score, model, space, res.paths)
    assert after > before + 1e-4, (before, after)
    # the history's first score is the affine path's
    assert res.history[0]["path_score"] == pytest.approx(before, abs=1e-9)
