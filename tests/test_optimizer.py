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
        assert paths.shape == (n_paths(score), cfg.n_steps_at(it - 1), 8, 8)
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


# ----------------------------------------------------------------- configuration cases


def _space(tiny_image, sigma_reg=0.0):
    return PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8), sigma_reg=sigma_reg)


def test_straddle_without_pinching_is_two_independent_paths(tiny_model, tiny_image):
    """Reference: with zeta_pinch = 0 the pair is the retaining and the dissipating path
    optimised on their own (thesis 2.6.3: the paths only interact through pinching)."""
    clf = ClassifierFn(tiny_model)
    space = _space(tiny_image, 0.5)
    cfg = AblationPathConfig(n_steps=5, max_iterations=3, stop_saturation=1.0, pinch=0.0)
    pair = optimize_paths(clf, space, 1, "straddle", cfg).paths
    up = optimize_paths(clf, space, 1, "retain", cfg).paths[0]
    down = optimize_paths(clf, space, 1, "dissipate", cfg).paths[0]
    torch.testing.assert_close(pair[0], up)
    torch.testing.assert_close(pair[1], down)
    # with pinching the down path is pulled towards the up path; the up path is untouched
    pinched = optimize_paths(clf, space, 1, "straddle", cfg.replace(pinch=0.5)).paths
    assert (pinched[1] - pinched[0]).abs().mean() < (pair[1] - pair[0]).abs().mean()


def test_pinching_is_applied_to_the_second_path_only(tiny_model, tiny_image, monkeypatch):
    import ablation_paths.optimizer as opt

    calls = []
    real = opt.pinch

    def spy(up, down, zeta):
        calls.append(zeta)
        return real(up, down, zeta)

    monkeypatch.setattr(opt, "pinch", spy)
    cfg = AblationPathConfig(n_steps=4, max_iterations=3, stop_saturation=1.0, pinch=0.3)
    optimize_paths(ClassifierFn(tiny_model), _space(tiny_image), 1, "straddle", cfg)
    assert calls == [0.3, 0.3, 0.3]
    calls.clear()
    optimize_paths(ClassifierFn(tiny_model), _space(tiny_image), 1, "contrastive", cfg)
    assert calls == []  # one path: nothing to pinch


def test_pinch_clamps_differences_to_its_domain():
    up = torch.zeros(4)
    down = torch.tensor([-1.5, -1.0, 1.0, 1.7])
    # eq. 2.28: Pi_pinch maps [-1, 1] to [-1, 1]; outside, the difference is clamped first
    expected_delta = torch.tensor([-1.0, -1.0, 1.0, 1.0]) * 0.5 + torch.ones(4) * 0.5
    torch.testing.assert_close(pinch(up, down, 0.5) - up, expected_delta)
    assert float((pinch(up, down, 0.5) - up).abs().max()) <= 1.0


