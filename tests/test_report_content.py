"""What the path browser *shows*, read back from the page: every number, curve, class name and
image of a hand-built result, compared with expectations written out here (not with the
report's own helpers).

The page is parsed with :class:`html.parser.HTMLParser`; images are decoded from their data
URIs with Pillow and compared with the input mapped to ``0..255`` by NumPy; curve points are
mapped back from SVG user units (plot area ``x in [44, 548]``, ``y in [12, 186]``, ``p = 1``
at the top) to ``(t, p)``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ablation_paths.diagnostics import result_warnings
from ablation_paths.display import heatmap_label
from ablation_paths.report import render_report, write_report
from ablation_paths.result import AblationPathResult

T = 4  # interior samples
K = 10  # classes
TARGET = 2
NAMES = ["ant", "bee", "zebra", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis"]
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- the page
class _Page(HTMLParser):
    """Elements (tag, attributes, text inside them), in document order."""

    VOID = {"meta", "img", "input", "br", "line", "polyline", "rect"}

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": ""}
        self.elements.append(el)
        if tag not in self.VOID:
            self._open.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append({"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": ""})

    def handle_endtag(self, tag: str) -> None:
        self._open.pop()

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el["text"] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, Any]]:
        """Elements ``tag`` whose attributes include ``attrs`` (``class_`` for ``class``)."""
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [
            el
            for el in self.elements
            if el["tag"] == tag and all(el["attrs"].get(k) == v for k, v in want.items())
        ]

    def one(self, tag: str, **attrs: str) -> dict[str, Any]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


def _data(page: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))))


def _table(page: _Page, table_id: str) -> list[tuple[str, str]]:
    """The rows of a two-column table, in order: (th text, td text)."""
    start = page.elements.index(page.one("table", id=table_id))
    rows: list[tuple[str, str]] = []
    for el in page.elements[start + 1 :]:
        if el["tag"] == "table":
            break
        if el["tag"] == "tr":
            rows.append(("", ""))
        elif el["tag"] == "th":
            assert rows and rows[-1] == ("", ""), "a <th> outside its own <tr>"
            rows[-1] = (el["text"], "")
        elif el["tag"] == "td":
            rows[-1] = (rows[-1][0], el["text"])
    return rows


def _curve(points: str) -> tuple[np.ndarray, np.ndarray]:
    """A polyline's ``points`` in SVG units back to times and probabilities."""
    xy = np.array([[float(v) for v in pair.split(",")] for pair in points.split()])
    return (xy[:, 0] - 44) / 504, 1 - (xy[:, 1] - 12) / 174


# ------------------------------------------------------------------------------- results
def _probs(seed: int, target_curve: list[float]) -> torch.Tensor:
    """``[T + 2, K]`` rows summing to 1 with the target column ``target_curve`` and the other
    classes distinct (no ties in any ranking)."""
    g = np.random.default_rng(seed)
    rest = g.permutation(np.arange(1, K)) + g.uniform(0, 0.5, size=(T + 2, 1))
    rows = []
    for p_target, r in zip(target_curve, rest, strict=True):
        others = r / r.sum() * (1 - p_target)
        rows.append(np.insert(others, TARGET, p_target))
    return torch.tensor(np.array(rows), dtype=torch.float32)


