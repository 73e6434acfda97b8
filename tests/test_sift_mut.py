"""SIFT decomposition: the cases a sampled mutation run of ``sift/decomposition.py`` found
unguarded (its text form, the feature-index checks, the detection image of an image outside
``[0, 1]``), each against values written out here."""

import os

import pytest
import torch

from ablation_paths.diagnostics import InputWarning
from ablation_paths.sift.decomposition import RANGE_TOLERANCE, _unit_range, decompose


@pytest.fixture(scope="module")
def small():
    g = torch.Generator().manual_seed(0)
    return decompose(torch.rand(3, 24, 20, generator=g, dtype=torch.float64))


def test_repr_names_the_image_and_the_features(small):
    text = repr(small)
    assert text.startswith(f"SiftDecomposition(K={small.num_features}, image=[3, 24, 20] ")
    assert "torch.float64 on cpu" in text


def test_feature_indices_are_checked_on_both_sides(small):
    k = small.num_features
    for bad in ([-1], [k], [0, k], [-1, 0]):
        with pytest.raises(ValueError, match=r"feature indices must be in \[0, "):
            small.features(bad)
    one = small.features([k - 1])
    assert one.shape == (1, 3, 24, 20) and one.dtype == torch.float64
    eye = torch.zeros(1, k, dtype=torch.float64)
    eye[0, k - 1] = 1
    torch.testing.assert_close(one, small.decode(eye), rtol=0, atol=0)


def test_detection_image_of_an_image_outside_the_unit_range():
    """Within ``[-0.5, 1.5]`` (``RANGE_TOLERANCE``): as given; within ``[0, 255]``: divided by
    255; otherwise min-max rescaled; both with an ``InputWarning`` naming what was done."""
    assert RANGE_TOLERANCE == 0.5
    inside = torch.tensor([[[-0.5, 1.5]]], dtype=torch.float64)
    assert _unit_range(inside) is inside
    just_over = torch.tensor([[[0.0, 2.0]]], dtype=torch.float64)
    with pytest.warns(InputWarning, match="divided by 255"):
        torch.testing.assert_close(_unit_range(just_over), just_over / 255, rtol=0, atol=0)
    image = torch.tensor([[[0.0, 2.0, 51.0]]], dtype=torch.float64)
    with pytest.warns(InputWarning, match=r"values lie in \[0, 51\].*image divided by 255"):
        out = _unit_range(image)
    torch.testing.assert_close(out, image / 255, rtol=0, atol=0)
    image = torch.tensor([[[-2.0, 0.0, 6.0]]], dtype=torch.float64)
    with pytest.warns(InputWarning, match=r"image min-max rescaled \(the contrast"):
        out = _unit_range(image)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.25, 1.0]]], dtype=torch.float64))


# --- the second sampled round's survivors (seed 0, sample of 150) -----------------------------


