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


# ---------------------------------------------------------------------------- the registry


def test_registry_names_and_errors():
    import pytest

    from ablation_paths.mask_spaces import (
        MaskSpaceFactory,
        get_mask_space,
        mask_space_names,
        register_mask_space,
    )
    from ablation_paths.sift.mask_space import SiftFeatures

    assert mask_space_names()[:2] == ["pixel", "sift"]
    assert get_mask_space("pixel") is PixelMaskSpace and get_mask_space("sift") is SiftFeatures
    with pytest.raises(ValueError, match="unknown features 'pixels'; use one of pixel, sift"):
        get_mask_space("pixels")
    with pytest.raises(ValueError, match="already registered"):
        register_mask_space("pixel")(type("Other", (MaskSpaceFactory,), {}))
    with pytest.raises(TypeError, match="MaskSpaceFactory subclass"):
        register_mask_space("thing")(object)  # type: ignore[type-var]
    assert "thing" not in mask_space_names()


def test_feature_options_are_checked_by_the_space():
    import pytest

    from ablation_paths.mask_spaces import feature_options
    from ablation_paths.options import UnknownOptionError

    assert feature_options("sift", {"eta": 2.0, "mass_weighted": True}) == {
        "eta": 2.0,
        "mass_weighted": True,
    }
    with pytest.raises(UnknownOptionError, match=r"'sigma_mn' \(did you mean 'sigma_min'\?\)"):
        feature_options("sift", {"sigma_mn": 1.0})
    assert feature_options("pixel", None) == {}


def test_pixel_frames_rebuilt_from_a_saved_result_match_the_live_space(tmp_path, tiny_model):
    import ablation_paths as ap
    from ablation_paths.mask_spaces import frames_for_result, images_for_result

    img = torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(1))
    r = ap.explain(tiny_model, img, score="straddle", n_steps=4, max_iterations=2, mask_size=6)
    loaded = ap.load(r.save(tmp_path / "r.npz"))
    images = images_for_result(loaded, loaded.path)
    assert images is not None
    assert torch.equal(images[0], r.frames) and torch.equal(images[1], r.masks_image)
    # the second path: x + theta (b - x) with theta the upsampled mask, ends included
    down = frames_for_result(loaded, loaded.path_down)
    space = PixelMaskSpace(r.image, r.baseline_image, (6, 5))
    full = torch.cat([torch.zeros(1, 6, 5), loaded.path_down, torch.ones(1, 6, 5)])
    expected = (space.apply(full).clamp(0, 1) * 255).round().to(torch.uint8)
    assert down is not None and torch.equal(down, expected)
    # a path that does not fit the space, or an unknown space: nothing to rebuild
    assert frames_for_result(loaded, torch.rand(4, 3, 3)) is None
    loaded.features = "nonexistent"
    assert frames_for_result(loaded, loaded.path) is None


def test_sift_frames_rebuilt_from_a_saved_result(tmp_path, tiny_model):
    import ablation_paths as ap
    from ablation_paths.mask_spaces import images_for_result

    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    options = {"eta": 2.0, "level_sigmas": (4.5, 9.0)}
    r = ap.explain(
        tiny_model, img, features="sift", n_steps=3, max_iterations=1, feature_options=options
    )
    loaded = ap.load(r.save(tmp_path / "s.npz"))
    images = images_for_result(loaded, loaded.path)
    assert images is not None
    assert torch.equal(images[0], r.frames) and torch.equal(images[1], r.masks_image)


def test_installed_packages_offer_mask_spaces_through_entry_points(tmp_path, monkeypatch):
    import ablation_paths as ap
    from ablation_paths.cli import build_parser
    from ablation_paths.mask_spaces import get_mask_space, mask_space_names

    # an installed distribution (dist-info on sys.path) whose entry point names a module that
    # registers "plugin-pixel" when imported
    dist = tmp_path / "apspace_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: apspace-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[ablation_paths.mask_spaces]\nplugin-pixel = apspace_plugin_mod\n"
    )
    (tmp_path / "apspace_plugin_mod.py").write_text(
        "from ablation_paths.mask_spaces import register_mask_space\n"
        "from ablation_paths.pixel_space import PixelMaskSpace\n"
        "register_mask_space('plugin-pixel')(type('PluginPixel', (PixelMaskSpace,), {}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin-pixel" in mask_space_names()
    args = build_parser().parse_args(["explain", "--features", "plugin-pixel"])
    assert args.features == "plugin-pixel"
    assert get_mask_space("plugin-pixel").__name__ == "PluginPixel"
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval()
    fast = {"n_steps": 3, "max_iterations": 1, "baseline": "black"}
    a = ap.explain(model, img, features="plugin-pixel", **fast)
    b = ap.explain(model, img, **fast)
    assert a.features == "plugin-pixel" and torch.equal(a.path, b.path)
