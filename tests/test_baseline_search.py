"""The blurred baseline's sigma search (thesis 2.7.1, eq. 2.32) with a stub classifier that
flips at a sigma known in closed form, and the other baseline specifications.

The image is a cosine ``0.5 + A cos(pi k (x + 1/2) / W)``: a DCT basis function, which the
mirror-periodic Gaussian blur scales exactly by ``exp(-2 pi^2 sigma^2 (k / 2W)^2)``. Its pixel
standard deviation is ``A / sqrt(2)`` times that factor, so a classifier that says "class 0"
while the standard deviation exceeds ``tau`` flips at the sigma solving that equation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ablation_paths.baselines import blurred_baseline, constant_baseline, make_baseline
from ablation_paths.filters import gaussian_blur
from ablation_paths.inputs import ClassifierFn

W = 64
K = 4
AMPLITUDE = 0.4


class StdClassifier(nn.Module):
    """Class 0 while the image's pixel standard deviation exceeds ``tau``, else class 1."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).double().std(dim=1, unbiased=False)
        return torch.stack([1e3 * (s - self.tau), torch.zeros_like(s)], dim=1).float()


def cosine_image() -> torch.Tensor:
    x = (torch.arange(W, dtype=torch.float64) + 0.5) / W
    row = 0.5 + AMPLITUDE * torch.cos(math.pi * K * x)
    return row.expand(3, 16, W).contiguous()


def analytic_std(sigma: float) -> float:
    f = K / (2 * W)
    return AMPLITUDE / math.sqrt(2) * math.exp(-2 * math.pi**2 * sigma**2 * f**2)


GRID = np.geomspace(4.0, 100.0, 16)


@settings(max_examples=20, deadline=None)
@given(flip_at=st.floats(4.5, 60.0))
def test_search_returns_the_smallest_flipping_sigma(flip_at: float) -> None:
    tau = analytic_std(flip_at)
    expected = min(float(s) for s in GRID if analytic_std(float(s)) < tau)
    # keep clear of grid points, where float rounding could go either way
    assume_gap = min(abs(analytic_std(float(s)) - tau) for s in GRID)
    if assume_gap < 1e-4:
        return
    b = blurred_baseline(ClassifierFn(StdClassifier(tau)), cosine_image())
    assert b.kind == "blur" and b.flips_class is True and b.note == ""
    assert b.sigma == pytest.approx(expected)
    # the returned image is the blur at that sigma: the cosine damped by the analytic factor
    std = float(b.image.double().std(unbiased=False))
    assert std == pytest.approx(analytic_std(expected), rel=1e-3)


def test_search_picks_the_first_flip_not_a_later_one() -> None:
    tau = analytic_std(6.9)  # between grid points 6.15 and 7.62
    b = blurred_baseline(ClassifierFn(StdClassifier(tau)), cosine_image())
    assert b.sigma == pytest.approx(GRID[3]) and GRID[2] < 6.9 < GRID[3]


def test_no_flip_falls_back_to_the_largest_sigma() -> None:
    tau = analytic_std(100.0) / 2  # even sigma_max keeps the class
    b = blurred_baseline(ClassifierFn(StdClassifier(tau)), cosine_image())
    assert b.flips_class is False and b.sigma == pytest.approx(100.0)
    assert "no blur up to sigma=100px" in b.note
    assert float(b.image.double().std(unbiased=False)) == pytest.approx(
        analytic_std(100.0), abs=1e-6
    )


def test_search_grid_options() -> None:
    tau = analytic_std(9.0)
    b = blurred_baseline(
        ClassifierFn(StdClassifier(tau)),
        cosine_image(),
        sigma_min=8.0,
        sigma_max=12.0,
        n_candidates=5,
        batch_size=2,
    )
    grid = np.geomspace(8.0, 12.0, 5)
    assert b.sigma == pytest.approx(min(s for s in grid if analytic_std(s) < tau))
    none = blurred_baseline(
        ClassifierFn(StdClassifier(analytic_std(3.0))),
        cosine_image(),
        sigma_min=1.0,
        sigma_max=2.0,
        n_candidates=3,
    )
    assert none.sigma == pytest.approx(2.0) and not none.flips_class
    assert "sigma=2px" in none.note


