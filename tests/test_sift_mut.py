"""SIFT decomposition: the cases a sampled mutation run of ``sift/decomposition.py`` found
unguarded (its text form, the feature-index checks, the detection image of an image outside
``[0, 1]``), each against values written out here."""

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
