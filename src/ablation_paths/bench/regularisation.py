"""Choosing the regularisation blur from path scores alone (thesis 2.8.3).

The thesis's diagnostic: an optimised retaining/dissipating path should score somewhere inside
``(0, 1)``, because the evidence has finite size and removing it must eventually cost the class.
Scores pinned near the maximum reveal under-regularised, adversarial masks. So the automatic
choice is *the smallest blur whose path scores are not pinned* -- no ground truth needed -- and
one should not go much stronger, since stronger blur only loses precision (2.8.3, Fig. 2.10).

* :func:`is_pinned` -- the pinned test for one score.
* :func:`select_auto` -- the choice over a sweep, from path scores alone (pure function).
* :func:`explain_auto` -- per-image version: try candidate blurs from weak to strong and return
  the first path that is not pinned (what ``regularization="auto"`` in the engine should do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ablation_paths.optimizer import AUTO_REGULARIZATION
from ablation_paths.scores import max_score

__all__ = [
    "DEFAULT_CANDIDATES",
    "explain_auto",
    "is_pinned",
    "pinned_fraction",
    "select_auto",
]

#: Candidate blurs as a fraction of the image side: the engine's list for
#: ``regularization="auto"`` (one source of truth).
DEFAULT_CANDIDATES: tuple[float, ...] = AUTO_REGULARIZATION


def is_pinned(path_score: float, score: str = "dissipate", margin: float = 0.02) -> bool:
    """``True`` when ``path_score`` is within ``margin`` of its maximum (thesis 2.8.3)."""
    return path_score > max_score(score) - margin


def pinned_fraction(
    scores: Sequence[float], score: str = "dissipate", margin: float = 0.02
) -> float:
    """Fraction of ``scores`` that are pinned; ``nan``-free input expected, ``0`` when empty."""
    if not scores:
        return 0.0
    return sum(is_pinned(s, score, margin) for s in scores) / len(scores)


def select_auto(
    scores_by_blur: Mapping[float, Sequence[float]],
    *,
    score: str = "dissipate",
    margin: float = 0.02,
    max_pinned: float = 0.1,
) -> float:
    """The smallest blur whose path scores are not pinned near the maximum.

    Args:
        scores_by_blur: ``{blur: [path score of each image]}`` from a sweep (one image is
            fine: a list of one score).
        score: the score function the paths were optimised for (sets the maximum).
        margin: a score above ``maximum - margin`` counts as pinned.
        max_pinned: the largest tolerated fraction of pinned paths.

    Returns:
        The smallest qualifying blur; if none qualifies, the largest blur tried (the least
        adversarial available), so the caller always gets a value.
    """
    if not scores_by_blur:
        raise ValueError("no blur values given")
    for blur in sorted(scores_by_blur):
        if pinned_fraction(list(scores_by_blur[blur]), score, margin) <= max_pinned:
            return float(blur)
    return float(max(scores_by_blur))


def explain_auto(
    model: nn.Module,
    image: Tensor,
    target: int | None = None,
    *,
    score: str = "dissipate",
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    margin: float = 0.02,
    **options: Any,
) -> Any:
    """Ablation path with the regularisation chosen per image: the first of ``candidates``
    (weak to strong) whose path is not pinned; the strongest if all are.

    Returns the :class:`~ablation_paths.AblationPathResult` with
    ``info["regularization_auto"] = {"chosen": blur, "tried": {blur: path_score}}``.
    """
    from ablation_paths import explain

    if not candidates:
        raise ValueError("no candidate blurs")
    tried: dict[float, float] = {}
    result = None
    for blur in sorted(candidates):
        result = explain(model, image, target, score=score, regularization=blur, **options)
        tried[float(blur)] = float(result.path_score)
        if not is_pinned(result.path_score, score, margin):
            break
    assert result is not None
    result.info["regularization_auto"] = {"chosen": max(tried), "tried": tried}
    return result
