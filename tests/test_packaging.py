"""Packaging facts: the version on both commands, one version number, lower bounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

import ablation_paths

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("module", "prog"), [("ablation_paths.cli", "ablation-paths"), ("spiral_cnn.cli", "spiral-cnn")]
)
def test_version_option(module: str, prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {ablation_paths.__version__}"


def test_one_version_number() -> None:
    """pyproject takes the version from the package (no second copy to forget)."""
    meta = _pyproject()
    assert "version" in meta["project"]["dynamic"]
    attr = meta["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "ablation_paths.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", ablation_paths.__version__)


def test_build_lower_bounds() -> None:
    """The SPDX license string needs setuptools >= 77, Image.Resampling Pillow >= 9.1 (both
    checked by building and installing with exactly these versions; see docs)."""
    meta = _pyproject()
    assert "setuptools>=77" in meta["build-system"]["requires"]
    assert isinstance(meta["project"]["license"], str)
    assert "pillow>=9.1" in meta["project"]["dependencies"]


def test_playwright_only_in_dev() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    with_playwright = [k for k, deps in extras.items() if any("playwright" in d for d in deps)]
    assert with_playwright == ["dev"]
    assert "ray" not in " ".join(extras["bench"])


def test_library_code_does_not_print() -> None:
    """Only the command-line modules write to the terminal; the library logs or warns."""
    import ast

    offenders = []
    for path in sorted((REPO / "src").rglob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} print()")
                elif isinstance(func, ast.Attribute) and ast.unparse(func) in (
                    "sys.stdout.write",
                    "sys.stderr.write",
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(func)}")
    assert offenders == []


_MARKUP = re.compile(
    r"<!doctype|<html|<head|<body|<style|<script|<svg|<table|<section|<figure"
    r"|function\s*\(|=>\s*\{"
    r"|[\w.#:\]\[=-]+\s*\{[^{}]*:[^{}]*;?[^{}]*\}",  # a CSS rule: selector{prop:value}
    re.IGNORECASE,
)


def _docstrings(tree: object) -> set[int]:
    import ast

    ids = set()
    for node in ast.walk(tree):  # type: ignore[arg-type]
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_page_text_in_python() -> None:
    """HTML, CSS and JavaScript live in template files (``ablation_paths/templates``), never
    in a Python string of more than a few lines (docstrings aside)."""
    import ast

    offenders = []
    for path in sorted((REPO / "src").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                text = node.value
            else:
                continue
            lines = max(text.count("\n") + 1, (node.end_lineno or node.lineno) - node.lineno + 1)
            if lines > 3 and _MARKUP.search(text):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert sorted(set(offenders)) == []
