"""The path browser: a self-contained interactive HTML report of an ablation path (SPEC A7).

One HTML file with everything embedded (images as base64 PNG data URIs, the data as a JSON block,
inline CSS and vanilla JavaScript): no server, no network, it opens from disk in any modern
browser. A Content-Security-Policy forbids every network request and allows only the report's
own script (by hash), so even a hostile class name could not run code.

The page shows the target and baseline images; a slider (arrow keys, play/pause) over the path's
time samples with the mask, the interpolated image and the classifier's probabilities (target
and top other classes) at the current ``t``; the target-probability curve with the current ``t``
and the class transition marked; every heatmap reduction with and without the boundary window;
the settings and summary with warnings. For the boundary-straddling score both paths are shown
side by side.

>>> from ablation_paths.report import write_report
>>> write_report(result, "out/report.html")
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ablation_paths.result import AblationPathResult

__all__ = ["render_report", "write_report"]

#: How many classes besides the target the browser lists at each ``t``.
TOP_OTHERS = 5

_HEATMAP_LABELS = {
    "average": "Average (2.7.2A)",
    "class_transition": "Class transition (2.7.2B)",
    "influence": "Influence-weighted (2.7.2C, signed)",
    "contrastive": "Contrastive average (2.7.2D)",
}


# ---------------------------------------------------------------------------------- images
def _png_data_uri(array: np.ndarray) -> str:
    """Encode ``[H, W]`` or ``[H, W, 3]`` uint8 as a base64 PNG data URI."""
    mode = "L" if array.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode=mode).save(
        buf, format="PNG", compress_level=3
    )
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hwc(image: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` uint8 -> ``[H, W]`` (grey) or ``[H, W, 3]`` for PNG encoding."""
    if image.shape[0] == 3:
        return np.transpose(image, (1, 2, 0))
    if image.shape[0] == 1:
        return image[0]
    return image.mean(axis=0).round().astype(np.uint8)


def _display_range(result: AblationPathResult) -> tuple[float, float]:
    """The value range mapped to 0..255 for display (as :func:`ablation_paths.api.explain` does
    for its frames): ``[0, 1]``, or the data range when the images leave it."""
    both = torch.cat([result.image.float().flatten(), result.baseline_image.float().flatten()])
    lo, hi = float(both.min()), float(both.max())
    if lo < 0.0 or hi > 1.0:
        return lo, max(hi, lo + 1e-12)
    return 0.0, 1.0


