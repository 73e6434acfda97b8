"""Score functions of ablation paths (thesis 2.3).

Every score is a sum of *terms*. A term evaluates the classifier along one path (or along its
complement ``1 - phi``) and contributes the time-mean of the target probability with sign ``+1``
(retaining, eq. 2.13) or ``1 -`` that mean (dissipating, eq. 2.14):

==============  ====================================================  =======
score           definition                                            paths
==============  ====================================================  =======
``retain``      ``P_up(phi) = mean_t F_l(x(phi(t)))``                  1
``dissipate``   ``P_down(phi) = 1 - mean_t F_l(x(phi(t)))``            1
``contrastive`` ``P_up(phi) + P_down(1 - phi)`` (eq. 2.15)             1
``straddle``    ``P_up(phi_up) + P_down(phi_down)`` (eq. 2.16)         2
==============  ====================================================  =======

The straddling pair is coupled only through the pinching step of the optimiser (eq. 2.27-2.29).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SCORES",
    "ScoreTerm",
    "score_terms",
    "n_paths",
    "max_score",
    "score_value",
    "orientation",
]


@dataclass(frozen=True)
class ScoreTerm:
    """One term of a score: which path, whether its complement ``1 - phi``, and the sign."""

    path_index: int
    complement: bool
    sign: float  # +1: retaining (maximise F_l), -1: dissipating (minimise F_l)


_TERMS: dict[str, tuple[ScoreTerm, ...]] = {
    "retain": (ScoreTerm(0, False, 1.0),),
    "dissipate": (ScoreTerm(0, False, -1.0),),
    "contrastive": (ScoreTerm(0, False, 1.0), ScoreTerm(0, True, -1.0)),
    "straddle": (ScoreTerm(0, False, 1.0), ScoreTerm(1, False, -1.0)),
}

#: The score names, in the order of the table above: the one list (CLI choices, bench methods).
SCORES: tuple[str, ...] = tuple(_TERMS)


def _check(score: str) -> str:
    if score not in _TERMS:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    return score


def score_terms(score: str) -> tuple[ScoreTerm, ...]:
    """The terms of a score function."""
    return _TERMS[_check(score)]


def n_paths(score: str) -> int:
    """Number of paths optimised together (2 for the boundary-straddling pair, else 1)."""
    return 1 + max(t.path_index for t in score_terms(score))


def max_score(score: str) -> float:
    """The largest value a score can take: one per term (each term lies in ``[0, 1]``)."""
    return float(len(score_terms(score)))


def orientation(score: str) -> str:
    """How the (first) path of a score is read: ``"retain"`` keeps salient features longest,
    ``"dissipate"`` removes them first."""
    return "dissipate" if _check(score) == "dissipate" else "retain"


def score_value(score: str, target_probs: list[Tensor]) -> float:
    """Path score from the target probabilities of each term along the path.

    Args:
        score: score name.
        target_probs: one tensor ``[T]`` (or ``[T + 2]`` with the ends) per term, in the order
            of :func:`score_terms`; the time integral is their mean.
    """
    terms = score_terms(score)
    if len(target_probs) != len(terms):
        raise ValueError(f"score {score!r} has {len(terms)} terms, got {len(target_probs)}")
    total = 0.0
    for term, probs in zip(terms, target_probs, strict=True):
        mean = float(torch.as_tensor(probs).double().mean())
        total += mean if term.sign > 0 else 1.0 - mean
    return total
