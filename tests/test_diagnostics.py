"""Diagnostics: the pinned test (thesis 2.8.3) with bounds worked out by hand, and the
result warnings on hand-built results."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from ablation_paths.diagnostics import (
    PINNED_MARGIN,
    AblationPathWarning,
    UnreliableResultWarning,
    emit,
    is_pinned,
    result_warnings,
    score_bounds,
)
from ablation_paths.result import AblationPathResult


@pytest.mark.parametrize(
    ("score", "with_ends", "achievable", "faithful"),
    [
        # p_image = 0.9, p_baseline = 0.2, T = 4
        ("retain", False, 1.0, 0.9),
        ("retain", True, (0.9 + 4 + 0.2) / 6, (0.9 + 4 * 0.9 + 0.2) / 6),
        ("dissipate", False, 1.0, 0.8),
        ("dissipate", True, 1 - (0.9 + 0.2) / 6, 1 - (0.9 + 4 * 0.2 + 0.2) / 6),
        ("contrastive", False, 2.0, 0.9 + 0.8),
        (
            "contrastive",
            True,
            (0.9 + 4 + 0.2) / 6 + 1 - (0.2 + 0.9) / 6,
            (0.9 + 4 * 0.9 + 0.2) / 6 + 1 - (0.2 + 4 * 0.2 + 0.9) / 6,
        ),
        ("straddle", False, 2.0, 0.9 + 0.8),
    ],
)
def test_score_bounds_by_hand(score, with_ends, achievable, faithful):
    b = score_bounds(score, 0.9, 0.2, n_steps=4, with_ends=with_ends)
    assert b.achievable == pytest.approx(achievable)
    assert b.faithful == pytest.approx(faithful)


def test_faithful_bound_uses_the_better_end():
    # a baseline more probable than the image (e.g. an explanation of a class the image lacks)
    assert score_bounds("retain", 0.2, 0.7, n_steps=3).faithful == pytest.approx(0.7)
    assert score_bounds("dissipate", 0.2, 0.7, n_steps=3).faithful == pytest.approx(0.8)


def test_pinned_needs_both_conditions():
    # achievable 1, faithful 0.95: a score near 1 is above what a faithful path reaches
    assert is_pinned(0.99, "retain", 0.95, 0.2, n_steps=16)
    assert not is_pinned(0.975, "retain", 0.95, 0.2, n_steps=16)  # not near the maximum
    # a confident image: a score of 0.999 is what keeping a small object whole gives
    assert not is_pinned(0.999, "retain", 0.99, 0.2, n_steps=16)
    # dissipating: the probability driven below the baseline's, down to 0
    assert is_pinned(0.995, "dissipate", 0.99, 0.2, n_steps=16)
    assert not is_pinned(0.995, "dissipate", 0.99, 0.001, n_steps=16)
    # straddle near its maximum of 2
    assert is_pinned(1.99, "straddle", 0.6, 0.3, n_steps=16)
    assert not is_pinned(1.5, "straddle", 0.6, 0.3, n_steps=16)


def test_decidable_when_there_is_room_between_the_bounds():
    assert score_bounds("retain", 0.9, 0.2, n_steps=16).decidable()
    assert not score_bounds("retain", 0.99, 0.2, n_steps=16).decidable()
    assert score_bounds("retain", 0.99, 0.2, n_steps=16).decidable(margin=0.004)
    # exactly 2 * margin apart: not decidable (binary fractions, exact)
    assert not score_bounds("retain", 0.5, 0.25, n_steps=2).decidable(margin=0.25)
    assert score_bounds("retain", 0.25, 0.25, n_steps=2).decidable(margin=0.25)


def test_pinned_boundaries_are_inclusive_and_exclusive():
    # binary fractions: exact arithmetic. retain with p = (0.25, 0.25): achievable 1,
    # faithful 0.25; margin 0.25: pinned from 0.75 on (inclusive)
    assert is_pinned(0.75, "retain", 0.25, 0.25, n_steps=2, margin=0.25)
    assert not is_pinned(0.7499, "retain", 0.25, 0.25, n_steps=2, margin=0.25)
    # faithful 0.5: must exceed 0.75 strictly
    assert not is_pinned(0.75, "retain", 0.5, 0.25, n_steps=2, margin=0.25)
    assert is_pinned(0.875, "retain", 0.5, 0.25, n_steps=2, margin=0.25)
    assert PINNED_MARGIN == 0.02


def test_with_ends_lowers_the_reachable_maximum():
    # with the ends scored, no path reaches 1: the fixed "1 - 0.02" margin never fired
    b = score_bounds("retain", 0.5, 0.1, n_steps=4, with_ends=True)
    assert b.achievable == pytest.approx((0.5 + 4 + 0.1) / 6)
    assert is_pinned(0.76, "retain", 0.5, 0.1, n_steps=4, with_ends=True)
    assert not is_pinned(0.76, "retain", 0.5, 0.1, n_steps=4, with_ends=False)
    # more samples: the ends weigh less
    assert score_bounds("retain", 0.5, 0.1, n_steps=14, with_ends=True).achievable == (
        pytest.approx((0.6 + 14) / 16)
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        score_bounds("retain", 0.5, 0.5, n_steps=0)
    with pytest.raises(ValueError, match="p_image"):
        score_bounds("retain", 1.5, 0.5, n_steps=2)
    with pytest.raises(ValueError, match="p_baseline"):
        score_bounds("retain", 0.5, -0.1, n_steps=2)
    with pytest.raises(ValueError, match="margin"):
        is_pinned(0.5, "retain", 0.5, 0.5, n_steps=2, margin=-1)
    with pytest.raises(ValueError, match="unknown score"):
        score_bounds("insertion", 0.5, 0.5, n_steps=2)


# ---------------------------------------------------------------- results


def make_result(
    p_target=(0.9, 0.95, 0.95, 0.2),
    *,
    path_score=0.9,
    score="retain",
    converged=True,
    other=None,
    info=None,
) -> AblationPathResult:
    """A result with T = 2 and two classes; ``other`` overrides class 1's probabilities."""
    pt = torch.tensor(p_target)
    po = 1 - pt if other is None else torch.tensor(other)
    probs = torch.stack([pt, po], dim=1)
    return AblationPathResult(
        path=torch.tensor([[[0.3]], [[0.6]]]),
        times=torch.tensor([1 / 3, 2 / 3]),
        target=0,
        score=score,
        probs=probs,
        path_score=path_score,
        saturation=0.9 if converged else 0.3,
        iterations=7,
        converged=converged,
        stopped="saturated" if converged else "max_iterations",
        heatmaps={},
        image=torch.zeros(3, 1, 1),
        baseline_image=torch.ones(3, 1, 1),
        target_name="cat",
        info=info or {},
    )