def test_min_iterations_delays_the_stop(tiny_model, tiny_image):
    clf = ClassifierFn(tiny_model)
    cfg = AblationPathConfig(n_steps=4, max_iterations=20, stop_saturation=0.01)
    assert optimize_paths(clf, _space(tiny_image), 0, "retain", cfg).iterations == 1
    res = optimize_paths(clf, _space(tiny_image), 0, "retain", cfg.replace(min_iterations=6))
    assert res.iterations == 6 and res.converged and res.stopped == "saturated"
    assert [h["iteration"] for h in res.history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("ramp", [0, 1, 4])
def test_saturation_ramps_linearly(tiny_model, tiny_image, monkeypatch, ramp):
    """eq. 2.26 with 2.8.5C: zeta_sat * min(1, k / ramp) at iteration k (1-based)."""
    import ablation_paths.optimizer as opt

    zetas = []
    real = opt.saturate

    def spy(path, zeta):
        zetas.append(zeta)
        return real(path, zeta)

    monkeypatch.setattr(opt, "saturate", spy)
    cfg = AblationPathConfig(
        n_steps=4, max_iterations=6, saturation=2.0, saturation_ramp=ramp, stop_saturation=1.0
    )
    optimize_paths(ClassifierFn(tiny_model), _space(tiny_image), 0, "retain", cfg)
    expected = [2.0 * (1.0 if ramp == 0 else min(1.0, k / ramp)) for k in range(1, 7)]
    assert zetas == pytest.approx(expected)


def test_no_saturation_means_no_saturate_call(tiny_model, tiny_image, monkeypatch):
    import ablation_paths.optimizer as opt

    monkeypatch.setattr(opt, "saturate", lambda *a: pytest.fail("saturate called"))
    cfg = AblationPathConfig(n_steps=4, max_iterations=2, saturation=0.0, stop_saturation=1.0)
    optimize_paths(ClassifierFn(tiny_model), _space(tiny_image), 0, "retain", cfg)


# ----------------------------------------------------------------- step adaptation (line 9)


def test_fixed_step_has_the_configured_linf_size(tiny_model, tiny_image, monkeypatch):
    """Without adaptation, every update (before regularisation) has L-inf norm step_size."""
    import ablation_paths.optimizer as opt

    sizes = []
    space = _space(tiny_image)
    real = space.regularize

    def spy(new):
        sizes.append(new)
        return real(new)

    monkeypatch.setattr(space, "regularize", spy)
    seen = [affine_path(4, (8, 8))]
    cfg = AblationPathConfig(
        n_steps=4, max_iterations=3, step_size=0.3, adapt_step=False, stop_saturation=1.0
    )
    opt.optimize_paths(
        ClassifierFn(tiny_model),
        space,
        0,
        "retain",
        cfg,
        progress=lambda i, s, p: seen.append(p[0]),
    )
    for before, after in zip(seen, sizes, strict=False):
        assert float((after - before).abs().max()) == pytest.approx(0.3, rel=1e-5)


def test_adapted_step_follows_the_actual_step(tiny_model, tiny_image):
    """Algorithm 2, line 9: next step = step * sqrt(step_size / actual), within STEP_RANGE."""
    from ablation_paths.optimizer import STEP_RANGE

    space = _space(tiny_image, 1.0)
    paths = [affine_path(5, (8, 8))]
    cfg = AblationPathConfig(
        n_steps=5, max_iterations=5, step_size=0.5, stop_saturation=1.0, n_steps_start=None
    )
    res = optimize_paths(
        ClassifierFn(tiny_model),
        space,
        0,
        "retain",
        cfg,
        progress=lambda i, s, p: paths.append(p[0]),
    )
    h = 0.5
    for k, stats in enumerate(res.history):
        assert stats["step_size"] == pytest.approx(h, rel=1e-6)
        actual = float((paths[k + 1] - paths[k]).abs().max())
        h = min(0.5 * STEP_RANGE[1], max(0.5 * STEP_RANGE[0], h * math.sqrt(0.5 / actual)))
    fixed = optimize_paths(
        ClassifierFn(tiny_model), space, 0, "retain", cfg.replace(adapt_step=False)
    )
    assert all(s["step_size"] == 0.5 for s in fixed.history)


# ----------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"n_steps": 2.5}, TypeError, "n_steps must be an integer"),
        ({"n_steps": True}, TypeError, "n_steps must be an integer"),
        ({"max_iterations": "10"}, TypeError, "max_iterations"),
        ({"mask_size": 0}, ValueError, "mask_size"),
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"step_size": float("nan")}, ValueError, "finite"),
        ({"step_size": "1"}, TypeError, "step_size must be a number"),
        ({"saturation": -1.0}, ValueError, "saturation"),
        ({"saturation_ramp": -1}, ValueError, "saturation_ramp"),
        ({"pinch": 1.5}, ValueError, r"pinch must be in \[0, 1\]"),
        ({"pinch": -0.1}, ValueError, "pinch"),
        ({"regularization": -0.1}, ValueError, "regularization"),
        ({"regularization": "strong"}, ValueError, "number or 'auto'"),
        ({"regularization": float("inf")}, ValueError, "finite"),
        ({"stop_saturation": 0.0}, ValueError, "stop_saturation"),
        ({"stop_saturation": 1.5}, ValueError, "stop_saturation"),
        ({"min_iterations": 5, "max_iterations": 3}, ValueError, "exceeds max_iterations"),
        ({"max_iterations": -1}, ValueError, "iteration counts"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"monotonize": "sort"}, ValueError, "monotonize"),
        ({"adapt_step": "yes"}, TypeError, "adapt_step must be True or False"),
        ({"score_with_ends": 1}, TypeError, "score_with_ends"),
        ({"sharpen": 0}, TypeError, "sharpen must be True or False"),
        ({"n_steps_start": 0}, ValueError, "n_steps_start must be >= 1 or None"),
        ({"n_steps_start": 2.0}, TypeError, "n_steps_start must be an integer"),
        ({"refine_every": 0}, ValueError, "refine_every must be >= 1"),
        ({"precision": "half"}, ValueError, "precision must be one of float32, bfloat16"),
    ],
)
def test_config_rejects_bad_values(changes, error, match):
    with pytest.raises(error, match=match):
        AblationPathConfig(**changes)


