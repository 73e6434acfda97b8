"""torchvision-style preprocessing: resize the shorter side, then centre-crop (``load_image``,
``Preprocess``, ``--resize/--crop/--preprocess``), against Pillow and hand arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ablation_paths.inputs import (
    ImageInputError,
    Preprocess,
    center_crop_box,
    load_image,
    resized_size,
)


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def _coordinates(height: int, width: int) -> np.ndarray:
    """Float image ``[H, W, 3]`` whose channel 0 is the row / 1000 and channel 1 the column /
    1000: after a crop, pixel (0, 0) tells where the crop started."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows / 1000, cols / 1000, np.zeros_like(rows, float)], -1).astype(np.float32)


def test_resize_and_crop_of_a_landscape_photo_match_pillow_and_the_arithmetic() -> None:
    """451x300 -> shorter side 256: 384x256 (256 * 451 / 300 = 384.85, truncated); the 224
    crop starts at row (256 - 224) / 2 = 16 and column (384 - 224) / 2 = 80."""
    img = _photo(451, 300)
    got = load_image(img, resize=256, crop=224)
    resized = img.resize((384, 256), Image.Resampling.BILINEAR)
    ref = np.asarray(resized, dtype=np.float32)[16:240, 80:304] / 255.0
    assert got.shape == (3, 224, 224)
    np.testing.assert_array_equal(got.numpy().transpose(1, 2, 0), ref)
    # the preprocessing object and a file path give the same pixels
    assert torch.equal(Preprocess(256, 224).load(img), got)


