"""Sharpening: the depth of the top region, ties broken towards its centre, tiers kept."""

import numpy as np
import pytest
import torch
from torch import nn

import ablation_paths as ap
from ablation_paths.sharpening import SHARPEN_SCALE, region_depth, sharpen, top_plateau


def brute_depth(region: np.ndarray) -> np.ndarray:
    """Distance of every region pixel to the nearest pixel outside it (border counts)."""
    h, w = region.shape
    outside = [(r, c) for r in range(-1, h + 1) for c in range(-1, w + 1)]
    outside = [(r, c) for r, c in outside if not (0 <= r < h and 0 <= c < w) or not region[r, c]]
    out = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            if region[r, c]:
                out[r, c] = min(np.hypot(r - a, c - b) for a, b in outside)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_region_depth_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    region = rng.random((7, 9)) < 0.7
    got = region_depth(torch.from_numpy(region)).numpy()
    np.testing.assert_allclose(got, brute_depth(region), atol=1e-12)


def test_region_depth_of_a_rectangle_at_the_border():
    region = torch.zeros(6, 8, dtype=torch.bool)
    region[:3, :5] = True  # touches the top and left border, which count as outside
    d = region_depth(region)
    assert float(d[0, 0]) == 1.0 and float(d[1, 1]) == 2.0 and float(d[1, 2]) == 2.0
    assert float(d[2, 2]) == 1.0 and float(d[3, 3]) == 0.0
    with pytest.raises(ValueError, match="bool"):
        region_depth(torch.zeros(3, 3))


def test_top_plateau_is_the_set_of_ties_at_the_maximum():
    h = torch.tensor([[2.0, 2.0 - 1e-7, 1.9], [float("nan"), 2.0, -5.0]])
    assert top_plateau(h).tolist() == [[True, True, False], [False, True, False]]
    # the tolerance is relative to the largest magnitude (here 5), not to the maximum
    assert top_plateau(h, rtol=0.03).tolist() == [[True, True, True], [False, True, False]]
    assert not top_plateau(torch.full((2, 2), float("nan"))).any()


def test_sharpen_breaks_ties_and_keeps_tiers():
    heat = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.2]], dtype=torch.float64)
    key = torch.tensor([[0.1, 0.9, -0.3], [2.0, -2.0, 0.0]], dtype=torch.float64)
    out = sharpen(heat, key)
    assert (out - heat).abs().max() <= SHARPEN_SCALE * (1 + 1e-12)
    assert int(out.argmax()) == 1  # the tie at 1.0 goes to the largest key there
    assert out[1, 0] > out[1, 1]  # and so within the 0.5 tier
    flat_h, flat_o = heat.flatten(), out.flatten()
    for i in range(6):
        for j in range(6):
            if flat_h[i] > flat_h[j]:  # every strict order survives
                assert flat_o[i] > flat_o[j]
    torch.testing.assert_close(sharpen(heat, torch.zeros_like(heat)), heat)
    with pytest.raises(ValueError, match="differ"):
        sharpen(heat, key[:1])
    with pytest.raises(ValueError, match="NaN"):
        sharpen(heat, torch.full_like(heat, float("nan")))


class PatchModel(nn.Module):
    """Class 0 is evidenced by a 6 x 6 patch of the red channel at rows/cols 18-23 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 40.0 * (x[:, 0, 18:24, 18:24].mean(dim=(1, 2)) - 0.5)
        return torch.stack([z, -z], dim=1)


def test_explain_points_inside_a_small_patch_only_when_sharpened():
    image = torch.full((3, 32, 32), 0.2)
    image[0, 18:24, 18:24] = 1.0
    kwargs = dict(
        target=0, n_steps=4, mask_size=16, max_iterations=30, baseline=torch.zeros(3, 32, 32)
    )
    plain = ap.explain(PatchModel().eval(), image, sharpen=False, **kwargs)
    sharp = ap.explain(PatchModel().eval(), image, **kwargs)
    for name in ("class_transition", "average"):
        h0, h1 = plain.heatmaps[name], sharp.heatmaps[name]
        assert (h1 - h0).abs().max() <= 2 * SHARPEN_SCALE
        ties = h0 >= h0.max() - 1e-7
        assert int(ties.sum()) > 36  # the unsharpened top plateau is larger than the patch
        r0, c0 = divmod(int(h0.argmax()), 32)  # the first tie in raster order
        assert not (18 <= r0 <= 23 and 18 <= c0 <= 23)
        r, c = divmod(int(h1.argmax()), 32)
        assert 18 <= r <= 23 and 18 <= c <= 23, (name, r, c)
    torch.testing.assert_close(plain.heatmaps["influence"], sharp.heatmaps["influence"])


def test_the_straddling_pairs_contrastive_map_is_sharpened_too():
    image = torch.full((3, 32, 32), 0.2)
    image[0, 18:24, 18:24] = 1.0
    kwargs = dict(
        target=0,
        score="straddle",
        n_steps=4,
        mask_size=16,
        max_iterations=30,
        baseline=torch.zeros(3, 32, 32),
    )
    plain = ap.explain(PatchModel().eval(), image, sharpen=False, **kwargs)
    sharp = ap.explain(PatchModel().eval(), image, **kwargs)
    h0, h1 = plain.heatmaps["contrastive"], sharp.heatmaps["contrastive"]
    assert not torch.equal(h0, h1)
    assert (h1 - h0).abs().max() <= 2 * SHARPEN_SCALE


def test_top_plateau_is_boolean_and_holds_the_maximum_itself():
    """The plateau is a ``bool`` mask (also when every value is NaN), and with ``rtol = 0``
    it is exactly the pixels equal to the maximum."""
    h = torch.tensor([[3.0, 1.0], [3.0, -4.0]])
    got = top_plateau(h, rtol=0.0)
    assert got.dtype == torch.bool and got.tolist() == [[True, False], [True, False]]
    empty = top_plateau(torch.full((2, 3), float("nan")))
    assert empty.dtype == torch.bool and empty.shape == (2, 3) and not empty.any()


def test_sharpen_keeps_the_heatmaps_dtype_and_accepts_an_empty_map():
    heat = torch.tensor([[1.0, 1.0], [0.5, 0.0]], dtype=torch.float32)
    key = torch.tensor([[0.25, 1.0], [0.0, -0.5]], dtype=torch.float64)
    out = sharpen(heat, key)
    assert out.dtype == torch.float32
    want = heat.double() + SHARPEN_SCALE * key  # max |key| = 1
    np.testing.assert_allclose(out.double().numpy(), want.numpy(), rtol=0, atol=1e-7)
    none = sharpen(torch.zeros(0, 4), torch.zeros(0, 4))
    assert none.shape == (0, 4) and none.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sharpen_moves_the_key_to_the_heatmaps_device():
    heat = torch.tensor([[1.0, 1.0], [0.5, 0.0]], device="cuda")
    out = sharpen(heat, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # key on the CPU
    assert out.device == heat.device and int(out.argmax()) == 1
