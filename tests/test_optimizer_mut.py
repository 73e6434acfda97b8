"""Algorithm 2: the cases the mutation run of ``optimizer.py`` found unguarded (option edges,
batching, precision, the zero-gradient error, weighted spaces with coarse-to-fine, timings,
interruption), each against a value written out here, a spy, or the score's gradient taken by
autograd from the definition (eq. 2.13-2.16) in float64."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch

import ablation_paths.optimizer as opt
from ablation_paths import AblationPathConfig, check_axioms
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.optimizer import (
    evaluate_masks,
    optimize_paths,
    pinch,
    saturate,
    score_gradient,
)
from ablation_paths.paths import affine_path, project
from ablation_paths.scores import SCORES, score_terms

K = 3


def _linear_model(dtype: torch.dtype = torch.float64, seed: int = 0):
    """Logits ``W x`` of the flattened ``3 x 8 x 8`` image; records each call's batch size."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(K, 3 * 8 * 8, generator=g, dtype=dtype) * 0.5
    calls: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(int(x.shape[0]))
        return x.reshape(x.shape[0], -1) @ weight.t()

    return model, calls


def _space(dtype: torch.dtype = torch.float64, mask=(4, 4)) -> PixelMaskSpace:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 8, 8, generator=g, dtype=dtype)
    return PixelMaskSpace(image, torch.zeros_like(image), mask)


# ------------------------------------------------------------------------------- options
def test_smallest_valid_option_values_are_accepted():
    cfg = AblationPathConfig(
        mask_size=1, pinch=1.0, regularization=0.0, batch_size=1, refine_every=1
    )
    assert (cfg.mask_size, cfg.pinch, cfg.regularization) == (1, 1.0, 0.0)
    assert (cfg.batch_size, cfg.refine_every) == (1, 1)


def test_resolved_mask_size_cap_and_thin_images():
    cfg = AblationPathConfig()
    assert cfg.resolved_mask_size(448, 448) == (64, 64)  # round(448 / 3.5) = 128, capped
    assert cfg.resolved_mask_size(10, 1000) == (1, 64)  # round(0.64) = 1 row
    assert cfg.resolved_mask_size(1000, 10) == (64, 1)


def test_saturate_below_one_and_pinch_zero():
    p = torch.tensor([0.1, 0.4, 0.5, 0.9], dtype=torch.float64)
    want = 0.5 * (np.tanh((2 * p.numpy() - 1) * 0.5) / math.tanh(0.5) + 1)
    np.testing.assert_allclose(saturate(p, 0.5).numpy(), want, rtol=0, atol=1e-15)
    up = torch.zeros(3, dtype=torch.float64)
    down = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)  # beyond [-1, 1] too
    assert torch.equal(pinch(up, down, 0.0), down)


