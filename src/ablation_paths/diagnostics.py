"""Warnings about results a user should not trust, and about inputs that make options moot.

Every warning of the library is an instance of :class:`AblationPathWarning`, so users can filter
them all at once (``warnings.simplefilter("ignore", ablation_paths.AblationPathWarning)``) or by
kind. :func:`result_warnings` is the one list of checks on a finished result: the library emits
it, and the CLI and the HTML report show the same messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ablation_paths.scores import score_terms

if TYPE_CHECKING:
    from ablation_paths.result import AblationPathResult

__all__ = [
    "AblationPathWarning",
    "UnreliableResultWarning",
    "InputWarning",
    "IgnoredOptionWarning",
    "result_warnings",
    "emit",
    "ScoreBounds",
    "score_bounds",
    "is_pinned",
    "PINNED_MARGIN",
]

#: A target probability below this on the image makes its explanation meaningless.
LOW_TARGET_PROBABILITY = 0.01

#: Tolerance of the pinned test (thesis 2.8.3), in units of the path score.
PINNED_MARGIN = 0.02


class AblationPathWarning(UserWarning):
    """Base class of every warning issued by ablation-paths."""


class UnreliableResultWarning(AblationPathWarning):
    """The result exists but should not be trusted as an explanation (unsaturated, pinned,
    explaining an improbable class, ...)."""


class InputWarning(AblationPathWarning):
    """An input was converted or looks wrong (e.g. a model that returns probabilities)."""


class IgnoredOptionWarning(AblationPathWarning):
    """An option has no effect for these inputs (e.g. ``image_size`` with a tensor)."""


@dataclass(frozen=True)
class ScoreBounds:
    """What a path score can reach, given ``T`` and the target probabilities at the path's ends.

    Attributes:
        achievable: the largest score of *any* path (every interior sample classified with
            probability 1 by a retaining term, 0 by a dissipating term; the ends are fixed).
        faithful: the largest score of a path that only keeps or removes the evidence the ends
            show: every interior sample of a retaining term at most as probable as the more
            probable end, of a dissipating term at least as probable as the less probable end.
    """

    achievable: float
    faithful: float

    def decidable(self, margin: float = PINNED_MARGIN) -> bool:
        """Whether the pinned test can say anything: the faithful bound lies more than
        ``2 * margin`` below the achievable one. Where it does not (a classifier already about
        as confident on the image as a score can show), no score is pinned, and a caller that
        chooses a regularisation by the pinned test (``regularization="auto"``) has no evidence
        to go on either way."""
        return self.achievable - self.faithful > 2 * margin


def score_bounds(
    score: str,
    p_image: float,
    p_baseline: float,
    *,
    n_steps: int,
    with_ends: bool = False,
) -> ScoreBounds:
    """:class:`ScoreBounds` of ``score`` for a path of ``n_steps`` interior samples.

    Args:
        score: score name.
        p_image: target probability on the image (``t = 0`` of the path ``phi``).
        p_baseline: target probability on the baseline (``t = 1``). A complement term
            ``1 - phi`` runs from the baseline to the image; the bounds are symmetric in the
            two ends, so it has the same ones.
        n_steps: interior samples ``T`` of the path.
        with_ends: whether the score includes the ends (``score_with_ends``); then every term is
            a mean over ``T + 2`` samples of which two are fixed, and no path reaches 1.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    for name, p in (("p_image", p_image), ("p_baseline", p_baseline)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    achievable = faithful = 0.0
    start, end = p_image, p_baseline
    for term in score_terms(score):
        if term.sign > 0:
            best_any, best_faithful = 1.0, max(start, end)
        else:
            best_any, best_faithful = 0.0, min(start, end)
        if with_ends:
            mean_any = (start + n_steps * best_any + end) / (n_steps + 2)
            mean_faithful = (start + n_steps * best_faithful + end) / (n_steps + 2)
        else:
            mean_any, mean_faithful = best_any, best_faithful
        achievable += mean_any if term.sign > 0 else 1.0 - mean_any
        faithful += mean_faithful if term.sign > 0 else 1.0 - mean_faithful
    return ScoreBounds(achievable=achievable, faithful=faithful)


def is_pinned(
    path_score: float,
    score: str,
    p_image: float,
    p_baseline: float,
    *,
    n_steps: int,
    with_ends: bool = False,
    margin: float = PINNED_MARGIN,
) -> bool:
    """Whether a path score is *pinned* (thesis 2.8.3): a sign of adversarial masks.

    The thesis observes that under-regularised paths reach scores of almost exactly the
    maximum, which a faithful path cannot: once it ablates into the object the classification
    drops. That argument needs the object to be larger than what the last interior sample
    keeps (``1 / (T + 1)`` of the mass); a smaller object is kept whole at every sample, and its
    path legitimately scores as high as the classifier's confidence on the image. So a score is
    pinned only when it is both

    * within ``margin`` of what any path can reach for this ``T`` and these ends
      (:attr:`ScoreBounds.achievable`: 1 per term, less when the ends are scored), and
    * more than ``margin`` above what a faithful path reaches (:attr:`ScoreBounds.faithful`):
      the masked images are classified more confidently than either end of the path, which
      keeping or removing real evidence does not explain.

    When the classifier is already as confident on the image as the score can show (the
    faithful bound is within ``2 * margin`` of the achievable one) the test cannot tell
    adversarial from small objects and returns ``False``.

    Args:
        path_score: the final path score.
        score: score name.
        p_image / p_baseline: target probabilities at the path's ends.
        n_steps: interior samples ``T``.
        with_ends: whether the score includes the ends.
        margin: tolerance in score units.
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    bounds = score_bounds(score, p_image, p_baseline, n_steps=n_steps, with_ends=with_ends)
    return path_score >= bounds.achievable - margin and path_score > bounds.faithful + margin


def result_warnings(
    result: AblationPathResult,
) -> list[tuple[type[AblationPathWarning], str]]:
    """The checks on a finished result, as ``(category, message)`` pairs (empty = no concern)."""
    out: list[tuple[type[AblationPathWarning], str]] = []
    p_target = float(result.probs[0, result.target])
    predicted = int(result.probs[0].argmax())
    name = result.target_name or str(result.target)
    if p_target < LOW_TARGET_PROBABILITY:
        out.append(
            (
                UnreliableResultWarning,
                f"the target class {name!r} has probability {p_target:.2g} on the image: the path "
                "explains a class the model does not see there",
            )
        )
    elif predicted != result.target:
        out.append(
            (
                UnreliableResultWarning,
                f"the target class {name!r} is not the predicted class ({predicted})",
            )
        )
    if not result.converged:
        out.append(
            (
                UnreliableResultWarning,
                f"the path did not saturate (saturation {result.saturation:.2f} after "
                f"{result.iterations} iterations): do not trust it as an explanation",
            )
        )
    if result.pinned:
        bounds = result.score_bounds
        out.append(
            (
                UnreliableResultWarning,
                f"the path score {result.path_score:.3f} is pinned near its maximum "
                f"{bounds.achievable:.3f}, above the {bounds.faithful:.3f} that keeping or "
                "removing the evidence of the image and baseline reaches: the masks may be "
                "adversarial; use a stronger regularisation (thesis 2.8.3)",
            )
        )
    return out


def emit(items: Iterable[tuple[type[AblationPathWarning], str]], stacklevel: int = 3) -> None:
    """Issue each ``(category, message)`` with :func:`warnings.warn`."""
    for category, message in items:
        warnings.warn(message, category, stacklevel=stacklevel)
