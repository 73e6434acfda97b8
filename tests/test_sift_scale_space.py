"""Scale space, DoG bands and multi-resolution storage (thesis 4.1.1, 4.2.2, Lemma 8, Table 4.1)."""

import math

import numpy as np
import pytest
import torch

from ablation_paths.filters import gaussian_matrix
from ablation_paths.filters import reflect_index as fold_index
from ablation_paths.sift.scale_space import (
    blur,
    make_grid,
    reconstruct,
    scale_space,
)


def _natural(size: int = 64, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).to(dtype).contiguous()


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 37, 53), (3, 50, 29)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bands_sum_back_to_image(shape, dtype):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    space = scale_space(x)
    rec = reconstruct(space)
    assert rec.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert ((rec - x).norm() / x.norm()).item() < tol


def test_natural_image_reconstruction_and_band_shapes():
    x = _natural(96)
    space = scale_space(x)
    assert ((reconstruct(space) - x).norm() / x.norm()).item() < 1e-12
    for layer in space.layers:
        lv = space.levels[layer.level]
        assert tuple(space.bands[layer.index].shape) == (3, *lv.size)
    # dropping one band changes the image: the bands carry the content
    gains = torch.ones(len(space.layers), dtype=x.dtype)
    gains[3] = 0
    assert (reconstruct(space, gains) - x).abs().max() > 1e-3


def test_log_sigma_grid_and_levels_follow_table_4_1():
    layers, levels = make_grid((224, 224), scales_per_octave=3, sigma_min=1.0)
    # logarithmic sampling: ratio 2^(1/rho) between consecutive finite edges (eq. 4.36)
    edges = [ly.sigma_lo for ly in layers[1:]]
    ratios = np.diff(np.log2(edges))
    np.testing.assert_allclose(ratios, 1 / 3, rtol=1e-12)
    # intervals tile the sigma axis (eq. 4.29-4.31)
    assert layers[0].sigma_lo == 0 and math.isinf(layers[-1].sigma_hi)
    for a, b in zip(layers[:-1], layers[1:], strict=True):
        assert a.sigma_hi == b.sigma_lo
    assert layers[-1].sigma_lo >= 224
    # levels: full res up to 4.5, half up to 9, quarter above; each level starts at >= 2.25 of
    # its own pixels
    assert [lv.factor for lv in levels] == [1, 2, 4]
    assert [lv.size for lv in levels] == [(224, 224), (112, 112), (56, 56)]
    for layer in layers:
        f = levels[layer.level].factor
        expected = 1 if layer.sigma_lo <= 4.5 else (2 if layer.sigma_lo <= 9 else 4)
        assert f == expected
        if f > 1:
            assert layer.sigma_lo / f >= 2.25


def test_grid_rejects_bad_parameters():
    with pytest.raises(ValueError, match="scales_per_octave"):
        make_grid((10, 10), scales_per_octave=0)
    with pytest.raises(ValueError, match="sigma_max"):
        make_grid((10, 10), sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="NaN"):
        scale_space(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        scale_space(torch.rand(8, 8))


def test_fold_index_is_symmetric_and_periodic():
    idx = fold_index(torch.arange(-7, 12), 4)
    assert idx.tolist() == [1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_blur_rows_sum_to_one_and_match_scipy(sigma):
    from scipy.ndimage import gaussian_filter1d

    m = gaussian_matrix(17, sigma)
    torch.testing.assert_close(m.sum(1), torch.ones(17, dtype=m.dtype))
    x = torch.rand(2, 17, 17, dtype=torch.float64)
    ref = gaussian_filter1d(
        gaussian_filter1d(x.numpy(), sigma, axis=-1, mode="reflect", truncate=4.0),
        sigma,
        axis=-2,
        mode="reflect",
        truncate=4.0,
    )
    if sigma < 17 / 4:  # scipy's 'reflect' folds only once; agree while the kernel fits
        np.testing.assert_allclose(blur(x, sigma).numpy(), ref, atol=1e-10)
    c = torch.full((1, 5, 9), 0.37, dtype=torch.float64)
    torch.testing.assert_close(blur(c, sigma), c)
