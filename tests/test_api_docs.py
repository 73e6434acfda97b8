"""``make docs`` (scripts/api_docs.py): pdoc builds the reference and the build fails on a
module that cannot be imported, which pdoc alone only warns about."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "api_docs.py"


@pytest.fixture
def api_docs(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("api_docs_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pkg = tmp_path / "src" / "docpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        '"""A package."""\n__all__ = ["hello"]\n\n\ndef hello() -> str:\n'
        '    """Say hello."""\n    return "hello"\n'
    )
    (pkg / "fine.py").write_text(
        '"""Fine."""\n\n\ndef used() -> int:\n    """One."""\n    return 1\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(module, "PACKAGES", ("docpkg",))
    yield module, pkg
    for name in [m for m in sys.modules if m == "docpkg" or m.startswith("docpkg.")]:
        del sys.modules[name]


def test_builds_pages_for_the_package_and_its_submodules(api_docs, tmp_path) -> None:
    module, _ = api_docs
    out = tmp_path / "api"
    assert module.build(out) == []
    assert 'id="hello"' in (out / "docpkg.html").read_text()
    assert "One." in (out / "docpkg" / "fine.html").read_text()


def test_a_module_that_cannot_be_imported_fails_the_build(api_docs, tmp_path) -> None:
    module, pkg = api_docs
    (pkg / "broken.py").write_text("import a_package_that_is_not_installed\n")
    problems = module.build(tmp_path / "api")
    assert any("docpkg.broken" in p for p in problems), problems


def test_a_subpackage_that_cannot_be_imported_fails_the_build(api_docs, tmp_path) -> None:
    module, pkg = api_docs
    (pkg / "sub").mkdir()
    (pkg / "sub" / "__init__.py").write_text("raise ImportError('needs an extra')\n")
    problems = module.build(tmp_path / "api")
    assert any("docpkg.sub" in p and "needs an extra" in p for p in problems), problems


def test_a_name_of_all_without_documentation_fails_the_build(api_docs, tmp_path) -> None:
    module, pkg = api_docs
    (pkg / "__init__.py").write_text('"""A package."""\n__all__ = ["hello", "ghost"]\nhello = 1\n')
    problems = module.build(tmp_path / "api")
    assert any("docpkg.ghost" in p for p in problems), problems