def _to_uint8(images: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    scaled = (images.float() - lo) / max(hi - lo, 1e-12)
    return (scaled.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _pixel_frames(result: AblationPathResult, path: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Frames ``[T + 2, C, H, W]`` and masks ``[T + 2, H, W]`` (uint8) along a pixel-mask path
    ``[T, h, w]``, rendered from saved data exactly as the pixel mask space does (bilinear
    upsampling, ``x + theta (b - x)``); ``None`` when the path is not pixel-mask shaped."""
    if result.features != "pixel" or path.dim() != 3:
        return None
    image = result.image.float()
    height, width = int(image.shape[-2]), int(image.shape[-1])
    zeros = torch.zeros_like(path[:1].float())
    full = torch.cat([zeros, path.float(), zeros + 1])
    theta = F.interpolate(
        full.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
    )
    frames = image.unsqueeze(0) + theta * (result.baseline_image.float() - image).unsqueeze(0)
    masks = (theta[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return _to_uint8(frames, _display_range(result)), masks


def _path_images(result: AblationPathResult) -> tuple[np.ndarray, np.ndarray] | None:
    """Frames and masks of the first path: the saved ones, else rendered from the path."""
    if result.frames is not None and result.masks_image is not None:
        frames, masks = result.frames.cpu(), result.masks_image.cpu()
        if frames.dtype != torch.uint8:  # tolerate float frames in [0, 1]
            frames = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if masks.dtype != torch.uint8:
            masks = (masks.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return frames.numpy(), masks.numpy()
    return _pixel_frames(result, result.path)


# A perceptually ordered sequential colour map (viridis key colours) and a diverging one.
_SEQ = np.array(
    [
        [68, 1, 84],
        [72, 40, 120],
        [62, 74, 137],
        [49, 104, 142],
        [38, 130, 142],
        [31, 158, 137],
        [53, 183, 121],
        [109, 205, 89],
        [180, 222, 44],
        [253, 231, 37],
    ],
    dtype=np.float64,
)
_DIV = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]])


def _colormap(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` through the key colours (linear interpolation) -> uint8 RGB."""
    pos = np.clip(values, 0.0, 1.0) * (len(keys) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(keys) - 2)
    frac = (pos - lo)[..., None]
    rgb = keys[lo] * (1 - frac) + keys[lo + 1] * frac
    return rgb.round().astype(np.uint8)


def _heatmap_image(h: np.ndarray, signed: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """Colour a heatmap: min..max (sequential), or -m..m (diverging) for signed maps."""
    h = np.nan_to_num(h.astype(np.float64))
    if signed:
        m = float(np.abs(h).max()) or 1.0
        return _colormap((h / m + 1) / 2, _DIV.astype(np.float64)), (-m, m)
    lo, hi = float(h.min()), float(h.max())
    span = hi - lo if hi > lo else 1.0
    return _colormap((h - lo) / span, _SEQ), (lo, hi)


# ---------------------------------------------------------------------------------- data
def _class_label(result: AblationPathResult, k: int) -> str:
    names = result.class_names
    if names is not None and 0 <= k < len(names):
        return str(names[k])
    return f"class {k}"


def _shown_classes(result: AblationPathResult, prob_sets: Sequence[Tensor]) -> list[int]:
    """The target plus every class ranking among the top ``TOP_OTHERS + 1`` at some sample:
    enough to list the true top classes at every ``t`` without embedding all ``K``."""
    keep = {result.target}
    for probs in prob_sets:
        k = min(TOP_OTHERS + 1, int(probs.shape[1]))
        keep.update(int(i) for i in torch.topk(probs.float(), k, dim=1).indices.flatten())
    return sorted(keep)


def _round(values: Tensor, digits: int = 6) -> list[Any]:
    return np.round(values.double().cpu().numpy(), digits).tolist()  # type: ignore[no-any-return]


def _finite(data: Any) -> Any:
    """Replace non-finite floats (which JSON cannot carry) by ``None``, recursively."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` become
    ``\\u`` escapes, so neither ``</script>`` nor ``<!--`` can appear."""
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _warnings(result: AblationPathResult) -> list[str]:
    out: list[str] = []
    cfg = result.info.get("config", {}) if isinstance(result.info, dict) else {}
    if not result.converged:
        stop = cfg.get("saturation_stop") if isinstance(cfg, dict) else None
        level = f" (stop level {_fmt(stop)})" if isinstance(stop, (int, float)) else ""
        out.append(
            f"The path did not saturate: saturation {result.saturation:.3f}{level} after "
            f"{result.iterations} iterations (stopped: {result.stopped}). Its masks are not "
            "fully binary, so the heatmaps may blur what was removed when."
        )
    if result.pinned:
        out.append(
            f"The path score {result.path_score:.4f} is pinned near its maximum: the path may be "
            "adversarial (tiny, unnatural mask changes flipping the class; thesis 2.8.3). "
            "Consider more regularisation or a coarser mask."
        )
    base = result.info.get("baseline", {}) if isinstance(result.info, dict) else {}
    if isinstance(base, dict) and base.get("flips_class") is False:
        out.append(
            "The baseline is still classified as the target class, so removing features "
            "cannot fully change the answer." + (f" {base['note']}" if base.get("note") else "")
        )
    return out


# ---------------------------------------------------------------------------------- svg
_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 560, 220, 44, 12, 12, 34


def _sx(t: float) -> float:
    return _PAD_L + t * (_W - _PAD_L - _PAD_R)


def _sy(p: float) -> float:
    return _PAD_T + (1 - p) * (_H - _PAD_T - _PAD_B)


def _polyline(times: np.ndarray, values: np.ndarray, cls: str, dash: str = "") -> str:
    pts = " ".join(
        f"{_sx(float(t)):.1f},{_sy(float(v)):.1f}" for t, v in zip(times, values, strict=True)
    )
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline class="{cls}" points="{pts}"{extra}/>'


def _curve_svg(times: np.ndarray, t_clt: float, lines: list[str], legend: list[str]) -> str:
    """Probability curves along ``t`` as inline SVG (``lines``: polylines; ``legend``: HTML
    items, already escaped), with the class transition and the current ``t`` marked."""
    parts = [
        f'<svg id="curve" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        'aria-label="target probability along t">'
    ]
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _sy(p)
        parts.append(f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text class="tick" x="{_PAD_L - 6}" y="{y + 4}" text-anchor="end">{p}</text>'
        )
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = _sx(t)
        parts.append(
            f'<text class="tick" x="{x}" y="{_H - _PAD_B + 16}" text-anchor="middle">{t}</text>'
        )
    parts.append(f'<text class="tick" x="{_W - _PAD_R}" y="{_H - 4}" text-anchor="end">t</text>')
    x = _sx(t_clt)
    parts.append(
        f'<line id="clt-marker" class="clt" data-t="{t_clt:.6f}" x1="{x}" x2="{x}" '
        f'y1="{_PAD_T}" y2="{_H - _PAD_B}"/>'
        f'<text class="clt-label" x="{x + 4 if t_clt < 0.6 else x - 4}" y="{_PAD_T + 12}" '
        f'text-anchor="{"start" if t_clt < 0.6 else "end"}">class transition t = {t_clt:.3f}'
        "</text>"
    )
    parts.extend(lines)
    x0 = _sx(float(times[0]))
    parts.append(
        f'<line id="t-marker" x1="{x0}" x2="{x0}" y1="{_PAD_T}" y2="{_H - _PAD_B}"/>'
        f'<rect id="curve-hit" x="{_PAD_L}" y="{_PAD_T}" width="{_W - _PAD_L - _PAD_R}" '
        f'height="{_H - _PAD_T - _PAD_B}" fill="transparent"/>'
    )
    parts.append("</svg>")
    items = "".join(f"<li>{label}</li>" for label in legend)
    return "".join(parts) + f'<ul class="legend">{items}</ul>'


# ---------------------------------------------------------------------------------- page
def _table(rows: Sequence[tuple[str, Any]], table_id: str) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f'<table id="{table_id}">{body}</table>'


def _path_panel(prefix: str, heading: str, has_frames: bool, note: str = "") -> str:
    """The per-path column: interpolated image, mask, target probability and top classes."""
    e = html.escape
    imgs = (
        f'<figure><img id="{prefix}frame-img" alt="interpolated image at t"/>'
        "<figcaption>image at t</figcaption></figure>"
        f'<figure><img id="{prefix}mask-img" alt="mask at t"/>'
        "<figcaption>mask at t (white = removed)</figcaption></figure>"
        if has_frames
        else f'<p class="note">{e(note)}</p>'
    )
    return (
        f'<section class="path-panel" id="{prefix}panel"><h3>{e(heading)}</h3>'
        f'<div class="images">{imgs}</div>'
        f'<p class="target-line">target <span class="target-name"></span>: '
        f'<strong id="{prefix}target-prob" class="prob"></strong></p>'
        f'<ol id="{prefix}top-classes" class="top"></ol></section>'
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em auto;max-width:1200px;
 padding:0 1em;color:#222;background:#fff}
h1{font-size:1.4em;margin:.2em 0}
h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.2em 0 .4em}
.warning{background:#fff3cd;border:1px solid #e0b000;border-left:6px solid #e0a000;
 padding:.5em .8em;margin:.4em 0;border-radius:4px}
.row{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
figure{margin:0;text-align:center}figcaption{font-size:.8em;color:#555}
img{width:192px;height:192px;image-rendering:pixelated;border:1px solid #ccc;background:#eee;
 object-fit:contain;display:block}
.controls{display:flex;gap:.8em;align-items:center;margin:.8em 0;font-size:1.05em}
#t-slider{width:420px}#t-value{font-variant-numeric:tabular-nums;font-weight:600;min-width:5em}
button{font-size:1em;padding:.2em .8em}
.path-panel{border:1px solid #ddd;border-radius:6px;padding:.6em .8em}
.path-panel .images{display:flex;gap:.6em}
.prob{font-variant-numeric:tabular-nums}
ol.top{margin:.3em 0;padding-left:1.4em;font-size:.9em;min-width:300px}
ol.top li{margin:.15em 0}ol.top .bar{display:inline-block;height:.7em;background:#7a8fb8;
 vertical-align:middle;margin-left:.4em}
.cname{display:inline-block;min-width:9em;max-width:18em;overflow:hidden;text-overflow:ellipsis;
 white-space:nowrap;vertical-align:middle}
svg .grid{stroke:#eee}svg .tick{font-size:11px;fill:#666}svg polyline{fill:none;stroke-width:2}
svg .p-target{stroke:#c0392b}svg .p-down{stroke:#2471a3}svg .p-comp{stroke:#8e44ad}
svg .p-other{stroke:#bbb;stroke-width:1}
svg .clt{stroke:#27ae60;stroke-dasharray:5 3;stroke-width:1.5}
svg .clt-label{font-size:11px;fill:#27ae60}
.sw-other{color:#999}.sw-target{color:#c0392b}.sw-down{color:#2471a3}.sw-comp{color:#8e44ad}
#t-marker{stroke:#111;stroke-width:1.5}#curve-hit{cursor:pointer}
#curve-box h3{margin:0}
ul.legend{list-style:none;padding:0;margin:.2em 0;font-size:.85em;color:#444}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ddd;padding:.2em .5em;
 text-align:left;vertical-align:top}th{background:#f6f6f6;font-weight:600}
.heatmaps figure img{width:160px;height:160px}.heatmaps .default figcaption{font-weight:700}
.note{color:#555;font-size:.9em;max-width:380px}
details{margin:.6em 0}
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var n = D.times.length;
  var slider = document.getElementById("t-slider");
  var tValue = document.getElementById("t-value");
  var playBtn = document.getElementById("play");
  var timer = null;
  function name(k) { return D.names[String(k)]; }
  function fmt(p) { return (typeof p === "number" && isFinite(p)) ? p.toFixed(4) : "n/a"; }
  function val(p) { return (typeof p === "number" && isFinite(p)) ? p : -1; }
  document.getElementById("target-img").src = D.images[D.target_image];
  document.getElementById("baseline-img").src = D.images[D.baseline_image];
  Array.prototype.forEach.call(document.querySelectorAll(".target-name"), function (el) {
    el.textContent = name(D.target);
  });
  function fillPanel(path, i) {
    var pre = path.prefix;
    var frame = document.getElementById(pre + "frame-img");
    if (frame && path.frames) {
      frame.src = D.images[path.frames[i]]; frame.dataset.index = String(i);
    }
    var mask = document.getElementById(pre + "mask-img");
    if (mask && path.masks) { mask.src = D.images[path.masks[i]]; mask.dataset.index = String(i); }
    var row = path.probs[i];
    var tp = document.getElementById(pre + "target-prob");
    tp.textContent = fmt(row[D.classes.indexOf(D.target)]);
    tp.dataset.value = String(row[D.classes.indexOf(D.target)]);
    var order = [];
    for (var j = 0; j < D.classes.length; j++) {
      if (D.classes[j] !== D.target) { order.push(j); }
    }
    order.sort(function (a, b) { return val(row[b]) - val(row[a]); });
    var list = document.getElementById(pre + "top-classes");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    order.slice(0, D.top).forEach(function (j) {
      var li = document.createElement("li");
      li.dataset.class = String(D.classes[j]);
      li.dataset.prob = String(row[j]);
      var nm = document.createElement("span");
      nm.className = "cname";
      nm.textContent = name(D.classes[j]);
      nm.title = name(D.classes[j]);
      var pr = document.createElement("span");
      pr.className = "prob";
      pr.textContent = fmt(row[j]);
      var bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(120 * Math.max(0, val(row[j]))) + "px";
      li.appendChild(nm); li.appendChild(pr); li.appendChild(bar);
      list.appendChild(li);
    });
  }
  function show(i) {
    i = Math.max(0, Math.min(n - 1, i));
    slider.value = String(i);
    tValue.textContent = D.times[i].toFixed(4);
    tValue.dataset.index = String(i);
    document.body.dataset.index = String(i);
    D.paths.forEach(function (p) { fillPanel(p, i); });
    var marker = document.getElementById("t-marker");
    var x = D.svg.left + D.times[i] * D.svg.width;
    marker.setAttribute("x1", x); marker.setAttribute("x2", x);
  }
  function current() { return parseInt(slider.value, 10); }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    playBtn.textContent = "\u25B6 Play"; playBtn.setAttribute("aria-pressed", "false");
  }
  function play() {
    if (timer !== null) { return; }
    if (current() >= n - 1) { show(0); }
    playBtn.textContent = "\u23F8 Pause"; playBtn.setAttribute("aria-pressed", "true");
    timer = setInterval(function () {
      if (current() >= n - 1) { stop(); return; }
      show(current() + 1);
    }, D.interval);
  }
  function toggle() { if (timer === null) { play(); } else { stop(); } }
  slider.addEventListener("input", function () { show(current()); });
  playBtn.addEventListener("click", toggle);
  document.addEventListener("keydown", function (e) {
    var tag = e.target && e.target.tagName;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      if (e.target === slider) { return; }  // the range input moves itself
      e.preventDefault();
      stop();
      show(current() + (e.key === "ArrowRight" ? 1 : -1));
    } else if (e.key === " " || e.code === "Space") {
      if (tag === "BUTTON" || tag === "TEXTAREA" || tag === "SELECT" ||
          (tag === "INPUT" && e.target.type !== "range")) { return; }
      e.preventDefault();
      toggle();
    }
  });
  document.getElementById("curve-hit").addEventListener("click", function (e) {
    var svg = document.getElementById("curve");
    var box = svg.getBoundingClientRect();
    var t = ((e.clientX - box.left) * D.svg.total / box.width - D.svg.left) / D.svg.width;
    var best = 0;
    for (var k = 1; k < n; k++) {
      if (Math.abs(D.times[k] - t) < Math.abs(D.times[best] - t)) { best = k; }
    }
    stop();
    show(best);
  });
  show(0);
  document.body.dataset.ready = "1";
})();
"""


def render_report(result: AblationPathResult, *, title: str | None = None) -> str:
    """Render ``result`` as one self-contained interactive HTML page (the path browser).

    Args:
        result: an :class:`~ablation_paths.result.AblationPathResult` (fresh or loaded); any mask
            space works, since the page shows decoded images. Without saved frames, pixel-mask
            paths are rendered from the path; otherwise only probabilities are shown.
        title: page heading; default names the target class and the score. Escaped.

    Returns:
        The HTML text (UTF-8; no external references: no server or network needed).
    """
    e = html.escape
    target_label = _class_label(result, result.target)
    title = title if title is not None else f"Ablation path: {target_label} ({result.score})"
    times = result.all_times.double().cpu().numpy()
    n = len(times)
    probs_down = result.probs_down
    prob_sets = [result.probs] + ([probs_down] if probs_down is not None else [])
    classes = _shown_classes(result, prob_sets)
    cls_index = torch.tensor(classes)

    # images: one table of data URIs (identical images, e.g. the path ends, stored once)
    table: list[str] = []
    seen: dict[str, int] = {}

    def add(uri: str) -> int:
        if uri not in seen:
            seen[uri] = len(table)
            table.append(uri)
        return seen[uri]

    image_range = _display_range(result)
    target_img = add(_png_data_uri(_hwc(_to_uint8(result.image, image_range))))
    baseline_img = add(_png_data_uri(_hwc(_to_uint8(result.baseline_image, image_range))))

    def path_entry(
        prefix: str, probs: Tensor, imgs: tuple[np.ndarray, np.ndarray] | None
    ) -> dict[str, Any]:
        return {
            "prefix": prefix,
            "probs": _round(probs.float()[:, cls_index]),
            "frames": [add(_png_data_uri(_hwc(f))) for f in imgs[0]] if imgs else None,
            "masks": [add(_png_data_uri(m)) for m in imgs[1]] if imgs else None,
        }

    first = _path_images(result)
    paths: list[dict[str, Any]] = [path_entry("", result.probs, first)]
    second = None
    if probs_down is not None:
        second = _pixel_frames(result, result.path_down) if result.path_down is not None else None
        paths.append(path_entry("down-", probs_down, second))

    data = {
        "times": _round(result.all_times),
        "target": result.target,
        "classes": classes,
        "names": {str(k): _class_label(result, k) for k in classes},
        "top": TOP_OTHERS,
        "paths": paths,
        "images": table,
        "target_image": target_img,
        "baseline_image": baseline_img,
        "interval": 450,
        "svg": {"left": _PAD_L, "width": _W - _PAD_L - _PAD_R, "total": _W},
        "class_transition_time": result.class_transition_time,
        "score": result.score,
        "features": result.features,
        "path_score": result.path_score,
        "saturation": result.saturation,
        "converged": result.converged,
        "pinned": result.pinned,
    }

    # curves: the top other classes (first path) faintly, then the target along each path
    t_clt = result.class_transition_time
    tgt_name = e(target_label)
    two = probs_down is not None
    probs_np = result.probs.double().cpu().numpy()
    others = [k for k in classes if k != result.target]
    ranked = sorted(others, key=lambda k: -float(probs_np[:, k].max()))[:TOP_OTHERS]
    lines = [_polyline(times, probs_np[:, k], "p-other") for k in ranked]
    legend = ['<span class="sw-other">&#9472;</span> top other classes'] if ranked else []
    lines.append(_polyline(times, probs_np[:, result.target], "p-target"))
    legend.append(
        f'<span class="sw-target">&#9473;</span> P({tgt_name})'
        + (" along the first path &#966;&#8593;" if two else " along the path")
    )
    if probs_down is not None:
        lines.append(
            _polyline(times, probs_down.double().cpu().numpy()[:, result.target], "p-down")
        )
        legend.append(
            f'<span class="sw-down">&#9473;</span> P({tgt_name}) along the second path '
            "&#966;&#8595;"
        )
    if result.probs_complement is not None:
        comp = result.probs_complement.double().cpu().numpy()[:, result.target]
        lines.append(_polyline(times, comp, "p-comp", dash="4 3"))
        legend.append(
            f'<span class="sw-comp">&#9476;</span> P({tgt_name}) along the complement '
            "1 &#8722; &#966;"
        )
    curve = _curve_svg(times, t_clt, lines, legend)

    # heatmaps, with and without the boundary window
    default = result.default_reduction
    heat_rows = []
    for window in (False, True):
        figs = []
        for kind in result.heatmaps:
            h = result.heatmap(kind, window=window).double().cpu().numpy()
            rgb, (lo, hi) = _heatmap_image(h, signed=kind == "influence")
            label = _HEATMAP_LABELS.get(kind, kind)
            cls = ' class="default"' if kind == default else ""
            mark = " (default)" if kind == default else ""
            figs.append(
                f'<figure{cls} data-kind="{e(kind)}" data-window="{str(window).lower()}">'
                f'<img src="{_png_data_uri(rgb)}" alt="{e(kind)} heatmap"/>'
                f"<figcaption>{e(label)}{mark}<br/>range {lo:.3g} .. {hi:.3g}</figcaption>"
                "</figure>"
            )
        caption = "with boundary window (eq. 2.37)" if window else "without window"
        heat_rows.append(f'<h3>{caption}</h3><div class="row heatmaps">{"".join(figs)}</div>')

    # summary and settings
    summary = result.summary()
    settings = summary.pop("settings", {}) or {}
    target_desc = f"{result.target} ({target_label})" if result.class_names else str(result.target)
    summary_rows: list[tuple[str, Any]] = [
        ("target", target_desc),
        ("score function", result.score),
        ("features (mask space)", result.features),
        ("path score", result.path_score),
        ("saturation", result.saturation),
        ("converged (saturated)", result.converged),
        ("stopped", result.stopped),
        ("iterations", result.iterations),
        ("score pinned near maximum", result.pinned),
        ("class transition t", t_clt),
        ("P(target) on the image (t = 0)", float(result.probs[0, result.target])),
        ("P(target) on the baseline (t = 1)", float(result.probs[-1, result.target])),
        ("time samples", f"{len(result.times)} interior + 2 ends"),
    ]
    skip = {
        "target",
        "target_name",
        "score",
        "features",
        "path_score",
        "saturation",
        "iterations",
        "converged",
        "stopped",
        "pinned",
        "class_transition_time",
        "target_prob_image",
        "target_prob_baseline",
    }
    summary_rows += [(k, v) for k, v in summary.items() if k not in skip]
    settings_rows = sorted(settings.items()) if isinstance(settings, dict) else []

    warnings = "".join(f'<div class="warning" role="alert">{e(w)}</div>' for w in _warnings(result))

    no_frames_note = (
        f"No images are stored for this {result.features} path (saved without frames); the "
        "probabilities are shown."
    )
    panels = _path_panel("", "First path φ↑" if two else "Path", first is not None, no_frames_note)
    if two:
        panels += _path_panel(
            "down-",
            "Second path φ↓",
            second is not None,
            f"The second path's images cannot be rendered from the saved {result.features} "
            "result without its feature decomposition; its probabilities are shown.",
        )

    script_hash = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta http-equiv="Content-Security-Policy" content="{csp}"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="generator" content="ablation-paths path browser"/>
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body data-score="{e(result.score)}" data-features="{e(result.features)}" data-steps="{n}">
<h1 id="title">{e(title)}</h1>
<p>Explaining class <strong id="target-label">{e(target_label)}</strong> with the
<strong>{e(result.score)}</strong> score over <strong>{e(result.features)}</strong> features.
Move along the path with the slider, the &#8592;/&#8594; keys or play (space), and watch which
removed or kept features change the classifier's answer.</p>
<div id="warnings">{warnings}</div>
<h2>Path</h2>
<div class="row">
<figure><img id="target-img" alt="target image"/>
<figcaption>target image (t = 0)</figcaption></figure>
<figure><img id="baseline-img" alt="baseline image"/>
<figcaption>baseline (t = 1)</figcaption></figure>
<section id="curve-box"><h3>Probabilities along t (click to jump)</h3>{curve}</section>
</div>
<div class="controls">
<button id="play" type="button" aria-pressed="false">&#9654; Play</button>
<label for="t-slider">t</label>
<input id="t-slider" type="range" min="0" max="{n - 1}" step="1" value="0"
 aria-label="time sample along the path"/>
<span>t = <span id="t-value" data-index="0">{times[0]:.4f}</span></span>
</div>
<div class="row">{panels}</div>
<h2>Heatmaps</h2>
<p class="note">Each reduction normalised to its own range; the influence map is signed
(blue = negative, red = positive). Bold: the score's natural reduction.</p>
{"".join(heat_rows)}
<h2>Summary</h2>
{_table(summary_rows, "summary")}
<details><summary>Settings</summary>{_table(settings_rows, "settings")}</details>
<script type="application/json" id="report-data">{_json_for_script(data)}</script>
<script>{_JS}</script>
</body>
</html>
"""


def write_report(
    result: AblationPathResult, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write :func:`render_report` of ``result`` to ``path`` (UTF-8; parents created).

    Returns:
        The written path.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ablation_paths.io import atomic_write_text  # atomic: never a truncated report

    atomic_write_text(out, render_report(result, title=title))
    return out