def test_original_class_is_the_images_not_class_zero() -> None:
    """A classifier that says class 1 on the sharp image flips when it says class 0."""

    class Inverted(StdClassifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -super().forward(x)

    tau = analytic_std(6.9)
    b = blurred_baseline(ClassifierFn(Inverted(tau)), cosine_image())
    assert b.sigma == pytest.approx(GRID[3]) and b.flips_class


# ------------------------------------------------------------------ other specifications


def test_named_and_constant_baselines() -> None:
    img = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(0))
    clf = ClassifierFn(StdClassifier(0.1))
    for spec, value in (("black", 0.0), ("white", 1.0), ("gray", 0.5), ("Grey", 0.5), (0.25, 0.25)):
        b = make_baseline(spec, clf, img)
        assert b.kind == "constant" and torch.equal(b.image, torch.full_like(img, value))
    mean = make_baseline("mean", clf, img)
    torch.testing.assert_close(mean.image, img.mean(dim=(1, 2), keepdim=True).expand_as(img))
    per_channel = constant_baseline(img, (0.1, 0.2, 0.3))
    assert per_channel.image[:, 3, 4].tolist() == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="1 or 3 values"):
        constant_baseline(img, (0.1, 0.2))


def test_fixed_blur_and_image_baselines() -> None:
    img = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(1))
    clf = ClassifierFn(StdClassifier(0.1))
    b = make_baseline("blur:2.5", clf, img)
    assert b.kind == "blur" and b.sigma == 2.5 and b.flips_class is None
    torch.testing.assert_close(b.image, gaussian_blur(img.unsqueeze(0), 2.5)[0])
    with pytest.raises(ValueError, match="positive"):
        make_baseline("blur:0", clf, img)
    other = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(2))
    b = make_baseline(other, clf, img)
    assert b.kind == "image" and torch.equal(b.image, other)
    with pytest.raises(ValueError, match="shape"):
        make_baseline(torch.rand(3, 10, 12), clf, img)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("purple", clf, img)
    default = make_baseline("blur", ClassifierFn(StdClassifier(analytic_std(6.9))), cosine_image())
    assert default.sigma == pytest.approx(GRID[3])


class Recording(StdClassifier):
    """Also records the batch sizes it is called with."""

    def __init__(self, tau: float) -> None:
        super().__init__(tau)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(x.shape[0]))
        return super().forward(x)


def test_candidates_are_classified_in_batches() -> None:
    model = Recording(analytic_std(6.9))
    blurred_baseline(ClassifierFn(model), cosine_image(), n_candidates=40, search_chunk=40)
    # the image, then blurs in calls of at most 32 (the default), at most the 40 candidates
    blurs = model.batches[1:]
    assert model.batches[0] == 1 and max(blurs) == 32 and sum(blurs) <= 40
    model.batches.clear()
    blurred_baseline(ClassifierFn(model), cosine_image(), batch_size=3, search_chunk=8)
    assert model.batches == [1, 3, 3, 2]  # the flip (sigma 7.62) is in the first chunk of 8
    model.batches.clear()
    make_baseline("blur", ClassifierFn(model), cosine_image(), batch_size=5)
    blurs = model.batches[1:]
    assert max(blurs) <= 5 and sum(blurs) <= 16


def test_a_flip_at_the_first_candidate() -> None:
    b = blurred_baseline(ClassifierFn(StdClassifier(analytic_std(3.0))), cosine_image())
    assert b.sigma == pytest.approx(4.0) and b.flips_class


def test_a_flip_only_at_the_last_candidate() -> None:
    clf = ClassifierFn(StdClassifier(analytic_std(6.0)))
    b = blurred_baseline(clf, cosine_image(), sigma_min=1.0, sigma_max=8.0, n_candidates=4)
    assert b.sigma == pytest.approx(8.0) and b.flips_class is True and b.note == ""


def test_fallback_image_kind_and_small_grid() -> None:
    b = blurred_baseline(
        ClassifierFn(StdClassifier(analytic_std(3.0))),
        cosine_image(),
        sigma_min=1.0,
        sigma_max=2.0,
        n_candidates=3,
    )
    assert b.kind == "blur" and not b.flips_class
    assert float(b.image.double().std(unbiased=False)) == pytest.approx(analytic_std(2.0), rel=1e-4)