def test_result_pinned_reads_the_ends_and_settings():
    r = make_result(path_score=0.99)
    assert r.pinned and r.score_bounds.faithful == pytest.approx(0.9)
    assert not make_result(path_score=0.95).pinned
    assert not make_result((0.995, 1.0, 1.0, 0.2), path_score=0.999).pinned
    # score_with_ends in the settings: the maximum is (0.9 + 2 + 0.2) / 4 = 0.775
    ends = make_result(path_score=0.77, info={"config": {"score_with_ends": True}})
    assert ends.score_bounds.achievable == pytest.approx(0.775)
    assert ends.pinned and not make_result(path_score=0.77).pinned


def test_clean_result_has_no_warnings():
    assert result_warnings(make_result()) == []


def test_each_warning():
    low = result_warnings(make_result((0.005, 0.01, 0.01, 0.001)))
    assert len(low) == 1 and "probability 0.005" in low[0][1] and "'cat'" in low[0][1]
    not_first = result_warnings(make_result((0.3, 0.3, 0.3, 0.1), path_score=0.3))
    assert len(not_first) == 1 and "not the predicted class (1)" in not_first[0][1]
    unsat = result_warnings(make_result(converged=False))
    assert len(unsat) == 1 and "did not saturate (saturation 0.30 after 7" in unsat[0][1]
    pinned = result_warnings(make_result(path_score=0.99))
    assert len(pinned) == 1 and "pinned near its maximum 1.000" in pinned[0][1]
    assert "0.900" in pinned[0][1]
    for items in (low, not_first, unsat, pinned):
        assert items[0][0] is UnreliableResultWarning


def test_emit_issues_filterable_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emit(result_warnings(make_result(converged=False, path_score=0.99)))
    assert [w.category for w in caught] == [UnreliableResultWarning] * 2
    expected = [m for _, m in result_warnings(make_result(converged=False, path_score=0.99))]
    assert [str(w.message) for w in caught] == expected
    assert all(issubclass(w.category, AblationPathWarning) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", AblationPathWarning)
        emit(result_warnings(make_result(converged=False)))


def test_edges_of_the_arguments():
    assert score_bounds("retain", 0.0, 1.0, n_steps=1) == score_bounds(
        "retain", 1.0, 0.0, n_steps=1
    )
    assert not is_pinned(0.5, "retain", 0.5, 0.5, n_steps=1, margin=0.0)
    with pytest.raises(ValueError, match="^p_image must"):
        score_bounds("retain", -0.5, 0.5, n_steps=2)
    with pytest.raises(ValueError, match="^p_baseline must"):
        score_bounds("retain", 0.5, 1.5, n_steps=2)


def test_predicted_class_is_read_on_the_image():
    # the image predicts class 1, the first interior sample class 0
    r = make_result((0.3, 0.9, 0.9, 0.1), other=(0.7, 0.1, 0.1, 0.9), path_score=0.9)
    r.target_name = None
    (item,) = result_warnings(r)
    assert item[1] == "the target class '0' is not the predicted class (1)"


def test_low_probability_threshold_is_exclusive():
    at = make_result(path_score=0.01)
    at.probs = torch.tensor([[0.01, 0.99]] * 4, dtype=torch.float64)  # exactly the threshold
    assert ["not the predicted class" in m for _, m in result_warnings(at)] == [True]


def test_messages_in_full():
    (low,) = result_warnings(make_result((0.005, 0.01, 0.01, 0.001), path_score=0.01))
    assert low[1] == (
        "the target class 'cat' has probability 0.005 on the image: the path explains a class "
        "the model does not see there"
    )
    (pinned,) = result_warnings(make_result(path_score=0.99))
    assert pinned[1] == (
        "the path score 0.990 is pinned near its maximum 1.000, above the 0.900 that keeping or "
        "removing the evidence of the image and baseline reaches: the masks may be "
        "adversarial; use a stronger regularisation (thesis 2.8.3)"
    )


def _warn_from_library_code():
    emit([(UnreliableResultWarning, "look here")])  # stacklevel 3: the caller of this function


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ, reason="mutmut's trampolines add stack frames"
)
def test_emit_points_at_the_callers_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_from_library_code()
    (w,) = caught
    assert str(w.message) == "look here" and w.filename == __file__
