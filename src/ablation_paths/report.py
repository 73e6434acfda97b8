"""The path browser: a self-contained interactive HTML report of an ablation path (SPEC A7).

One HTML file with everything embedded (images as base64 PNG data URIs, the data as a JSON block,
inline CSS and vanilla JavaScript): no server, no network, it opens from disk in any modern
browser. A Content-Security-Policy forbids every network request and allows only the report's
own script (by the SHA-256 hash of ``templates/report.js``), so even a hostile class name could
not run code.

The page shows the target and baseline images; a slider (arrow keys, play/pause) over the path's
time samples with the mask, the interpolated image and the classifier's probabilities (target
and top other classes) at the current ``t``; the target-probability curve with the current ``t``
and the class transition marked; every heatmap of the result laid over the image with a colour
bar, with and without the boundary window; the settings and summary with warnings. For the
boundary-straddling score both paths are shown side by side.

The page's HTML, CSS and JavaScript are package-data files in :mod:`ablation_paths.templates`;
this module computes what goes into them, one small function per section. Colours and labels
come from :mod:`ablation_paths.display` (shared with the PNG figures), warnings from
:func:`ablation_paths.diagnostics.result_warnings` (shared with the library and the CLI).

>>> from ablation_paths.report import write_report
>>> write_report(result, "out/report.html")
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ablation_paths.diagnostics import result_warnings
from ablation_paths.display import (
    DIVERGING_CMAP,
    SEQUENTIAL_CMAP,
    WINDOW_LABEL,
    colorize,
    colormap_lut,
    format_value,
    heatmap_label,
    is_signed,
    setting_label,
)
from ablation_paths.mask_spaces import images_for_result
from ablation_paths.result import AblationPathResult
from ablation_paths.templates import (
    Html,
    content_security_policy,
    element,
    inline,
    join,
    render,
)

__all__ = ["render_report", "write_report"]

#: How many classes besides the target the browser lists at each ``t``.
TOP_OTHERS = 5
#: Milliseconds between samples when playing the path.
PLAY_INTERVAL_MS = 450


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
    """Frames ``[T + 2, C, H, W]`` and masks ``[T + 2, H, W]`` (uint8) along a path
    ``[T, *mask_shape]``, rebuilt from saved data by the result's mask space
    (:func:`~ablation_paths.mask_spaces.images_for_result`); ``None`` when it cannot."""
    images = images_for_result(result, path)
    return None if images is None else (images[0].numpy(), images[1].numpy())


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


@dataclass
class _ImageTable:
    """The page's images as data URIs, each stored once (the path ends repeat the target image
    and the baseline); the data refers to them by index."""

    uris: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def add(self, uri: str) -> int:
        if uri not in self._index:
            self._index[uri] = len(self.uris)
            self.uris.append(uri)
        return self._index[uri]


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


# ---------------------------------------------------------------------------------- warnings
def _report_notes(result: AblationPathResult) -> list[str]:
    """Checks only the report makes (not in :func:`result_warnings`): the baseline's own note."""
    base = result.info.get("baseline", {}) if isinstance(result.info, dict) else {}
    if isinstance(base, dict) and base.get("flips_class") is False:
        note = f" {base['note']}" if base.get("note") else ""
        return [
            "The baseline is still classified as the target class, so removing features "
            f"cannot fully change the answer.{note}"
        ]
    return []


def _category_label(category: type) -> str:
    """``UnreliableResultWarning`` -> ``"Unreliable result"``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", category.__name__.removesuffix("Warning"))
    return words.capitalize() or "Warning"


def _warnings_section(result: AblationPathResult) -> Html:
    """One yellow box per warning of :func:`result_warnings`, then the report's own notes."""
    items = [(_category_label(cat), msg) for cat, msg in result_warnings(result)]
    items += [("Baseline", note) for note in _report_notes(result)]
    return join(
        element(
            "div",
            element("span", f"{kind}:", class_="kind"),
            " " + message[:1].upper() + message[1:],
            class_="warning",
            role="alert",
        )
        for kind, message in items
    )


