import torch

from ablation_paths.filters import gaussian_blur
from ablation_paths.mask_spaces import PixelMaskSpace


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


def test_fft_blur_matches_direct_blur():
    from ablation_paths.filters import gaussian_blur_fft

    img = torch.rand(3, 40, 30, dtype=torch.float64)
    sigmas = torch.tensor([1.5, 4.0, 13.0, 100.0])
    fft = gaussian_blur_fft(img, sigmas)
    assert fft.shape == (4, 3, 40, 30) and fft.dtype == img.dtype
    for s, out in zip(sigmas, fft, strict=True):
        direct = gaussian_blur(img.unsqueeze(0), float(s))[0]
        torch.testing.assert_close(out, direct, atol=2e-3, rtol=0)
    # mean is preserved by the symmetric extension
    torch.testing.assert_close(fft.mean(dim=(2, 3)), img.mean(dim=(1, 2)).expand(4, 3))


def test_regularize_equals_gaussian_blur():
    tg = torch.rand(3, 32, 32)
    space = PixelMaskSpace(tg, torch.zeros_like(tg), (10, 12), sigma_reg=1.3)
    m = torch.rand(5, 10, 12)
    torch.testing.assert_close(space.regularize(m), gaussian_blur(m.unsqueeze(1), 1.3).squeeze(1))
    assert PixelMaskSpace(tg, tg * 0, (10, 12)).regularize(m) is m


def test_gaussian_blur_gradcheck_and_noncontiguous():
    x = torch.rand(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 1.2), (x,))
    nc = torch.rand(1, 2, 9, 9).transpose(2, 3)
    torch.testing.assert_close(gaussian_blur(nc, 1.0), gaussian_blur(nc.contiguous(), 1.0))
