"""Algorithm 2: every iterate is a valid ablation path; scores, saturation, pinching."""

import math

import pytest
import torch

from ablation_paths import AblationPathConfig, check_axioms
from ablation_paths.filters import gaussian_blur
from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.optimizer import optimize_paths, pinch, saturate
from ablation_paths.paths import affine_path
from ablation_paths.scores import SCORES, n_paths, score_value


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("monotonize", ["minimax", "flatten"])
def test_axioms_hold_after_every_step(tiny_model, tiny_image, score, monotonize):
    baseline = gaussian_blur(tiny_image.unsqueeze(0), 6.0)[0]
    space = PixelMaskSpace(tiny_image, baseline, (8, 8), sigma_reg=1.0)
    cfg = AblationPathConfig(n_steps=6, max_iterations=4, batch_size=4, monotonize=monotonize)
    seen = []

    def check(it, stats, paths):
        assert paths.shape == (n_paths(score), 6, 8, 8)
        for p in paths:
            assert check_axioms(p, atol=1e-5) == [], (it, check_axioms(p))
        assert 0 <= stats["saturation"] <= 1
        seen.append(it)

    res = optimize_paths(ClassifierFn(tiny_model), space, 1, score, cfg, progress=check)
    assert seen == list(range(1, res.iterations + 1))
    assert res.stopped in ("saturated", "max_iterations")


def test_weighted_mass_axioms(tiny_model, tiny_image):
    class Weighted(PixelMaskSpace):
        def weights(self):
            w = torch.ones(self.mask_shape)
            w[:, :4] = 3.0
            return w / w.sum()

    baseline = torch.zeros_like(tiny_image)
    space = Weighted(tiny_image, baseline, (8, 8))
    w = space.weights()

    def check(it, stats, paths):
        assert check_axioms(paths[0], w) == []

    optimize_paths(
        ClassifierFn(tiny_model),
        space,
        0,
        "retain",
        AblationPathConfig(n_steps=5, max_iterations=3),
        progress=check,
    )


def test_stops_at_saturation(tiny_model, tiny_image):
    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8))
    cfg = AblationPathConfig(n_steps=6, max_iterations=60, saturation=2.0, stop_saturation=0.8)
    res = optimize_paths(ClassifierFn(tiny_model), space, 0, "retain", cfg)
    assert res.converged and res.stopped == "saturated"
    assert res.history[-1]["saturation"] >= 0.8
    assert res.iterations < 60


def test_iteration_cap_flags_not_converged(tiny_model, tiny_image):
    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8))
    cfg = AblationPathConfig(n_steps=6, max_iterations=2, saturation=0.0, stop_saturation=0.99)
    res = optimize_paths(ClassifierFn(tiny_model), space, 0, "retain", cfg)
    assert not res.converged and res.stopped == "max_iterations" and res.iterations == 2


def test_saturation_function_properties():
    x = torch.linspace(0, 1, 101)
    y = saturate(x, 0.8)
    assert bool((y.diff() > 0).all())  # monotone
    torch.testing.assert_close(y[[0, 50, 100]], torch.tensor([0.0, 0.5, 1.0]))
    assert bool((y[:50] <= x[:50] + 1e-7).all()) and bool((y[51:] >= x[51:] - 1e-7).all())
    torch.testing.assert_close(saturate(x, 1e-6), x, atol=1e-5, rtol=0)
    assert saturate(x, 0.0) is x


def test_pinch_function_properties():
    up = torch.full((5,), 0.3)
    delta = torch.tensor([-0.2, 0.0, 0.1, 0.5, 0.7])
    down = pinch(up, up + delta, 0.5)
    new_delta = down - up
    torch.testing.assert_close(new_delta, delta * 0.5 + delta**2 * 0.5)
    # fixpoints at 0 and 1; small differences shrink
    assert float(pinch(torch.zeros(1), torch.ones(1), 0.5)) == 1.0
    assert float(pinch(torch.zeros(1), torch.zeros(1), 0.5)) == 0.0
    assert abs(float(new_delta[2])) < 0.1


def test_score_values():
    p = torch.tensor([0.2, 0.4])
    assert score_value("retain", [p]) == pytest.approx(0.3)
    assert score_value("dissipate", [p]) == pytest.approx(0.7)
    assert score_value("contrastive", [p, p]) == pytest.approx(1.0)
    assert score_value("straddle", [p, torch.tensor([0.0, 0.0])]) == pytest.approx(1.3)
    with pytest.raises(ValueError, match="unknown score"):
        score_value("insertion", [p])


def test_retaining_path_improves_on_affine(tiny_model, tiny_image):
    """The optimiser ascends: the retaining score of the result beats the affine start."""
    torch.manual_seed(0)
    clf = ClassifierFn(tiny_model)
    baseline = torch.zeros_like(tiny_image)
    space = PixelMaskSpace(tiny_image, baseline, (8, 8), sigma_reg=0.5)
    target = int(clf.probabilities(tiny_image[None]).argmax())
    cfg = AblationPathConfig(n_steps=8, max_iterations=15, saturation=0.3)
    res = optimize_paths(clf, space, target, "retain", cfg)
    from ablation_paths.optimizer import evaluate_masks

    def score_of(path):
        probs, _ = evaluate_masks(clf, space, path, target)
        return score_value("retain", [probs[:, target]])

    assert score_of(res.paths[0]) > score_of(affine_path(8, (8, 8)))
    assert math.isfinite(res.history[0]["path_score"])


def test_single_feature_path_is_stationary_not_an_error(tiny_model, tiny_image):
    # one mask pixel: the axioms fix the path completely (phi(t) = t), so nothing can move
    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (1, 1))
    res = optimize_paths(
        ClassifierFn(tiny_model), space, 0, "retain", AblationPathConfig(n_steps=4)
    )
    assert res.stopped == "stationary" and not res.converged and res.iterations == 0
    torch.testing.assert_close(res.paths[0], affine_path(4, (1, 1)))