# ---------------------------------------------------------------------------------- curve (SVG)
@dataclass(frozen=True)
class _Plot:
    """Geometry of the probability plot (SVG user units)."""

    width: int = 560
    height: int = 220
    left: int = 44
    right: int = 12
    top: int = 12
    bottom: int = 34

    def x(self, t: float) -> float:
        return self.left + t * (self.width - self.left - self.right)

    def y(self, p: float) -> float:
        return self.top + (1 - p) * (self.height - self.top - self.bottom)


_PLOT = _Plot()
_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _polyline(times: np.ndarray, values: np.ndarray, css_class: str) -> Html:
    points = " ".join(
        f"{_PLOT.x(float(t)):.1f},{_PLOT.y(float(v)):.1f}"
        for t, v in zip(times, np.nan_to_num(values), strict=True)
    )
    return element("polyline", class_=css_class, points=points, void=True)


def _axes() -> Html:
    """Grid lines, tick labels and the axis name."""
    p, parts = _PLOT, []
    for v in _TICKS:
        y, x = p.y(v), p.x(v)
        parts.append(
            element("line", class_="grid", x1=p.left, x2=p.width - p.right, y1=y, y2=y, void=True)
        )
        parts.append(element("text", v, class_="tick", x=p.left - 6, y=y + 4, text_anchor="end"))
        parts.append(
            element("text", v, class_="tick", x=x, y=p.height - p.bottom + 16, text_anchor="middle")
        )
    parts.append(
        element("text", "t", class_="tick", x=p.width - p.right, y=p.height - 4, text_anchor="end")
    )
    return join(parts)


def _clt_marker(t_clt: float) -> Html:
    """The class-transition line with its label."""
    p, right = _PLOT, t_clt >= 0.6
    x = p.x(t_clt)
    line = element(
        "line",
        id="clt-marker",
        class_="clt",
        data_t=f"{t_clt:.6f}",
        x1=x,
        x2=x,
        y1=p.top,
        y2=p.height - p.bottom,
        void=True,
    )
    label = element(
        "text",
        f"class transition t = {t_clt:.3f}",
        class_="clt-label",
        x=x - 4 if right else x + 4,
        y=p.top + 12,
        text_anchor="end" if right else "start",
    )
    return join([line, label])


def _t_marker() -> Html:
    """The current-``t`` line (moved by the script) and the click target over the plot (last,
    so that it is on top of the curves)."""
    p = _PLOT
    x0, bottom = p.x(0.0), p.height - p.bottom
    line = element("line", id="t-marker", x1=x0, x2=x0, y1=p.top, y2=bottom, void=True)
    hit = element(
        "rect",
        id="curve-hit",
        x=p.left,
        y=p.top,
        width=p.width - p.left - p.right,
        height=bottom - p.top,
        fill="transparent",
        void=True,
    )
    return join([line, hit])


def _curves(result: AblationPathResult, classes: Sequence[int]) -> tuple[list[Html], list[Html]]:
    """Polylines and legend items: the top other classes faintly, then the target along each
    path (and along the complement for the contrastive score)."""
    times = result.all_times.double().cpu().numpy()
    probs = result.probs.double().cpu().numpy()
    name = _class_label(result, result.target)
    others = [k for k in classes if k != result.target]
    ranked = sorted(others, key=lambda k: -float(np.nan_to_num(probs[:, k]).max()))[:TOP_OTHERS]
    lines = [_polyline(times, probs[:, k], "p-other") for k in ranked]
    legend = [_legend("sw-other", "─", "top other classes")] if ranked else []
    two = result.probs_down is not None
    series = [("p-target", "sw-target", "━", probs, "the first path φ↑" if two else "the path")]
    if result.probs_down is not None:
        series.append(
            (
                "p-down",
                "sw-down",
                "━",
                result.probs_down.double().cpu().numpy(),
                "the second path φ↓",
            )
        )
    if result.probs_complement is not None:
        comp = result.probs_complement.double().cpu().numpy()
        series.append(("p-comp", "sw-comp", "┄", comp, "the complement 1 − φ"))
    for line_class, swatch_class, swatch, values, where in series:
        lines.append(_polyline(times, values[:, result.target], line_class))
        legend.append(_legend(swatch_class, swatch, f"P({name}) along {where}"))
    return lines, legend


def _legend(swatch_class: str, swatch: str, text: str) -> Html:
    return element("li", element("span", swatch, class_=swatch_class), " ", text)


