"""Sharpening: the segment attribution against its closed form, ties broken, tiers kept."""

import pytest
import torch
from torch import nn

import ablation_paths as ap
from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.paths import affine_path
from ablation_paths.sharpening import SHARPEN_SCALE, segment_attribution, sharpen, top_segment


class Logistic(nn.Module):
    """Two classes with logits ``(w . x, 0)``: ``p_0 = sigmoid(w . x)``."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def test_segment_attribution_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    start = torch.rand(3, 5, 4, generator=g, dtype=torch.float64)
    end = torch.rand(3, 5, 4, generator=g, dtype=torch.float64)
    got = segment_attribution(ClassifierFn(Logistic(w).eval()), start, end, 0)

    def grad_p(x):  # d sigmoid(w . x) / dx = p (1 - p) w
        p = torch.sigmoid((w * x).sum())
        return p * (1 - p) * w

    expected = -(0.5 * (grad_p(start) + grad_p(end)) * (end - start)).sum(0)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    # the other class gets the opposite attribution (p_1 = 1 - p_0)
    other = segment_attribution(ClassifierFn(Logistic(w).eval()), start, end, 1)
    torch.testing.assert_close(other, -expected, rtol=1e-12, atol=1e-15)


def test_segment_attribution_is_nearly_complete_on_a_short_segment():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    start = torch.rand(3, 6, 6, generator=g, dtype=torch.float64)
    end = start + 0.01 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    model = Logistic(w).eval()
    a = segment_attribution(ClassifierFn(model), start, end, 0)
    p = torch.softmax(model(torch.stack([start, end])), dim=1)[:, 0]
    assert float(a.sum()) == pytest.approx(float(p[0] - p[1]), rel=1e-4)


def test_segment_attribution_rejects_mismatched_images():
    clf = ClassifierFn(Logistic(torch.ones(3, 4, 4)).eval())
    with pytest.raises(ValueError, match=r"two \[C, H, W\] images"):
        segment_attribution(clf, torch.zeros(3, 4, 4), torch.zeros(3, 4, 5), 0)


def test_top_segment_is_the_last_or_first_segment():
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    space = PixelMaskSpace(image, torch.zeros_like(image), (4, 4))
    path = affine_path(5, (4, 4))
    a, b = top_segment(space, path, "retain")
    torch.testing.assert_close(a, image * (1 - 5 / 6))  # phi(t_5) = 5/6 everywhere
    torch.testing.assert_close(b, torch.zeros_like(image))
    a, b = top_segment(space, path, "dissipate")
    torch.testing.assert_close(a, image)
    torch.testing.assert_close(b, image * (1 - 1 / 6))
    with pytest.raises(ValueError, match="orientation"):
        top_segment(space, path, "sideways")


def test_sharpen_breaks_ties_and_keeps_tiers():
    heat = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.2]], dtype=torch.float64)
    attr = torch.tensor([[0.1, 0.9, -0.3], [2.0, -2.0, 0.0]], dtype=torch.float64)
    out = sharpen(heat, attr)
    assert (out - heat).abs().max() <= SHARPEN_SCALE * (1 + 1e-12)
    assert int(out.argmax()) == 1  # the tie at 1.0 goes to the largest attribution there
    assert out[1, 0] > out[1, 1]  # and so within the 0.5 tier
    # every strict order of the heatmap survives (the tiers are more than 2 * scale apart)
    flat_h, flat_o = heat.flatten(), out.flatten()
    for i in range(6):
        for j in range(6):
            if flat_h[i] > flat_h[j]:
                assert flat_o[i] > flat_o[j]
    torch.testing.assert_close(sharpen(heat, torch.zeros_like(heat)), heat)
    with pytest.raises(ValueError, match="differ"):
        sharpen(heat, attr[:1])
    with pytest.raises(ValueError, match="NaN"):
        sharpen(heat, torch.full_like(heat, float("nan")))


class PatchModel(nn.Module):
    """Class 0 is evidenced by a 2 x 2 patch of the red channel at rows/cols 20-21 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 40.0 * (x[:, 0, 20:22, 20:22].mean(dim=(1, 2)) - 0.5)
        return torch.stack([z, -z], dim=1)


def test_explain_points_at_a_small_patch_only_when_sharpened():
    image = torch.full((3, 32, 32), 0.2)
    image[0, 20:22, 20:22] = 1.0
    kwargs = dict(
        target=0, n_steps=4, mask_size=8, max_iterations=12, baseline=torch.zeros(3, 32, 32)
    )
    plain = ap.explain(PatchModel().eval(), image, sharpen=False, **kwargs)
    sharp = ap.explain(PatchModel().eval(), image, **kwargs)
    for name in ("class_transition", "average"):
        h0, h1 = plain.heatmaps[name], sharp.heatmaps[name]
        assert (h1 - h0).abs().max() <= 2 * SHARPEN_SCALE
        ties = (h0 >= h0.max() - 1e-7).sum()
        assert ties > 4  # the unsharpened top plateau is larger than the patch
        r, c = divmod(int(h1.argmax()), 32)
        assert 20 <= r <= 21 and 20 <= c <= 21, (name, r, c)
    # influence and the maps of other reductions are not touched
    torch.testing.assert_close(plain.heatmaps["influence"], sharp.heatmaps["influence"])
