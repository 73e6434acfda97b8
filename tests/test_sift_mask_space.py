"""SIFT features as a mask space (thesis 4.3): ends, baseline, metric weights, heatmaps."""

import pytest
import torch

from ablation_paths.mask_spaces import MaskSpace
from ablation_paths.sift import SiftMaskSpace, decompose


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    from skimage import data, transform

    img = transform.resize(data.coffee(), (48, 64), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).float().contiguous()


@pytest.fixture(scope="module")
def space(image) -> SiftMaskSpace:
    return SiftMaskSpace(decompose(image), mass_weighted=True)


def test_is_a_mask_space_with_feature_shape(space, image):
    assert isinstance(space, MaskSpace)
    k = space.decomposition.num_features
    assert space.mask_shape == (k,)
    assert space.image_size == (48, 64)
    assert space.target.shape == image.shape and space.baseline.shape == image.shape


def test_ends_are_target_and_zero_baseline(space, image):
    k = space.mask_shape[0]
    out = space.apply(torch.stack([torch.zeros(k), torch.ones(k)]))
    assert out.shape == (2, 3, 48, 64)
    torch.testing.assert_close(out[0], space.target)
    assert ((space.target - image).norm() / image.norm()).item() < 1e-3
    assert out[1].abs().max().item() == 0.0
    assert space.baseline.abs().max().item() == 0.0
    # removing half of every feature gives half the image (linearity, eq. 4.43)
    torch.testing.assert_close(space.apply(torch.full((1, k), 0.5))[0], 0.5 * space.target)


def test_apply_is_differentiable(space):
    k = space.mask_shape[0]
    m = torch.rand(3, k, requires_grad=True)
    space.apply(m).square().sum().backward()
    assert m.grad is not None and m.grad.shape == (3, k) and torch.isfinite(m.grad).all()
    assert space.regularize(m) is m  # no spatial regularisation in feature space (4.3.2)


def test_weights(space, image):
    w = space.weights()
    assert w is not None and w.shape == space.mask_shape
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    # eq. 4.45 without the residual (mean colour): the norms of the isolated features' band-pass
    raw = space.decomposition.mass_weights(residual=False)
    torch.testing.assert_close(w, raw / raw.sum())
    full = SiftMaskSpace(space.decomposition, mass_weighted=True, mass_residual=True).weights()
    raw = space.decomposition.mass_weights()
    torch.testing.assert_close(full, raw / raw.sum())
    assert SiftMaskSpace(space.decomposition).weights() is None


def test_to_image_and_contrast(space):
    k = space.mask_shape[0]
    hm = space.to_image(torch.full((k,), 0.7))
    assert hm.shape == (48, 64)
    # default field: the local-energy density, whose all-ones map has mean 1
    assert abs(hm.mean().item() - 0.7) < 1e-4 and hm.min() > 0
    uniform = SiftMaskSpace(decompose(space.decomposition.image, field_weights="uniform"))
    assert (uniform.to_image(torch.full((k,), 0.7)) - 0.7).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="K ="):
        space.to_image(torch.ones(k + 2))
    with pytest.raises(ValueError, match="K ="):
        space.apply(torch.ones(2, k - 1))
    path = torch.linspace(0, 1, 4)[:, None].expand(4, k)
    c = space.contrast_image(path)
    assert c.shape == (4, 48, 64)
    assert c[-1].abs().max() == 0  # everything removed: flat zero image, no contrast
    assert c[0].mean() > c[2].mean() > 0


def test_from_image_passes_parameters(image):
    sp = SiftMaskSpace.from_image(image, max_keypoints=5, contrast_threshold=0.01)
    assert sp.mask_shape == (5,)


def test_explain_with_sift_returns_the_contrast_heatmap_and_takes_mass_options(image):
    """The registered "sift" space passes its weighting options through and its extra heatmap
    (eq. 4.48) reaches the result."""
    import ablation_paths as ap
    from ablation_paths.options import UnknownOptionError

    class Brightness(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([4 * m, -4 * m], dim=1)

    model = Brightness().eval()
    opts = {"mass_weighted": True, "mass_residual": True}
    r = ap.explain(model, image, 0, features="sift", feature_options=opts, max_iterations=2)
    assert "sift_contrast" in r.heatmaps
    assert r.heatmap("sift_contrast").shape == image.shape[1:]
    with pytest.raises(UnknownOptionError, match="mass_weighted"):
        ap.explain(model, image, 0, features="sift", feature_options={"mass_weigted": True})