def _curve_svg(result: AblationPathResult, classes: Sequence[int]) -> Html:
    """Probability curves along ``t`` as inline SVG with the class transition and the current
    ``t`` marked, and the legend under it."""
    p = _PLOT
    lines, legend = _curves(result, classes)
    svg = element(
        "svg",
        _axes(),
        _clt_marker(result.class_transition_time),
        *lines,
        _t_marker(),
        id="curve",
        viewBox=f"0 0 {p.width} {p.height}",
        width=p.width,
        height=p.height,
        role="img",
        aria_label="target probability along t",
    )
    return join([svg, element("ul", *legend, class_="legend")])


# ---------------------------------------------------------------------------------- path panels
@dataclass
class _PathView:
    """One path as the page shows it: its id prefix, heading, probabilities and images."""

    prefix: str
    heading: str
    probs: Tensor
    images: tuple[np.ndarray, np.ndarray] | None
    missing_note: str


def _path_views(result: AblationPathResult) -> list[_PathView]:
    """The path (or both paths of a straddling pair) with what can be shown of each."""
    feats = result.features
    views = [
        _PathView(
            "",
            "First path φ↑" if result.probs_down is not None else "Path",
            result.probs,
            _path_images(result),
            f"No images are stored for this {feats} path (saved without frames); the "
            "probabilities are shown.",
        )
    ]
    if result.probs_down is not None:
        second = _pixel_frames(result, result.path_down) if result.path_down is not None else None
        views.append(
            _PathView(
                "down-",
                "Second path φ↓",
                result.probs_down,
                second,
                f"The second path's images cannot be rendered from the saved {feats} result "
                "without its feature decomposition; its probabilities are shown.",
            )
        )
    return views


def _path_panel(view: _PathView) -> Html:
    """The per-path column: interpolated image, mask, target probability and top classes."""
    images = (
        render("path_images.html", prefix=view.prefix)
        if view.images is not None
        else element("p", view.missing_note, class_="note")
    )
    return render("path_panel.html", prefix=view.prefix, heading=view.heading, images=images)


def _path_data(view: _PathView, cls_index: Tensor, table: _ImageTable) -> dict[str, Any]:
    """A path's entry in the page data: probabilities of the shown classes, image indices."""
    frames = masks = None
    if view.images is not None:
        frames = [table.add(_png_data_uri(_hwc(f))) for f in view.images[0]]
        masks = [table.add(_png_data_uri(m)) for m in view.images[1]]
    return {
        "prefix": view.prefix,
        "probs": _round(view.probs.float()[:, cls_index]),
        "frames": frames,
        "masks": masks,
    }


# ---------------------------------------------------------------------------------- heatmaps
def _colorbar_uri(signed: bool) -> str:
    lut = colormap_lut(DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)
    return _png_data_uri(lut[None])


def _heatmap_figure(result: AblationPathResult, kind: str, window: bool) -> Html:
    """One heatmap over the target image, with its words, colour bar and range."""
    values = result.heatmap(kind, window=window).double().cpu().numpy()
    signed = is_signed(kind, values)
    rgb, (lo, hi) = colorize(values, signed)
    label = heatmap_label(kind)
    default = kind == result.default_reduction
    return render(
        "heatmap.html",
        css_class="default" if default else "",
        kind=kind,
        window=str(window).lower(),
        reference=label.reference,
        image=_png_data_uri(rgb),
        title=label.title,
        mark=" (default)" if default else "",
        description=label.description,
        colorbar=_colorbar_uri(signed),
        low=f"{lo:.3g}",
        high=f"{hi:.3g}",
    )


def _heatmaps_section(result: AblationPathResult) -> Html:
    """Every heatmap of the result (any key), as computed and with the boundary window."""
    rows = []
    for window in (False, True):
        caption = WINDOW_LABEL if window else "as computed"
        figures = [_heatmap_figure(result, kind, window) for kind in result.heatmaps]
        rows.append(element("h3", caption))
        rows.append(element("div", *figures, class_="row heatmaps"))
    return render("heatmaps.html", rows=join(rows))


# ---------------------------------------------------------------------------------- tables
def _table(rows: Sequence[tuple[str, Any]], table_id: str) -> Html:
    """A two-column table: words on the left, rounded values on the right."""
    body = (
        element("tr", element("th", label), element("td", format_value(value)))
        for label, value in rows
    )
    return element("table", *body, id=table_id)


