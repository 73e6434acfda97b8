"""Count the lines of every function in a source tree (``ast``-based) and list the long ones.

A function's length is ``end_lineno - lineno + 1`` of its ``def`` (decorators excluded,
docstring and nested functions included). Exit status 1 when any function is longer than
``--max`` lines (outside ``--allow`` paths), so CI can enforce the limit::

    python scripts/function_lengths.py src --max 80
    python scripts/function_lengths.py src --top 10        # the longest ten, no limit
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FunctionLength:
    """One function: file, qualified name, first line and length in lines."""

    path: Path
    name: str
    line: int
    lines: int


def function_lengths(tree: ast.AST, path: Path) -> Iterator[FunctionLength]:
    """Every function and method of a parsed module, nested ones included."""

    def walk(node: ast.AST, prefix: str) -> Iterator[FunctionLength]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                yield FunctionLength(path, name, child.lineno, end - child.lineno + 1)
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def scan(root: Path) -> list[FunctionLength]:
    """All functions of the ``.py`` files under ``root``, longest first."""
    found = []
    for file in sorted(root.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        found.extend(function_lengths(tree, file))
    return sorted(found, key=lambda f: (-f.lines, str(f.path), f.line))


def too_long(
    functions: Sequence[FunctionLength], limit: int, root: Path, allow: Sequence[str] = ()
) -> list[FunctionLength]:
    """Functions longer than ``limit`` whose file (relative to ``root``, POSIX form) does not
    match any of the ``allow`` glob patterns."""
    return [
        f
        for f in functions
        if f.lines > limit and not any(f.path.relative_to(root).match(pattern) for pattern in allow)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="folder to scan (e.g. src)")
    p.add_argument("--max", type=int, default=80, help="longest allowed function (lines)")
    p.add_argument("--allow", action="append", default=[], help="glob of files to skip")
    p.add_argument("--top", type=int, default=0, help="also print the N longest functions")
    args = p.parse_args(argv)
    functions = scan(args.root)
    for f in functions[: args.top]:
        print(f"{f.lines:4d}  {f.path}:{f.line}  {f.name}")
    bad = too_long(functions, args.max, args.root, args.allow)
    for f in bad:
        print(f"too long: {f.path}:{f.line} {f.name} has {f.lines} lines (> {args.max})")
    print(f"{len(functions)} functions; {len(bad)} longer than {args.max} lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
