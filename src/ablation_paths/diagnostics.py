"""Warnings about results a user should not trust, and about inputs that make options moot.

Every warning of the library is an instance of :class:`AblationPathWarning`, so users can filter
them all at once (``warnings.simplefilter("ignore", ablation_paths.AblationPathWarning)``) or by
kind. :func:`result_warnings` is the one list of checks on a finished result: the library emits
it, and the CLI and the HTML report show the same messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ablation_paths.result import AblationPathResult

__all__ = [
    "AblationPathWarning",
    "UnreliableResultWarning",
    "InputWarning",
    "IgnoredOptionWarning",
    "result_warnings",
    "emit",
]

#: A target probability below this on the image makes its explanation meaningless.
LOW_TARGET_PROBABILITY = 0.01


class AblationPathWarning(UserWarning):
    """Base class of every warning issued by ablation-paths."""


class UnreliableResultWarning(AblationPathWarning):
    """The result exists but should not be trusted as an explanation (unsaturated, pinned,
    explaining an improbable class, ...)."""


class InputWarning(AblationPathWarning):
    """An input was converted or looks wrong (e.g. a model that returns probabilities)."""


class IgnoredOptionWarning(AblationPathWarning):
    """An option has no effect for these inputs (e.g. ``image_size`` with a tensor)."""


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
        out.append(
            (
                UnreliableResultWarning,
                f"the path score {result.path_score:.3f} is pinned near its maximum: the masks "
                "may be adversarial; use a stronger regularisation (thesis 2.8.3)",
            )
        )
    return out


def emit(items: Iterable[tuple[type[AblationPathWarning], str]], stacklevel: int = 3) -> None:
    """Issue each ``(category, message)`` with :func:`warnings.warn`."""
    for category, message in items:
        warnings.warn(message, category, stacklevel=stacklevel)
