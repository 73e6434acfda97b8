"""Checking option names given by users: one error type, naming the unknown option and the
closest known one (a typo like ``n_step=3`` suggests ``n_steps``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UnknownOptionError", "check_known"]


class UnknownOptionError(TypeError, ValueError):
    """An option name that the function does not know.

    A :class:`TypeError` like any unexpected keyword argument in Python, and a
    :class:`ValueError` as the Quantus convention for bad explanation arguments expects, so
    either ``except`` clause catches it.
    """


def check_known(given: Iterable[str], allowed: Iterable[str], what: str = "option") -> None:
    """Raise :class:`UnknownOptionError` when ``given`` holds a name not in ``allowed``.

    The message names every unknown name, the closest allowed name for each (by
    :func:`difflib.get_close_matches`) and the full allowed list.
    """
    known = sorted(set(allowed))
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise UnknownOptionError(
        f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
        f"known: {', '.join(known) if known else 'none'}"
    )
