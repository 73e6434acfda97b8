"""``AblationPathAttribution`` is a Captum attribution: Captum's own wrappers and utilities work
on it, and its attributions feed a real Quantus metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ablation_paths as ap

captum_attr = pytest.importorskip("captum.attr")
from ablation_paths.captum import AblationPathAttribution  # noqa: E402

FAST = {"n_steps": 5, "max_iterations": 3, "mask_size": 8}


def test_is_a_captum_perturbation_attribution(tiny_model) -> None:
    explainer = AblationPathAttribution(tiny_model)
    assert isinstance(explainer, captum_attr.Attribution)
    assert isinstance(explainer, captum_attr.PerturbationAttribution)
    assert isinstance(explainer, ap.AblationPath)
    assert explainer.forward_func is tiny_model
    assert explainer.has_convergence_delta() is False
    assert explainer.multiplies_by_inputs is False
    assert AblationPathAttribution.get_name() == "Ablation Path Attribution"


def test_same_attributions_as_ablation_path_and_tuple_inputs(tiny_model, tiny_image) -> None:
    x = tiny_image.unsqueeze(0)
    plain = ap.AblationPath(tiny_model).attribute(x, 0.0, 2, **FAST)
    explainer = AblationPathAttribution(tiny_model)
    ours = explainer.attribute(x, 0.0, 2, **FAST)
    torch.testing.assert_close(ours, plain)
    as_tuple = explainer.attribute((x,), (0.0,), 2, **FAST)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], plain)
    with pytest.raises(TypeError, match="tuple inputs with 2 entries"):
        explainer.attribute((x, x), target=2, **FAST)
    with pytest.raises(ValueError, match="no convergence delta"):
        explainer.attribute(x, 0.0, 2, return_convergence_delta=True, **FAST)


def test_captum_noise_tunnel_wraps_it(tiny_model, tiny_image) -> None:
    """``NoiseTunnel`` accepts only ``Attribution`` objects and calls
    ``attribute.__wrapped__``; with zero noise SmoothGrad is the mean of identical
    attributions, so it must equal the plain attribution (both input forms)."""
    x = tiny_image.unsqueeze(0)
    explainer = AblationPathAttribution(tiny_model)
    plain = explainer.attribute(x, 0.0, 2, **FAST)
    tunnel = captum_attr.NoiseTunnel(explainer)
    smooth = tunnel.attribute(x, nt_samples=2, stdevs=0.0, baselines=0.0, target=2, **FAST)
    assert smooth.shape == x.shape
    torch.testing.assert_close(smooth, plain)
    smooth_tuple = tunnel.attribute((x,), nt_samples=2, stdevs=0.0, target=2, baselines=0.0, **FAST)
    assert isinstance(smooth_tuple, tuple)
    torch.testing.assert_close(smooth_tuple[0], plain)
    with pytest.raises(ValueError, match="no convergence delta"):
        tunnel.attribute(x, nt_samples=2, target=2, return_convergence_delta=True, **FAST)


def test_captum_visualize_image_attr_shows_the_heatmap(tiny_model, tiny_image) -> None:
    """Captum's ``visualize_image_attr`` (heat map, positive sign) draws the channel sum of
    the attributions divided by the smallest value whose cumulative sum (ascending) reaches
    98 % of the total, clipped to [0, 1]: our heatmap must come out of it unchanged."""
    import matplotlib

    matplotlib.use("Agg")
    from captum.attr import visualization as viz

    x = tiny_image.unsqueeze(0)
    explainer = AblationPathAttribution(tiny_model)
    attr = explainer.attribute(x, target=2, **FAST)
    hwc = attr[0].permute(1, 2, 0).numpy()
    fig, ax = viz.visualize_image_attr(
        hwc, x[0].permute(1, 2, 0).numpy(), method="heat_map", sign="positive", use_pyplot=False
    )
    shown = np.asarray(ax.images[-1].get_array())
    heat = explainer.results[0].heatmap().numpy()
    summed = 3 * heat  # the heatmap repeated over the 3 channels, summed by Captum
    ordered = np.sort(summed.ravel())
    threshold = ordered[np.argmax(np.cumsum(ordered) >= 0.98 * ordered.sum())]
    expected = np.clip(summed / threshold, 0, 1)
    np.testing.assert_allclose(shown, expected, rtol=1e-5, atol=1e-6)
    matplotlib.pyplot.close(fig)


class TopLeft(nn.Module):
    """Class 0 says "the top-left 12 x 12 corner is bright"; nothing else matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 12.0 * (x[:, :, :12, :12].mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([s, -s], dim=1)


def test_quantus_pointing_game_on_its_attributions() -> None:
    """A real Quantus metric on the Captum class's output: the evidence of a model that looks
    only at the top-left corner must peak inside that corner on every image."""
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(0)
    x = 0.4 * torch.rand(3, 3, 32, 32, generator=g)
    x[:, :, :12, :12] = 1.0
    model = TopLeft().eval()
    attr = AblationPathAttribution(model).attribute(x, 0.0, 0, **FAST)
    a = attr[:, :1].numpy()
    s = np.zeros((3, 1, 32, 32), dtype=np.float32)
    s[:, :, :12, :12] = 1.0
    hits = quantus.PointingGame(disable_warnings=True, display_progressbar=False)(
        model=model,
        x_batch=x.numpy(),
        y_batch=np.zeros(3, int),
        a_batch=a,
        s_batch=s,
        device="cpu",
    )
    assert [float(h) for h in hits] == [1.0, 1.0, 1.0]
    # a constant heatmap would also "hit" (Quantus takes the first maximum, pixel (0, 0)):
    # the share of the evidence inside the corner (144 of 1024 pixels) tells them apart
    inside = quantus.AttributionLocalisation(disable_warnings=True, display_progressbar=False)(
        model=model,
        x_batch=x.numpy(),
        y_batch=np.zeros(3, int),
        a_batch=a,
        s_batch=s,
        device="cpu",
    )
    assert all(float(v) > 0.5 for v in inside), inside
    flat = np.random.default_rng(0).random(a.shape).astype(np.float32)  # no preference
    inside_random = quantus.AttributionLocalisation(
        disable_warnings=True, display_progressbar=False
    )(
        model=model,
        x_batch=x.numpy(),
        y_batch=np.zeros(3, int),
        a_batch=flat,
        s_batch=s,
        device="cpu",
    )
    assert all(float(v) < 0.2 for v in inside_random), inside_random
