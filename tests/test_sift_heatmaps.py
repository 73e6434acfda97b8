"""SIFT heatmaps (thesis 4.3.4A): Voronoi-field layer weights (eq. 4.47) and the eq. 4.48
contrast heatmap that ``SiftMaskSpace.extra_heatmaps`` hands to ``explain``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from ablation_paths.sift import SiftMaskSpace, decompose
from ablation_paths.sift.heatmaps import FIELD_WEIGHTS, layer_weights


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (64, 64), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).double().contiguous()


@pytest.fixture(scope="module")
def decs(photo):
    return {kind: decompose(photo, field_weights=kind) for kind in FIELD_WEIGHTS}


def test_constant_values_give_a_constant_map(decs):
    for kind in ("uniform", "keypoint_range", "band_energy"):
        dec = decs[kind]
        m = dec.voronoi_heatmap(torch.full((dec.num_features,), 0.7, dtype=torch.float64))
        np.testing.assert_allclose(m.numpy(), 0.7, atol=1e-9, err_msg=kind)


def test_local_energy_field_is_the_local_band_amplitude(decs):
    # all-ones values: the cells drop out (partition of unity per layer) and the map is the sum
    # over layers of the local RMS band amplitude, recomputed here with SciPy, over its mean
    from ablation_paths.sift.scale_space import scale_space, upsample_levels

    dec = decs["local_energy"]
    space = scale_space(dec.image)
    hh, ww = space.image_size
    per_level = []
    for lv in space.levels:
        acc = np.zeros(lv.size)
        for i in lv.layers[:-1] if lv is space.levels[-1] else lv.layers:
            band = (space.bands[i].numpy() ** 2).sum(0)
            s = (space.layers[i].sigma * lv.size[0] / hh, space.layers[i].sigma * lv.size[1] / ww)
            acc += np.sqrt(np.maximum(ndimage.gaussian_filter(band, s, mode="reflect"), 0))
        per_level.append(torch.from_numpy(acc)[None])
    want = upsample_levels(per_level, [lv.size for lv in space.levels])[0].numpy()
    m = dec.voronoi_heatmap(torch.ones(dec.num_features, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(m, want / want.mean(), rtol=2e-3, atol=2e-3)
    assert m.max() / m.min() > 2  # a density: high on structure (measured 2.4 on this photo)


def test_weights_are_a_partition_over_layers(decs):
    dec = decs["uniform"]
    from ablation_paths.sift.scale_space import scale_space

    space = scale_space(dec.image)
    for kind in ("uniform", "keypoint_range", "band_energy"):
        w = np.concatenate(layer_weights(space, dec.keypoints, kind))
        assert w.shape == (len(space.layers),) and (w >= 0).all()
        assert abs(w.sum() - 1) < 1e-12
    lo, hi = dec.keypoints.sigma.min(), dec.keypoints.sigma.max()
    w = np.concatenate(layer_weights(space, dec.keypoints, "keypoint_range"))
    inside = np.array([ly.sigma_hi >= lo and ly.sigma_lo <= hi for ly in space.layers])
    assert (w[~inside] == 0).all() and np.allclose(w[inside], 1 / inside.sum())
    e = np.concatenate(layer_weights(space, dec.keypoints, "band_energy"))
    assert e[-1] == 0  # the low-pass residual carries no structure
    energy = np.array([float((b**2).mean()) for b in space.bands[:-1]])
    np.testing.assert_allclose(e[:-1], energy / energy.sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="unknown field weights"):
        layer_weights(space, dec.keypoints, "nope")


def test_restricted_weights_take_the_map_from_the_largest_features(decs):
    # the uniform field gives the few largest-sigma features the many layers above every
    # keypoint; restricting to the keypoints' sigma range (or weighting by band energy) does not
    shares = {}
    for kind, dec in decs.items():
        top = np.argsort(-dec.keypoints.sigma)[:3]
        e = torch.zeros(dec.num_features, dtype=torch.float64)
        e[torch.as_tensor(top)] = 1
        shares[kind] = float(dec.voronoi_heatmap(e).mean())
    # measured at 64 px: uniform 0.49, keypoint_range 0.07, band_energy 0.32, local_energy 0.39
    assert shares["uniform"] > 0.4
    assert shares["keypoint_range"] < 0.3 * shares["uniform"], shares
    for kind in ("band_energy", "local_energy"):
        assert shares[kind] < 0.9 * shares["uniform"], shares


def _contrast_reference(img: np.ndarray, s_lp: float = 8.0, s_hp: float = 5.0) -> np.ndarray:
    """Eq. 4.48 with SciPy: gamma_LP * ||x - gamma_HP * x||_2 (norm over channels)."""
    high = img - np.stack([ndimage.gaussian_filter(c, s_hp, mode="reflect") for c in img])
    return ndimage.gaussian_filter(np.sqrt((high**2).sum(0)), s_lp, mode="reflect")


def test_extra_heatmap_is_the_contrast_at_the_class_transition(decs):
    dec = decs["uniform"]
    space = SiftMaskSpace(dec)
    k, t = dec.num_features, 6
    g = torch.Generator().manual_seed(0)
    order = torch.rand(k, generator=g, dtype=torch.float64)
    times = torch.linspace(0, 1, t + 2, dtype=torch.float64)[1:-1]
    path = (times[:, None] > order[None, :]).double()  # features removed one after another
    probs = torch.full((t + 2, 4), 0.1, dtype=torch.float64)
    probs[:4, 2] = 0.7  # class 2 ranks first up to interior sample 2 (the class transition)
    probs[4:, 0] = 0.7
    out = space.extra_heatmaps(path, probs, target=2)
    assert set(out) == {"sift_contrast"}
    heat = out["sift_contrast"]
    assert heat.shape == dec.image_size and (heat >= 0).all()
    kept = dec.decode(1 - path[2]).detach().numpy()
    np.testing.assert_allclose(heat.numpy(), _contrast_reference(kept), atol=1e-8)
    with pytest.raises(ValueError, match="probs must be"):
        space.extra_heatmaps(path, probs[1:], target=2)
    with pytest.raises(ValueError, match="path must be"):
        space.extra_heatmaps(path[:, :-1], probs, target=2)