@pytest.fixture
def blobs():
    """Four Gaussian blobs of different sizes and colours: a decomposition with K >= 3 (made
    per test, so that mutmut, which picks the tests that call each function, runs them all)."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(44.0), indexing="ij")
    img = torch.zeros(3, 48, 44, dtype=torch.float64)
    for cy, cx, s, c in [(12, 10, 2.5, 0), (30, 30, 4.0, 1), (36, 12, 3.0, 2), (14, 32, 1.8, 0)]:
        img[c] += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    d = decompose(0.2 + 0.6 * img.clamp(0, 1))
    assert d.num_features >= 3
    return d


def test_feature_indices_of_any_integer_dtype_select_features(blobs):
    """A uint8 index tensor is a list of indices, not a boolean mask."""
    picked = blobs.features(torch.tensor([2, 0], dtype=torch.uint8))
    torch.testing.assert_close(picked, blobs.features([2, 0]), rtol=0, atol=0)


def test_contrast_heatmap_uses_the_decompositions_truncation(blobs):
    import dataclasses

    from ablation_paths.sift.heatmaps import local_contrast

    short = dataclasses.replace(blobs, params=dataclasses.replace(blobs.params, truncate=1.5))
    gains = torch.linspace(0, 1, blobs.num_features, dtype=torch.float64)
    expected = local_contrast(blobs.decode(gains[None]), 8.0, 5.0, 1.5)[0]
    torch.testing.assert_close(short.contrast_heatmap(gains), expected, rtol=0, atol=1e-12)
    default = local_contrast(blobs.decode(gains[None]), 8.0, 5.0)[0]
    assert (expected - default).abs().max() > 1e-6  # the truncation matters at this size


def test_find_keypoints_keeps_its_border():
    from ablation_paths.sift.decomposition import find_keypoints

    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 48, 48, generator=g, dtype=torch.float64)
    near = find_keypoints(image, border=1, contrast_threshold=0.0, max_keypoints=None)
    far = find_keypoints(image, border=8, contrast_threshold=0.0, max_keypoints=None)
    assert len(far) < len(near)
    # a border of b level pixels keeps keypoints at least b * (level factor) from the edges
    assert float(min(far.x.min(), far.y.min())) >= 8 - 0.5
    assert float(max(far.x.max(), far.y.max())) <= 47 - 8 + 0.5


def test_local_energy_field_norm_is_one_constant(blobs):
    """``field_weights="local_energy"`` divides the Voronoi field by the mean of its all-ones
    field only (a density), not by that field itself, which is not constant."""
    from ablation_paths.sift.heatmaps import voronoi_field

    assert blobs.params.field_weights == "local_energy"
    ones = torch.ones(1, blobs.num_features, dtype=torch.float64)
    raw = voronoi_field(blobs.field_levels, ones, blobs.image_size)[0]
    assert float(raw.std()) > 1e-3 * float(raw.mean())
    norm = blobs.field_norm
    assert norm is not None
    torch.testing.assert_close(norm, torch.full_like(raw, float(raw.mean())), rtol=1e-12, atol=0)


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ, reason="mutmut's trampolines add stack frames"
)
def test_range_warning_points_at_the_callers_line():
    import warnings

    from ablation_paths.sift.decomposition import find_keypoints

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        find_keypoints(torch.full((1, 16, 16), 200.0))
    assert [w.filename for w in rec if issubclass(w.category, InputWarning)] == [__file__]


def test_layer_sum_keeps_the_storage_dtype():
    """float64 field weights on float32 cells give a float32 matrix (float32 storage halves the
    memory of big images)."""
    import numpy as np
    import scipy.sparse as sp

    from ablation_paths.sift.decomposition import _layer_sum

    hw = 6
    stacked = sp.random(2 * hw, 3, density=0.5, format="csr", dtype=np.float32, random_state=0)
    blocks = [np.linspace(0.5, 1.5, hw), np.full(hw, 2.0)]  # float64
    out = _layer_sum(blocks, stacked, hw)
    assert out.dtype == np.float32
    dense = stacked.toarray()
    expected = blocks[0][:, None] * dense[:hw] + blocks[1][:, None] * dense[hw:]
    np.testing.assert_allclose(out.toarray(), expected, rtol=1e-6)


def test_float32_images_keep_float32_cells(monkeypatch):
    """Every level's stacked cells reach the decoder matrices in float32 for a float32 image."""
    import ablation_paths.sift.decomposition as dec

    seen = []
    real = dec._level_matrices

    def spy(space, level, stacked, field_weights, dtype):
        seen.append(stacked.dtype)
        return real(space, level, stacked, field_weights, dtype)

    monkeypatch.setattr(dec, "_level_matrices", spy)
    g = torch.Generator().manual_seed(0)
    decompose(torch.rand(3, 24, 20, generator=g))
    assert seen and all(str(d) == "float32" for d in seen)


def test_levels_of_equal_size_are_added_on_both_routes():
    """Two consecutive levels on one grid (possible for tiny images) are summed without
    resampling, on the CPU's banded route and the whole-image route of other devices; the
    reference is dense matrices and ``F.interpolate``."""
    import torch.nn.functional as F

    from ablation_paths.sift import decoder
    from ablation_paths.sift.decoder import SparseLevel, decode_levels

    g = torch.Generator().manual_seed(0)
    n_ch, k = 2, 3
    levels, dense = [], []
    for factor, size in [(1, (4, 5)), (2, (4, 5)), (4, (2, 3))]:
        m = torch.rand(n_ch * size[0] * size[1], k, generator=g, dtype=torch.float64)
        m[m < 0.4] = 0
        dense.append((m, size))
        levels.append(SparseLevel(factor, size, n_ch, m.to_sparse_csr(), m.T.to_sparse_csr()))
    gains = torch.rand(2, k, generator=g, dtype=torch.float64)
    want = torch.zeros(2, n_ch, 4, 5, dtype=torch.float64)
    for m, size in dense:
        level = (m @ gains.T).T.reshape(2, n_ch, *size)
        want += F.interpolate(level, size=(4, 5), mode="bilinear", align_corners=False)
    torch.testing.assert_close(decode_levels(levels, gains, (4, 5)), want, rtol=1e-12, atol=0)
    whole = decoder._decode_whole(levels, gains.T.contiguous())
    torch.testing.assert_close(whole, want, rtol=1e-12, atol=0)


# --- the full run's killable survivors (all 685 mutants) ---------------------------------------


