"""Choosing the regularisation blur from path scores alone (thesis 2.8.3).

The thesis's diagnostic: an optimised retaining/dissipating path should score somewhere inside
``(0, 1)``, because the evidence has finite size and removing it must eventually cost the class.
Scores pinned near the maximum reveal under-regularised, adversarial masks. So the automatic
choice is *the smallest blur whose path scores are not pinned* -- no ground truth needed -- and
one should not go much stronger, since stronger blur only loses precision (2.8.3, Fig. 2.10).

* :func:`is_pinned` -- the pinned test on a score alone (for sweeps; a result's own test,
  :attr:`~ablation_paths.AblationPathResult.pinned`, also sees the probabilities at its ends).
* :func:`select_auto` -- the choice over a sweep, from path scores alone (pure function).
* :func:`explain_auto` -- per-image version: the engine's ``regularization="auto"`` (try
  candidate blurs from weak to strong, return the first path that is not pinned) with a
  configurable candidate list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ablation_paths.optimizer import AUTO_REGULARIZATION, AblationPathConfig
from ablation_paths.options import check_known
from ablation_paths.pipeline import ExplainRequest, run
from ablation_paths.result import AblationPathResult
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


#: A path score within this distance of :func:`~ablation_paths.scores.max_score` is pinned.
PINNED_MARGIN = 0.02


def is_pinned(path_score: float, score: str = "dissipate", margin: float = PINNED_MARGIN) -> bool:
    """``True`` when ``path_score`` is within ``margin`` of its maximum (thesis 2.8.3)."""
    return path_score > max_score(score) - margin


def pinned_fraction(
    scores: Sequence[float], score: str = "dissipate", margin: float = PINNED_MARGIN
) -> float:
    """Fraction of ``scores`` that are pinned; ``nan``-free input expected, ``0`` when empty."""
    if not scores:
        return 0.0
    return sum(is_pinned(s, score, margin) for s in scores) / len(scores)


def select_auto(
    scores_by_blur: Mapping[float, Sequence[float]],
    *,
    score: str = "dissipate",
    margin: float = PINNED_MARGIN,
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
    **options: Any,
) -> AblationPathResult:
    """Ablation path with the regularisation chosen per image: ``regularization="auto"`` of
    the engine (:func:`ablation_paths.pipeline.auto_regularize`) with other ``candidates``
    (tried weak to strong).

    ``options``: :class:`~ablation_paths.AblationPathConfig` fields and
    :class:`~ablation_paths.pipeline.ExplainRequest` fields (``baseline``, ``transform``, ...).
    Returns the result with ``info["regularization_auto"] = {"chosen": blur, "tried":
    {blur: path_score}, "all_pinned": bool}``.
    """
    config_keys = {f.name for f in dataclasses.fields(AblationPathConfig)}
    request_keys = {f.name for f in dataclasses.fields(ExplainRequest)}
    request_keys -= {"config", "score", "auto_candidates"}
    check_known(options, config_keys | request_keys, "option")
    config = AblationPathConfig().replace(
        regularization="auto", **{k: v for k, v in options.items() if k in config_keys}
    )
    request = ExplainRequest(
        score=score,
        config=config,
        auto_candidates=tuple(sorted(candidates)),
        **{k: v for k, v in options.items() if k in request_keys},
    )
    return run(model, image, target, request)