def test_resize_and_crop_of_a_portrait_file(tmp_path) -> None:
    file = tmp_path / "portrait.png"
    img = _photo(300, 451, seed=1)
    img.save(file)
    got = load_image(file, resize=256, crop=224)
    ref = np.asarray(img.resize((256, 384), Image.Resampling.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(got.numpy().transpose(1, 2, 0), ref[80:304, 16:240] / 255.0)
    # resize alone keeps the aspect ratio (squashing with size= does not)
    assert tuple(load_image(file, resize=128).shape) == (3, 192, 128)
    assert tuple(load_image(file, size=128).shape) == (3, 128, 128)


@pytest.mark.parametrize(
    ("height", "width", "crop", "top", "left"),
    [
        (300, 451, 224, 38, 114),  # (451 - 224) / 2 = 113.5 -> 114 (half to even)
        (300, 449, 224, 38, 112),  # 112.5 -> 112 (half to even, as torchvision), not 113
        (300, 451, 223, 38, 114),  # odd crop: 38.5 -> 38, 114
        (224, 224, 224, 0, 0),
    ],
)
def test_centre_crop_keeps_the_central_pixels(height, width, crop, top, left) -> None:
    got = load_image(_coordinates(height, width), crop=crop)
    assert got.shape == (3, crop, crop)
    assert round(float(got[0, 0, 0]) * 1000) == top
    assert round(float(got[1, 0, 0]) * 1000) == left
    assert round(float(got[0, -1, -1]) * 1000) == top + crop - 1
    assert round(float(got[1, -1, -1]) * 1000) == left + crop - 1
    assert center_crop_box(height, width, crop) == (top, left)


def test_resized_size_truncates_the_longer_side() -> None:
    assert resized_size(300, 451, 256) == (256, 384)
    assert resized_size(451, 300, 256) == (384, 256)
    assert resized_size(100, 100, 7) == (7, 7)
    assert resized_size(3, 1000, 2) == (2, 666)  # 666.67 truncated


def test_tensor_inputs_are_resized_like_pillow() -> None:
    """Tensors go through ``interpolate(antialias=True)``: within one grey level of Pillow."""
    img = _photo(451, 300, seed=2)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    got = load_image(x, resize=256, crop=224)
    ref = load_image(img, resize=256, crop=224)
    assert got.shape == ref.shape == (3, 224, 224)
    assert float((got - ref).abs().max()) <= 1.5 / 255
    assert got.dtype == torch.float32


def test_bad_preprocessing_is_a_clear_error() -> None:
    img = _photo(451, 300)
    with pytest.raises(ImageInputError, match=r"centre crop 301x301 is larger than .*451x300"):
        load_image(img, crop=301)
    with pytest.raises(ImageInputError, match="after resizing its shorter side to 100"):
        load_image(img, resize=100, crop=120)
    with pytest.raises(ImageInputError, match="either size"):
        load_image(img, size=64, crop=32)
    for bad in (1, 0, True, 2.5):
        with pytest.raises(ImageInputError, match="resize"):
            Preprocess(resize=bad)
    with pytest.raises(ImageInputError, match="crop must be at least 2"):
        Preprocess(crop=1)
    assert not Preprocess().active and Preprocess(crop=3).active


def test_cli_preprocess_imagenet_crops_and_normalises(tmp_path, monkeypatch) -> None:
    """``--preprocess imagenet`` = resize 256, crop 224, ImageNet normalisation: the model sees
    the normalised 224 x 224 centre of the photo; ``--size`` with it is an error."""
    from ablation_paths import cli

    seen: list[torch.Tensor] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach())
            return torch.stack([x.mean(dim=(1, 2, 3)), -x.mean(dim=(1, 2, 3))], 1)

    def fake_load(spec, device="cpu", *, model_args=None, weights=None):
        from ablation_paths.models import LoadedModel

        return LoadedModel(Probe().eval(), ["up", "down"], 64, None, "probe")

    monkeypatch.setattr(cli, "load_model_spec", fake_load)
    photo = tmp_path / "photo.png"
    _photo(451, 300, seed=4).save(photo)
    out = tmp_path / "out"
    fast = ["--n-steps", "3", "--max-iterations", "1", "--mask-size", "4", "--quiet"]
    rc = cli.main(
        [
            "explain",
            str(photo),
            "--model",
            "x:y",
            "--out",
            str(out),
            "--preprocess",
            "imagenet",
            *fast,
        ]
    )
    assert rc == 0
    from ablation_paths.models import imagenet_normalize

    expected = imagenet_normalize(load_image(photo, resize=256, crop=224)[None])
    torch.testing.assert_close(seen[0], expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary  # written last: the run completed
    from ablation_paths.result import load

    result = load(out / "path.npz")
    assert tuple(result.image.shape[-2:]) == (224, 224)
    assert result.info["preprocess"] == {"resize": 256, "crop": 224}
    # explicit options override the preset's parts; --size cannot be combined
    seen.clear()
    rc = cli.main(
        [
            "explain",
            str(photo),
            "--model",
            "x:y",
            "--out",
            str(tmp_path / "o2"),
            "--resize",
            "150",
            "--crop",
            "101",
            "--normalize",
            "none",
            *fast,
        ]
    )
    assert rc == 0
    torch.testing.assert_close(seen[0], load_image(photo, resize=150, crop=101)[None])
    rc = cli.main(
        [
            "explain",
            str(photo),
            "--model",
            "x:y",
            "--out",
            str(tmp_path / "o3"),
            "--size",
            "64",
            "--crop",
            "32",
            *fast,
        ]
    )
    assert rc == 2


def test_explain_many_applies_the_preprocessing(tmp_path, tiny_model) -> None:
    from ablation_paths.many import ManySettings, explain_many
    from ablation_paths.result import load

    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(60, 40, seed=5).save(folder / "a.png")
    _photo(40, 70, seed=6).save(folder / "b.png")
    fast = {"n_steps": 3, "max_iterations": 1, "mask_size": 4}
    run = explain_many(
        tiny_model,
        folder,
        out=tmp_path / "out",
        preprocess=Preprocess(36, 32),
        progress=False,
        gallery=False,
        figures=False,
        **fast,
    )
    assert sorted(run.done) == ["a", "b"] and not run.failed
    for name, file in (("a", "a.png"), ("b", "b.png")):
        result = load(tmp_path / "out" / name / "path.npz")
        torch.testing.assert_close(
            result.image.cpu(), load_image(folder / file, resize=36, crop=32)
        )
    # the preprocessing is part of the settings' fingerprint (a rerun with another refuses)
    plain = ManySettings()
    assert ManySettings(preprocess=Preprocess(36, 32)).fingerprint() != plain.fingerprint()
    assert ManySettings(preprocess=Preprocess()).fingerprint() == plain.fingerprint()
    with pytest.raises(ValueError, match="either image_size"):
        ManySettings(image_size=32, preprocess=Preprocess(crop=16))
