import torch

from ablation_paths.mask_spaces import PixelMaskSpace, gaussian_blur


def test_pixel_mask_space_ends():
    tg = torch.rand(3, 20, 24)
    bl = torch.rand(3, 20, 24)
    space = PixelMaskSpace(tg, bl, (5, 6))
    out = space.apply(torch.stack([torch.zeros(5, 6), torch.ones(5, 6)]))
    torch.testing.assert_close(out[0], tg)
    torch.testing.assert_close(out[1], bl)


def test_gaussian_blur_preserves_constant_and_mass():
    x = torch.full((1, 1, 16, 16), 0.3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(x, 2.0), x)
    y = torch.rand(2, 3, 16, 16)
    assert gaussian_blur(y, 0.0) is y
