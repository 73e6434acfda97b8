"""RISE over SIFT features (beyond the thesis, 4.4 future work)."""

import pytest
import torch
from torch import nn

from ablation_paths.sift import decompose, sift_rise, sift_rise_heatmap


class RegionProbe(nn.Module):
    """Class 1 logit = scaled mean brightness inside a box; class 0 logit = 0."""

    def __init__(self, box: tuple[int, int, int, int], scale: float = 20.0) -> None:
        super().__init__()
        self.box, self.scale = box, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.box
        inside = x[:, :, y0:y1, x0:x1].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(inside), self.scale * (inside - 0.2)], 1)


@pytest.fixture(scope="module")
def dec():
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (48, 48), anti_aliasing=True)
    return decompose(torch.from_numpy(img).permute(2, 0, 1).float().contiguous())


def test_rise_finds_the_region_the_model_looks_at(dec):
    box = (4, 20, 26, 44)
    model = RegionProbe(box)
    sal = sift_rise(model, dec, target=1, n_samples=300, generator=torch.Generator().manual_seed(0))
    assert sal.shape == (dec.num_features,)
    assert torch.all((sal >= 0) & (sal <= 1))
    hm = sift_rise_heatmap(dec, sal)
    assert hm.shape == (48, 48)
    y0, y1, x0, x1 = box
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert hm[inside].mean() > hm[~inside].mean() + 0.01
    # the model is monotone in the box brightness, so a feature's saliency should follow its
    # own contribution to that brightness: mean of D(e_i) over the box
    feats = dec.features(list(range(dec.num_features)))
    effect = feats[:, :, y0:y1, x0:x1].mean((1, 2, 3))
    assert torch.corrcoef(torch.stack([sal, effect]))[0, 1] > 0.8
    assert sal.argmax() == effect.argmax()


def test_rise_estimator_is_the_conditional_mean(dec):
    # a model that ignores its input: every feature's saliency is the constant probability
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)

    sal = sift_rise(Constant(), dec, 1, n_samples=40, batch_size=16)
    torch.testing.assert_close(sal, torch.full_like(sal, torch.sigmoid(torch.tensor(1.0)).item()))
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    m = RegionProbe((0, 24, 0, 24))
    torch.testing.assert_close(
        sift_rise(m, dec, 1, n_samples=50, generator=g1),
        sift_rise(m, dec, 1, n_samples=50, generator=g2),
    )


def test_rise_validates_arguments(dec):
    m = RegionProbe((0, 4, 0, 4))
    with pytest.raises(ValueError, match="p_keep"):
        sift_rise(m, dec, 1, p_keep=1.0)
    with pytest.raises(ValueError, match="class 7"):
        sift_rise(m, dec, 7, n_samples=4)
