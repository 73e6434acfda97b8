"""Keypoint detection: DoG extrema with Brown-Lowe refinement (thesis 4.1.2)."""

import numpy as np
import pytest
import torch

from ablation_paths.sift import decompose, detect_keypoints, scale_space


def _blob(size: int, cx: float, cy: float, s: float, amp: float = 0.8) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    g = amp * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return (0.1 + g)[None]


@pytest.mark.parametrize(("cx", "cy", "s"), [(30.3, 25.7, 3.0), (20.0, 33.4, 5.0)])
def test_gaussian_blob_is_found_at_its_centre_and_scale(cx, cy, s):
    x = _blob(64, cx, cy, s)
    kp = detect_keypoints(scale_space(x))
    assert len(kp) >= 1
    i = int(np.argmax(np.abs(kp.response)))
    # the strongest keypoint is the blob: sub-pixel position, scale of the normalised DoG peak
    assert abs(kp.x[i] - cx) < 0.3 and abs(kp.y[i] - cy) < 0.3
    # a Gaussian blob of std s has its scale-normalised Laplacian extremum at sigma = s
    assert 1 / 1.25 < kp.sigma[i] / s < 1.25
    assert kp.response[i] > 0  # bright blob: positive DoG (Gamma(lo) - Gamma(hi))


def test_keypoints_are_translation_equivariant():
    from skimage import data, transform

    img = transform.resize(data.camera(), (96, 96), anti_aliasing=True)
    x = torch.from_numpy(img)[None]
    shift = 8
    a = detect_keypoints(scale_space(x[..., :80, :80].contiguous()))
    b = detect_keypoints(scale_space(x[..., shift : shift + 80, :80].contiguous()))

    # keypoints of a fine scale well inside both crops must coincide after the shift
    def inner(kp, dy):
        m = (kp.sigma < 3) & (kp.x > 20) & (kp.x < 60) & (kp.y + dy > 28) & (kp.y + dy < 60)
        return np.stack([kp.x[m], kp.y[m] + dy, kp.sigma[m]], 1)

    pa, pb = inner(a, 0), inner(b, shift)
    assert len(pa) >= 5
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pb[:, :2]).query(pa[:, :2])
    assert np.mean(d < 0.5) > 0.8


def test_contrast_threshold_and_flat_image():
    from skimage import data, transform

    img = transform.resize(data.camera(), (64, 64), anti_aliasing=True)
    space = scale_space(torch.from_numpy(img)[None])
    many = detect_keypoints(space, contrast_threshold=0.01)
    few = detect_keypoints(space, contrast_threshold=0.08)
    assert len(many) > len(few) > 0
    assert np.all(np.abs(few.response) * 3 >= 0.08)
    assert np.all(np.diff(np.abs(many.response)) <= 0)  # strongest first
    top = detect_keypoints(space, contrast_threshold=0.01, max_keypoints=7)
    assert len(top) == 7
    np.testing.assert_allclose(top.x, many.x[:7])
    flat = torch.full((3, 32, 32), 0.5)
    assert len(detect_keypoints(scale_space(flat))) == 0
    dec = decompose(flat)  # falls back to one feature carrying the whole image
    assert dec.num_features == 1
    torch.testing.assert_close(dec.decode(torch.ones(1)), flat)
