"""Path projections: the cases the mutation run of ``paths.py`` found unguarded (dtypes kept,
empty series, weight checks, which bracketing sample constant speed uses, the axiom report's
words and edges), each against a value written out here or a brute-force loop."""

import numpy as np
import pytest
import torch

from ablation_paths.paths import (
    affine_path,
    check_axioms,
    monotonize,
    path_masses,
    reparametrize_constant_speed,
    resample_path,
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_affine_path_has_the_requested_dtype(dtype):
    a = affine_path(3, (2, 1), dtype=dtype)
    assert a.dtype == dtype and a.shape == (3, 2, 1)
    want = np.repeat((np.arange(1, 4) / 4)[:, None, None], 2, axis=1)
    np.testing.assert_array_equal(a.double().numpy(), want)  # quarters: exact in both dtypes


def test_resample_path_keeps_the_path_dtype():
    path = torch.tensor([[0.2, 0.4], [0.6, 0.8]], dtype=torch.float32)
    out = resample_path(path, 5)
    assert out.dtype == torch.float32
    # t' = 1/6 .. 5/6 on the polyline through (0, 0), (1/3, p1), (2/3, p2), (1, 1)
    want = [[0.1, 0.2], [0.2, 0.4], [0.4, 0.6], [0.6, 0.8], [0.8, 0.9]]
    np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["minimax", "flatten"])
def test_monotonize_empty_series(method):
    """No series (0 of them, each of length 5) and series of no samples: returned as they are."""
    for shape, dim in (((0, 5), 1), ((5, 0), 0), ((0,), 0)):
        out = monotonize(torch.zeros(shape), dim=dim, method=method)
        assert out.shape == shape


def test_mass_weights_are_checked():
    """Weights must be finite and non-negative and not all zero; zeros are allowed."""
    path = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    for bad in ([-1.0, 2.0], [float("nan"), 1.0], [float("inf"), 1.0]):
        with pytest.raises(ValueError, match="finite and non-negative"):
            path_masses(path, torch.tensor(bad))
    with pytest.raises(ValueError, match="must not all be zero"):
        path_masses(path, torch.tensor([0.0, 0.0]))
    assert float(path_masses(path, torch.tensor([0.0, 2.0]))[0]) == 0.75
    assert float(path_masses(path, torch.tensor([1.0, 0.0]))[0]) == 0.25


def brute_constant_speed(path: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Lemma 7 as a loop: for t_k = k / (T + 1) the *last* sample (ends included) whose mass is
    at most t_k and the next one, interpolated linearly in mass."""
    t_count = path.shape[0]
    full = np.concatenate([np.zeros((1, path.shape[1])), path, np.ones((1, path.shape[1]))])
    masses = full @ (w / w.sum())
    masses[0], masses[-1] = 0.0, 1.0
    out = []
    for k in range(1, t_count + 1):
        t = k / (t_count + 1)
        lower = max(j for j in range(t_count + 2) if masses[j] <= t)
        eta = (t - masses[lower]) / (masses[lower + 1] - masses[lower])
        out.append(full[lower] * (1 - eta) + full[lower + 1] * eta)
    return np.array(out)


def test_constant_speed_takes_the_last_sample_of_a_matching_mass():
    """Two samples with the mass ``t_2 = 1/2`` (they differ only on a feature of weight 0):
    the later one is returned, as the brute-force bracket says."""
    w = np.array([1.0, 0.0])
    path = np.array([[0.25, 0.1], [0.5, 0.2], [0.5, 0.9]])
    out = reparametrize_constant_speed(torch.tensor(path), torch.tensor(w)).numpy()
    np.testing.assert_allclose(out, brute_constant_speed(path, w), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(out[1], [0.5, 0.9])
    np.testing.assert_allclose(out[2], [0.75, 0.95], rtol=0, atol=1e-15)


def test_check_axioms_names_each_violation():
    assert check_axioms(torch.tensor([[1.5]], dtype=torch.float64)) == [
        "values outside [0, 1] (boundary conditions with monotonicity)",
        "not constant speed (max |mass - t| = 1.00e+00)",
    ]
    # a descent between the 2nd and 3rd sample (neither is below the first)
    path = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.5, 1.0]], dtype=torch.float64)
    assert check_axioms(path) == ["not monotone in t"]


def test_check_axioms_constant_speed_tolerance_is_inclusive():
    path = torch.tensor([[0.75]], dtype=torch.float64)  # mass 0.75 at t = 0.5: error 0.25
    assert check_axioms(path, atol=0.25) == []
    assert check_axioms(path, atol=0.125) == ["not constant speed (max |mass - t| = 2.50e-01)"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_projections_on_a_cuda_device_match_the_cpu():
    """Every helper's internal tensors (indices, tables, times) on the path's device."""
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(6, 5, generator=g, dtype=torch.float64) * 1.4 - 0.2
    w = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    cuda = raw.cuda()
    for method in ("minimax", "flatten"):
        got = monotonize(cuda, method=method)
        assert got.device == cuda.device
        torch.testing.assert_close(got.cpu(), monotonize(raw, method=method))
    mono = monotonize(raw).clamp(0, 1)
    torch.testing.assert_close(path_masses(mono.cuda(), w).cpu(), path_masses(mono, w))
    out = reparametrize_constant_speed(mono.cuda(), w)
    torch.testing.assert_close(out.cpu(), reparametrize_constant_speed(mono, w))
    assert check_axioms(out, w) == [] and check_axioms(mono.cuda()) == check_axioms(mono)
    torch.testing.assert_close(resample_path(mono.cuda(), 9).cpu(), resample_path(mono, 9))
    assert affine_path(3, (2,), device="cuda").device.type == "cuda"