def test_config_replace_rejects_unknown_names():
    with pytest.raises(TypeError, match="unknown option.*n_step"):
        AblationPathConfig().replace(n_step=3)
    assert AblationPathConfig().replace(n_steps=3).n_steps == 3
    assert AblationPathConfig(regularization="auto").regularization == "auto"


def test_resolved_mask_size():
    cfg = AblationPathConfig()
    assert cfg.resolved_mask_size(224, 224) == (64, 64)
    assert cfg.resolved_mask_size(128, 128) == (37, 37)  # round(128 / 3.5)
    assert cfg.resolved_mask_size(20, 20) == (8, 8)  # at least 8
    assert cfg.resolved_mask_size(112, 224) == (32, 64)  # aspect kept
    assert AblationPathConfig(mask_size=100).resolved_mask_size(50, 50) == (50, 50)


def test_more_option_checks():
    for name in ("mask_size", "batch_size"):
        with pytest.raises(TypeError, match=f"{name} must be an integer"):
            AblationPathConfig(**{name: 2.5})
    with pytest.raises(TypeError, match="regularization must be a number"):
        AblationPathConfig(regularization=[0.1])
    # the smallest valid values are accepted
    cfg = AblationPathConfig(n_steps=1, min_iterations=0, max_iterations=0, saturation_ramp=0)
    assert cfg.n_steps == 1 and cfg.min_iterations == 0


def test_regularization_sigma_in_mask_pixels():
    from ablation_paths.optimizer import regularization_sigma

    assert regularization_sigma(AblationPathConfig(regularization=0.05), (4, 8)) == 0.05 * 8
    with pytest.raises(ValueError, match="auto"):
        regularization_sigma(AblationPathConfig(regularization="auto"), (4, 8))


def test_weighted_step_keeps_the_weighted_mass(tiny_model, tiny_image, monkeypatch):
    """Algorithm 2, line 6: the update removes the (weighted) mean, so before regularisation
    every slice keeps its weighted mass."""

    class Weighted(PixelMaskSpace):
        def weights(self):
            w = torch.ones(self.mask_shape)
            w[:, :4] = 5.0
            return w

    space = Weighted(tiny_image, torch.zeros_like(tiny_image), (8, 8))
    w = (space.weights() / space.weights().sum()).reshape(-1)
    updates = []
    monkeypatch.setattr(space, "regularize", lambda new: updates.append(new) or new)
    seen = [affine_path(4, (8, 8))]
    cfg = AblationPathConfig(n_steps=4, max_iterations=3, stop_saturation=1.0, saturation=0.0)
    optimize_paths(
        ClassifierFn(tiny_model),
        space,
        0,
        "retain",
        cfg,
        progress=lambda i, s, p: seen.append(p[0]),
    )
    for before, new in zip(seen, updates, strict=False):
        change = (new - before).reshape(4, -1) @ w
        torch.testing.assert_close(change, torch.zeros(4), atol=1e-6, rtol=0)


def test_timings_are_bounded_by_the_wall_time(tiny_model, tiny_image):
    import time

    cfg = AblationPathConfig(n_steps=4, max_iterations=3, stop_saturation=1.0)
    start = time.perf_counter()
    res = optimize_paths(ClassifierFn(tiny_model), _space(tiny_image), 0, "retain", cfg)
    wall = time.perf_counter() - start
    assert 0 < res.classifier_seconds and 0 < res.other_seconds
    assert res.classifier_seconds + res.other_seconds <= wall


