"""Spiral geometry at its edges: smallest allowed sizes, the ribbon's inner end, the pad ring's
minimum point count, the disc mask's boundary, all against closed forms (issue 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spiral_cnn.geometry import (
    SpiralSpec,
    disc_mask,
    isotropic_n_spls,
    pad_ring,
    pixel_centres,
    ribbon_points,
    spiral_signed_radius,
)


def test_smallest_allowed_sizes_are_accepted() -> None:
    assert isotropic_n_spls(1) == round(math.pi) == 3
    with pytest.raises(ValueError, match="n_wind"):
        isotropic_n_spls(0)
    spec = SpiralSpec(n_wind=2, rows=1, cols=1)  # a 1 x 1 kernel is odd and positive
    assert (spec.rows, spec.cols, spec.n) == (1, 1, round(4 * math.pi))
    for bad in (-1, 0, 2):
        with pytest.raises(ValueError, match="odd"):
            SpiralSpec(n_wind=2, rows=bad)
        with pytest.raises(ValueError, match="odd"):
            SpiralSpec(n_wind=2, cols=bad)
    assert pixel_centres(1).tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="size"):
        pixel_centres(0)


@pytest.mark.parametrize("size", [4, 5, 17])
def test_for_image_winding_count_is_half_the_size_rounded_down(size: int) -> None:
    spec = SpiralSpec.for_image(size)
    assert spec.n_wind == size // 2 and isinstance(spec.n_wind, int)
    assert spec.n == int(round(math.pi * (size // 2) ** 2))


def test_for_image_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match="image size"):
        SpiralSpec.for_image(3)


def test_ribbon_rejects_negative_rows_or_cols() -> None:
    """``-1`` is odd in Python (``-1 % 2 == 1``): only the positivity check rejects it."""
    with pytest.raises(ValueError, match="positive and odd"):
        ribbon_points(4, 20, rows=-1, cols=3)
    with pytest.raises(ValueError, match="positive and odd"):
        ribbon_points(4, 20, rows=3, cols=-1)


def test_signed_radius_is_float64_for_any_input_dtype() -> None:
    j32 = np.array([-3, -1, 0, 1, 2, 7], dtype=np.float32)
    want = np.array([-math.sqrt(3 / 11), -math.sqrt(1 / 11), 0, math.sqrt(1 / 11)])
    want = np.concatenate([want, [math.sqrt(2 / 11), math.sqrt(7 / 11)]])
    for j in (j32, j32.astype(np.int64), [-3, -1, 0, 1, 2, 7]):
        got = spiral_signed_radius(j, 11)  # type: ignore[arg-type]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("n_wind", "rows", "cols"), [(4, 3, 5), (6, 5, 7)])
def test_ribbon_inner_end_continues_on_the_second_branch(n_wind: int, rows: int, cols: int) -> None:
    """Columns before the centre sample (index ``j < 0``) lie on Fermat's second branch: the
    point at angle ``2 pi n_wind sqrt(|j| / n) + pi`` and radius ``sqrt(|j| / n)``; row ``k`` is
    that point shifted ``k`` windings outwards *along the second branch*, i.e. to polar radius
    ``sqrt(|j| / n) + k / n_wind`` (a negative radius flips through the origin)."""
    n = 60
    rib = ribbon_points(n_wind, n, rows, cols)
    p, h = cols // 2, rows // 2
    for col in range(p):  # j = col - p < 0
        j = col - p
        r = math.sqrt(-j / n)
        angle = 2 * math.pi * n_wind * r + math.pi
        for row in range(rows):
            k = row - h
            rad = r + k / n_wind
            want = [rad * math.cos(angle), rad * math.sin(angle)]
            np.testing.assert_allclose(rib[row, col], want, atol=1e-12)


def test_pad_ring_keeps_at_least_eight_points() -> None:
    small = pad_ring(1, radius=0.5)  # 2 pi * 0.5 * 1 = 3.14 -> 4 points, raised to 8
    assert small.shape == (8, 2)
    a = np.arange(8) * 2 * math.pi / 8
    np.testing.assert_allclose(small, 0.5 * np.stack([np.cos(a), np.sin(a)], 1), atol=1e-15)


def _disc_reference(size: int, radius: float) -> np.ndarray:
    out = np.zeros((size, size), dtype=bool)
    for i in range(size):
        for j in range(size):
            x = (2 * j - (size - 1)) / size
            y = (2 * i - (size - 1)) / size
            out[i, j] = math.sqrt(x * x + y * y) <= radius
    return out


@pytest.mark.parametrize(("size", "radius"), [(5, 0.8), (7, 0.5), (16, 1.0), (9, 0.3)])
def test_disc_mask_matches_a_pixel_loop(size: int, radius: float) -> None:
    np.testing.assert_array_equal(disc_mask(size, radius), _disc_reference(size, radius))


def test_disc_mask_includes_centres_on_the_circle_and_defaults_to_the_unit_disc() -> None:
    # L = 5: centres at -0.8, -0.4, 0, 0.4, 0.8; (0.8, 0) lies exactly on the circle r = 0.8
    m = disc_mask(5, 0.8)
    assert m[2, 4] and m[2, 0] and m[0, 2] and m[4, 2]
    assert not m[0, 0]
    for size in (5, 8, 16):
        np.testing.assert_array_equal(disc_mask(size), _disc_reference(size, 1.0))
        assert not disc_mask(size)[0, 0]
