"""Build the HTML API reference from the docstrings with pdoc (``make docs``).

    python scripts/api_docs.py [--out build/api]

Documents the packages ``ablation_paths`` and ``spiral_cnn`` (their public API, ``__all__``, on
the package pages) and every submodule (pdoc leaves out submodules that a package's ``__all__``
does not name, so they are listed explicitly). Fails (exit status 1) when a module cannot be
imported -- pdoc itself only warns and leaves the page out -- or when a name of a package's
``__all__`` has no entry on its page. Modules that need an extra (Captum, Ray, ASPIRE, e2cnn)
need it installed: ``pip install -e '.[dev]'``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

PACKAGES = ("ablation_paths", "spiral_cnn")
#: Beginnings of pdoc's warnings about modules it could not import or load.
IMPORT_PROBLEMS = (
    "Cannot find spec",
    "Error loading",
    "Error importing",
    "Couldn't import",
    "Error reloading",
)


def _import_error(name: str) -> None:
    raise RuntimeError(f"Error importing {name}")  # pkgutil would skip the package silently


def module_names() -> list[str]:
    """The packages and all their submodules, sorted (``__main__`` modules left out)."""
    names = list(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names += [
            m.name
            for m in pkgutil.walk_packages(path, prefix=f"{package}.", onerror=_import_error)
            if not m.name.endswith("__main__")
        ]
    return sorted(set(names))


def build(out: Path) -> list[str]:
    """Write the reference into ``out``; return the problems found (empty: success)."""
    pdoc.render.configure(docformat="google", show_source=False, search=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pdoc.pdoc(*module_names(), output_directory=out)
        except RuntimeError as exc:  # pdoc: "Error importing MODULE" for a named module
            cause = exc.__cause__ or exc.__context__
            return [f"{exc}: {type(cause).__name__}: {cause}" if cause else str(exc)]
    problems = [
        str(w.message).strip().splitlines()[0] + " " + str(w.message).strip().splitlines()[-1]
        for w in caught
        if str(w.message).startswith(IMPORT_PROBLEMS)
    ]
    for package in PACKAGES:
        page = out / f"{package}.html"
        if not page.is_file():
            problems.append(f"no page for {package}")
            continue
        html = page.read_text(encoding="utf-8")
        for name in getattr(importlib.import_module(package), "__all__", []):
            if not name.startswith("__") and not re.search(f'id="{re.escape(name)}"', html):
                problems.append(f"{package}.{name} (in __all__) is missing from {page}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/api"))
    args = parser.parse_args()
    problems = build(args.out)
    for problem in problems:
        print(f"api docs: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"API reference: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