def _uint8_levels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Integers 0..254 with a fractional part 0.3 or 0.7 (never near a rounding tie)."""
    g = np.random.default_rng(seed)
    return g.integers(0, 255, size=shape) + g.choice([0.3, 0.7], size=shape)


def _result(**changes: Any) -> AblationPathResult:
    """A retaining result on a 6 x 10 RGB image (values k / 255 + 0.3 or 0.7 levels), pixel
    masks 3 x 5, target "zebra" (class 2) predicted with p = 0.7 on the image."""
    g = torch.Generator().manual_seed(1)
    image = torch.tensor(_uint8_levels((3, 6, 10), 1) / 255, dtype=torch.float32)
    baseline = torch.tensor(_uint8_levels((3, 6, 10), 2) / 255, dtype=torch.float32)
    curve = [0.7, 0.66, 0.41, 0.22, 0.13, 0.05]
    base = AblationPathResult(
        path=torch.rand(T, 3, 5, generator=g).sort(dim=0).values,
        times=torch.arange(1, T + 1, dtype=torch.float32) / (T + 1),
        target=TARGET,
        score="retain",
        probs=_probs(0, curve),
        path_score=0.61803398,
        saturation=0.87654321,
        iterations=17,
        converged=True,
        stopped="saturated",
        heatmaps={
            "average": torch.rand(6, 10, generator=g),
            "class_transition": torch.rand(6, 10, generator=g) + 2.0,
            "influence": torch.rand(6, 10, generator=g) - 0.7,
        },
        image=image,
        baseline_image=baseline,
        class_names=list(NAMES),
        target_name="zebra",
        info={"config": {"step_size": 0.05, "n_steps": T, "pinch": True}, "wall_seconds": 2.5},
    )
    return dataclasses.replace(base, **changes)


_LEAST = int(np.argmin(_probs(0, [0.7] * (T + 2))[0].numpy()))


def _straddle(**changes: Any) -> AblationPathResult:
    """A straddling pair: the second path's target curve rises; the least probable class of
    the first path (``_LEAST``) is in the top six only along the second path."""
    r = _result()
    down = _probs(5, [0.7, 0.3, 0.5, 0.6, 0.68, 0.69])
    down[:, _LEAST] += 0.5
    down /= down.sum(dim=1, keepdim=True)
    heat = dict(r.heatmaps, contrastive=torch.linspace(-1, 3, 60).reshape(6, 10))
    base = dataclasses.replace(
        r,
        score="straddle",
        path_down=1 - r.path,
        probs_down=down,
        heatmaps=heat,
    )
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------------------- numbers
def test_summary_table_shows_every_field_in_words() -> None:
    r = _result(converged=False, stopped="max_iterations", info={**_result().info, "predicted": 2})
    page = _Page(render_report(r))
    rows = _table(page, "summary")
    t_clt = r.class_transition_time
    assert t_clt in (0.2, 0.4, 0.6, 0.8) or abs(t_clt * 5 - round(t_clt * 5)) < 1e-6
    assert rows == [
        ("target", "2 (zebra)"),
        ("score function", "retain"),
        ("features (mask space)", "pixel"),
        ("path score", "0.618"),
        ("saturation", "0.8765"),
        ("converged (saturated)", "no"),
        ("stopped", "max_iterations"),
        ("iterations", "17"),
        ("score pinned near its maximum", "yes" if r.pinned else "no"),
        ("class transition t", f"{t_clt:.4g}"),
        ("P(target) on the image (t = 0)", "0.7"),
        ("P(target) on the baseline (t = 1)", "0.05"),
        ("time samples", "4 interior + 2 ends"),
        ("wall time (s)", "2.5"),
        ("predicted class on the image", "2"),
    ]
    # without class names the target is its index alone
    bare = _Page(render_report(dataclasses.replace(r, class_names=None)))
    assert _table(bare, "summary")[0] == ("target", "2")


def test_settings_table_sorted_by_key_in_words() -> None:
    page = _Page(render_report(_result()))
    assert _table(page, "settings") == [
        ("time samples", "4"),
        ("pinch", "yes"),
        ("step size", "0.05"),
    ]
    for info in ({}, {"config": {}}):
        assert _table(_Page(render_report(_result(info=info))), "settings") == []


def test_pinned_score_in_summary_and_data() -> None:
    pinned = _result(path_score=0.995)  # retaining: at most 1, faithful max(0.7, 0.05)
    assert pinned.pinned
    page = render_report(pinned)
    rows = dict(_table(_Page(page), "summary"))
    assert rows["score pinned near its maximum"] == "yes"
    assert rows["path score"] == "0.995"
    assert _data(page)["pinned"] is True
    assert _data(render_report(_result()))["pinned"] is False


def test_page_data_carries_the_results_numbers() -> None:
    r = _straddle(converged=False)
    data = _data(render_report(r))
    assert data["score"] == "straddle" and data["features"] == "pixel"
    assert data["path_score"] == pytest.approx(0.61803398, abs=1e-12)
    assert data["saturation"] == pytest.approx(0.87654321, abs=1e-12)
    assert data["converged"] is False and data["pinned"] is r.pinned
    assert data["class_transition_time"] == pytest.approx(r.class_transition_time, abs=1e-12)
    assert data["target"] == TARGET and data["top"] == 5 and data["interval"] == 450
    assert data["svg"] == {"left": 44, "width": 504, "total": 560}
    np.testing.assert_allclose(data["times"], [0, 0.2, 0.4, 0.6, 0.8, 1], atol=1e-6)
    assert data["names"] == {str(k): NAMES[k] for k in data["classes"]}
    assert [p["prefix"] for p in data["paths"]] == ["", "down-"]
    cls = data["classes"]
    assert r.probs_down is not None
    for entry, probs in zip(data["paths"], (r.probs, r.probs_down), strict=True):
        np.testing.assert_allclose(entry["probs"], probs[:, cls].numpy(), atol=5e-7)


def test_shown_classes_are_the_top_six_along_either_path() -> None:
    """Reference: for every sample of every path, the six most probable classes (argsort)."""
    r = _straddle()
    assert r.probs_down is not None
    want = {TARGET}
    for probs in (r.probs, r.probs_down):
        for row in probs.numpy():
            want.update(int(k) for k in np.argsort(-row)[:6])
    data = _data(render_report(r))
    assert data["classes"] == sorted(want)
    first = set(np.argsort(-r.probs.numpy(), axis=1)[:, :6].flatten())
    assert _LEAST in want and _LEAST not in first and len(want) < K
    # fewer than seven classes: all of them
    few = _result(probs=torch.softmax(torch.arange(9.0).reshape(3, 3).repeat(2, 1), 1))
    few = dataclasses.replace(few, target=1, class_names=None, target_name=None)
    names = _data(render_report(few))["names"]
    assert names == {"0": "class 0", "1": "class 1", "2": "class 2"}


def test_class_without_a_name_is_labelled_by_index() -> None:
    """Names for the classes below the largest shown class ``c`` only: ``c`` and every class
    from 3 on are labelled by their index."""
    c = max(_data(render_report(_result()))["classes"])
    for n in (3, c):
        data = _data(render_report(_result(class_names=NAMES[:n])))
        assert data["names"]["2"] == "zebra" and data["names"]["1"] == "bee"
        assert all(data["names"][str(k)] == f"class {k}" for k in data["classes"] if k >= n)
        assert str(c) in data["names"]


def test_header_and_controls() -> None:
    r = _straddle()
    page = _Page(render_report(r))
    assert page.one("title")["text"] == "Ablation path: zebra (straddle)"
    assert page.one("h1", id="title")["text"] == "Ablation path: zebra (straddle)"
    assert page.one("strong", id="target-label")["text"] == "zebra"
    body = page.one("body")["attrs"]
    assert (body["data-score"], body["data-features"], body["data-steps"]) == (
        "straddle",
        "pixel",
        "6",
    )
    assert page.one("input", id="t-slider")["attrs"]["max"] == "5"
    assert page.one("span", id="t-value")["text"] == "0.0000"
    headings = [page.one("section", id=f"{p}panel") for p in ("", "down-")]
    texts = [
        el["text"] for el in page.find("h3") if el["text"] in ("First path φ↑", "Second path φ↓")
    ]
    assert texts == ["First path φ↑", "Second path φ↓"] and all(headings)
    single = _Page(render_report(_result()))
    assert [el["text"] for el in single.find("h3") if el["text"] == "Path"] == ["Path"]
    assert single.find("section", id="down-panel") == []


# ------------------------------------------------------------------------------- warnings
def _warnings(page: _Page) -> list[tuple[str, str, str]]:
    """(role, text of the box's ``<span class="kind">``, whole text) of each warning box."""
    out = []
    for el in page.find("div", class_="warning"):
        after = page.elements[page.elements.index(el) + 1]
        assert (after["tag"], after["attrs"]) == ("span", {"class": "kind"})
        out.append((el["attrs"].get("role", ""), after["text"], el["text"]))
    return out


def test_each_library_warning_is_one_box_with_its_kind() -> None:
    """Target not predicted and unsaturated: two "Unreliable result" boxes with the library's
    messages, first letter capitalised."""
    probs = _probs(0, [0.2, 0.66, 0.41, 0.22, 0.13, 0.05])
    probs[0] = torch.tensor([0.05, 0.5, 0.2, 0.05, 0.05, 0.05, 0.05, 0.03, 0.01, 0.01])
    r = _result(probs=probs, converged=False)
    page = _Page(render_report(r))
    messages = [m for _, m in result_warnings(r)]
    assert len(messages) == 2
    assert "'zebra' is not the predicted class (1)" in messages[0]
    assert "did not saturate (saturation 0.88 after 17 iterations)" in messages[1]
    want = [("alert", "Unreliable result:", f"Unreliable result: T{m[1:]}") for m in messages]
    assert _warnings(page) == want
    clean = _Page(render_report(_result()))
    assert result_warnings(_result()) == [] and _warnings(clean) == []


@pytest.mark.parametrize(
    ("baseline", "note"),
    [
        ({"flips_class": False, "note": "Blur up to sigma 40."}, " Blur up to sigma 40."),
        ({"flips_class": False}, ""),
        ({"flips_class": False, "note": ""}, ""),
    ],
)
def test_baseline_that_keeps_the_class_is_noted(baseline: dict[str, Any], note: str) -> None:
    r = _result(info={**_result().info, "baseline": baseline})
    text = (
        "Baseline: The baseline is still classified as the target class, so removing features "
        f"cannot fully change the answer.{note}"
    )
    assert _warnings(_Page(render_report(r))) == [("alert", "Baseline:", text)]


@pytest.mark.parametrize("baseline", [{"flips_class": True}, {}, {"flips_class": None}, "x"])
def test_baseline_that_flips_is_not_noted(baseline: Any) -> None:
    r = _result(info={**_result().info, "baseline": baseline})
    assert _warnings(_Page(render_report(r))) == []


def test_warning_box_for_a_warning_category_of_two_words() -> None:
    from ablation_paths.report import _category_label

    class InputShapeWarning(UserWarning):
        pass

    class Warning(UserWarning):  # noqa: A001 (the bare name)
        pass

    assert _category_label(InputShapeWarning) == "Input shape"
    assert _category_label(Warning) == "Warning"


# ------------------------------------------------------------------------------- curves
def _polylines(page: _Page, css: str) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_curve(el["attrs"]["points"]) for el in page.find("polyline", class_=css)]


