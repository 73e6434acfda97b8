"""Mathematical promises of the path projections (thesis 2.2, 2.6.2, Lemmas 6 and 7)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ablation_paths import check_axioms, monotonize, project, saturation
from ablation_paths.paths import (
    affine_path,
    clamp_path,
    path_masses,
    path_times,
    reparametrize_constant_speed,
    resample_path,
)

METHODS = ["minimax", "flatten"]

series_arrays = arrays(
    np.float64,
    st.tuples(st.integers(1, 12), st.integers(1, 5)),
    elements=st.floats(-2, 3, allow_nan=False, width=64),
)


def lower_bound(p: np.ndarray) -> np.ndarray:
    """Slow, obviously-correct ``max_{s<t} (p(s) - p(t)) / 2`` per column of ``p [T, N]``."""
    out = np.zeros(p.shape[1])
    for s in range(p.shape[0]):
        for t in range(s + 1, p.shape[0]):
            out = np.maximum(out, (p[s] - p[t]) / 2)
    return out


def in_descent(p: np.ndarray) -> np.ndarray:
    """Samples taking part in some descent (an earlier larger or a later smaller sample)."""
    mask = np.zeros(p.shape, dtype=bool)
    for s in range(p.shape[0]):
        for t in range(s + 1, p.shape[0]):
            d = p[s] > p[t]
            mask[s] |= d
            mask[t] |= d
    return mask


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None)
@given(p=series_arrays)
def test_monotonize_is_monotone_and_linf_optimal(method, p):
    q = monotonize(torch.from_numpy(p), dim=0, method=method).numpy()
    assert q.shape == p.shape
    assert np.all(np.diff(q, axis=0) >= -1e-12)
    dev = np.abs(q - p).max(axis=0)
    np.testing.assert_allclose(dev, lower_bound(p), atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=100, deadline=None)
@given(p=series_arrays)
def test_monotonize_leaves_samples_outside_descents_unchanged(method, p):
    q = monotonize(torch.from_numpy(p), dim=0, method=method).numpy()
    untouched = ~in_descent(p)
    np.testing.assert_array_equal(q[untouched], p[untouched])


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None)
@given(
    p=arrays(
        np.float64,
        st.tuples(st.integers(1, 10), st.integers(1, 4)),
        elements=st.floats(0, 1, allow_nan=False),
    )
)
def test_monotonize_identity_on_monotone_input(method, p):
    sorted_p = np.sort(p, axis=0)
    q = monotonize(torch.from_numpy(sorted_p), dim=0, method=method).numpy()
    np.testing.assert_array_equal(q, sorted_p)


def test_flatten_is_more_local_than_minimax():
    # the thesis's Figure 2.5 behaviour: a sample that already fits next to a descent is kept
    p = torch.tensor([0.1, 0.5, 0.9, 0.3, 1.0])
    torch.testing.assert_close(
        monotonize(p, method="flatten"), torch.tensor([0.1, 0.5, 0.6, 0.6, 1.0])
    )
    torch.testing.assert_close(
        monotonize(p, method="minimax"), torch.tensor([0.1, 0.4, 0.6, 0.6, 1.0])
    )


@pytest.mark.parametrize("method", METHODS)
def test_monotonize_other_dim_and_dtype_device(method):
    x = torch.rand(4, 7, 5, dtype=torch.float64)
    q = monotonize(x, dim=1, method=method)
    assert q.dtype == torch.float64 and q.shape == x.shape
    assert bool((q.diff(dim=1) >= 0).all())
    torch.testing.assert_close(
        q, monotonize(x.transpose(0, 1), dim=0, method=method).transpose(0, 1)
    )
    # non-contiguous input
    nc = torch.rand(5, 6).t()
    assert not nc.is_contiguous()
    assert bool((monotonize(nc, dim=0, method=method).diff(dim=0) >= 0).all())


def test_monotonize_rejects_integers():
    with pytest.raises(TypeError, match="floating-point"):
        monotonize(torch.arange(5))


@settings(max_examples=100, deadline=None)
@given(
    p=arrays(
        np.float32,
        st.tuples(st.integers(1, 16), st.integers(1, 6), st.integers(1, 6)),
        elements=st.floats(-1.5, 2.5, allow_nan=False, width=32),
    ),
    weighted=st.booleans(),
    data=st.data(),
)
def test_project_satisfies_all_axioms(p, weighted, data):
    path = torch.from_numpy(p)
    weights = None
    if weighted:  # drawn by hypothesis (replayable), not torch.rand
        w = data.draw(arrays(np.float32, p.shape[1:], elements=st.floats(0.0625, 1.0, width=32)))
        weights = torch.from_numpy(w)
    q = project(path, weights)
    assert check_axioms(q, weights, atol=1e-5) == []


def test_project_random_and_adversarial_inputs():
    torch.manual_seed(0)
    cases = [
        torch.rand(16, 32, 32),
        -torch.rand(16, 32, 32),  # everything below 0
        1 + torch.rand(16, 32, 32),  # everything above 1
        torch.linspace(1, 0, 16).view(-1, 1, 1).expand(16, 8, 8).clone(),  # decreasing
        torch.zeros(16, 8, 8),
        torch.ones(16, 8, 8),
        torch.rand(1, 5, 5),
        torch.rand(16, 1, 1),  # a single pixel: masses fix the path completely
    ]
    for c in cases:
        q = project(c)
        assert check_axioms(q) == [], c.shape
    one_px = project(torch.rand(16, 1, 1))
    torch.testing.assert_close(one_px.flatten(), path_times(16))


def test_project_rejects_nan():
    bad = torch.rand(4, 3, 3)
    bad[1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        project(bad)


def test_affine_path_is_a_valid_path_and_fixed_point():
    a = affine_path(14, (9, 7))
    assert check_axioms(a) == []
    torch.testing.assert_close(project(a), a)
    assert saturation(a) == pytest.approx(float((2 * (path_times(14) - 0.5).abs()).mean()))


def test_constant_speed_reproduces_masks_with_matching_mass():
    torch.manual_seed(1)
    t = path_times(5)
    # a monotone path whose 2nd and 4th samples already have exactly the target masses
    masks = torch.zeros(5, 4, 4)
    base = torch.rand(4, 4)
    for k in range(5):
        m = (base + k * 0.3).clamp(0, 1)
        masks[k] = m
    masks = monotonize(masks)
    # construct exact-mass slices: uniform masks with mass t[1] and t[3]
    masks[1] = torch.full((4, 4), float(t[1]))
    masks[3] = torch.full((4, 4), float(t[3]))
    masks = monotonize(masks).clamp(0, 1)
    masses = path_masses(masks)
    out = reparametrize_constant_speed(masks)
    for k in range(5):
        if float(masses[k]) == float(t[k]):
            torch.testing.assert_close(out[k], masks[k], rtol=0, atol=0)
    assert check_axioms(out) == []


def test_constant_speed_interpolates_between_bracketing_masks():
    # masses 0.1 and 0.7 bracket t=1/3; result lies on the segment between them
    a = torch.full((2, 2), 0.1)
    b = torch.full((2, 2), 0.7)
    b[0, 0] = 0.7
    path = torch.stack([a, b])
    out = reparametrize_constant_speed(path)
    assert check_axioms(out) == []
    eta = (1 / 3 - 0.1) / (0.7 - 0.1)
    torch.testing.assert_close(out[0], a * (1 - eta) + b * eta)


def test_saturation_level():
    assert saturation(torch.zeros(3, 4, 4)) == pytest.approx(1.0)
    assert saturation(torch.full((3, 4, 4), 0.5)) == pytest.approx(0.0)


def test_check_axioms_tolerances():
    good = affine_path(2, (1, 2))
    assert check_axioms(good) == []
    # a descent of 1e-3 between two samples is a violation at the default tolerance
    bad = good.clone()
    bad[0, 0, 0] = bad[1, 0, 0] + 1e-3
    assert any("monotone" in p for p in check_axioms(bad))
    # a descent of exactly atol is allowed (binary fractions: exact)
    edge = torch.tensor([[[0.5, 0.25]], [[0.25, 0.75]]])
    assert not any("monotone" in p for p in check_axioms(edge, atol=0.25))
    assert any("monotone" in p for p in check_axioms(edge, atol=0.125))


path_arrays = arrays(
    np.float64,
    st.tuples(st.integers(1, 9), st.integers(1, 6)),
    elements=st.floats(-1, 2, allow_nan=False, width=64),
)


def interp_reference(path: np.ndarray, n_steps: int) -> np.ndarray:
    """``np.interp`` per feature over the samples with their ends ``phi(0) = 0, phi(1) = 1``."""
    t_count = path.shape[0]
    times = np.arange(t_count + 2) / (t_count + 1)
    full = np.concatenate([np.zeros((1, path.shape[1])), path, np.ones((1, path.shape[1]))])
    new_t = np.arange(1, n_steps + 1) / (n_steps + 1)
    return np.stack([np.interp(new_t, times, full[:, j]) for j in range(path.shape[1])], axis=1)


@settings(max_examples=100, deadline=None)
@given(raw=path_arrays, n_steps=st.integers(1, 20))
def test_resample_path_is_linear_interpolation_and_keeps_the_axioms(raw, n_steps):
    path = project(torch.from_numpy(raw))
    out = resample_path(path, n_steps)
    assert out.shape == (n_steps, raw.shape[1])
    np.testing.assert_allclose(out.numpy(), interp_reference(path.numpy(), n_steps), atol=1e-12)
    assert check_axioms(out, atol=1e-9) == []


@settings(max_examples=50, deadline=None)
@given(raw=path_arrays)
def test_resample_path_refines_through_the_old_samples(raw):
    path = project(torch.from_numpy(raw))
    t_count = path.shape[0]
    fine = resample_path(path, 2 * t_count + 1)  # t'_(2k) = k / (T + 1)
    np.testing.assert_allclose(fine[1::2].numpy(), path.numpy(), atol=1e-12)
    np.testing.assert_allclose(resample_path(path, t_count).numpy(), path.numpy())


def test_resample_path_rejects_no_samples():
    with pytest.raises(ValueError, match="at least one"):
        resample_path(affine_path(3, (2,)), 0)


def test_check_axioms_flags_values_outside_on_either_side_alone():
    below = affine_path(3, (4,), dtype=torch.float64).clone()
    below[0, 0] = -0.1  # only below 0
    assert any("outside [0, 1]" in p for p in check_axioms(below))
    above = affine_path(3, (4,), dtype=torch.float64).clone()
    above[-1, 0] = 1.2  # only above 1
    assert any("outside [0, 1]" in p for p in check_axioms(above))


def test_check_axioms_accepts_values_exactly_at_the_tolerance():
    path = affine_path(3, (4,), dtype=torch.float64).clone()
    path[-1, 0] = 1.25  # exactly 1 + atol (representable), and -atol below
    path[0, 1] = -0.25
    assert not any("outside" in p for p in check_axioms(path, atol=0.25))


def test_masses_and_reparametrisation_keep_the_path_dtype():
    g = torch.Generator().manual_seed(0)
    path32 = project(torch.rand(5, 3, 3, generator=g))
    w64 = torch.rand(3, 3, generator=g, dtype=torch.float64) + 0.1
    m = path_masses(path32, w64)  # float64 weights, float32 path
    expected = (path32.double().reshape(5, -1) @ (w64 / w64.sum()).reshape(-1)).float()
    assert m.dtype == torch.float32
    torch.testing.assert_close(m, expected)
    # monotone in [0, 1] but not at constant speed, so every slice is interpolated
    path64 = torch.sort(torch.rand(6, 4, generator=g, dtype=torch.float64), dim=0).values
    out = reparametrize_constant_speed(path64)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(path_masses(out).numpy(), np.arange(1, 7) / 7, rtol=0, atol=1e-12)


def test_paths_are_built_on_the_requested_device():
    # the meta device runs on any build and keeps device mistakes visible
    assert affine_path(3, (2, 2), device="meta").device.type == "meta"
    assert path_times(4, device="meta").device.type == "meta"


def test_clamp_path_clips_to_the_unit_interval_only():
    p = torch.tensor([[-0.5, 0.25, 1.5], [0.0, 0.75, 1.0]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 0.25, 1.0], [0.0, 0.75, 1.0]], dtype=torch.float64)
    assert torch.equal(clamp_path(p), expected)


def test_project_uses_the_requested_monotonisation():
    # column 0: flattening keeps the first sample (it fits below the flattened descent 0.9 ->
    # 0.3), minimax lowers it to 0.4; the other columns keep the masses apart
    p = torch.tensor(
        [[0.5, 0.1, 0.0], [0.9, 0.2, 0.0], [0.3, 0.3, 0.5], [0.6, 0.4, 1.0]], dtype=torch.float64
    )
    for method in METHODS:
        expected = reparametrize_constant_speed(clamp_path(monotonize(p, dim=0, method=method)))
        torch.testing.assert_close(project(p, monotonize_method=method), expected)
    assert not torch.equal(
        project(p, monotonize_method="flatten"), project(p, monotonize_method="minimax")
    )


def test_saturation_uses_the_mass_weights():
    path = torch.tensor([[[0.5, 1.0]], [[0.5, 1.0]]], dtype=torch.float64)  # [T=2, 1, 2]
    weights = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    # 2 |phi - 1/2| is 0 on the first feature and 1 on the second; weighted mean 1/4
    assert saturation(path, weights) == pytest.approx(0.25, abs=1e-15)
    assert saturation(path) == pytest.approx(0.5, abs=1e-15)


def test_projection_helpers_stay_on_the_meta_device():
    p = torch.empty(5, 3, device="meta")
    assert resample_path(p, 7).device.type == "meta"