def test_paths_keep_the_mask_space_dtype(tiny_model):
    img = torch.rand(3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    space = PixelMaskSpace(img, torch.zeros_like(img), (4, 4))
    cfg = AblationPathConfig(n_steps=3, max_iterations=2, stop_saturation=1.0)
    res = optimize_paths(ClassifierFn(tiny_model.double()), space, 0, "retain", cfg)
    assert res.paths.dtype == torch.float64


def test_coarse_to_fine_schedule():
    cfg = AblationPathConfig(n_steps=16, n_steps_start=3, refine_every=2)
    assert [cfg.n_steps_at(i) for i in range(9)] == [3, 3, 6, 6, 12, 12, 16, 16, 16]
    assert AblationPathConfig(n_steps=16, n_steps_start=None).n_steps_at(0) == 16  # off
    assert [AblationPathConfig().n_steps_at(i) for i in (0, 3, 6, 9)] == [4, 8, 16, 16]
    assert AblationPathConfig(n_steps=5, n_steps_start=5).n_steps_at(0) == 5
    assert AblationPathConfig(n_steps=3).n_steps_at(0) == 3  # the default start 4 is clamped
    assert [AblationPathConfig(n_steps=4, n_steps_start=1).n_steps_at(i) for i in (0, 3, 6)] == [
        1,
        2,
        4,
    ]  # one sample is the smallest start


class CountingClassifier(ClassifierFn):
    """Records the batch size of every call that builds a graph (the gradient passes)."""

    def __init__(self, model):
        super().__init__(model)
        self.grad_batches: list[int] = []

    def __call__(self, images):
        if torch.is_grad_enabled():
            self.grad_batches.append(images.shape[0])
        return super().__call__(images)


@pytest.mark.parametrize("score", ["retain", "straddle"])
def test_coarse_to_fine_iterates_are_valid_and_cost_what_the_schedule_says(
    tiny_model, tiny_image, score
):
    baseline = gaussian_blur(tiny_image.unsqueeze(0), 6.0)[0]
    space = PixelMaskSpace(tiny_image, baseline, (8, 8), sigma_reg=1.0)
    cfg = AblationPathConfig(
        n_steps=8, n_steps_start=2, refine_every=2, max_iterations=7, stop_saturation=1.0
    )
    shapes = []

    def check(it, stats, paths):
        shapes.append(paths.shape[1])
        for p in paths:
            assert check_axioms(p, atol=1e-5) == [], (it, check_axioms(p))

    clf = CountingClassifier(tiny_model)
    res = optimize_paths(clf, space, 1, score, cfg, progress=check)
    assert shapes == [2, 2, 4, 4, 8, 8, 8]
    terms = {"retain": 1, "straddle": 2}[score]  # images per sample per iteration
    assert clf.grad_batches == [terms * t for t in shapes]  # batch_size 32 holds each pass
    assert res.paths.shape == (n_paths(score), 8, 8, 8)


def test_coarse_to_fine_stops_only_at_full_resolution(tiny_model, tiny_image):
    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8), sigma_reg=0.0)
    # saturation from the first step: coarse paths saturate at once, but may not stop there
    cfg = AblationPathConfig(
        n_steps=8,
        n_steps_start=2,
        refine_every=3,
        saturation=50.0,
        saturation_ramp=0,
        stop_saturation=0.5,
    )
    res = optimize_paths(ClassifierFn(tiny_model), space, 0, "retain", cfg)
    assert res.converged and res.iterations == 7  # 3 at T=2, 3 at T=4, stops at T=8
    assert [h["saturation"] >= 0.5 for h in res.history][:6] == [True] * 6


def test_coarse_to_fine_path_is_resampled_when_the_loop_ends_early(tiny_model, tiny_image):
    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8))
    cfg = AblationPathConfig(n_steps=9, n_steps_start=4, max_iterations=1)
    res = optimize_paths(ClassifierFn(tiny_model), space, 0, "retain", cfg)
    assert res.paths.shape == (1, 9, 8, 8)
    assert check_axioms(res.paths[0], atol=1e-5) == []


def test_reduced_precision_changes_only_the_gradient_pass(tiny_model, tiny_image):
    from ablation_paths.optimizer import evaluate_masks

    space = PixelMaskSpace(tiny_image, torch.zeros_like(tiny_image), (8, 8))
    masks = affine_path(4, (8, 8))
    coef = torch.full((4,), 0.25)
    clf = ClassifierFn(tiny_model)
    p32, g32 = evaluate_masks(clf, space, masks, 1, coef)
    p16, g16 = evaluate_masks(clf, space, masks, 1, coef, precision="bfloat16")
    assert p16.dtype == torch.float32 and g16.dtype == torch.float32
    assert not torch.equal(p16, p32)  # the pass really ran in bfloat16 ...
    torch.testing.assert_close(p16, p32, atol=2e-2, rtol=0)  # ... within its precision
    cos = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
    assert float(cos) > 0.95
    # the path's reported probabilities never use it: explain evaluates them in float32
    import ablation_paths as ap

    kw = dict(target=1, n_steps=4, mask_size=8, max_iterations=1, baseline="black")
    r32 = ap.explain(tiny_model, tiny_image, **kw)
    r16 = ap.explain(tiny_model, tiny_image, precision="bfloat16", **kw)
    assert not torch.equal(r16.path, r32.path)
    ends = r16.probs[[0, -1]]
    torch.testing.assert_close(ends, r32.probs[[0, -1]], rtol=0, atol=1e-6)