@pytest.mark.parametrize("score", ["retain", "straddle", "contrastive"])
def test_every_curve_drawn_with_its_values(score: str) -> None:
    """One point per sample (ends included) at (t, P(target)): the path, the second path of
    the straddling pair, the complement of the contrastive score; the five other classes of
    highest maximum along the first path, in that order."""
    r = _straddle() if score == "straddle" else _result(score=score)
    if score == "contrastive":
        r = dataclasses.replace(r, probs_complement=_probs(9, [0.1, 0.2, 0.3, 0.35, 0.5, 0.6]))
    page = _Page(render_report(r))
    times = np.linspace(0, 1, T + 2)
    series = {
        "p-target": r.probs,
        "p-down": r.probs_down,
        "p-comp": r.probs_complement,
    }
    for css, probs in series.items():
        drawn = _polylines(page, css)
        if probs is None:
            assert drawn == [], css
            continue
        ((t, p),) = drawn
        np.testing.assert_allclose(t, times, atol=1e-3)
        np.testing.assert_allclose(p, probs[:, TARGET].numpy(), atol=1e-3)
    first = r.probs.numpy()
    order = sorted((k for k in range(K) if k != TARGET), key=lambda k: -first[:, k].max())
    others = _polylines(page, "p-other")
    assert len(others) == 5
    for (t, p), k in zip(others, order[:5], strict=True):
        np.testing.assert_allclose(t, times, atol=1e-3)
        np.testing.assert_allclose(p, first[:, k], atol=1e-3)


