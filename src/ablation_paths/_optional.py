"""Optional dependencies: import them with a clear "install the X extra" error.

The core (``explain``, the CLI, the report) needs only the packages in ``dependencies``. Some
parts need an extra (``pyproject.toml``, ``[project.optional-dependencies]``)::

    captum = require("captum", extra="bench")           # comparison methods
    attr = require("captum.attr", extra="bench")        # a submodule works the same way

A missing package raises :class:`MissingOptionalDependency` (an :class:`ImportError`, so code
that already catches ``ImportError`` keeps working) whose message says what to install, instead
of a bare ``ModuleNotFoundError`` traceback from deep inside the library.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingOptionalDependency", "require"]

#: The optional extras of the distribution and what each one enables.
EXTRAS: dict[str, str] = {
    "bench": "the comparison methods of the benchmark (captum)",
    "ray": "running the benchmark on a Ray cluster",
    "spiral": "reading and writing MRC particle stacks (mrcfile)",
    "spiral-sim": "simulating cryo-EM particle images (ASPIRE)",
    "steerable": "the steerable-CNN baseline of the spiral study (e2cnn)",
    "dev": "the test suite and linters",
}

_DISTRIBUTION = "ablation-paths"


class MissingOptionalDependency(ImportError):
    """An optional package is not installed; the message names the extra that provides it."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install '{_DISTRIBUTION}[{extra}]'"


def require(module: str, extra: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingOptionalDependency` naming ``extra``.

    Args:
        module: dotted module name (``"captum.attr"``).
        extra: the extra of ``pyproject.toml`` that installs it (a key of :data:`EXTRAS`).
        purpose: what the caller needs it for (default: the extra's description).

    Raises:
        ValueError: ``extra`` is not an extra of this distribution (a programming error).
        MissingOptionalDependency: the module (or a package it needs) is not installed.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        what = purpose or EXTRAS[extra]
        raise MissingOptionalDependency(
            f"{module!r} is needed for {what} but {missing!r} is not installed: "
            f"install the {extra} extra: {install_hint(extra)}"
        ) from exc
