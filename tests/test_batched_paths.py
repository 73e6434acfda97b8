"""optimize_paths_many: several images' paths in one classifier pass per iteration.

The reference is :func:`optimize_paths` run on each problem alone (the thesis's Algorithm 2 as
tested in test_optimizer.py): batched results must equal it, run by run, while the classifier
is called the number of times the shared-pass design says.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablation_paths import AblationPathConfig, check_axioms
from ablation_paths.filters import gaussian_blur
from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.optimizer import (
    MaskBatch,
    PathProblem,
    evaluate_mask_batches,
    evaluate_masks,
    optimize_paths,
    optimize_paths_many,
)
from ablation_paths.scores import n_paths


class TinyNet(nn.Module):
    """A small convolutional classifier (3 x H x W -> 5 classes), any image size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.adaptive_avg_pool2d(self.features(x), 4)
        return self.head(h.flatten(1))


def _image(seed: int, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(3, *size, generator=g)
    img[:, size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] += 0.8 * (seed % 3)
    return img.clamp(0, 1)


def _space(image: torch.Tensor, mask: tuple[int, int] = (8, 8)) -> PixelMaskSpace:
    baseline = gaussian_blur(image.unsqueeze(0), 4.0)[0]
    return PixelMaskSpace(image, baseline, mask, sigma_reg=1.0)


class Counting(nn.Module):
    """The tiny model, recording the batch size of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet().eval()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.net(x)


def _problems(clf: ClassifierFn, specs: list[tuple[int, int, str, AblationPathConfig]]):
    return [
        PathProblem(clf, _space(_image(seed)), target, score, cfg)
        for seed, target, score, cfg in specs
    ]


def _assert_same(batched, alone, atol=1e-5):
    assert batched.iterations == alone.iterations
    assert batched.stopped == alone.stopped
    assert batched.converged == alone.converged
    assert batched.paths.shape == alone.paths.shape
    torch.testing.assert_close(batched.paths, alone.paths, atol=atol, rtol=0)
    assert len(batched.history) == len(alone.history)
    for hb, ha in zip(batched.history, alone.history, strict=True):
        assert hb.keys() == ha.keys()
        for k in hb:
            assert hb[k] == pytest.approx(ha[k], abs=1e-5), k


def _assert_stop_rule(res, cfg: AblationPathConfig) -> None:
    """Stopped at the first full-resolution iteration with saturation >= stop_saturation (not
    before min_iterations), else at max_iterations."""
    sats = [h["saturation"] for h in res.history]
    assert len(sats) == res.iterations
    stops = [
        k
        for k in range(1, res.iterations + 1)
        if cfg.n_steps_at(k - 1) == cfg.n_steps
        and sats[k - 1] >= cfg.stop_saturation
        and k >= cfg.min_iterations
    ]
    if res.stopped == "saturated":
        assert stops == [res.iterations]
    else:
        assert res.stopped == "max_iterations" and stops == []
        assert res.iterations == cfg.max_iterations


BASE = AblationPathConfig(n_steps=8, batch_size=5, n_steps_start=2, refine_every=2)

# different targets, scores, stop rules and caps: the runs stop at different iterations
SPECS = [
    (1, 0, "retain", BASE.replace(max_iterations=3)),
    (2, 3, "retain", BASE.replace(max_iterations=40)),
    (3, 1, "dissipate", BASE.replace(max_iterations=40, stop_saturation=0.6)),
    (4, 2, "retain", BASE.replace(max_iterations=7, saturation=0.0, stop_saturation=1.0)),
]


@pytest.mark.parametrize("two_path", ["straddle", "contrastive"])
def test_batched_runs_equal_one_by_one(two_path):
    clf = ClassifierFn(TinyNet().eval())
    specs = [*SPECS, (5, 4, two_path, BASE.replace(max_iterations=40, pinch=0.3))]
    problems = _problems(clf, specs)
    batched = optimize_paths_many(problems)
    alone = [optimize_paths(p.classifier, p.space, p.target, p.score, p.config) for p in problems]
    iterations = [r.iterations for r in alone]
    assert len(set(iterations)) >= 3, iterations  # the batch really shrinks on the way
    assert {r.stopped for r in alone} >= {"saturated", "max_iterations"}
    for b, a, p in zip(batched, alone, problems, strict=True):
        _assert_stop_rule(a, p.config)
        _assert_same(b, a)
        assert b.paths.shape == (n_paths(p.score), 8, 8, 8)
        for path in b.paths:
            assert check_axioms(path, atol=1e-5) == []


def test_images_of_different_sizes_and_mask_shapes_share_the_run():
    clf = ClassifierFn(TinyNet().eval())
    cfg = BASE.replace(max_iterations=6)
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg),
        PathProblem(clf, _space(_image(2, (24, 40)), (6, 10)), 1, "retain", cfg),
        PathProblem(clf, _space(_image(3)), 2, "straddle", cfg),
    ]
    for b, p in zip(optimize_paths_many(problems), problems, strict=True):
        _assert_same(b, optimize_paths(p.classifier, p.space, p.target, p.score, p.config))


def test_one_classifier_pass_per_iteration_in_batch_size_chunks():
    """Per iteration: the active runs' masks (n_terms * T each) concatenated and cut into calls
    of batch_size images, the calls spanning runs; a run that stops leaves the pass."""
    model = Counting().eval()
    clf = ClassifierFn(model)
    cfg = AblationPathConfig(
        n_steps=6, n_steps_start=None, batch_size=5, saturation=0.0, stop_saturation=1.0
    )
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg.replace(max_iterations=2)),
        PathProblem(clf, _space(_image(2)), 1, "retain", cfg.replace(max_iterations=4)),
        PathProblem(clf, _space(_image(3)), 2, "straddle", cfg.replace(max_iterations=1)),
    ]
    results = optimize_paths_many(problems)
    assert [r.iterations for r in results] == [2, 4, 1]

    def calls(rows: int) -> list[int]:
        return [5] * (rows // 5) + ([rows % 5] if rows % 5 else [])

    # iteration 0: 6 + 6 + 12 rows; 1: 6 + 6; 2, 3: 6
    expected = calls(24) + calls(12) + calls(6) + calls(6)
    assert model.calls == expected

    model.calls.clear()  # one by one: a pass per run per iteration, never shared
    for p in problems:
        optimize_paths(p.classifier, p.space, p.target, p.score, p.config)
    assert model.calls == calls(6) * 2 + calls(6) * 4 + calls(12)
    assert len(expected) < len(model.calls)


def test_whole_batch_in_one_call_without_batch_size():
    model = Counting().eval()
    clf = ClassifierFn(model)
    cfg = AblationPathConfig(
        n_steps=4, n_steps_start=None, batch_size=None, max_iterations=2, stop_saturation=1.0
    )
    problems = [PathProblem(clf, _space(_image(s)), s, "retain", cfg) for s in range(3)]
    optimize_paths_many(problems)
    assert model.calls == [12, 12]


def test_coarse_to_fine_is_per_run():
    """Each run follows its own n_steps_at schedule inside the shared pass."""
    model = Counting().eval()
    clf = ClassifierFn(model)
    cfg = AblationPathConfig(
        n_steps=8, batch_size=None, max_iterations=4, saturation=0.0, stop_saturation=1.0
    )
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg.replace(n_steps_start=2)),
        PathProblem(clf, _space(_image(2)), 1, "retain", cfg.replace(n_steps_start=None)),
    ]
    optimize_paths_many(problems)
    expected = [
        problems[0].config.n_steps_at(k) + problems[1].config.n_steps_at(k) for k in range(4)
    ]
    assert model.calls == expected == [2 + 8, 2 + 8, 2 + 8, 4 + 8]


def test_a_run_leaving_early_does_not_change_the_others():
    clf = ClassifierFn(TinyNet().eval())
    long = PathProblem(clf, _space(_image(2)), 3, "retain", BASE.replace(max_iterations=12))
    alone = optimize_paths_many([long])[0]
    for short_cap in (1, 4):
        cfg = BASE.replace(max_iterations=short_cap)
        short = PathProblem(clf, _space(_image(1)), 0, "retain", cfg)
        first, second = optimize_paths_many([short, long])
        assert first.iterations == short_cap
        _assert_same(second, alone)


def test_interrupt_keeps_every_runs_last_valid_paths():
    clf = ClassifierFn(TinyNet().eval())
    cfg = BASE.replace(saturation=0.0, stop_saturation=1.0, max_iterations=30)
    seen: dict[int, torch.Tensor] = {}

    def stop_at(iteration: int):
        def progress(it, stats, paths):
            seen[iteration] = paths.clone()
            if it == iteration:
                raise KeyboardInterrupt

        return progress

    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg.replace(max_iterations=2)),
        PathProblem(clf, _space(_image(2)), 1, "retain", cfg, progress=stop_at(5)),
        PathProblem(clf, _space(_image(3)), 2, "straddle", cfg),
    ]
    results = optimize_paths_many(problems)
    assert results[0].stopped == "max_iterations" and results[0].iterations == 2
    assert [r.stopped for r in results[1:]] == ["interrupted", "interrupted"]
    assert results[1].iterations == 5  # its step of iteration 5 was taken
    assert results[2].iterations == 4  # the interrupt came before its step
    for r in results:
        assert r.paths.shape[1] == cfg.n_steps
        for path in r.paths:
            assert check_axioms(path, atol=1e-5) == []


def test_a_failing_run_is_returned_as_its_error_and_the_others_go_on():
    clf = ClassifierFn(TinyNet().eval())
    image = _image(2)
    flat = PixelMaskSpace(image, image.clone(), (8, 8))  # baseline = image: zero gradient
    cfg = BASE.replace(max_iterations=5)
    good = [PathProblem(clf, _space(_image(s)), s, "retain", cfg) for s in (1, 3)]
    problems = [good[0], PathProblem(clf, flat, 1, "retain", cfg), good[1]]
    out = optimize_paths_many(problems, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "exactly zero" in str(out[1])
    for b, p in zip([out[0], out[2]], good, strict=True):
        assert not isinstance(b, Exception)
        _assert_same(b, optimize_paths(clf, p.space, p.target, p.score, cfg))
    with pytest.raises(ValueError, match="exactly zero"):
        optimize_paths_many(problems)


def test_bad_batches_are_refused_with_a_clear_error():
    clf = ClassifierFn(TinyNet().eval())
    space = _space(_image(1))
    with pytest.raises(ValueError, match="no problems"):
        optimize_paths_many([])
    with pytest.raises(TypeError, match="PathProblem"):
        optimize_paths_many([(clf, space, 0)])  # type: ignore[list-item]
    other = ClassifierFn(nn.Sequential(TinyNet(), nn.Identity()).eval())
    with pytest.raises(ValueError, match="problem 1 has another classifier"):
        optimize_paths_many([PathProblem(clf, space, 0), PathProblem(other, space, 0)])
    # the same model and transform in two wrappers is the same classifier
    twin = ClassifierFn(clf.model)
    res = optimize_paths_many(
        [
            PathProblem(clf, space, 0, config=BASE.replace(max_iterations=1)),
            PathProblem(twin, space, 0, config=BASE.replace(max_iterations=1)),
        ]
    )
    assert [r.iterations for r in res] == [1, 1]
    elsewhere = _space(_image(2))
    elsewhere.target = torch.empty(3, 32, 32, device="meta")
    with pytest.raises(ValueError, match="problem 1 is on meta but problem 0 on cpu"):
        optimize_paths_many([PathProblem(clf, space, 0), PathProblem(clf, elsewhere, 0)])
    with pytest.raises(ValueError, match="batch_size"):
        optimize_paths_many(
            [
                PathProblem(clf, space, 0, config=AblationPathConfig(batch_size=4)),
                PathProblem(clf, space, 0, config=AblationPathConfig(batch_size=8)),
            ]
        )
    with pytest.raises(ValueError, match="unknown score|score"):
        optimize_paths_many([PathProblem(clf, space, 0, "nonsense")])


def test_mask_batches_equal_separate_evaluations():
    """evaluate_mask_batches == evaluate_masks per part (probabilities and gradients), with
    calls spanning parts, different targets, coefficients and image shapes."""
    model = Counting().eval()
    clf = ClassifierFn(model)
    g = torch.Generator().manual_seed(0)
    parts = [
        MaskBatch(_space(_image(1)), torch.rand(7, 8, 8, generator=g), 0, torch.rand(7)),
        MaskBatch(_space(_image(2, (24, 40)), (6, 10)), torch.rand(4, 6, 10), 2, -torch.rand(4)),
        MaskBatch(_space(_image(3)), torch.rand(5, 8, 8, generator=g), 4, torch.rand(5)),
    ]
    out = evaluate_mask_batches(clf, parts, batch_size=4)
    # 32x32 images: 7 + 5 rows in calls of 4; the 24x40 ones on their own
    assert model.calls == [4, 4, 4, 4]
    for (p, gr), part in zip(out, parts, strict=True):
        masks = part.masks.clone().requires_grad_(True)  # plain autograd, part by part
        ref_p = torch.softmax(model.net(part.space.apply(masks)), dim=1)
        assert part.coefficients is not None
        (ref_g,) = torch.autograd.grad((ref_p[:, part.target] * part.coefficients).sum(), masks)
        ref_p = ref_p.detach()
        torch.testing.assert_close(p, ref_p, atol=1e-6, rtol=0)
        assert gr is not None
        one = evaluate_masks(clf, part.space, part.masks, part.target, part.coefficients, 3)
        torch.testing.assert_close(one[1], ref_g, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(gr, ref_g, atol=1e-6, rtol=1e-5)
    model.calls.clear()
    plain = [MaskBatch(p.space, p.masks, p.target) for p in parts]
    for (p, gr), ref in zip(evaluate_mask_batches(clf, plain), out, strict=True):
        assert gr is None
        torch.testing.assert_close(p, ref[0], atol=1e-6, rtol=0)
    assert model.calls == [12, 4]
    with pytest.raises(ValueError, match="coefficients"):
        evaluate_mask_batches(clf, [parts[0], plain[1]])


def test_timings_are_shared_out_by_images():
    clf = ClassifierFn(TinyNet().eval())
    cfg = AblationPathConfig(n_steps=4, n_steps_start=None, max_iterations=2, stop_saturation=1)
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg),
        PathProblem(clf, _space(_image(2)), 1, "straddle", cfg),
    ]
    a, b = optimize_paths_many(problems)
    assert a.classifier_seconds > 0 and b.classifier_seconds > 0
    assert math.isclose(b.classifier_seconds / a.classifier_seconds, 2.0, rel_tol=1e-6)


def test_a_failed_run_leaves_the_shared_pass():
    """After a run's error its images are no longer classified (the others' only)."""
    model = Counting().eval()
    clf = ClassifierFn(model)
    image = _image(2)
    flat = PixelMaskSpace(image, image.clone(), (8, 8))  # baseline = image: zero gradient
    cfg = AblationPathConfig(
        n_steps=4, n_steps_start=None, max_iterations=3, stop_saturation=1, batch_size=None
    )
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg),
        PathProblem(clf, flat, 1, "retain", cfg),
    ]
    out = optimize_paths_many(problems, return_exceptions=True)
    assert isinstance(out[1], ValueError) and out[0].iterations == 3
    assert model.calls == [8, 4, 4]  # both runs' 4 images, then the good run's alone


def test_evaluate_masks_and_score_gradient_honour_batch_size_and_precision():
    from ablation_paths.optimizer import score_gradient

    model = Counting().eval()
    seen: list[torch.dtype] = []
    hook = model.net.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    clf = ClassifierFn(model)
    space = _space(_image(1))
    masks = torch.rand(7, 8, 8, generator=torch.Generator().manual_seed(0))
    evaluate_masks(clf, space, masks, 0, torch.ones(7), batch_size=3)
    assert model.calls == [3, 3, 1]
    model.calls.clear()
    paths = masks[:4].sort(dim=0).values.unsqueeze(0)
    score_gradient(clf, space, paths, 0, "retain", batch_size=3, precision="bfloat16")
    assert model.calls == [3, 1]
    assert seen[-2:] == [torch.bfloat16, torch.bfloat16]  # autocast reached the model
    hook.remove()


def test_a_model_that_ignores_its_input_is_refused_clearly():
    """The objective has a gradient (a parameter) but none reaches the masks."""

    class Blind(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 5)

    clf = ClassifierFn(Blind().eval())
    with pytest.raises(ValueError, match="no gradient path to its input image"):
        evaluate_masks(clf, _space(_image(1)), torch.rand(2, 8, 8), 0, torch.ones(2))


def test_any_positive_saturation_acts():
    """zeta_sat in (0, 1] changes the step (eq. 2.26), it is not a no-op below 1."""
    clf = ClassifierFn(TinyNet().eval())
    space = _space(_image(1))
    cfg = AblationPathConfig(
        n_steps=4, n_steps_start=None, max_iterations=2, stop_saturation=1, saturation_ramp=0
    )
    plain = optimize_paths(clf, space, 0, "retain", cfg.replace(saturation=0.0))
    weak = optimize_paths(clf, space, 0, "retain", cfg.replace(saturation=0.5))
    assert (plain.paths - weak.paths).abs().max() > 1e-3


def test_timings_add_up_over_iterations(monkeypatch):
    """With a clock that advances one second per reading, every iteration adds exactly one
    second to each timing (so they are sums over iterations, not the last one)."""
    import itertools

    import ablation_paths.optimizer as opt

    ticks = itertools.count()
    monkeypatch.setattr(opt.time, "perf_counter", lambda: float(next(ticks)))
    clf = ClassifierFn(TinyNet().eval())
    cfg = AblationPathConfig(n_steps=4, n_steps_start=None, max_iterations=3, stop_saturation=1)
    res = optimize_paths(clf, _space(_image(1)), 0, "retain", cfg)
    assert res.iterations == 3
    assert res.classifier_seconds == 3.0 and res.other_seconds == 3.0


def test_zero_iterations_leave_the_affine_path():
    """``max_iterations=0`` classifies nothing and returns the affine start at ``n_steps``."""
    from ablation_paths.paths import affine_path

    model = Counting().eval()
    clf = ClassifierFn(model)
    cfg = AblationPathConfig(n_steps=8, n_steps_start=4, max_iterations=0, min_iterations=0)
    (res,) = optimize_paths_many([PathProblem(clf, _space(_image(1)), 0, "retain", cfg)])
    assert res.iterations == 0 and model.calls == []
    torch.testing.assert_close(res.paths[0], affine_path(8, (8, 8)), rtol=0, atol=1e-7)


def test_runs_cut_short_are_resampled_to_n_steps_with_errors_returned():
    """A run stopped by its cap while still coarse ends at ``n_steps`` samples also when the
    errors are returned rather than raised."""
    clf = ClassifierFn(TinyNet().eval())
    image = _image(2)
    flat = PixelMaskSpace(image, image.clone(), (8, 8))  # zero gradient: an error
    cfg = AblationPathConfig(n_steps=8, n_steps_start=2, refine_every=3, max_iterations=2)
    problems = [
        PathProblem(clf, _space(_image(1)), 0, "retain", cfg),
        PathProblem(clf, flat, 1, "retain", cfg),
    ]
    good, bad = optimize_paths_many(problems, return_exceptions=True)
    assert isinstance(bad, ValueError) and not isinstance(good, Exception)
    assert good.iterations == 2 and good.paths.shape == (1, 8, 8, 8)
    assert check_axioms(good.paths[0]) == []
