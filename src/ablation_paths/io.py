"""Writing output files safely: atomically, never over an input, into a writable folder.

Every file the package writes goes through :func:`atomic_write` (or one of its two
conveniences): the content is written to a temporary file in the target's folder, flushed to disk
and moved over the target with :func:`os.replace`, so a reader (or a later run) sees either the
previous complete file or the new complete file, never a truncated one, even when the disk fills
up or the process is killed half-way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "OutputPathError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "check_output_dir",
    "check_not_input",
    "unique_names",
]


class OutputPathError(ValueError):
    """An output path cannot be used (a file where a folder is needed, read-only, an input)."""


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[tuple[IO[bytes], Path]]:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp_path
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write(file: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temporary binary file beside ``file``, then move it over ``file``.

    The parent folder must exist. On any error (disk full, interrupt) the temporary file is
    removed and ``file`` is left as it was.
    """
    target = Path(file)
    mode = target.stat().st_mode & 0o777 if target.is_file() else 0o644
    with _temporary_beside(target) as (fh, tmp):
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600 files
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def atomic_write_bytes(file: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``file`` atomically."""
    return atomic_write(file, lambda fh: fh.write(data))


def atomic_write_text(file: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``file`` atomically."""
    return atomic_write_bytes(file, text.encode(encoding))


def check_output_dir(folder: str | os.PathLike[str], create: bool = True) -> Path:
    """Make sure ``folder`` is (or can become) a writable folder, before any work is done.

    Raises :class:`OutputPathError` naming the problem: an existing file in the way, a missing
    parent (with ``create=False``), or a folder without write permission.
    """
    path = Path(folder)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputPathError(f"output folder {path}: {p} is a file, not a folder")
            break
    if not path.exists():
        if not create:
            raise OutputPathError(f"output folder {path} does not exist")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"cannot create output folder {path}: {exc.strerror}") from exc
    try:  # os.access is unreliable (root, ACLs, read-only mounts): really try
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=path)
    except OSError as exc:
        raise OutputPathError(f"output folder {path} is not writable: {exc.strerror}") from exc
    os.close(fd)
    os.unlink(tmp)
    return path


def check_not_input(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Raise :class:`OutputPathError` if an output file would replace one of the inputs."""
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    for out in outputs:
        r = Path(out).resolve()
        if r in resolved:
            raise OutputPathError(
                f"refusing to write {out}: it is the input {resolved[r]}; choose another output"
            )


def unique_names(names: Iterable[str]) -> list[str]:
    """Make names unique by suffixing repeats with ``-2``, ``-3``, ... (order kept).

    Used for per-image output folders: ``a/cat.png`` and ``b/cat.png`` become ``cat`` and
    ``cat-2`` instead of one overwriting the other.
    """
    seen: set[str] = set()
    out = []
    names = list(names)
    taken = set(names)
    for name in names:
        candidate = name
        k = 2
        while candidate in seen or (candidate != name and candidate in taken):
            candidate = f"{name}-{k}"
            k += 1
        seen.add(candidate)
        out.append(candidate)
    return out


@contextlib.contextmanager
def atomic_path(file: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``file`` for a writer that wants a file name (e.g.
    ``savefig``); on success it is moved over ``file``, on error removed."""
    target = Path(file)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, target.stat().st_mode & 0o777 if target.is_file() else 0o644)
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