def test_sync_waits_for_cuda_devices_only(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", seen.append)
    opt._sync(torch.device("cpu"))
    opt._sync(torch.device("cuda", 0))
    assert seen == [torch.device("cuda", 0)]


# ------------------------------------------------------------------------------- classifier passes
def test_float32_precision_adds_no_autocast():
    """float32 needs no autocast (on the CPU autocast to float32 would warn and do nothing)."""
    model, _ = _linear_model(torch.float32)
    space = _space(torch.float32)
    masks = affine_path(3, (4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_masks(model, space, masks, 0, torch.ones(3), precision="float32")


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_reduced_precision_runs_the_model_in_that_dtype(precision):
    layer = torch.nn.Linear(3 * 8 * 8, K)
    seen = []

    def model(x):
        out = layer(x.reshape(x.shape[0], -1))
        seen.append(out.dtype)
        return out

    space = _space(torch.float32)
    probs, grad = evaluate_masks(
        model, space, affine_path(2, (4, 4)), 0, torch.ones(2), None, precision
    )
    assert seen == [getattr(torch, precision)]
    assert probs.dtype == torch.float32 and grad is not None


def test_evaluate_masks_batches_every_mask():
    """``batch_size=None``: one call for all masks; a batch size: chunks of it, every mask
    classified (with and without the gradient), the same probabilities as one call."""
    model, calls = _linear_model()
    space = _space()
    masks = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    whole, _ = evaluate_masks(model, space, masks, 1)
    assert calls == [6]
    calls.clear()
    chunked, _ = evaluate_masks(model, space, masks, 1, batch_size=4)
    assert calls == [4, 2]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-15)
    calls.clear()
    with_grad, grad = evaluate_masks(model, space, masks, 1, torch.ones(6, dtype=torch.float64), 4)
    assert calls == [4, 2] and grad is not None and grad.shape == masks.shape
    torch.testing.assert_close(with_grad, whole, rtol=0, atol=1e-15)


def test_model_that_ignores_its_input_is_an_error():
    bias = torch.nn.Parameter(torch.zeros(K))

    def model(x):
        return bias.expand(x.shape[0], K)

    with pytest.raises(ValueError, match="no gradient path to its input image"):
        evaluate_masks(
            model, _space(), affine_path(2, (4, 4), dtype=torch.float64), 0, torch.ones(2)
        )


def _reference_score(model, space, paths: torch.Tensor, target: int, score: str):
    """Eq. 2.13-2.16 from the definition: per term the time-mean of the target probability
    along ``phi`` or ``1 - phi``, as is or one minus it; gradient by autograd."""
    paths = paths.detach().clone().requires_grad_(True)
    total = torch.zeros((), dtype=paths.dtype)
    for term in score_terms(score):
        p = paths[term.path_index]
        masks = 1 - p if term.complement else p
        probs = torch.softmax(model(space.apply(masks)), dim=1)[:, target]
        total = total + (probs.mean() if term.sign > 0 else 1 - probs.mean())
    (grad,) = torch.autograd.grad(total, paths)
    return float(total.detach()), grad


@pytest.mark.parametrize("score", SCORES)
def test_score_gradient_equals_autograd_of_the_definition(score):
    """T = 3 (1/3 is not a float32 number): value and gradient to float64 rounding, also in
    chunks of two images."""
    model, calls = _linear_model()
    space = _space()
    n_p = 2 if score == "straddle" else 1
    g = torch.Generator().manual_seed(3)
    paths = torch.stack(
        [project(torch.rand(3, 4, 4, generator=g, dtype=torch.float64)) for _ in range(n_p)]
    )
    value, grad = _reference_score(model, space, paths, 2, score)
    calls.clear()
    sg = score_gradient(model, space, paths, 2, score, batch_size=2)
    assert calls and max(calls) <= 2
    assert sg.value == pytest.approx(value, abs=1e-14)
    assert sg.grad.dtype == torch.float64
    torch.testing.assert_close(sg.grad, grad, rtol=1e-12, atol=1e-16)


def test_zero_gradient_at_the_start_is_an_error():
    def model(x):
        return 0.0 * x.reshape(x.shape[0], -1).sum(dim=1, keepdim=True) + torch.zeros(1, K)

    with pytest.raises(ValueError, match="exactly zero on the affine start path"):
        optimize_paths(model, _space(), 0, "retain", AblationPathConfig(n_steps=3))


def test_single_feature_stops_as_stationary_at_once():
    model, calls = _linear_model()
    res = optimize_paths(
        model, _space(mask=(1, 1)), 0, "retain", AblationPathConfig(n_steps=3, n_steps_start=None)
    )
    assert (res.stopped, res.iterations, res.converged, len(calls)) == ("stationary", 0, False, 1)


# ------------------------------------------------------------------------------- steps
def test_fixed_step_is_exactly_step_size_in_float64(monkeypatch):
    """0.1 is not a float32 number: the step is scaled in the paths' dtype."""
    model, _ = _linear_model()
    space = _space()
    before, after = [], []
    real = space.regularize
    monkeypatch.setattr(space, "regularize", lambda new: after.append(new) or real(new))
    cfg = AblationPathConfig(
        n_steps=3,
        n_steps_start=None,
        max_iterations=3,
        step_size=0.1,
        adapt_step=False,
        saturation=0.0,
    )
    before.append(affine_path(3, (4, 4), dtype=torch.float64))
    optimize_paths(model, space, 0, "retain", cfg, progress=lambda i, s, p: before.append(p[0]))
    assert len(after) == 3
    for old, new in zip(before, after, strict=False):
        assert float((new - old).abs().max()) == pytest.approx(0.1, rel=0, abs=1e-15)


def test_a_path_without_direction_does_not_move():
    """A straddling pair whose second direction is zero: that path stays put (no 0 / 0)."""
    cfg = AblationPathConfig(n_steps=3, saturation=0.0, pinch=0.0)
    space = _space()
    prob = opt._Problem(None, space, 0, "straddle", cfg, None, None, None)  # type: ignore[arg-type]
    paths = torch.stack([affine_path(3, (4, 4), dtype=torch.float64)] * 2)
    flat = torch.zeros(2, 3, 16, dtype=torch.float64)
    flat[0, :, 0], flat[0, :, 1] = 1.0, -1.0
    norm = flat.abs().amax(dim=(1, 2), keepdim=True)
    new = opt._take_step(paths, flat, norm, [0.2, 0.2], prob, 0)
    assert torch.isfinite(new).all()
    torch.testing.assert_close(new[1], paths[1], rtol=0, atol=1e-15)
    assert not torch.allclose(new[0], paths[0])


def test_adapted_step_of_a_path_that_did_not_move_is_kept():
    old = torch.zeros(2, 3, 4, dtype=torch.float64)
    new = old.clone()
    new[1, 0, 0] = 0.25  # the second path moved by 0.25 (L-inf)
    steps = [0.7, 1.0]
    opt._adapt_steps(steps, new, old, 1.0)
    assert steps == [0.7, 2.0]  # 1.0 * sqrt(1 / 0.25) = 2, the upper bound


def test_saturation_below_one_is_applied(monkeypatch):
    zetas = []
    real = opt.saturate
    monkeypatch.setattr(opt, "saturate", lambda p, z: zetas.append(z) or real(p, z))
    model, _ = _linear_model()
    cfg = AblationPathConfig(
        n_steps=3, n_steps_start=None, max_iterations=2, saturation=0.5, saturation_ramp=0
    )
    optimize_paths(model, _space(), 0, "retain", cfg)
    assert zetas == [0.5, 0.5]


def test_monotonisation_method_reaches_every_projection(monkeypatch):
    methods = []
    real = opt.project

    def spy(path, weights=None, **kw):
        methods.append(kw.get("monotonize_method"))
        return real(path, weights, **kw)

    monkeypatch.setattr(opt, "project", spy)
    model, _ = _linear_model()
    cfg = AblationPathConfig(
        n_steps=4, n_steps_start=2, refine_every=1, max_iterations=2, monotonize="flatten"
    )
    optimize_paths(model, _space(), 0, "retain", cfg)
    assert len(methods) == 2 + 1  # two steps and the refinement from 2 to 4 samples between
    assert set(methods) == {"flatten"}


# ------------------------------------------------------------------------------- weighted spaces
class _Weighted(PixelMaskSpace):
    """Pixel masks whose left columns weigh three times as much; float64 weights on a float32
    image."""

    def weights(self):
        w = torch.ones(self.mask_shape, dtype=torch.float64)
        w[:, :2] = 3.0
        return w


def test_weighted_space_coarse_to_fine_and_saturation():
    """The path returned after a loop stopped at a coarse T is refined with the weights; the
    recorded saturation is the weighted eq. 2.31."""
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(4))
    space = _Weighted(image, torch.zeros_like(image), (4, 4))
    w = space.weights()
    model, _ = _linear_model(torch.float32)
    seen = []
    cfg = AblationPathConfig(n_steps=8, n_steps_start=2, refine_every=5, max_iterations=2)
    res = optimize_paths(model, space, 0, "retain", cfg, progress=lambda i, s, p: seen.append(p[0]))
    assert res.paths.shape == (1, 8, 4, 4) and check_axioms(res.paths[0], w) == []
    ww = (w / w.sum()).numpy()
    for stats, path in zip(res.history, seen, strict=True):
        sat = float(np.mean([np.sum(ww * 2 * np.abs(s - 0.5)) for s in path.double().numpy()]))
        assert stats["saturation"] == pytest.approx(sat, abs=1e-6)
    assert abs(res.history[0]["saturation"] - float((2 * (seen[0] - 0.5).abs()).mean())) > 1e-3


# ------------------------------------------------------------------------------- the loop
def test_timings_add_up_over_iterations(monkeypatch):
    """A classifier and a regularisation that each take 50 ms: four iterations spend at least
    0.2 s in each."""
    model, _ = _linear_model()

    def slow(x):
        time.sleep(0.05)
        return model(x)

    space = _space()
    real = space.regularize
    monkeypatch.setattr(space, "regularize", lambda m: time.sleep(0.05) or real(m))
    cfg = AblationPathConfig(n_steps=3, n_steps_start=None, max_iterations=4, stop_saturation=1.0)
    res = optimize_paths(slow, space, 0, "retain", cfg)
    assert res.iterations == 4
    assert res.classifier_seconds >= 0.2 and res.other_seconds >= 0.2


def test_stop_at_exactly_the_saturation_threshold():
    """``stop_saturation`` is reached when the saturation equals it (eq. 2.31, >=)."""
    model, _ = _linear_model()
    cfg = AblationPathConfig(n_steps=3, n_steps_start=None, max_iterations=4, stop_saturation=1.0)
    first = optimize_paths(model, _space(), 0, "retain", cfg)
    sats = [h["saturation"] for h in first.history]
    k = int(np.argmax(sats))
    assert 0 < sats[k] < 1
    again = optimize_paths(model, _space(), 0, "retain", cfg.replace(stop_saturation=sats[k]))
    assert again.converged and again.stopped == "saturated" and again.iterations == k + 1


def test_default_score_is_retain_and_batch_size_reaches_the_classifier():
    model, calls = _linear_model()
    cfg = AblationPathConfig(n_steps=4, n_steps_start=None, max_iterations=2, batch_size=3)
    default = optimize_paths(model, _space(), 1, config=cfg)
    assert calls and max(calls) <= 3
    retain = optimize_paths(model, _space(), 1, "retain", cfg)
    assert torch.equal(default.paths, retain.paths)


def test_keyboard_interrupt_returns_the_last_valid_paths():
    model, _ = _linear_model()

    def stop(iteration, stats, paths):
        if iteration == 2:
            raise KeyboardInterrupt

    cfg = AblationPathConfig(n_steps=3, n_steps_start=None, max_iterations=10, stop_saturation=1.0)
    res = optimize_paths(model, _space(), 0, "retain", cfg, progress=stop)
    assert (res.stopped, res.iterations, res.converged) == ("interrupted", 2, False)
    assert check_axioms(res.paths[0]) == []