#: Summary keys shown first (in this order) and with their own words.
_SUMMARY_FIRST = (
    ("score", "score function"),
    ("features", "features (mask space)"),
    ("path_score", "path score"),
    ("saturation", "saturation"),
    ("converged", "converged (saturated)"),
    ("stopped", "stopped"),
    ("iterations", "iterations"),
    ("pinned", "score pinned near its maximum"),
    ("class_transition_time", "class transition t"),
    ("target_prob_image", "P(target) on the image (t = 0)"),
    ("target_prob_baseline", "P(target) on the baseline (t = 1)"),
)


def _summary_rows(result: AblationPathResult) -> list[tuple[str, Any]]:
    """The result's summary in words: target, score, convergence, probabilities, timings, ..."""
    summary = result.summary()
    summary.pop("settings", None)
    label = _class_label(result, result.target)
    target = f"{result.target} ({label})" if result.class_names else str(result.target)
    rows: list[tuple[str, Any]] = [("target", target)]
    rows += [(words, summary.get(key)) for key, words in _SUMMARY_FIRST]
    rows.append(("time samples", f"{len(result.times)} interior + 2 ends"))
    shown = {key for key, _ in _SUMMARY_FIRST} | {"target", "target_name"}
    rows += [(setting_label(str(k)), v) for k, v in summary.items() if k not in shown]
    return rows


def _settings_rows(result: AblationPathResult) -> list[tuple[str, Any]]:
    """The optimiser configuration, sorted by key, in words."""
    settings = result.info.get("config", {}) if isinstance(result.info, dict) else {}
    if not isinstance(settings, dict):
        return []
    return [
        (setting_label(str(k)), v) for k, v in sorted(settings.items(), key=lambda kv: str(kv[0]))
    ]


# ---------------------------------------------------------------------------------- page
def _page_data(
    result: AblationPathResult, classes: list[int], views: list[_PathView], table: _ImageTable
) -> dict[str, Any]:
    """Everything the script needs, for the JSON block (images by index into ``images``)."""
    value_range = _display_range(result)
    target_image = table.add(_png_data_uri(_hwc(_to_uint8(result.image, value_range))))
    baseline_image = table.add(_png_data_uri(_hwc(_to_uint8(result.baseline_image, value_range))))
    cls_index = torch.tensor(classes)
    paths = [_path_data(view, cls_index, table) for view in views]
    return {
        "times": _round(result.all_times),
        "target": result.target,
        "classes": classes,
        "names": {str(k): _class_label(result, k) for k in classes},
        "top": TOP_OTHERS,
        "paths": paths,
        "images": table.uris,
        "target_image": target_image,
        "baseline_image": baseline_image,
        "interval": PLAY_INTERVAL_MS,
        "svg": {
            "left": _PLOT.left,
            "width": _PLOT.width - _PLOT.left - _PLOT.right,
            "total": _PLOT.width,
        },
        "class_transition_time": result.class_transition_time,
        "score": result.score,
        "features": result.features,
        "path_score": result.path_score,
        "saturation": result.saturation,
        "converged": result.converged,
        "pinned": result.pinned,
    }


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
    target_label = _class_label(result, result.target)
    title = title if title is not None else f"Ablation path: {target_label} ({result.score})"
    probs_down = result.probs_down
    classes = _shown_classes(
        result, [result.probs] + ([probs_down] if probs_down is not None else [])
    )
    views = _path_views(result)
    script = inline("report.js")
    data = _page_data(result, classes, views, _ImageTable())
    return render(
        "report.html",
        csp=content_security_policy(script),
        title=title,
        style=inline("report.css"),
        score=result.score,
        features=result.features,
        steps=len(data["times"]),
        target_label=target_label,
        warnings=_warnings_section(result),
        curve=_curve_svg(result, classes),
        last_index=len(data["times"]) - 1,
        first_time=f"{data['times'][0]:.4f}",
        panels=join(_path_panel(view) for view in views),
        heatmaps=_heatmaps_section(result),
        summary=_table(_summary_rows(result), "summary"),
        settings=_table(_settings_rows(result), "settings"),
        data=Html(_json_for_script(data)),
        script=script,
    )


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