@pytest.mark.parametrize(
    ("score", "want"),
    [
        (
            "retain",
            [("─", "sw-other", "top other classes"), ("━", "sw-target", "P(zebra) along the path")],
        ),
        (
            "straddle",
            [
                ("─", "sw-other", "top other classes"),
                ("━", "sw-target", "P(zebra) along the first path φ↑"),
                ("━", "sw-down", "P(zebra) along the second path φ↓"),
            ],
        ),
        (
            "contrastive",
            [
                ("─", "sw-other", "top other classes"),
                ("━", "sw-target", "P(zebra) along the path"),
                ("┄", "sw-comp", "P(zebra) along the complement 1 − φ"),
            ],
        ),
    ],
)
def test_legend_names_each_curve(score: str, want: list[tuple[str, str, str]]) -> None:
    r = _straddle() if score == "straddle" else _result(score=score)
    if score == "contrastive":
        r = dataclasses.replace(r, probs_complement=r.probs.flip(0))
    page = _Page(render_report(r))
    legend = page.one("ul", class_="legend")
    start = page.elements.index(legend)
    items = [el for el in page.elements[start + 1 :] if el["tag"] == "li"][: len(want) + 1]
    got = []
    for li in items[: len(want)]:
        span = page.elements[page.elements.index(li) + 1]
        got.append((span["text"], span["attrs"]["class"], li["text"][len(span["text"]) + 1 :]))
    assert got == want
    assert len([el for el in page.elements[start:] if el["tag"] == "li"]) == len(want)


def test_single_class_has_no_other_curves() -> None:
    ones = torch.ones(T + 2, 1)
    r = _result(probs=ones, target=0, class_names=None, target_name=None)
    page = _Page(render_report(r))
    assert page.find("polyline", class_="p-other") == []
    assert [
        el["attrs"]["class"] for el in page.find("span") if "sw-" in el["attrs"].get("class", "")
    ] == ["sw-target"]


