"""Heatmap reductions (thesis 2.7.2) and the boundary window (eq. 2.37) on hand-built paths and
probability curves whose maps are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ablation_paths.reductions import (
    REDUCTIONS,
    average,
    boundary_window,
    class_transition,
    class_transition_index,
    contrastive_average,
    influence,
    natural_reduction,
)

# A path of T = 3 interior samples over a 1 x 3 mask: pixel 0 is removed first (at t_1),
# pixel 1 at t_2, pixel 2 is kept to the end (removed only at t = 1).
PATH = torch.tensor(
    [
        [[1.0, 0.0, 0.0]],
        [[1.0, 1.0, 0.0]],
        [[1.0, 1.0, 0.5]],
    ]
)


def test_average_orientations():
    mean = torch.tensor([[1.0, 2 / 3, 1 / 6]])
    torch.testing.assert_close(average(PATH, "dissipate"), mean)
    torch.testing.assert_close(average(PATH, "retain"), 1 - mean)
    with pytest.raises(ValueError, match="orientation"):
        average(PATH, "sideways")


def test_class_transition_index_takes_the_last_dominated_sample():
    # target 1 ranks first at samples 0, 1 and 3 (not 2): the transition is the last, 3
    probs = torch.tensor(
        [[0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.8, 0.1, 0.1]]
    )
    assert class_transition_index(probs, 1) == 3
    # never first: the sample of highest target probability
    assert class_transition_index(probs, 2) == 0
    never = torch.tensor([[0.5, 0.2, 0.3], [0.5, 0.1, 0.4], [0.6, 0.3, 0.1]])
    assert class_transition_index(never, 1) == 2
    assert class_transition_index(never, 2) == 1


def test_class_transition_map():
    # target 0 dominates at samples 0 and 1, not 2: t_clt is sample 1
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    expected_retain = (1 - PATH[1]) + 1e-3 * average(PATH, "retain")
    torch.testing.assert_close(class_transition(PATH, probs, 0, "retain"), expected_retain)
    expected_dissipate = PATH[1] + 1e-3 * average(PATH, "dissipate")
    torch.testing.assert_close(class_transition(PATH, probs, 0, "dissipate"), expected_dissipate)
    # the tie between pixels 0 and 1 (both removed at t_clt) is broken by the average
    m = class_transition(PATH, probs, 0, "dissipate")
    assert float(m[0, 0]) > float(m[0, 1]) > float(m[0, 2])


def test_influence_worked_example():
    # T = 1, full path [0, phi, 1] on two pixels: A removed in the first interval, B in the
    # second; the probability drops by 0.8 then by 0.1, dt = 1/2:
    # influence(A) = -(1)(-0.8) / (1/2) = 1.6, influence(B) = -(1)(-0.1) / (1/2) = 0.2
    path = torch.tensor([[[1.0, 0.0]]])
    probs = torch.tensor([1.0, 0.2, 0.1])
    torch.testing.assert_close(influence(path, probs), torch.tensor([[1.6, 0.2]]))
    # removing B *raises* the probability: counter-evidence, negative influence
    rising = torch.tensor([1.0, 0.2, 0.5])
    torch.testing.assert_close(influence(path, rising), torch.tensor([[1.6, -0.6]]))
    with pytest.raises(ValueError, match="3 probabilities"):
        influence(path, probs[:2])


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(1, 6),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_influence_matches_the_riemann_sum(t: int, n: int, seed: int):
    """eq. 2.35 as an explicit loop over intervals (numpy reference)."""
    rng = np.random.default_rng(seed)
    path = np.sort(rng.random((t, n)), axis=0)
    probs = rng.random(t + 2)
    full = np.vstack([np.zeros(n), path, np.ones(n)])
    expected = np.zeros(n)
    for k in range(t + 1):
        dphi_dt = (full[k + 1] - full[k]) * (t + 1)
        dprob_dt = (probs[k + 1] - probs[k]) * (t + 1)
        expected -= dphi_dt * dprob_dt / (t + 1)
    got = influence(torch.from_numpy(path), torch.from_numpy(probs)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_contrastive_average():
    up = torch.tensor([[[0.0, 0.5]], [[0.5, 1.0]]])
    down = torch.tensor([[[1.0, 0.5]], [[1.0, 1.0]]])
    torch.testing.assert_close(contrastive_average(up, down), torch.tensor([[0.75, 0.0]]))


def test_boundary_window_exact_values():
    # one row: y = 1/2 (sin = 1); x = 1/6, 1/2, 5/6 (sin = 1/2, 1, 1/2); eq. 2.37 takes the sqrt
    w = boundary_window(1, 3, dtype=torch.float64)
    torch.testing.assert_close(
        w, torch.tensor([[math.sqrt(0.5), 1.0, math.sqrt(0.5)]], dtype=torch.float64)
    )


@pytest.mark.parametrize(("h", "w"), [(1, 1), (4, 7), (9, 2)])
def test_boundary_window_matches_numpy(h: int, w: int):
    y = (np.arange(h) + 0.5) / h
    x = (np.arange(w) + 0.5) / w
    ref = np.sqrt(np.outer(np.sin(np.pi * y), np.sin(np.pi * x)))
    np.testing.assert_allclose(boundary_window(h, w, dtype=torch.float64).numpy(), ref)
    assert boundary_window(h, w).dtype == torch.float32


def test_natural_reductions():
    assert REDUCTIONS == ("average", "class_transition", "influence", "contrastive")
    assert natural_reduction("straddle") == "contrastive"
    for score in ("retain", "dissipate", "contrastive"):
        assert natural_reduction(score) == "class_transition"


def test_defaults_are_the_retaining_orientation():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    torch.testing.assert_close(average(PATH), average(PATH, "retain"))
    torch.testing.assert_close(
        class_transition(PATH, probs, 0), class_transition(PATH, probs, 0, "retain")
    )


def test_a_single_dominated_sample_is_the_transition():
    # target 1 ranks first only at sample 1, though its probability is higher at sample 0
    probs = torch.tensor([[0.5, 0.45, 0.05], [0.3, 0.4, 0.3], [0.9, 0.05, 0.05]])
    assert class_transition_index(probs, 1) == 1


def test_influence_keeps_the_path_dtype():
    path = torch.tensor([[[1.0, 0.0]]])
    probs = torch.tensor([1.0, 0.2, 0.1], dtype=torch.float64)
    assert influence(path, probs).dtype == torch.float32


def test_boundary_window_in_double_precision():
    w = boundary_window(3, 5, dtype=torch.float64)
    y = (np.arange(3) + 0.5) / 3
    x = (np.arange(5) + 0.5) / 5
    ref = np.sqrt(np.outer(np.sin(np.pi * y), np.sin(np.pi * x)))
    assert w.dtype == torch.float64
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-14)


def test_boundary_window_is_built_on_the_requested_device() -> None:
    """``meta`` tensors carry device and shape only: both coordinate ramps must be made on the
    requested device, or mixing devices raises or lands on the CPU."""
    from ablation_paths.reductions import boundary_window

    meta = torch.device("meta")
    w = boundary_window(5, 7, dtype=torch.float64, device=meta)
    assert w.device == meta and w.shape == (5, 7) and w.dtype == torch.float64
