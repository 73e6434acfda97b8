"""The gallery: one offline ``index.html`` over a folder of per-image results.

Every finished image folder (one with ``done.json``, see :mod:`ablation_paths.many`) becomes a
row: its thumbnail (embedded as a data URI), its name linking to its own ``report.html``, the
target and predicted classes, the target's probability, the path score, the saturation and the
warnings. Clicking a column header sorts by it (again: reversed). Like the report, the page is a
single file with a Content-Security-Policy that forbids every network request and allows only its
own script (by the hash of ``templates/gallery.js``); every label is HTML-escaped. The page's
HTML, CSS and JavaScript are the package-data files ``templates/gallery.{html,css,js}``.

>>> from ablation_paths.gallery import write_gallery
>>> write_gallery("runs/photos")  # -> runs/photos/index.html
"""

from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ablation_paths.templates import Html, content_security_policy, element, inline, join, render

__all__ = ["GalleryEntry", "gallery_entries", "render_gallery", "write_gallery"]

GALLERY_FILE = "index.html"


@dataclass
class GalleryEntry:
    """One image of the gallery (from its ``done.json``)."""

    name: str
    target: str
    predicted: str
    target_prob: float
    path_score: float
    saturation: float
    converged: bool
    warnings: list[str] = field(default_factory=list)
    thumbnail: bytes | None = None
    report: str | None = None  # relative link


def _label(index: Any, name: Any, names: list[str] | None) -> str:
    if name:
        return str(name)
    if names is not None and isinstance(index, int) and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def gallery_entries(folder: str | os.PathLike[str]) -> list[GalleryEntry]:
    """The finished images below ``folder`` (direct subfolders with a ``done.json``), by name."""
    from ablation_paths.many import read_done

    root = Path(folder)
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rec = read_done(sub)
        if rec is None:
            continue
        thumb = sub / "thumb.png"
        report = sub / "report.html"
        out.append(
            GalleryEntry(
                name=sub.name,
                target=_label(rec.get("target"), rec.get("target_name"), None),
                predicted=str(rec.get("predicted_name") or rec.get("predicted", "")),
                target_prob=float(rec.get("target_prob_image", math.nan)),
                path_score=float(rec.get("path_score", math.nan)),
                saturation=float(rec.get("saturation", math.nan)),
                converged=bool(rec.get("converged", False)),
                warnings=[str(w) for w in rec.get("warnings", [])],
                thumbnail=thumb.read_bytes() if thumb.is_file() else None,
                report=f"{quote(sub.name)}/report.html" if report.is_file() else None,
            )
        )
    return out


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, sort kind, data key)
    ("image", "", ""),
    ("name", "text", "name"),
    ("target", "text", "target"),
    ("predicted", "text", "predicted"),
    ("p(target)", "num", "target_prob"),
    ("path score", "num", "path_score"),
    ("saturation", "num", "saturation"),
    ("warnings", "num", "warnings"),
)


def _num(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "n/a"


def _head(header: str, kind: str, key: str) -> Html:
    if not kind:
        return element("th", header, scope="col")
    button = element("button", header, type="button")
    return element("th", button, scope="col", data_kind=kind, data_key=key)


def _row(en: GalleryEntry) -> Html:
    thumb: object = ""
    if en.thumbnail:
        data = base64.b64encode(en.thumbnail).decode("ascii")
        thumb = element(
            "img", class_="thumb", alt=en.name, src=f"data:image/png;base64,{data}", void=True
        )
    name: object = en.name
    if en.report:
        thumb = element("a", thumb, href=en.report) if thumb else ""
        name = element("a", en.name, href=en.report)
    warn: object = "0"
    if en.warnings:
        lines = [element("div", w, class_="warn") for w in en.warnings]
        warn = element("details", element("summary", len(en.warnings)), *lines)
    saturation = _num(en.saturation) + ("" if en.converged else " (not saturated)")
    cells = [
        element("td", thumb),
        element("td", name, data_value=en.name),
        element("td", en.target, data_value=en.target),
        element("td", en.predicted, data_value=en.predicted),
        element("td", _num(en.target_prob), class_="num", data_value=repr(en.target_prob)),
        element("td", _num(en.path_score), class_="num", data_value=repr(en.path_score)),
        element("td", saturation, class_="num", data_value=repr(en.saturation)),
        element("td", warn, data_value=len(en.warnings)),
    ]
    flagged = "flagged" if en.warnings else None
    return element("tr", *cells, class_=flagged, data_name=en.name)


def render_gallery(entries: list[GalleryEntry], *, title: str = "ablation-paths gallery") -> str:
    """The gallery page for ``entries`` (a complete HTML document, ``templates/gallery.html``)."""
    script = inline("gallery.js")
    return render(
        "gallery.html",
        csp=content_security_policy(script),
        title=title,
        style=inline("gallery.css"),
        images=len(entries),
        flagged=sum(1 for en in entries if en.warnings),
        head=join(_head(*column) for column in _COLUMNS),
        rows=join(_row(en) for en in entries),
        script=script,
    )


def write_gallery(
    folder: str | os.PathLike[str], *, title: str | None = None, file: str = GALLERY_FILE
) -> Path:
    """Write ``folder / index.html`` over the finished images below ``folder``; returns it.

    The page is written to a temporary file and moved into place, so a reader never sees half
    a page."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    page = render_gallery(gallery_entries(root), title=title or f"ablation-paths: {root.name}")
    out = root / file
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