@pytest.mark.parametrize("shape", [(3, 3, 8), (3, 8, 3), (1, 3, 3)])
def test_images_under_four_pixels_on_either_side_are_refused(shape):
    with pytest.raises(ValueError, match="image too small for a scale space"):
        decompose(torch.rand(*shape))


@pytest.mark.parametrize("shape", [(1, 4, 9), (1, 9, 4), (1, 4, 4)])
def test_images_of_four_pixels_are_decomposed(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    d = decompose(x)
    torch.testing.assert_close(d.decode(torch.ones(d.num_features)), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("top", "how"),
    [(255.0, "divided by 255"), (255.0 + 1e-3, "divided by 255"), (255.5, "min-max rescaled")],
)
def test_the_255_range_ends_at_255_point_001(top, how):
    x = torch.tensor([[[0.0, 100.0, top]]], dtype=torch.float64)
    with pytest.warns(InputWarning, match=how) as rec:
        out = _unit_range(x)
    assert "the decomposition still reconstructs the image as given" in str(rec[0].message)
    want = x / 255.0 if how == "divided by 255" else x / top
    torch.testing.assert_close(out, want, rtol=1e-15, atol=0)


def test_min_max_rescaling_of_a_narrow_range_reaches_zero_and_one():
    x = torch.tensor([[[-0.9, -0.75, -0.6]]], dtype=torch.float64)
    with pytest.warns(InputWarning, match="min-max rescaled"):
        out = _unit_range(x)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.5, 1.0]]], dtype=torch.float64))


def test_shape_errors_name_the_argument(blobs):
    k = blobs.num_features
    with pytest.raises(ValueError, match=rf"^values must be \[K\] or \[B, K\] with K = {k}"):
        blobs.voronoi_heatmap(torch.ones(k + 1))
    with pytest.raises(ValueError, match=rf"^gains must be \[K\] or \[B, K\] with K = {k}"):
        blobs.decode(torch.ones(k + 1))


def test_gains_of_another_dtype_are_cast_to_the_decompositions(blobs):
    gains = torch.linspace(0, 1, blobs.num_features)
    out = blobs.decode(gains)  # float32 gains, float64 decomposition
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, blobs.decode(gains.double()), rtol=0, atol=0)


def test_find_keypoints_passes_its_thresholds_and_truncation():
    """Each option of ``find_keypoints`` reaches the detector: the keypoints equal those of
    :func:`detect_keypoints` on :func:`detection_space` with the same options."""
    from ablation_paths.sift.decomposition import find_keypoints
    from ablation_paths.sift.keypoints import detect_keypoints, luma
    from ablation_paths.sift.scale_space import detection_space

    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 40, 40, generator=g, dtype=torch.float64)
    p = dict(contrast_threshold=0.01, edge_threshold=3.0, truncate=2.0)
    got = find_keypoints(x, **p)
    from ablation_paths.sift.decomposition import SiftParams

    s = SiftParams()
    det = detection_space(luma(x)[None], s.scales_per_octave, s.sigma_min, s.sigma_max, 2.0)
    want = detect_keypoints(
        det,
        contrast_threshold=0.01,
        edge_threshold=3.0,
        border=s.border,
        max_keypoints=s.max_keypoints,
    )
    import numpy as np

    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.response, want.response)
    for name, default in [
        ("contrast_threshold", 0.04),
        ("edge_threshold", 10.0),
        ("truncate", 4.0),
    ]:
        # each option put back to its default changes the keypoints here, so none can be
        # dropped unnoticed
        alt = find_keypoints(x, **{**p, name: default})
        assert len(alt) != len(got) or not np.array_equal(alt.response, got.response), name


def test_vstack_csr_keeps_int32_indices_and_the_dense_result():
    import numpy as np
    import scipy.sparse as sp

    from ablation_paths.sift.decomposition import _vstack_csr

    blocks = [
        sp.random(9, 7, density=0.6, format="csr", dtype=np.float32, random_state=s)
        for s in range(3)
    ]
    dense = np.vstack([b.toarray() for b in blocks])
    assert sum(b.nnz for b in blocks) >= 62
    out = _vstack_csr(blocks)
    assert blocks == []  # freed as copied
    assert out.indices.dtype == np.int32 and out.indptr.dtype == np.int32
    np.testing.assert_array_equal(out.toarray(), dense)


def test_layer_sum_of_a_single_layer():
    import numpy as np
    import scipy.sparse as sp

    from ablation_paths.sift.decomposition import _layer_sum

    hw = 5
    stacked = sp.random(hw, 4, density=0.7, format="csr", dtype=np.float64, random_state=1)
    weights = np.linspace(1.0, 2.0, hw)
    out = _layer_sum([weights], stacked, hw)
    np.testing.assert_allclose(out.toarray(), weights[:, None] * stacked.toarray(), rtol=1e-15)
