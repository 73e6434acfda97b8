"""Several images' paths in one classifier pass: pipeline.run_many and explain_many(batch_images).

The reference is the one-by-one pipeline (``pipeline.run`` / ``explain_many`` with
``batch_images=1``): batched results must equal it image by image, per-image errors must stay
per image, and a batch's finished images must be written as soon as the batch ends.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import ablation_paths
from ablation_paths import AblationPathConfig, pipeline
from ablation_paths.diagnostics import AblationPathWarning, IgnoredOptionWarning
from ablation_paths.many import DONE_FILE, explain_many, is_done
from ablation_paths.pipeline import ExplainRequest, run, run_many
from test_many import MODULE

FAST = {"max_iterations": 6, "n_steps": 6}


class Net(nn.Module):
    """A small classifier that records the batch size of its calls with gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(54, 4),
        )
        self.grad_calls: list[int] = []
        self.interrupt = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            if self.interrupt:
                raise KeyboardInterrupt
            self.grad_calls.append(int(x.shape[0]))
        return self.body(x)


def _images(n: int, seed: int = 0, size: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = torch.rand(3, size, size, generator=g) * 0.5
        img[i % 3, 4 + i : 14 + i, 6:16] += 0.5  # a different object per image
        out.append(img)
    return out


def _request(**changes) -> ExplainRequest:
    return ExplainRequest(config=AblationPathConfig().replace(**{**FAST, **changes}))


def _assert_same_result(a, b, atol=1e-5) -> None:
    assert a.target == b.target and a.score == b.score
    assert a.iterations == b.iterations and a.stopped == b.stopped
    torch.testing.assert_close(a.path, b.path, atol=atol, rtol=0)
    if a.path_down is not None:
        torch.testing.assert_close(a.path_down, b.path_down, atol=atol, rtol=0)
    torch.testing.assert_close(a.probs, b.probs, atol=atol, rtol=0)
    assert a.path_score == pytest.approx(b.path_score, abs=atol)
    for k in a.heatmaps:
        torch.testing.assert_close(a.heatmaps[k], b.heatmaps[k], atol=1e-4, rtol=0)
    assert a.info["warnings"] == b.info["warnings"]


@pytest.mark.parametrize("score", ["retain", "straddle"])
def test_run_many_equals_run_image_by_image(score: str) -> None:
    model = Net().eval()
    images = _images(4)
    targets = [0, 1, None, 3]
    cfg = {"max_iterations": 12, "stop_saturation": 0.8, "batch_size": 64}
    request = dataclass_replace(_request(**cfg), score=score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AblationPathWarning)
        alone = [run(model, img, t, request) for img, t in zip(images, targets, strict=True)]
        model.grad_calls.clear()
        batched = run_many(model, list(zip(images, targets, strict=True)), request)
    assert len({r.iterations for r in alone}) >= 2  # images leave the batch at different times
    for b, a in zip(batched, alone, strict=True):
        assert not isinstance(b, Exception)
        _assert_same_result(b, a)
        assert b.info["batch"]["images"] == 4
    # one shared pass per iteration: as many gradient calls as the longest run has iterations
    # (batch_size 64 holds every image's masks), instead of one per image and iteration
    assert len(model.grad_calls) == max(r.iterations for r in alone)


def dataclass_replace(request: ExplainRequest, **changes) -> ExplainRequest:
    import dataclasses

    return dataclasses.replace(request, **changes)


def test_auto_regularization_is_batched_by_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image's first candidate in one batch, then the next candidate of the pinned ones;
    the blurs chosen and tried equal the one-by-one search."""
    from ablation_paths.result import AblationPathResult

    model = Net().eval()
    images = _images(3, seed=1)
    request = dataclass_replace(
        _request(regularization="auto"), auto_candidates=(0.0, 0.02, 0.05, 0.1)
    )
    # a fixed pinned rule instead of the score test: image k is pinned below blur limits[k]
    limits = {
        round(float(img.sum()), 2): lim for img, lim in zip(images, (0, 0.01, 0.03), strict=True)
    }

    def pinned(result: AblationPathResult) -> bool:
        limit = limits[round(float(result.image.sum()), 2)]
        return result.info["config"]["regularization"] < limit

    monkeypatch.setattr(AblationPathResult, "pinned", property(pinned))
    monkeypatch.setattr(pipeline, "pinned_test_decidable", lambda *a: True)
    sizes = []
    real_many = pipeline.optimise_many
    monkeypatch.setattr(
        pipeline, "optimise_many", lambda jobs: sizes.append(len(jobs)) or real_many(jobs)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AblationPathWarning)
        alone = [run(model, img, None, request) for img in images]
        sizes.clear()
        batched = run_many(model, [(img, None) for img in images], request)
    chosen = [r.info["regularization_auto"]["chosen"] for r in alone]
    assert chosen == [0.0, 0.02, 0.05]  # image k pinned k times
    assert sizes == [3, 2, 1]  # rounds: all, then the pinned ones
    for b, a in zip(batched, alone, strict=True):
        assert not isinstance(b, Exception)
        assert b.info["regularization_auto"] == a.info["regularization_auto"]
        _assert_same_result(b, a)


def test_one_bad_image_does_not_stop_the_batch() -> None:
    model = Net().eval()
    good = _images(2)
    nan = good[0].clone()
    nan[0, 0, 0] = float("nan")
    items = [(good[0], 0), (nan, 0), (good[1], 9), (good[1], 1)]  # NaN pixel, no class 9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AblationPathWarning)
        out = run_many(model, items, _request())
        ref = [run(model, good[0], 0, _request()), run(model, good[1], 1, _request())]
    assert isinstance(out[1], Exception) and "NaN" in str(out[1])
    assert isinstance(out[2], Exception) and "9" in str(out[2])
    _assert_same_result(out[0], ref[0])
    _assert_same_result(out[3], ref[1])


def test_an_image_failing_in_the_optimiser_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's own error in the optimiser (here a simulated non-finite gradient for the one
    32 px image, whose masks are 9 x 9) is that image's error; the others are unchanged."""
    import ablation_paths.optimizer as opt

    model = Net().eval()
    images = [_images(1)[0], _images(1, size=32)[0], _images(2, seed=4)[1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AblationPathWarning)
        ref = [run(model, images[0], 0, _request()), run(model, images[2], 1, _request())]
        real = opt._ascent_direction

        def failing(grad, *args):
            if grad.shape[-1] == 9:
                raise ValueError("the score's gradient contains NaN or infinite values")
            return real(grad, *args)

        monkeypatch.setattr(opt, "_ascent_direction", failing)
        out = run_many(model, [(images[0], 0), (images[1], 0), (images[2], 1)], _request())
        with pytest.raises(ValueError, match="NaN"):
            run(model, images[1], 0, _request())
    assert isinstance(out[1], ValueError) and "NaN" in str(out[1])
    _assert_same_result(out[0], ref[0])
    _assert_same_result(out[2], ref[1])


def test_a_failing_shared_pass_falls_back_to_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Net().eval()
    images = _images(3)

    def out_of_memory(problems, **kw):
        raise RuntimeError("CUDA out of memory (simulated)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AblationPathWarning)
        ref = run_many(model, [(img, None) for img in images], _request())
        monkeypatch.setattr(pipeline, "optimize_paths_many", out_of_memory)
        model.grad_calls.clear()
        out = run_many(model, [(img, None) for img in images], _request())
    assert sum(r.iterations for r in ref) == len(model.grad_calls)  # one by one
    for a, b in zip(out, ref, strict=True):
        _assert_same_result(a, b)


def test_warnings_are_issued_and_stored_per_image() -> None:
    model = Net().eval()
    images = _images(2)
    request = dataclass_replace(_request(max_iterations=1), features="pixel")
    request = dataclass_replace(request, image_size=16)  # ignored for tensors: per image
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_many(model, [(images[0], 0), (images[1], 1)], request)
    ignored = [w for w in caught if issubclass(w.category, IgnoredOptionWarning)]
    assert len(ignored) == 2  # one per image
    for r in out:
        assert not isinstance(r, Exception)
        assert sum("image_size=16" in m for m in r.info["warnings"]) == 1
        assert any("saturate" in m for m in r.info["warnings"])


def test_run_many_uses_one_classifier_object_per_image_safely() -> None:
    """Each image gets its own ClassifierFn wrapper around the same model: batching is allowed;
    a request-level error (unknown score) is raised, not returned per image."""
    with pytest.raises(ValueError, match="score"):
        run_many(Net().eval(), [(_images(1)[0], 0)], dataclass_replace(_request(), score="x"))


# ----------------------------------------------------------------------------- explain_many
def _named(images: list[torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(f"img{i}", img) for i, img in enumerate(images)]


def test_explain_many_batched_equals_one_by_one_and_resumes(tmp_path: Path) -> None:
    model = Net().eval()
    items = _named(_images(5))
    one = explain_many(model, items, out=tmp_path / "one", progress=False, **FAST)
    seen: list[str] = []
    model.grad_calls.clear()
    many = explain_many(
        model, items, out=tmp_path / "many", progress=False, batch_images=2,
        on_result=lambda name, res: seen.append(name), **FAST,
    )  # fmt: skip
    assert many.complete and many.done == one.done == seen == [f"img{i}" for i in range(5)]
    iterations = {}
    for name in one.names:
        a = ablation_paths.load(tmp_path / "one" / name / "path.npz")
        b = ablation_paths.load(tmp_path / "many" / name / "path.npz")
        torch.testing.assert_close(a.path, b.path, atol=1e-5, rtol=0)
        assert a.iterations == b.iterations and a.target == b.target
        iterations[name] = b.iterations
        ra = json.loads((tmp_path / "one" / name / DONE_FILE).read_text())
        rb = json.loads((tmp_path / "many" / name / DONE_FILE).read_text())
        assert ra["settings"] == rb["settings"] and ra["warnings"] == rb["warnings"]
    # batches img0-1, img2-3, img4: one gradient call per iteration of a batch's longest run
    per_batch = [["img0", "img1"], ["img2", "img3"], ["img4"]]
    assert len(model.grad_calls) == sum(max(iterations[n] for n in b) for b in per_batch)
    again = explain_many(
        model, items, out=tmp_path / "many", progress=False, batch_images=3, **FAST
    )
    assert again.skipped == many.names and again.done == []


def test_bad_image_in_a_batch_fails_alone(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    items = [*_named(_images(2)), str(bad)]
    run_ = explain_many(
        Net().eval(), items, out=tmp_path / "out", progress=False, batch_images=3, **FAST
    )
    assert run_.done == ["img0", "img1"] and list(run_.failed) == ["broken"]
    assert "cannot read" in run_.failed["broken"]


def test_interrupt_loses_at_most_the_unfinished_batch(tmp_path: Path) -> None:
    """Ctrl-C inside the second batch's optimisation: the first batch is written, the second
    is not recorded as done, and a rerun computes exactly the rest."""
    model = Net().eval()
    items = _named(_images(5))

    def after_first_batch(name: str, res: object) -> None:
        if name == "img1":
            model.interrupt = True  # the next gradient pass raises KeyboardInterrupt

    run_ = explain_many(
        model, items, out=tmp_path, progress=False, batch_images=2,
        on_result=after_first_batch, **FAST,
    )  # fmt: skip
    assert run_.interrupted and run_.done == ["img0", "img1"]
    assert [is_done(tmp_path / n) for n in run_.names] == [True, True, False, False, False]
    model.interrupt = False
    seen: list[str] = []
    rest = explain_many(
        model, items, out=tmp_path, progress=False, batch_images=2,
        on_result=lambda n, r: seen.append(n), **FAST,
    )  # fmt: skip
    assert rest.skipped == ["img0", "img1"] and seen == ["img2", "img3", "img4"]
    assert rest.complete


def test_finished_images_of_an_interrupted_batch_are_kept() -> None:
    from types import SimpleNamespace

    from ablation_paths.many import ImageItem, _finish_batch

    batch = [ImageItem(f"i{k}", None) for k in range(3)]
    outcomes = [
        (SimpleNamespace(stopped="saturated"), None),
        (SimpleNamespace(stopped="interrupted"), None),
        (None, "ValueError: bad"),
    ]
    got: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _finish_batch(batch, outcomes, lambda item, r, e: got.append(item.name))  # type: ignore[arg-type]
    assert got == ["i0", "i2"]  # the interrupted image never reaches the sink


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(0, ValueError, ">= 1"), (-2, ValueError, ">= 1"), (1.5, TypeError, "integer"),
     (True, TypeError, "integer"), ("4", TypeError, "integer")],
)  # fmt: skip
def test_batch_images_is_validated(tmp_path: Path, value, error, match) -> None:
    with pytest.raises(error, match=f"batch_images.*{match}"):
        explain_many(Net().eval(), _named(_images(1)), out=tmp_path, batch_images=value)


def test_cli_batch_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from PIL import Image

    from ablation_paths.cli import main

    (tmp_path / "batch_model_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "batch_model_mod", raising=False)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(_images(3)):
        arr = (img.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"p{i}.png")
    fast = ["--n-steps", "4", "--max-iterations", "2", "--quiet"]
    args = ["explain", str(folder), "--model", "batch_model_mod:make", "--out"]
    assert main([*args, str(tmp_path / "out"), "--batch-images", "2", *fast]) == 0
    done = sorted(p.parent.name for p in (tmp_path / "out").glob(f"*/{DONE_FILE}"))
    assert done == ["p0", "p1", "p2"]
    with pytest.raises(SystemExit):
        main([*args, str(tmp_path / "bad"), "--batch-images", "0", *fast])
    assert "--batch-images: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_ray_engine_with_batches_same_outputs_as_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    model = Net().body.eval()  # a torch class: the Ray workers can unpickle it
    items = _named(_images(3))
    local = explain_many(model, items, out=tmp_path / "local", progress=False, **FAST)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = explain_many(
            model, items, out=tmp_path / "ray", engine="ray", workers=2, progress=False,
            batch_images=2, **FAST,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert remote.complete and sorted(remote.done) == local.names
    for name in local.names:
        a = ablation_paths.load(tmp_path / "local" / name / "path.npz")
        b = ablation_paths.load(tmp_path / "ray" / name / "path.npz")
        torch.testing.assert_close(a.path, b.path, atol=1e-5, rtol=0)
        assert json.loads((tmp_path / "ray" / name / DONE_FILE).read_text())["engine"] == "ray"
