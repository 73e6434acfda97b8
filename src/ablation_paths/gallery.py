"""The gallery: one offline ``index.html`` over a folder of per-image results.

Every finished image folder (one with ``done.json``, see :mod:`ablation_paths.many`) becomes a
row: its thumbnail (embedded as a data URI), its name linking to its own ``report.html``, the
target and predicted classes, the target's probability, the path score, the saturation and the
warnings. Clicking a column header sorts by it (again: reversed). Like the report, the page is a
single file with a Content-Security-Policy that forbids every network request and allows only its
own script (by hash); every label is HTML-escaped.

>>> from ablation_paths.gallery import write_gallery
>>> write_gallery("runs/photos")  # -> runs/photos/index.html
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}
th button{font:inherit;font-weight:bold;border:0;background:none;cursor:pointer;padding:0}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td.num{font-variant-numeric:tabular-nums;text-align:right}
img.thumb{width:96px;height:auto;image-rendering:auto}
.warn{color:#a40;font-size:.9em;max-width:30em}
summary{color:#a40;cursor:pointer}
tr.flagged{background:#fff6ec}
"""

_JS = """
(function(){
  const table=document.getElementById('gallery');
  const body=table.tBodies[0];
  const heads=table.tHead.rows[0].cells;
  function key(row,col,kind){
    const v=row.cells[col].dataset.value;
    if(kind==='num'){const x=parseFloat(v);return isNaN(x)?-Infinity:x;}
    return (v||'').toLowerCase();
  }
  function sortBy(col){
    const th=heads[col];const kind=th.dataset.kind;
    const dir=th.getAttribute('aria-sort')==='descending'?'ascending':'descending';
    for(const h of heads){h.removeAttribute('aria-sort');}
    th.setAttribute('aria-sort',dir);
    const rows=Array.from(body.rows);
    rows.sort(function(a,b){
      const x=key(a,col,kind),y=key(b,col,kind);
      const c=x<y?-1:(x>y?1:0);
      return dir==='ascending'?c:-c;
    });
    for(const r of rows){body.appendChild(r);}
  }
  for(let i=0;i<heads.length;i++){
    const b=heads[i].querySelector('button');
    if(b){b.addEventListener('click',function(){sortBy(i);});}
  }
})();
"""

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


def render_gallery(entries: list[GalleryEntry], *, title: str = "ablation-paths gallery") -> str:
    """The gallery page for ``entries`` (a complete HTML document)."""
    e = html.escape
    head = []
    for header, kind, key in _COLUMNS:
        inner = f"<button type='button'>{e(header)}</button>" if kind else e(header)
        attrs = f' data-kind="{kind}" data-key="{key}"' if kind else ""
        head.append(f"<th scope='col'{attrs}>{inner}</th>")
    rows = []
    for en in entries:
        thumb = (
            f'<img class="thumb" alt="{e(en.name)}" src="data:image/png;base64,'
            f'{base64.b64encode(en.thumbnail).decode("ascii")}"/>'
            if en.thumbnail
            else ""
        )
        if en.report:
            thumb = f'<a href="{e(en.report)}">{thumb}</a>' if thumb else ""
            name = f'<a href="{e(en.report)}">{e(en.name)}</a>'
        else:
            name = e(en.name)
        warn = "".join(f'<div class="warn">{e(w)}</div>' for w in en.warnings)
        if warn:
            warn = f"<details><summary>{len(en.warnings)}</summary>{warn}</details>"
        cells = [
            f"<td>{thumb}</td>",
            f'<td data-value="{e(en.name)}">{name}</td>',
            f'<td data-value="{e(en.target)}">{e(en.target)}</td>',
            f'<td data-value="{e(en.predicted)}">{e(en.predicted)}</td>',
            f'<td class="num" data-value="{en.target_prob!r}">{_num(en.target_prob)}</td>',
            f'<td class="num" data-value="{en.path_score!r}">{_num(en.path_score)}</td>',
            f'<td class="num" data-value="{en.saturation!r}">{_num(en.saturation)}'
            f"{'' if en.converged else ' (not saturated)'}</td>",
            f'<td data-value="{len(en.warnings)}">{warn or "0"}</td>',
        ]
        flagged = ' class="flagged"' if en.warnings else ""
        rows.append(f'<tr{flagged} data-name="{e(en.name)}">{"".join(cells)}</tr>')
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    n_warn = sum(1 for en in entries if en.warnings)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta http-equiv="Content-Security-Policy" content="{csp}"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="generator" content="ablation-paths gallery"/>
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{e(title)}</h1>
<p id="counts">{len(entries)} image(s); {n_warn} with warnings. Click a thumbnail or a name
for the image's path browser; click a column header to sort.</p>
<table id="gallery">
<thead><tr>{"".join(head)}</tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<script>{_JS}</script>
</body>
</html>
"""


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