def test_constant_baseline_keeps_dtype_and_small_blur_is_allowed() -> None:
    img = torch.rand(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert constant_baseline(img, 0.3).image.dtype == torch.float64
    b = make_baseline("blur:0.5", ClassifierFn(StdClassifier(0.1)), img.float())
    assert b.sigma == 0.5
    with pytest.raises(ValueError):
        make_baseline("blur:2:3", ClassifierFn(StdClassifier(0.1)), img.float())


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"])
def test_image_file_baselines_are_resized_to_the_target(tmp_path, ext: str) -> None:
    from PIL import Image

    target = torch.rand(3, 12, 20, generator=torch.Generator().manual_seed(0))
    clf = ClassifierFn(StdClassifier(0.1))
    for name in ("base" + ext, "BASE" + ext.upper()):
        f = tmp_path / name
        Image.new("RGB", (7, 5), (10, 200, 30)).save(f)
        b = make_baseline(str(f), clf, target)
        assert b.kind == "image" and b.image.shape == (3, 12, 20)


def _bytes_per_sigma(c: int, h: int, w: int) -> int:
    """The documented FFT work memory of one sigma: a complex64 ``[C, 2H, W + 1]`` spectrum
    (8 bytes a value) and a float32 ``[C, 2H, 2W]`` result (4 bytes)."""
    return 8 * c * 2 * h * (w + 1) + 4 * c * 2 * h * 2 * w


@pytest.mark.parametrize(("budget_sigmas", "extra"), [(1, 0), (3, 0), (3, -1), (16, 0), (0, 5)])
def test_memory_budget_sets_how_many_sigmas_are_blurred_at_once(
    budget_sigmas: int, extra: int
) -> None:
    """``memory_budget`` bytes hold ``budget // bytes_per_sigma`` sigmas (at least one; here
    ``search_chunk`` allows all 16); with ``batch_size=None`` each chunk is classified in one
    call, so the calls show the chunks."""
    image = cosine_image()
    per_sigma = _bytes_per_sigma(3, 16, W)
    budget = budget_sigmas * per_sigma + extra
    chunk = max(1, budget // per_sigma)
    model = Recording(analytic_std(GRID[10]))  # flips at the 11th candidate
    b = blurred_baseline(
        ClassifierFn(model), image, batch_size=None, memory_budget=budget, search_chunk=16
    )
    assert b.sigma == pytest.approx(GRID[10])
    n_chunks = 10 // chunk + 1  # the chunks up to and including the one holding candidate 10
    want = [1] + [min(chunk, 16 - i * chunk) for i in range(n_chunks)]
    assert model.batches == want


def test_default_chunks_of_a_small_image_are_the_search_chunk() -> None:
    """256 MiB hold far more than 16 sigmas of 3 x 16 x 64: the default ``search_chunk`` of 4
    sets the chunks, up to the one holding the flip (candidate 10)."""
    model = Recording(analytic_std(GRID[10]))
    blurred_baseline(ClassifierFn(model), cosine_image(), batch_size=None)
    assert model.batches == [1, 4, 4, 4]
    model.batches.clear()
    blurred_baseline(ClassifierFn(model), cosine_image(), batch_size=None, search_chunk=16)
    assert model.batches == [1, 16]


def test_candidates_are_blurred_with_a_float32_fft() -> None:
    """Documented memory saving: the candidates are float32 FFT blurs, also for a float64
    image (which keeps its dtype)."""
    from ablation_paths.filters import gaussian_blur_fft

    image = cosine_image()  # float64
    b = blurred_baseline(ClassifierFn(StdClassifier(analytic_std(GRID[2]))), image)
    sigma = torch.tensor([GRID[2]], dtype=torch.float64)
    want = gaussian_blur_fft(image, sigma, dtype=torch.float32)[0]
    assert b.image.dtype == torch.float64 and torch.equal(b.image, want)
    assert not torch.equal(b.image, gaussian_blur_fft(image, sigma, dtype=torch.float64)[0])


def test_image_baselines_take_the_targets_dtype_and_device() -> None:
    clf = ClassifierFn(StdClassifier(0.1))
    other = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(4))  # float32
    target = torch.zeros(3, 6, 6, dtype=torch.float64)
    b = make_baseline(other, clf, target)
    assert b.image.dtype == torch.float64 and torch.equal(b.image, other.double())
    meta = make_baseline(other, clf, torch.zeros(3, 6, 6, device="meta"))
    assert meta.image.device == torch.device("meta")


def test_bad_tensor_baselines_are_named_in_the_error() -> None:
    clf = ClassifierFn(StdClassifier(0.1))
    target = torch.zeros(3, 6, 6)
    with pytest.raises(ValueError, match=r"^baseline must have shape \[C, H, W\]"):
        make_baseline(torch.zeros(6, 6), clf, target)
    with pytest.raises(ValueError, match=r"^baseline contains NaN"):
        make_baseline(torch.full((3, 6, 6), float("nan")), clf, target)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_constant_baselines_on_the_images_device() -> None:
    """Only a second device can tell whether the constant is made on the image's device
    (``meta`` tensors cannot be checked for finiteness)."""
    image = torch.zeros(3, 6, 6, device="cuda")
    assert constant_baseline(image, (0.1, 0.2, 0.3)).image.device == image.device
    assert make_baseline("gray", ClassifierFn(StdClassifier(0.1)), image).image.is_cuda