def test_class_transition_marker_at_the_results_time() -> None:
    r = _result()
    page = _Page(render_report(r))
    marker = page.one("line", id="clt-marker")["attrs"]
    t = r.class_transition_time
    assert float(marker["x1"]) == pytest.approx(44 + 504 * t, abs=1e-9)
    assert marker["data-t"] == f"{t:.6f}"
    assert page.one("text", class_="clt-label")["text"] == f"class transition t = {t:.3f}"


# ------------------------------------------------------------------------------- images
def _to_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.round(np.clip((x - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _grey(levels: np.ndarray) -> np.ndarray:
    """Channel mean of uint8 levels, rounded half to even (NumPy's rounding)."""
    return np.round(levels.astype(np.float64).mean(axis=0)).astype(np.uint8)


def _images(kind: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Image, baseline (float32 ``[C, 6, 10]``) and the uint8 levels the page must show:
    ``[6, 10]`` grey or ``[6, 10, 3]`` RGB."""
    a, b = _uint8_levels((3, 6, 10), 11), _uint8_levels((3, 6, 10), 12)
    want_a, want_b = np.round(a).astype(np.uint8), np.round(b).astype(np.uint8)
    if kind == "rgb":
        x, y = a / 255, b / 255
        want_a, want_b = want_a.transpose(1, 2, 0), want_b.transpose(1, 2, 0)
    elif kind == "grey":
        x, y = a[:1] / 255, b[:1] / 255
        want_a, want_b = want_a[0], want_b[0]
    elif kind in ("two-channel", "two-channel row"):  # shown as the rounded channel mean
        rows = slice(0, 1) if kind == "two-channel row" else slice(None)  # [2, 1, 10]
        a2, b2 = a[:2, rows], b[:2, rows]
        x, y = a2 / 255, b2 / 255
        levels_a, levels_b = np.round(a2).astype(np.uint8), np.round(b2).astype(np.uint8)
        assert np.any(levels_a.astype(int).sum(0) % 2 == 1)  # some means are ties to round
        want_a, want_b = _grey(levels_a), _grey(levels_b)
    elif kind == "touches 0":  # in [0, 1]: not rescaled to the data range
        x, y = a / 255 * 0.9, b / 255 * 0.9
        x[0, 0, 0] = 0.0
        want_a = np.round(a * 0.9).astype(np.uint8).transpose(1, 2, 0)
        want_a[0, 0, 0] = 0
        want_b = np.round(b * 0.9).astype(np.uint8).transpose(1, 2, 0)
    elif kind == "touches 1":
        x, y = 0.1 + a / 255 * 0.9, 0.1 + b / 255 * 0.9
        x[0, 0, 0] = 1.0
        want_a = np.round(25.5 + a * 0.9).astype(np.uint8).transpose(1, 2, 0)
        want_a[0, 0, 0] = 255
        want_b = np.round(25.5 + b * 0.9).astype(np.uint8).transpose(1, 2, 0)
    else:  # the data range of image and baseline together: [-1, 2], or [0.5, 1.2]
        lo, hi = (-1.0, 2.0) if kind == "normalised" else (0.5, 1.2)
        x, y = lo + a / 255 * (hi - lo), lo + b / 255 * (hi - lo)
        x[0, 0, 0], y[1, 2, 3] = lo, hi
        want_a, want_b = (
            _to_uint8(x, lo, hi).transpose(1, 2, 0),
            _to_uint8(y, lo, hi).transpose(1, 2, 0),
        )
        assert want_a[0, 0, 0] == 0 and want_b[2, 3, 1] == 255
    as_t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return as_t(x), as_t(y), want_a, want_b


@pytest.mark.parametrize(
    "kind",
    [
        "rgb",
        "grey",
        "two-channel",
        "two-channel row",
        "touches 0",
        "touches 1",
        "normalised",
        "narrow",
    ],
)
def test_target_and_baseline_images_decode_to_the_input(kind: str) -> None:
    image, baseline, want_image, want_baseline = _images(kind)
    r = _result(image=image, baseline_image=baseline)
    data = _data(render_report(r))
    shown_image = _decode(data["images"][data["target_image"]])
    shown_baseline = _decode(data["images"][data["baseline_image"]])
    np.testing.assert_array_equal(shown_image, want_image)
    np.testing.assert_array_equal(shown_baseline, want_baseline)


@pytest.mark.parametrize("kind", ["rgb", "grey", "two-channel"])
def test_frames_rendered_from_the_path_start_at_the_image(kind: str) -> None:
    """No saved frames: the pixel path is rendered; its ends are the image and the baseline
    (the same levels as the page's target and baseline pictures), masks black to white."""
    image, baseline, want_image, want_baseline = _images(kind)
    r = _result(image=image, baseline_image=baseline)
    data = _data(render_report(r))
    frames, masks = data["paths"][0]["frames"], data["paths"][0]["masks"]
    assert len(frames) == len(masks) == T + 2
    np.testing.assert_array_equal(_decode(data["images"][frames[0]]), want_image)
    np.testing.assert_array_equal(_decode(data["images"][frames[-1]]), want_baseline)
    first, last = _decode(data["images"][masks[0]]), _decode(data["images"][masks[-1]])
    assert first.shape == last.shape == (6, 10)
    assert first.max() == 0 and last.min() == 255


def test_saved_uint8_frames_shown_as_stored() -> None:
    g = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (T + 2, 3, 6, 10), dtype=torch.uint8, generator=g)
    masks = torch.randint(0, 256, (T + 2, 6, 10), dtype=torch.uint8, generator=g)
    data = _data(render_report(_result(frames=frames, masks_image=masks)))
    entry = data["paths"][0]
    for i in range(T + 2):
        np.testing.assert_array_equal(
            _decode(data["images"][entry["frames"][i]]), frames[i].numpy().transpose(1, 2, 0)
        )
        np.testing.assert_array_equal(_decode(data["images"][entry["masks"][i]]), masks[i].numpy())
    # float masks with uint8 frames: masks scaled and rounded, frames as stored
    data = _data(
        render_report(_result(frames=frames, masks_image=torch.full((T + 2, 6, 10), 0.32)))
    )
    assert _decode(data["images"][data["paths"][0]["masks"][0]]).max() == 82  # 0.32 * 255 = 81.6
    np.testing.assert_array_equal(
        _decode(data["images"][data["paths"][0]["frames"][2]]), frames[2].numpy().transpose(1, 2, 0)
    )


def test_float_frames_and_masks_are_clamped_and_rounded() -> None:
    """Float frames and masks (``[0, 1]``) are clamped, then scaled to 0..255 and rounded."""
    values = torch.tensor([-0.5, 0.25, 0.8, 1.5])  # -> 0, 64 (63.75), 204, 255
    frames = values.repeat_interleave(15).reshape(1, 6, 10).expand(T + 2, 3, 6, 10).clone()
    masks = values.repeat_interleave(15).reshape(6, 10).expand(T + 2, 6, 10).clone()
    data = _data(render_report(_result(frames=frames, masks_image=masks)))
    entry = data["paths"][0]
    want = np.repeat(np.array([0, 64, 204, 255], dtype=np.uint8), 15).reshape(6, 10)
    for i in range(T + 2):
        frame = _decode(data["images"][entry["frames"][i]])
        np.testing.assert_array_equal(frame, np.repeat(want[:, :, None], 3, axis=2))
        np.testing.assert_array_equal(_decode(data["images"][entry["masks"][i]]), want)


def test_frames_without_masks_are_rendered_from_the_path() -> None:
    """Saved frames without saved masks: both are rendered from the path."""
    frames = torch.zeros(T + 2, 3, 6, 10, dtype=torch.uint8)
    r = _result(frames=frames, masks_image=None)
    data = _data(render_report(r))
    first = _decode(data["images"][data["paths"][0]["frames"][0]])
    assert first.max() > 0  # the image, not the stored black frames


# ------------------------------------------------------------------------------- heatmaps
def _figures(page: _Page) -> list[dict[str, Any]]:
    return [el for el in page.elements if el["tag"] == "figure" and "data-kind" in el["attrs"]]


def test_heatmap_figures_default_mark_words_and_ranges() -> None:
    """Every heatmap twice (as computed, then with the window) in the result's order; the
    score's natural reduction marked default; the colour bar's range is the map's min..max
    (plain) or -max|h|..max|h| (signed), written with 3 significant digits."""
    from ablation_paths.reductions import boundary_window

    r = _result()
    page = _Page(render_report(r))
    figures = _figures(page)
    kinds = list(r.heatmaps)
    assert [(f["attrs"]["data-kind"], f["attrs"]["data-window"]) for f in figures] == [
        (k, w) for w in ("false", "true") for k in kinds
    ]
    assert [
        el["text"]
        for el in page.find("h3")
        if el["text"] in ("as computed", "edges faded (boundary window)")
    ] == [
        "as computed",
        "edges faded (boundary window)",
    ]
    window = boundary_window(6, 10).double().numpy()
    imgs = iter(el for el in page.elements if el["tag"] == "img")
    for fig in figures:
        kind, windowed = fig["attrs"]["data-kind"], fig["attrs"]["data-window"] == "true"
        default = kind == "class_transition"  # retaining score: thesis Table 2.3
        assert fig["attrs"]["class"] == ("default" if default else "")
        label = heatmap_label(kind)
        assert fig["attrs"]["title"] == label.reference
        h = r.heatmaps[kind].double().numpy() * (window if windowed else 1)
        lo, hi = (-np.abs(h).max(), np.abs(h).max()) if kind == "influence" else (h.min(), h.max())
        start = page.elements.index(fig)
        inner = page.elements[start + 1 : start + 12]
        title = next(el for el in inner if el["attrs"].get("class") == "heat-title")
        assert title["text"] == label.title + (" (default)" if default else "")
        desc = next(el for el in inner if el["attrs"].get("class") == "heat-desc")
        assert desc["text"] == label.description
        shown_lo = next(el for el in inner if el["attrs"].get("class") == "lo")["text"]
        shown_hi = next(el for el in inner if el["attrs"].get("class") == "hi")["text"]
        assert (shown_lo, shown_hi) == (f"{lo:.3g}", f"{hi:.3g}")
        heat = next(el for el in inner if el["attrs"].get("class") == "heat")
        assert heat["attrs"]["alt"] == f"{label.title} heatmap"
        bar = next(
            el
            for el in inner
            if el["tag"] == "img" and "colour scale" in el["attrs"].get("alt", "")
        )
        assert bar["attrs"]["alt"] == f"colour scale from {lo:.3g} to {hi:.3g}"
        assert _decode(bar["attrs"]["src"]).shape == (1, 256, 3)
        assert _decode(heat["attrs"]["src"]).shape == (6, 10, 3)
    assert next(imgs, None) is not None


def test_straddle_marks_the_contrastive_map_default() -> None:
    page = _Page(render_report(_straddle()))
    defaults = [f["attrs"]["data-kind"] for f in _figures(page) if f["attrs"]["class"] == "default"]
    assert defaults == ["contrastive", "contrastive"]


# ------------------------------------------------------------------------------- styles
def test_every_class_the_page_uses_is_styled_or_scripted() -> None:
    """Reference: the selectors of ``report.css`` and the class names ``report.js`` uses: a
    class written by the page that neither knows is a typo (nothing would style it)."""
    folder = REPO / "src" / "ablation_paths" / "templates"
    css = (folder / "report.css").read_text(encoding="utf-8")
    js = (folder / "report.js").read_text(encoding="utf-8")
    known = set(re.findall(r"\.([A-Za-z][\w-]*)", css)) | set(re.findall(r"\.([A-Za-z][\w-]*)", js))
    probs = _probs(0, [0.2, 0.66, 0.41, 0.22, 0.13, 0.05])
    probs[0] = torch.tensor([0.05, 0.5, 0.2, 0.05, 0.05, 0.05, 0.05, 0.03, 0.01, 0.01])
    r = _straddle(probs=probs, converged=False, probs_complement=probs.flip(0))
    page = _Page(render_report(r))
    used = {c for el in page.elements for c in el["attrs"].get("class", "").split()}
    assert {
        "warning",
        "kind",
        "p-target",
        "p-down",
        "p-comp",
        "p-other",
        "clt",
        "clt-label",
    } <= used
    assert {
        "sw-other",
        "sw-target",
        "sw-down",
        "sw-comp",
        "grid",
        "tick",
        "legend",
        "default",
    } <= used
    assert {"row", "heatmaps", "heat", "heat-title", "heat-desc", "lo", "hi"} <= used
    assert used - known == {"target-line"}  # semantic only (the template's target line)


# ------------------------------------------------------------------------------- the data block
def test_data_rounded_to_six_decimals() -> None:
    """Times and probabilities are stored with 6 decimals (within 5e-7 of the result's)."""
    r = _straddle()
    data = _data(render_report(r))
    values = np.array(data["times"] + [v for p in data["paths"] for row in p["probs"] for v in row])
    np.testing.assert_array_equal(values, np.round(values, 6))
    assert np.any(np.round(r.probs.double().numpy(), 7) != np.round(r.probs.double().numpy(), 6))


def test_line_separators_and_markup_in_names_stay_data() -> None:
    """U+2028 / U+2029 (line ends for old JavaScript parsers), ``<``, ``>`` and ``&`` are
    escaped in the script block and decode back to the name."""
    name = "a\u2028b\u2029c </script><!-- & d"
    r = _result(class_names=[name] * K, target_name=name)
    page = render_report(r)
    raw = re.search(r'id="report-data">(.*?)</script>', page, re.S)
    assert raw is not None
    block = raw.group(1)
    assert not set("\u2028\u2029<>&") & set(block)
    assert {"\\u2028", "\\u2029", "\\u003c", "\\u003e", "\\u0026"} <= {
        m for m in re.findall(r"\\u[0-9a-f]{4}", block)
    }
    assert set(_data(page)["names"].values()) == {name}


def test_curve_svg_is_labelled_for_assistive_technology() -> None:
    page = _Page(render_report(_result()))
    svg = page.one("svg", id="curve")["attrs"]
    assert svg["role"] == "img" and svg["aria-label"] == "target probability along t"
    assert (svg["width"], svg["height"]) == ("560", "220")


def test_second_path_of_a_feature_result_explains_its_missing_images() -> None:
    r = _straddle(features="sift", path=torch.rand(T, 7), path_down=torch.rand(T, 7))
    page = _Page(render_report(r))
    notes = [el["text"] for el in page.find("p", class_="note")]
    assert (
        "The second path's images cannot be rendered from the saved sift result without its "
        "feature decomposition; its probabilities are shown."
    ) in notes


def test_write_report_into_an_existing_folder_with_a_title(tmp_path: Path) -> None:
    out = write_report(_result(), tmp_path / "report.html", title="Zebra, retained")
    again = write_report(_result(), tmp_path / "report.html")  # overwritten in place
    assert out == again == tmp_path / "report.html"
    page = _Page(out.read_text(encoding="utf-8"))
    assert page.one("title")["text"] == "Ablation path: zebra (retain)"
    titled = write_report(_result(), tmp_path / "titled.html", title="Zebra, retained")
    assert _Page(titled.read_text(encoding="utf-8")).one("h1", id="title")["text"] == (
        "Zebra, retained"
    )


def test_every_tick_label_is_svg_text() -> None:
    """Five labels on each axis and the axis name ``t``, all ``<text class="tick">``."""
    page = _Page(render_report(_result()))
    svg = page.one("svg", id="curve")
    start = page.elements.index(svg)
    inside = page.elements[start + 1 : start + 1 + 200]
    labels = [el["text"] for el in inside if el["attrs"].get("class") == "tick"]
    assert labels == [v for v in ("0.0", "0.25", "0.5", "0.75", "1.0") for _ in (0, 1)] + ["t"]
    assert {el["tag"] for el in inside if el["attrs"].get("class") == "tick"} == {"text"}


def test_missing_images_notes_in_full() -> None:
    bare = _result(features="sift", path=torch.rand(T, 7), frames=None, masks_image=None)
    notes = [el["text"] for el in _Page(render_report(bare)).find("p", class_="note")]
    assert (
        "No images are stored for this sift path (saved without frames); the probabilities "
        "are shown." in notes
    )
    # a pair without its second path: that panel has the note, the first its images
    pair = _straddle(path_down=None)
    page = _Page(render_report(pair))
    notes = [el["text"] for el in page.find("p", class_="note")]
    assert [n[:31] for n in notes if n.startswith("The second")] == [
        "The second path's images cannot"
    ]
    assert not any(n.startswith("No images") for n in notes)
    assert _data(render_report(pair))["paths"][1]["frames"] is None


def test_influence_is_drawn_signed_even_without_negative_values() -> None:
    """The influence map is a signed reduction: its colour scale is -max|h|..max|h| also when
    every value is positive."""
    heat = torch.linspace(0.5, 2.0, 60).reshape(6, 10)
    page = _Page(render_report(_result(heatmaps={"influence": heat})))
    fig = _figures(page)[0]
    start = page.elements.index(fig)
    inner = page.elements[start + 1 : start + 12]
    lo = next(el for el in inner if el["attrs"].get("class") == "lo")["text"]
    hi = next(el for el in inner if el["attrs"].get("class") == "hi")["text"]
    assert (lo, hi) == ("-2", "2")


def test_settings_with_keys_that_are_not_text_sorted_by_their_text() -> None:
    info = {"config": {"n_steps": 4, 10: "ten", 2: "two"}}
    rows = _table(_Page(render_report(_result(info=info))), "settings")
    assert rows == [("10", "ten"), ("2", "two"), ("time samples", "4")]
