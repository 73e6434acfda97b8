"""Resampling matrices at their edges: conversions keep shape, dtype and device; points on the
hull; padding slots; inputs of other dtypes; the device a sparse product runs on (issue 10).

Devices are checked with PyTorch's ``meta`` device, which every CPU build has: a tensor asked
for on ``meta`` must end up there, so a conversion that forgets its ``device=`` fails here as it
would on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spiral_cnn.resample as resample_mod
from spiral_cnn.geometry import SpiralSpec
from spiral_cnn.layers import ribbon_resampling
from spiral_cnn.resample import (
    Resampling,
    apply_resampling,
    barycentric_resampling,
    sparse_resample,
)

META = torch.device("meta")
SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def affine(p: np.ndarray) -> np.ndarray:
    return 0.3 + 1.7 * p[:, 0] - 0.9 * p[:, 1]


def _with_empty_last_row_and_column() -> Resampling:
    """Source point 4 far away and unused, destination 1 outside the hull (a zero row)."""
    src = np.vstack([SQUARE, [[5.0, 5.0]]])
    dst = np.array([[0.1, 0.3], [-3.0, -3.0]])
    return barycentric_resampling(src, dst, outside="zero")


def test_to_torch_sparse_keeps_the_full_shape_and_the_default_dtype() -> None:
    res = _with_empty_last_row_and_column()
    src = np.vstack([SQUARE, [[5.0, 5.0]]])
    t = res.to_torch_sparse()
    assert t.shape == (2, 5) and t.dtype == torch.float32
    assert t.indices().dtype == torch.long
    dense = t.double().to_dense().numpy()
    np.testing.assert_allclose(dense[0] @ affine(src), affine(np.array([[0.1, 0.3]]))[0], 1e-6)
    np.testing.assert_array_equal(dense[1], 0.0)
    np.testing.assert_array_equal(dense[:, 4], 0.0)
    assert res.to_torch_sparse(torch.float64).dtype == torch.float64


def test_tensors_and_csr_default_dtypes() -> None:
    res = _with_empty_last_row_and_column()
    idx, w = res.tensors()
    assert idx.dtype == torch.long and w.dtype == torch.float32
    torch.testing.assert_close(w, torch.as_tensor(res.weight, dtype=torch.float32))
    # an index array of another integer type still comes back as long (apply_resampling's index)
    r32 = Resampling(index=res.index.astype(np.int32), weight=res.weight, n_src=res.n_src)
    assert r32.tensors()[0].dtype == torch.long
    pair = res.csr()
    assert pair.val.dtype == torch.float32 and pair.val_t.dtype == torch.float32
    assert (pair.n_dst, pair.n_src) == (2, 5)


def test_conversions_land_on_the_requested_device() -> None:
    res = _with_empty_last_row_and_column()
    idx, w = res.tensors(torch.float64, device=META)
    assert (idx.device, idx.dtype, w.device, w.dtype) == (META, torch.long, META, torch.float64)
    pair = res.csr(torch.float64, device=META)
    for name in ("crow", "col", "val", "crow_t", "col_t", "val_t"):
        assert getattr(pair, name).device == META, name
    assert pair.val.dtype == torch.float64 and pair.crow.dtype == torch.long


def test_to_torch_sparse_builds_its_arrays_on_the_requested_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PyTorch cannot coalesce on ``meta``: the arrays handed to ``sparse_coo_tensor`` are
    recorded and the call stopped there."""
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def spy(idx: torch.Tensor, val: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        seen.update(idx=idx.device, val=val.device, dtype=val.dtype, size=size)
        raise Stop

    monkeypatch.setattr(torch, "sparse_coo_tensor", spy)
    with pytest.raises(Stop):
        _with_empty_last_row_and_column().to_torch_sparse(torch.float64, device=META)
    assert seen == {"idx": META, "val": META, "dtype": torch.float64, "size": (2, 5)}


def test_sparse_resample_moves_the_matrix_to_the_values_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values on another device (``meta``) than the matrix (CPU): every CSR array is moved to
    the values' device and the weights cast to their dtype before the product. PyTorch has no
    sparse product on ``meta``, so the arrays reaching the product are recorded."""
    spec = SpiralSpec.for_image(8)
    res = ribbon_resampling(spec.n_wind, spec.n, 3, 3)
    built: list[tuple[torch.device, ...]] = []
    real_csr = resample_mod.csr_tensor

    def csr_spy(
        crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]
    ) -> torch.Tensor:
        built.append((crow.device, col.device, val.device, val.dtype, shape))
        return real_csr(crow, col, val, shape)

    def product(x: torch.Tensor, a: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        return torch.empty(*x.shape[:-1], a.shape[0], dtype=x.dtype, device=x.device)

    monkeypatch.setattr(resample_mod, "csr_tensor", csr_spy)
    monkeypatch.setattr(resample_mod, "sparse_apply_last", product)
    for dtype in (torch.float32, torch.float64):
        built.clear()
        x = torch.empty(2, res.n_src, dtype=dtype, device=META)
        assert sparse_resample(x, res.csr()).shape == (2, res.n_dst)
        n_dst, n_src = res.n_dst, res.n_src
        assert built == [
            (META, META, META, dtype, (n_dst, n_src)),
            (META, META, META, dtype, (n_src, n_dst)),
        ]


def test_points_on_the_hull_within_the_tolerance_are_inside() -> None:
    """A destination 5e-13 outside the hull edge (floating-point noise on the boundary) is
    treated as inside: its row reproduces affine functions instead of being a zero row."""
    dst = np.array([[0.5, -5e-13], [0.25, 1.0 + 5e-13]])
    a = barycentric_resampling(SQUARE, dst, outside="zero").to_scipy()
    np.testing.assert_allclose(np.asarray(a.sum(1)).ravel(), 1.0, atol=1e-12)
    np.testing.assert_allclose(a @ affine(SQUARE), affine(dst), atol=1e-11)
    far = barycentric_resampling(SQUARE, np.array([[0.5, -1e-6]]), outside="zero")
    np.testing.assert_array_equal(far.weight, 0.0)


def test_padding_slots_point_at_column_zero_with_weight_zero() -> None:
    """(1.2, 0.5) lies in the triangle (1, 0), (1, 1), pad (2, 0.5) with barycentric weights
    0.4, 0.4, 0.2; the pad's weight is dropped and its slot points at column 0."""
    src = np.vstack([SQUARE, [[2.0, 0.5]]])  # the last source point is a zero-valued pad
    r = barycentric_resampling(src, np.array([[1.2, 0.5]]), n_zero_src=1)
    slots = sorted(zip(r.index[0].tolist(), r.weight[0].tolist(), strict=True))
    assert [i for i, _ in slots] == [0, 1, 3]
    np.testing.assert_allclose([w for _, w in slots], [0.0, 0.4, 0.4], atol=1e-12)
    assert r.n_src == 4


def test_coordinates_are_converted_to_float64_first() -> None:
    """Any input dtype (integers, float32, long double) gives the same arrays as float64
    coordinates: the barycentric arithmetic runs in float64."""
    rng = np.random.default_rng(0)
    src = rng.uniform(-1, 1, (30, 2))
    dst = rng.uniform(-0.5, 0.5, (200, 2))
    want = barycentric_resampling(src, dst)
    for dtype in (np.longdouble, np.float32):
        s, d = src.astype(dtype), dst.astype(dtype)
        got = barycentric_resampling(s, d)
        ref = barycentric_resampling(s.astype(np.float64), d.astype(np.float64))
        assert got.weight.dtype == np.float64
        np.testing.assert_array_equal(got.index, ref.index)
        np.testing.assert_array_equal(got.weight, ref.weight)
    np.testing.assert_array_equal(barycentric_resampling(src, dst).weight, want.weight)


def test_apply_resampling_requires_two_dimensional_tables() -> None:
    x = torch.arange(4.0)
    with pytest.raises(ValueError, match="index/weight"):
        apply_resampling(x, torch.tensor([0, 1]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="index/weight"):
        apply_resampling(x, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2))
    out = apply_resampling(x, torch.tensor([[0, 3]]), torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(out, torch.tensor([0.25 * 0.0 + 0.75 * 3.0]))
