"""Public API: explain / AblationPath / explain_func / save+load, and clear errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths as ap

FAST = {"n_steps": 5, "max_iterations": 3, "mask_size": 8}


@pytest.mark.parametrize("score", ["retain", "dissipate", "contrastive", "straddle"])
def test_explain_result_fields(tiny_model, tiny_image, score):
    r = ap.explain(tiny_model, tiny_image, target=2, score=score, **FAST)
    assert r.path.shape == (5, 8, 8) and r.times.shape == (5,)
    assert r.target_probs.shape == (5,) and r.probs.shape == (7, 5)
    torch.testing.assert_close(r.probs.sum(dim=1), torch.ones(7))
    assert ap.check_axioms(r.path) == []
    assert r.iterations == len(r.history) <= 3
    assert isinstance(r.converged, bool)
    for kind in r.heatmaps:
        assert r.heatmap(kind).shape == (32, 32)
        assert r.heatmap(kind, window=True).shape == (32, 32)
    assert r.heatmap().shape == (32, 32)
    if score == "straddle":
        assert r.path_down is not None and "contrastive" in r.heatmaps
    else:
        with pytest.raises(ValueError, match="no heatmap"):
            r.heatmap("contrastive")
    assert r.frames.shape == (7, 3, 32, 32) and r.frames.dtype == torch.uint8
    json.dumps(r.summary())


def test_save_load_roundtrip(tmp_path, tiny_model, tiny_image):
    r = ap.explain(tiny_model, tiny_image, score="straddle", class_names=list("abcde"), **FAST)
    f = r.save(tmp_path / "res.npz")
    r2 = ap.load(f)
    torch.testing.assert_close(r2.path, r.path)
    torch.testing.assert_close(r2.probs, r.probs)
    torch.testing.assert_close(r2.path_down, r.path_down)
    torch.testing.assert_close(
        r2.heatmap("contrastive", window=True), r.heatmap("contrastive", window=True)
    )
    assert r2.summary() == r.summary()
    assert r2.class_names == list("abcde") and r2.target_name == r.target_name


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        ap.load(bad)
    with pytest.raises(FileNotFoundError):
        ap.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="not an ablation-paths result"):
        ap.load(other)
    # pickled object arrays are refused, never executed
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        ap.load(pickled)


def test_image_inputs(tmp_path, tiny_model, tiny_image):
    arr = (tiny_image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    f = tmp_path / "img.png"
    Image.fromarray(arr).save(f)
    for img in (f, str(f), Image.open(f), arr):
        r = ap.explain(tiny_model, img, **FAST)
        assert r.image.shape == (3, 32, 32)
    r = ap.explain(tiny_model, f, image_size=24, **FAST)
    assert r.image.shape == (3, 24, 24)


def test_captum_style_attribute(tiny_model):
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    model = tiny_model.double()
    attr = ap.AblationPath(model).attribute(x, target=[0, 3], internal_batch_size=2, **FAST)
    assert attr.shape == x.shape and attr.dtype == x.dtype and attr.device == x.device
    # one heatmap per image, repeated over channels
    torch.testing.assert_close(attr[:, 0], attr[:, 2])
    single = ap.AblationPath(model).attribute(x[0], target=0, baselines=0.0, **FAST)
    assert single.shape == x[0].shape


def test_quantus_style_explain_func(tiny_model):
    x = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    out = ap.explain_func(tiny_model, x, np.array([1, 2]), channel_first=True, **FAST)
    assert isinstance(out, np.ndarray) and out.shape == (2, 1, 32, 32)
    assert np.isfinite(out).all()


def test_baseline_options(tiny_model, tiny_image):
    for spec in ("black", "gray", "mean", "blur:5", 0.25, torch.zeros_like(tiny_image)):
        r = ap.explain(tiny_model, tiny_image, baseline=spec, **FAST)
        assert r.baseline_image.shape == tiny_image.shape
    r = ap.explain(tiny_model, tiny_image, **FAST)
    assert r.info["baseline"]["kind"] == "blur"
    # the smallest sigma of the search grid that changes the predicted class (independent
    # reference: the spatial blur at every grid sigma), else the largest
    from ablation_paths.filters import gaussian_blur
    from ablation_paths.inputs import ClassifierFn

    clf = ClassifierFn(tiny_model)
    predicted = int(clf.probabilities(tiny_image[None]).argmax())
    grid = np.geomspace(4.0, 100.0, 16)
    flips = [
        int(clf.probabilities(gaussian_blur(tiny_image[None], float(s))).argmax()) != predicted
        for s in grid
    ]
    expected = grid[flips.index(True)] if any(flips) else grid[-1]
    assert r.info["baseline"]["sigma"] == pytest.approx(expected)
    assert r.info["baseline"]["flips_class"] == any(flips)
    with pytest.raises(ValueError, match="unknown baseline"):
        ap.explain(tiny_model, tiny_image, baseline="purple", **FAST)


# ---------------------------------------------------------------------------- bad input


def test_error_wrong_shape_and_channels(tiny_model):
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        ap.explain(tiny_model, torch.rand(32, 32), **FAST)
    with pytest.raises(ValueError, match="channels"):
        ap.explain(tiny_model, torch.rand(32, 32, 3), **FAST)


def test_error_nan_pixels(tiny_model, tiny_image):
    img = tiny_image.clone()
    img[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ap.explain(tiny_model, img, **FAST)
    img[0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        ap.explain(tiny_model, img, **FAST)


def test_error_target_out_of_range(tiny_model, tiny_image):
    with pytest.raises(ValueError, match="out of range"):
        ap.explain(tiny_model, tiny_image, target=7, **FAST)
    with pytest.raises(ValueError, match="unknown class name"):
        ap.explain(tiny_model, tiny_image, target="zebra", class_names=list("abcde"), **FAST)


def test_error_model_wrong_output_shape(tiny_image):
    class Bad(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))[:, :, None]

    with pytest.raises(ValueError, match=r"logits of shape \[batch, classes\]"):
        ap.explain(Bad().eval(), tiny_image, **FAST)


def test_error_model_without_gradient_path(tiny_model, tiny_image):
    class Detached(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.detach())

    with pytest.raises(ValueError, match="no gradient path"):
        ap.explain(Detached(tiny_model).eval(), tiny_image, **FAST)


def test_error_model_in_training_mode(tiny_image):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    with pytest.raises(ValueError, match="training mode"):
        ap.explain(model, tiny_image, **FAST)


def test_error_unknown_option(tiny_model, tiny_image):
    with pytest.raises(TypeError, match="unknown option"):
        ap.explain(tiny_model, tiny_image, n_stepz=3)


def test_error_unreadable_image(tmp_path, tiny_model):
    f = tmp_path / "x.png"
    f.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        ap.explain(tiny_model, f, **FAST)


@pytest.mark.parametrize("score", ["retain", "contrastive"])
def test_explain_over_sift_features(tiny_model, score):
    from skimage import data, transform

    arr = transform.resize(data.astronaut(), (48, 48), anti_aliasing=True)
    img = torch.from_numpy(arr.transpose(2, 0, 1).copy()).float()
    r = ap.explain(tiny_model, img, score=score, features="sift", n_steps=5, max_iterations=2)
    assert r.features == "sift" and r.path.dim() == 2  # [T, K] feature gains
    assert ap.check_axioms(r.path) == []
    assert r.heatmap().shape == (48, 48)
    assert float(r.baseline_image.abs().max()) == 0.0  # implicit all-zero baseline (4.3.1)
    assert r.frames.shape == (7, 3, 48, 48)
    with pytest.raises(ValueError, match="zero baseline"):
        ap.explain(tiny_model, img, features="sift", baseline="black", max_iterations=1)


def test_sift_mass_weighted_metric(tiny_model):
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    from ablation_paths import sift

    r = ap.explain(
        tiny_model,
        img,
        features="sift",
        n_steps=4,
        max_iterations=2,
        feature_options={"mass_weighted": True},
    )
    w = sift.SiftMaskSpace(sift.decompose(img), mass_weighted=True).weights()
    assert ap.check_axioms(r.path, w) == []


def test_auto_regularization_picks_weakest_unpinned(tiny_model, tiny_image, monkeypatch):
    from ablation_paths.optimizer import AUTO_REGULARIZATION
    from ablation_paths.result import AblationPathResult

    # a stand-in pinned test: blurs below 0.02 pin, so auto must try three and keep 0.02
    monkeypatch.setattr(
        AblationPathResult,
        "pinned",
        property(lambda self: self.info["config"]["regularization"] < 0.02),
    )
    r = ap.explain(tiny_model, tiny_image, regularization="auto", **FAST)
    auto = r.info["regularization_auto"]
    tried = [float(k) for k in auto["tried"]]
    assert tried == list(AUTO_REGULARIZATION[:3]) == [0.005, 0.01, 0.02]
    assert auto["chosen"] == 0.02 == r.info["config"]["regularization"]
    assert not auto["all_pinned"] and not r.pinned
    with pytest.raises(ValueError, match="number or 'auto'"):
        ap.explain(tiny_model, tiny_image, regularization="strong", **FAST)


def test_auto_regularization_all_pinned_falls_back_to_strongest(tiny_image):
    from ablation_paths.optimizer import AUTO_REGULARIZATION

    class Contrast(nn.Module):
        """Class 0 grows with the image's contrast: a half-ablated image is classified far more
        confidently than the flat image or the black baseline, so every path is pinned."""

        def forward(self, x):
            s = x.flatten(1).std(dim=1)
            return torch.stack([40 * s, 0 * s, 0 * s], dim=1)

    flat = 0.5 + 0.01 * torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    r = ap.explain(
        Contrast().eval(), flat, target=0, regularization="auto", baseline="black", **FAST
    )
    auto = r.info["regularization_auto"]
    assert len(auto["tried"]) == len(AUTO_REGULARIZATION) and auto["all_pinned"]
    assert auto["chosen"] == AUTO_REGULARIZATION[-1]


def test_error_model_returning_nan(tiny_image):
    class NaNModel(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)) * float("nan")

    with pytest.raises(ValueError, match="NaN or infinite logits"):
        ap.explain(NaNModel().eval(), tiny_image, **FAST)


def test_result_warnings_name_each_problem():
    from dataclasses import replace

    from ablation_paths.diagnostics import UnreliableResultWarning, result_warnings
    from ablation_paths.result import AblationPathResult

    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    base = AblationPathResult(
        path=torch.full((1, 2, 2), 0.5),
        times=torch.tensor([0.5]),
        target=0,
        score="retain",
        probs=probs,
        path_score=0.5,
        saturation=0.9,
        iterations=3,
        converged=True,
        stopped="saturated",
        heatmaps={},
        image=torch.zeros(3, 2, 2),
        baseline_image=torch.zeros(3, 2, 2),
    )
    assert result_warnings(base) == []
    msgs = [m for _, m in result_warnings(replace(base, target=1))]
    assert len(msgs) == 1 and "not the predicted class" in msgs[0]
    low = replace(base, probs=torch.tensor([[0.995, 0.005], [0.5, 0.5], [0.2, 0.8]]), target=1)
    assert "probability 0.005" in result_warnings(low)[0][1]
    unsat = result_warnings(replace(base, converged=False, saturation=0.4))
    assert [c for c, _ in unsat] == [UnreliableResultWarning] and "did not saturate" in unsat[0][1]
    assert "pinned" in result_warnings(replace(base, path_score=0.99))[0][1]


# ---------------------------------------------------------------------------- option checks


def test_unknown_option_names_the_closest_match_at_every_entry_point(tiny_model, tiny_image):
    from ablation_paths.options import UnknownOptionError

    match = r"unknown option 'n_step' \(did you mean 'n_steps'\?\)"
    with pytest.raises(TypeError, match=match):
        ap.explain(tiny_model, tiny_image, n_step=3)
    with pytest.raises(ValueError, match=match):
        ap.AblationPath(tiny_model).attribute(tiny_image.unsqueeze(0), target=0, n_step=3)
    x = tiny_image.unsqueeze(0).numpy()
    with pytest.raises(ValueError, match=r"'n_step' \(did you mean 'n_steps'\?\)"):
        ap.explain_func(tiny_model, x, np.array([0]), n_step=3)
    with pytest.raises(UnknownOptionError, match="'scor'"):
        ap.explain_func(tiny_model, x, np.array([0]), scor="dissipate")
    with pytest.raises(UnknownOptionError, match="mass_weighted"):
        ap.explain(tiny_model, tiny_image, features="sift", feature_options={"mass_weighed": 1})


def test_explain_func_accepts_quantus_keywords(tiny_model, tiny_image):
    x = torch.stack([tiny_image, tiny_image.flip(-1)]).numpy()
    quantus = {
        "method": "AblationPath",
        "xai_lib": "captum",
        "softmax": False,
        "reduce_axes": (),
        "keepdims": True,
        "device": "cpu",
    }
    first = ap.explain_func(tiny_model, x, np.array([1, 2]), **quantus, **FAST)
    # channel_first=False reads [B, H, W, C] inputs; the explanation is the same
    last = ap.explain_func(
        tiny_model, x.transpose(0, 2, 3, 1), np.array([1, 2]), channel_first=False, **FAST
    )
    assert first.shape == last.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(first, last)


def test_options_without_effect_warn(tiny_model, tiny_image):
    from ablation_paths.diagnostics import IgnoredOptionWarning

    with pytest.warns(IgnoredOptionWarning, match="image_size=24 resizes files"):
        ap.explain(tiny_model, tiny_image, image_size=24, **FAST)
    with pytest.warns(IgnoredOptionWarning, match="pixel features take no feature_options"):
        ap.explain(tiny_model, tiny_image, feature_options={"eta": 2.0}, **FAST)
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    sift = {"features": "sift", "n_steps": 3, "max_iterations": 1}
    with pytest.warns(IgnoredOptionWarning, match="regularization=0.05 has no effect"):
        ap.explain(tiny_model, img, regularization=0.05, **sift)
    with pytest.warns(IgnoredOptionWarning, match="mask_size=8 has no effect"):
        ap.explain(tiny_model, img, mask_size=8, **sift)
    with pytest.raises(ValueError, match="regularization='auto' applies to mask spaces"):
        ap.explain(tiny_model, img, regularization="auto", **sift)
    # a tensor of the requested size: nothing is ignored, nothing to say
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredOptionWarning)
        ap.explain(tiny_model, tiny_image, image_size=32, **FAST)


def test_result_warnings_are_emitted_and_stored(tiny_model, tiny_image):
    from ablation_paths.diagnostics import UnreliableResultWarning, result_warnings

    with pytest.warns(UnreliableResultWarning) as caught:
        r = ap.explain(tiny_model, tiny_image, n_steps=4, max_iterations=1)
    assert r.info["warnings"] == [m for _, m in result_warnings(r)]
    assert not r.converged and any("did not saturate" in m for m in r.info["warnings"])
    assert [str(w.message) for w in caught] == r.info["warnings"]
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line


def test_auto_regularization_all_pinned_warns_and_reuses_the_baseline(
    tiny_model, tiny_image, monkeypatch
):
    from ablation_paths import baselines
    from ablation_paths.diagnostics import UnreliableResultWarning
    from ablation_paths.optimizer import AUTO_REGULARIZATION
    from ablation_paths.result import AblationPathResult

    # a stand-in pinned test that pins every path, whatever the pinned criterion is
    monkeypatch.setattr(AblationPathResult, "pinned", property(lambda self: True))
    calls = []
    real = baselines.make_baseline
    monkeypatch.setattr(
        baselines, "make_baseline", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with pytest.warns(UnreliableResultWarning, match="pinned near its maximum for every"):
        r = ap.explain(tiny_model, tiny_image, regularization="auto", **FAST)
    auto = r.info["regularization_auto"]
    assert auto["all_pinned"] is True and auto["chosen"] == AUTO_REGULARIZATION[-1]
    assert [float(k) for k in auto["tried"]] == list(AUTO_REGULARIZATION)
    assert len(calls) == 1  # one baseline search for all seven candidates
    assert any("every candidate blur" in m for m in r.info["warnings"])


def test_explain_func_under_a_quantus_metric(tiny_model):
    quantus = pytest.importorskip("quantus")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)).numpy()
    y = np.array([1, 2])

    def run(**kwargs):
        metric = quantus.MaxSensitivity(
            nr_samples=2, lower_bound=0.05, disable_warnings=True, display_progressbar=False
        )
        return metric(
            model=tiny_model,
            x_batch=x,
            y_batch=y,
            a_batch=None,
            device="cpu",  # Quantus adds it to the explain_func keywords
            explain_func=ap.explain_func,
            explain_func_kwargs={"n_steps": 4, "max_iterations": 2, "mask_size": 8, **kwargs},
        )

    scores = run(score="dissipate")
    assert len(scores) == 2 and all(np.isfinite(scores))
    with pytest.raises(ValueError, match="did you mean 'max_iterations'"):
        run(max_iteration=2)


def test_auto_regularization_keeps_the_default_when_the_pinned_test_cannot_decide(tiny_image):
    """A classifier already certain on the image: every candidate's score is within the margin
    of what a faithful path reaches, so the pinned test has no evidence and auto keeps the
    default blur instead of the weakest (which every candidate would pass)."""
    from ablation_paths.pipeline import DEFAULT_REGULARIZATION

    class Certain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([40 * m, torch.zeros_like(m)], dim=1)

    img = torch.ones_like(tiny_image)
    r = ap.explain(Certain().eval(), img, target=0, regularization="auto", baseline="black", **FAST)
    auto = r.info["regularization_auto"]
    assert auto["decidable"] is False
    assert list(auto["tried"]) == [str(DEFAULT_REGULARIZATION)]
    assert r.info["config"]["regularization"] == DEFAULT_REGULARIZATION == 0.03


def test_progress_fraction_reaches_one_when_the_path_stops():
    """The progress bar's fraction: iterations or saturation, whichever is further; exactly 1
    at either stop (saturation reached or iteration cap)."""
    from ablation_paths.pipeline import progress_fraction

    cfg = ap.AblationPathConfig(max_iterations=50, stop_saturation=0.8)
    assert progress_fraction(5, 0.5, 0.5, cfg) == pytest.approx(0.1)  # only iterations
    assert progress_fraction(5, 0.65, 0.5, cfg) == pytest.approx(0.5)  # half-way in saturation
    assert progress_fraction(12, 0.84, 0.47, cfg) == 1.0  # saturated: done
    assert progress_fraction(50, 0.6, 0.5, cfg) == 1.0  # iteration cap: done
    assert progress_fraction(1, 0.4, 0.5, cfg) == pytest.approx(0.02)  # never negative
    assert progress_fraction(3, 0.9, 0.85, cfg) == 1.0  # started above the stop


def test_attribute_takes_captums_argument_order_and_forward_args(tiny_model, tiny_image):
    """Captum's perturbation methods take ``(inputs, baselines, target, additional_forward_args,
    internal_batch_size)``: positional calls in that order give the keyword call's result, and
    extra forward arguments reach the model."""
    x = tiny_image.unsqueeze(0)
    explainer = ap.AblationPath(tiny_model)
    by_name = explainer.attribute(x, baselines=0.0, target=2, **FAST)
    positional = explainer.attribute(x, 0.0, 2, None, 4, **FAST)
    torch.testing.assert_close(positional, by_name)
    assert explainer.results[0].target == 2 and explainer.results[0].info["baseline"]["kind"]

    class Scaled(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.seen: list[float] = []

        def forward(self, images: torch.Tensor, scale: float) -> torch.Tensor:
            self.seen.append(scale)
            return self.inner(images) * scale

    scaled = Scaled(tiny_model).eval()
    out = ap.AblationPath(scaled).attribute(
        x, 0.0, 2, additional_forward_args=(1.0,), show_progress=True, **FAST
    )
    torch.testing.assert_close(out, by_name)  # scale 1: the same model
    assert scaled.seen and set(scaled.seen) == {1.0}
    with pytest.raises(TypeError, match="tuple inputs"):
        explainer.attribute((x, x), target=2, **FAST)
    two = torch.cat([x, x])
    with pytest.raises(ValueError, match="one row per input"):
        ap.AblationPath(scaled).attribute(two, 0.0, 2, torch.ones(2, 1), **FAST)
    with pytest.raises(ValueError, match="training mode"):
        ap.AblationPath(Scaled(tiny_model).train()).attribute(x, 0.0, 2, (1.0,), **FAST)
