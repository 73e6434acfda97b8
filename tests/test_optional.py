"""Optional dependencies fail with an "install the X extra" message, not a bare traceback."""

from __future__ import annotations

import pytest

from ablation_paths._optional import EXTRAS, MissingOptionalDependency, install_hint, require


def test_present_module_is_returned() -> None:
    import json

    assert require("json", extra="bench") is json


def test_missing_module_names_the_extra() -> None:
    with pytest.raises(MissingOptionalDependency) as info:
        require("ablation_paths_no_such_module_xyz", extra="spiral-sim")
    message = str(info.value)
    assert "install the spiral-sim extra" in message
    assert "pip install 'ablation-paths[spiral-sim]'" in message
    assert "ablation_paths_no_such_module_xyz" in message
    assert isinstance(info.value, ImportError)  # callers catching ImportError still work
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_missing_submodule_names_the_missing_package() -> None:
    with pytest.raises(MissingOptionalDependency, match="'no_such_pkg_xyz' is not installed"):
        require("no_such_pkg_xyz.attr", extra="bench", purpose="Integrated Gradients")


def test_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown extra 'benchmark'"):
        require("json", extra="benchmark")


def test_extras_match_pyproject() -> None:
    """Every extra named in messages exists in pyproject.toml, and every extra is described."""
    from pathlib import Path

    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS) == set(declared)
    assert install_hint("ray") == "pip install 'ablation-paths[ray]'"
