"""The path browser (SPEC A7): the self-contained HTML report, unit-tested and driven in a real
headless Chromium (Debian's ``chromium`` package through Playwright)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths
from ablation_paths.diagnostics import result_warnings
from ablation_paths.report import TOP_OTHERS, _pixel_frames, render_report, write_report
from ablation_paths.result import AblationPathResult
from ablation_paths.templates import template_text
from conftest import system_chromium

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
NAMES = ["cat", EVIL, "dog & <b>co</b>", "fox", "owl"]
REPO = Path(__file__).resolve().parents[1]
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 16, 5),
    ).eval()


@pytest.fixture(scope="module")
def straddle() -> AblationPathResult:
    """A boundary-straddling result (two paths) on a tiny model, with a hostile class name."""
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    return ablation_paths.explain(
        _tiny_net(),
        image,
        target=3,
        score="straddle",
        class_names=NAMES,
        n_steps=5,
        max_iterations=3,
        mask_size=8,
    )


def _data(page: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    assert match is not None
    return json.loads(match.group(1), parse_constant=_no_constants)  # type: ignore[no-any-return]


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON (JSON.parse in the browser would fail)")


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))))


def _chw(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(frame).transpose(1, 2, 0)


def _expected_top(probs: torch.Tensor, target: int) -> list[int]:
    order = [int(k) for k in torch.argsort(probs, descending=True) if int(k) != target]
    return order[:TOP_OTHERS]


# ------------------------------------------------------------------------------------ unit tests
def test_class_names_and_title_are_escaped(straddle: AblationPathResult) -> None:
    title = "<b>bold</b> & <script>alert(1)</script>"
    page = render_report(straddle, title=title)
    assert "<script>window.__pwned" not in page
    assert "<img src=x" not in page
    assert "<b>bold</b>" not in page and "<script>alert(1)" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    # exactly two script elements: the JSON data block and the page's own script
    assert len(re.findall(r"<script\b", page)) == 2
    assert "<!--" not in page
    data = _data(page)  # the names survive, as data, for textContent
    assert data["names"]["1"] == EVIL
    assert data["names"]["2"] == "dog & <b>co</b>"


def test_embedded_data_matches_result(straddle: AblationPathResult) -> None:
    r = straddle
    data = _data(render_report(r))
    assert data["target"] == r.target
    np.testing.assert_allclose(data["times"], r.all_times.numpy(), atol=1e-6)
    classes = data["classes"]
    assert r.target in classes
    first, second = data["paths"]
    np.testing.assert_allclose(first["probs"], r.probs[:, classes].numpy(), atol=1e-6)
    assert r.probs_down is not None and r.frames is not None and r.masks_image is not None
    np.testing.assert_allclose(second["probs"], r.probs_down[:, classes].numpy(), atol=1e-6)
    images = data["images"]
    for i in range(len(r.all_times)):
        np.testing.assert_array_equal(_decode(images[first["frames"][i]]), _chw(r.frames[i]))
        np.testing.assert_array_equal(_decode(images[first["masks"][i]]), r.masks_image[i].numpy())
    # the second path is rendered from saved data the way the pixel mask space renders
    assert r.path_down is not None
    frames_down, masks_down = _pixel_frames(r, r.path_down) or (None, None)
    assert frames_down is not None and masks_down is not None
    for i in range(len(r.all_times)):
        np.testing.assert_array_equal(_decode(images[second["frames"][i]]), _chw(frames_down[i]))
    # ... and that renderer reproduces the first path's saved frames and masks
    frames, masks = _pixel_frames(r, r.path) or (None, None)
    assert frames is not None and masks is not None
    assert np.abs(frames.astype(int) - r.frames.numpy().astype(int)).max() <= 1
    assert np.abs(masks.astype(int) - r.masks_image.numpy().astype(int)).max() <= 1
    # the path ends are the target image and the baseline, stored once
    assert first["frames"][0] == second["frames"][0] == data["target_image"]
    assert first["frames"][-1] == data["baseline_image"]


def test_self_contained_no_network(straddle: AblationPathResult) -> None:
    page = render_report(straddle)
    assert "http://" not in page and "https://" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for attr in re.findall(r'\b(?:src|href)="([^"]*)"', page):
        assert attr.startswith("data:"), attr


def test_summary_and_warnings(straddle: AblationPathResult) -> None:
    unsaturated = dataclasses.replace(straddle, converged=False, stopped="max_iterations")
    page = render_report(unsaturated)
    assert page.count('class="warning"') >= 1 and "did not saturate" in page
    pinned = dataclasses.replace(straddle, converged=True, path_score=1.995)
    assert pinned.pinned
    pinned_page = render_report(pinned)
    for _, message in result_warnings(pinned):
        assert html.escape(message[1:]) in pinned_page
    # the page shows exactly the library's checks (diagnostics.result_warnings), escaped
    for _, message in result_warnings(unsaturated):
        assert html.escape(message[1:]) in page
    probs = straddle.probs.clone()
    probs[0] = torch.nn.functional.one_hot(torch.tensor(straddle.target), probs.shape[1])
    clean = dataclasses.replace(
        straddle,
        converged=True,
        path_score=0.5,
        probs=probs,
        info={**straddle.info, "baseline": {}},
    )
    assert result_warnings(clean) == []
    page = render_report(clean)
    assert 'class="warning"' not in page
    still = dataclasses.replace(clean, info={**clean.info, "baseline": {"flips_class": False}})
    assert "still classified as the target" in render_report(still)  # the report's own note
    assert 'id="summary"' in page and 'id="settings"' in page
    for kind in straddle.heatmaps:  # every reduction, with and without the window
        assert f'data-kind="{kind}" data-window="false"' in page
        assert f'data-kind="{kind}" data-window="true"' in page


def test_write_report_from_saved_result(straddle: AblationPathResult, tmp_path: Path) -> None:
    loaded = ablation_paths.load(straddle.save(tmp_path / "result.npz"))
    out = write_report(loaded, tmp_path / "sub" / "report.html")
    assert out.is_file()
    assert _data(out.read_text(encoding="utf-8")) == _data(render_report(straddle))


def test_feature_paths_and_missing_frames(straddle: AblationPathResult) -> None:
    """Any mask space: a SIFT-shaped path shows its saved decoded frames; without frames (and
    no way to decode) the page still renders with the probabilities."""
    r = straddle
    n_feat = 40
    t = len(r.times)
    sift = dataclasses.replace(
        r,
        features="sift",
        path=torch.rand(t, n_feat),
        path_down=torch.rand(t, n_feat),
    )
    data = _data(render_report(sift))
    assert data["paths"][0]["frames"] is not None
    assert data["paths"][1]["frames"] is None
    bare = dataclasses.replace(sift, frames=None, masks_image=None)
    page = render_report(bare)
    assert _data(page)["paths"][0]["frames"] is None and "No images are stored" in page
    grey = dataclasses.replace(
        r,
        image=r.image[:1],
        baseline_image=r.baseline_image[:1],
        frames=None,
        masks_image=None,
    )
    frames = _data(render_report(grey))["paths"][0]["frames"]
    assert frames is not None and len(frames) == t + 2


def test_non_finite_values_render(straddle: AblationPathResult) -> None:
    probs = straddle.probs.clone()
    probs[2, 0] = float("nan")
    broken = dataclasses.replace(straddle, probs=probs, path_score=float("nan"))
    data = _data(render_report(broken))  # strict JSON: NaN became null
    assert data["path_score"] is None
    assert data["paths"][0]["probs"][2][data["classes"].index(0)] is None


#: Markup, both quotes, an ampersand and template placeholders: all must stay literal text.
HOSTILE = "<img src=x onerror=alert(1)>\"'&${title}$data"


@pytest.fixture(scope="module")
def hostile(straddle: AblationPathResult) -> AblationPathResult:
    """The straddling result with the hostile string in every text the page shows: the target
    and every other class slot, a heatmap name, a setting (key and value), the baseline note,
    an info entry; unsaturated and with the target not predicted, so warnings name the target."""
    names = [f"{HOSTILE}{k}" for k in range(len(NAMES))]
    config = {**straddle.info.get("config", {}), HOSTILE: HOSTILE}
    info = {
        **straddle.info,
        "config": config,
        "baseline": {"flips_class": False, "note": HOSTILE},
        HOSTILE: [HOSTILE, 0.5],
    }
    return dataclasses.replace(
        straddle,
        class_names=names,
        target_name=names[straddle.target],
        heatmaps={**straddle.heatmaps, HOSTILE: straddle.heatmaps["average"]},
        info=info,
        converged=False,
    )


class _Page(HTMLParser):
    """Every text node with the elements it is in, every element with its (decoded)
    attributes; checks that elements nest properly."""

    VOID = {"meta", "img", "input", "br", "line", "polyline", "rect"}

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.texts: list[tuple[list[tuple[str, dict[str, str]]], str]] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(page)
        self.close()
        assert self.stack == [], f"unclosed elements: {[t for t, _ in self.stack]}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append((list(self.stack), data))

    def text_in(self, tag: str, **attrs: str) -> str:
        """All text inside elements ``tag`` having ``attrs``."""

        def inside(stack: list[tuple[str, dict[str, str]]]) -> bool:
            return any(t == tag and all(a.get(k) == v for k, v in attrs.items()) for t, a in stack)

        return "".join(text for stack, text in self.texts if inside(stack))


def test_hostile_text_escaped_in_every_position(hostile: AblationPathResult) -> None:
    """The hostile string shows as text everywhere a result's text appears, and never as
    markup: no injected element or attribute, and the page's elements nest as written."""
    page = render_report(hostile, title=HOSTILE)
    assert "<img src=x" not in page and HOSTILE not in page
    parsed = _Page(page)
    assert not [a for _, a in parsed.elements if "onerror" in a or a.get("src") == "x"]
    assert len(re.findall(r"<script\b", page)) == 2
    places = {
        "<title>": parsed.text_in("title"),
        "heading": parsed.text_in("h1", id="title"),
        "target label": parsed.text_in("strong", id="target-label"),
        "curve legend": parsed.text_in("ul", **{"class": "legend"}),
        "warnings": parsed.text_in("div", id="warnings"),
        "summary": parsed.text_in("table", id="summary"),
        "settings": parsed.text_in("table", id="settings"),
        "heatmap caption": parsed.text_in("div", **{"class": "row heatmaps"}),
    }
    for where, text in places.items():
        assert HOSTILE in text, where
    # the target's name (as repr) and the baseline note
    assert places["warnings"].count("<img src=x onerror=alert(1)>") >= 2
    kinds = [a["data-kind"] for t, a in parsed.elements if t == "figure" and "data-kind" in a]
    assert kinds.count(HOSTILE) == 2  # with and without the window
    data = _data(page)  # every class slot survives as data, for textContent
    assert all(data["names"][str(k)] == f"{HOSTILE}{k}" for k in data["classes"])


def test_generic_heatmap_keys_and_labels(straddle: AblationPathResult) -> None:
    """Every key of ``result.heatmaps`` is rendered, known ones with their words (not bare
    equation numbers), unknown ones with a fallback label."""
    extra = dataclasses.replace(
        straddle, heatmaps={**straddle.heatmaps, "grid_energy": -straddle.heatmaps["average"]}
    )
    parsed = _Page(render_report(extra))
    captions = {
        (a["data-kind"], a["data-window"]): a
        for t, a in parsed.elements
        if t == "figure" and "data-kind" in a
    }
    assert set(captions) == {(k, w) for k in extra.heatmaps for w in ("false", "true")}
    text = parsed.text_in("div", **{"class": "row heatmaps"})
    for words in ("Average over the path", "At the class transition", "Influence-weighted"):
        assert words in text
    assert "Grid energy" in text
    assert "2.7.2" not in text  # equation numbers only in the tooltip
    assert captions[("average", "false")]["title"] == "thesis 2.7.2A, eq. 2.33"


def _heat_src(page: str, kind: str, window: str = "false") -> tuple[np.ndarray, np.ndarray]:
    """The decoded heatmap and colour bar of one figure."""
    figure = re.search(
        rf'<figure[^>]*data-kind="{kind}" data-window="{window}".*?</figure>', page, re.S
    )
    assert figure is not None
    heat = re.search(r'<img class="heat" src="([^"]+)"', figure.group(0))
    bar = re.search(r'<div class="colorbar"><img src="([^"]+)"', figure.group(0))
    assert heat is not None and bar is not None
    return _decode(heat.group(1)), _decode(bar.group(1))


def _lut(name: str) -> np.ndarray:
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return np.round(rgba * 255).astype(np.uint8)


def test_heatmaps_in_matplotlib_colour_maps(straddle: AblationPathResult) -> None:
    """Plain heatmaps are matplotlib's viridis over their own range, signed ones RdBu_r over
    a symmetric range; each colour bar is its map."""
    page = render_report(straddle)
    h = straddle.heatmap("average").double().numpy()
    rgb, bar = _heat_src(page, "average")
    index = np.round((h - h.min()) / (h.max() - h.min()) * 255).astype(int)
    np.testing.assert_array_equal(rgb, _lut("viridis")[index])
    np.testing.assert_array_equal(bar[0], _lut("viridis"))
    g = straddle.heatmap("influence", window=True).double().numpy()
    rgb, bar = _heat_src(page, "influence", "true")
    m = np.abs(g).max()
    index = np.round((g / m + 1) / 2 * 255).astype(int)
    np.testing.assert_array_equal(rgb, _lut("RdBu_r")[index])
    np.testing.assert_array_equal(bar[0], _lut("RdBu_r"))


def test_settings_and_summary_rounded_in_words(straddle: AblationPathResult) -> None:
    config = {**straddle.info["config"], "step_size": 0.30000000000000004, "pinch": 1 / 3}
    info = {**straddle.info, "config": config, "wall_seconds": 1.23456789}
    parsed = _Page(render_report(dataclasses.replace(straddle, info=info)))
    settings = parsed.text_in("table", id="settings")
    assert "step size0.3" in settings and "pinch0.3333" in settings
    assert "time samples5" in settings  # n_steps in words
    summary = parsed.text_in("table", id="summary")
    assert "wall time (s)1.235" in summary
    assert "path score" in summary and "path_score" not in summary


def test_script_and_style_are_the_template_files() -> None:
    """The page inlines the package's report.js / report.css, the CSP allows that script by
    its hash, and the JavaScript parses (node --check)."""
    from importlib import resources

    from ablation_paths.templates import placeholders, render, template_text

    folder = resources.files("ablation_paths.templates")
    script = folder.joinpath("report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    result = _minimal_result()
    page = render_report(result)
    assert f"script-src 'sha256-{digest}'" in page
    assert f"<script>{script}</script>" in page
    assert folder.joinpath("report.css").read_text(encoding="utf-8") in page
    for name in ("report.html", "heatmap.html", "heatmaps.html", "path_panel.html"):
        assert placeholders(template_text(name))  # templates are string.Template text
    with pytest.raises(KeyError, match="no value for"):
        render("path_images.html")
    with pytest.raises(KeyError, match="no placeholder for"):
        render("path_images.html", prefix="", typo="x")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot check that report.js parses")
    for name in ("report.js", "gallery.js"):
        js = Path(str(folder.joinpath(name)))
        run = subprocess.run([node, "--check", str(js)], capture_output=True, text=True)
        assert run.returncode == 0, f"{name}: {run.stderr}"


def test_template_files_are_package_data() -> None:
    """Every template file matches a package-data glob of pyproject.toml, so wheels carry it."""
    import fnmatch

    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = meta["tool"]["setuptools"]["package-data"]["ablation_paths"]
    folder = REPO / "src" / "ablation_paths" / "templates"
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix != ".py"]
    assert {f.suffix for f in files} >= {".html", ".css", ".js"}
    for f in files:
        assert any(fnmatch.fnmatch(f"templates/{f.name}", g) for g in globs), f.name


def _minimal_result() -> AblationPathResult:
    times = torch.arange(1, 4) / 4
    return AblationPathResult(
        path=torch.rand(3, 4, 4),
        times=times,
        target=0,
        score="retain",
        probs=torch.softmax(torch.randn(5, 3), 1),
        path_score=0.5,
        saturation=0.95,
        iterations=10,
        converged=True,
        stopped="saturated",
        heatmaps={"average": torch.rand(8, 8)},
        image=torch.rand(3, 8, 8),
        baseline_image=torch.rand(3, 8, 8),
    )


def test_file_size_for_16_steps_224px() -> None:
    """A 16-step path on a 224 x 224 natural photo gives a report of at most a few MB."""
    from scipy.ndimage import gaussian_filter
    from skimage import data as skdata
    from skimage.transform import resize

    image = resize(skdata.astronaut(), (224, 224)).astype(np.float32).transpose(2, 0, 1)
    baseline = np.stack([gaussian_filter(c, 8) for c in image])
    g = torch.Generator().manual_seed(0)
    noise = nn.functional.interpolate(torch.rand(1, 1, 7, 7, generator=g), size=(28, 28))[0, 0]
    times = torch.arange(1, 17) / 17
    path = torch.stack([((t - noise) * 8 + 0.5).clamp(0, 1) for t in times])
    smooth = nn.functional.interpolate(path[8][None, None], size=(224, 224), mode="bilinear")
    result = AblationPathResult(
        path=path,
        times=times,
        target=3,
        score="retain",
        probs=torch.softmax(3 * torch.randn(18, 1000, generator=g), 1),
        path_score=0.5,
        saturation=0.95,
        iterations=10,
        converged=True,
        stopped="saturated",
        heatmaps={k: smooth[0, 0] for k in ("average", "class_transition", "influence")},
        image=torch.from_numpy(image),
        baseline_image=torch.from_numpy(baseline),
    )
    page = render_report(result)
    data = _data(page)
    assert len(data["paths"][0]["frames"]) == 18
    assert len(data["classes"]) < 200  # not all 1000 classes are embedded
    assert len(page.encode("utf-8")) < 2.5e6


def _by_id(page: _Page) -> dict[str, tuple[str, dict[str, str]]]:
    return {a["id"]: (tag, a) for tag, a in page.elements if "id" in a}


def test_every_element_the_script_looks_up_is_on_the_page(straddle: AblationPathResult) -> None:
    """Reference: the ids ``report.js`` asks ``getElementById`` for (literal ones, and the
    per-path ones for both prefixes of a straddling pair)."""
    script = template_text("report.js")
    literal = set(re.findall(r'getElementById\("([\w-]+)"\)', script))
    per_path = set(re.findall(r'getElementById\(pre \+ "([\w-]+)"\)', script))
    assert {"t-marker", "curve-hit", "t-slider"} <= literal and "frame-img" in per_path
    ids = _by_id(_Page(render_report(straddle)))
    for name in literal | {pre + n for pre in ("", "down-") for n in per_path}:
        assert name in ids, name
    tag, marker = ids["t-marker"]
    assert tag == "line" and marker["x1"] == marker["x2"] == "44.0"  # t = 0
    tag, hit = ids["curve-hit"]  # covers the plot area: 560 x 220 less the margins
    assert tag == "rect" and (hit["x"], hit["y"], hit["width"], hit["height"]) == (
        "44",
        "12",
        "504",
        "174",
    )
    slider = ids["t-slider"][1]
    assert slider["max"] == str(len(straddle.all_times) - 1)


def test_curve_axes_marker_and_legend(straddle: AblationPathResult) -> None:
    """The probability plot written out: 560 x 220 user units, plot area x in [44, 548] and
    y in [12, 186] (p = 1 at the top)."""
    page = _Page(render_report(straddle))
    ids = _by_id(page)
    assert ids["curve"][1]["viewbox"] == "0 0 560 220"
    texts = [(stack[-1], text) for stack, text in page.texts if stack]
    ticks = [(a, t) for (tag, a), t in texts if tag == "text" and a.get("class") == "tick"]
    y_ticks = {t: a for a, t in ticks if a["x"] == "38"}
    assert y_ticks.keys() == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert y_ticks["1.0"]["y"] == "16.0" and y_ticks["0.0"]["y"] == "190.0"  # y + 4
    assert [a for a, t in ticks if t == "t"] == [
        {"class": "tick", "x": "548", "y": "216", "text-anchor": "end"}
    ]
    t_clt = straddle.class_transition_time
    x = 44 + t_clt * 504
    (label,) = [a for (tag, a), t in texts if a.get("class") == "clt-label"]
    want_x = x - 4 if t_clt >= 0.6 else x + 4
    assert float(label["x"]) == pytest.approx(want_x, abs=1e-9)
    swatches = [a.get("class", "") for (tag, a), _ in texts if tag == "span"]
    assert [c for c in swatches if c.startswith("sw-")] == ["sw-other", "sw-target", "sw-down"]
    items = "".join(t for stack, t in page.texts if any(tag == "li" for tag, _ in stack))
    assert "along the first path φ↑" in items and "along the second path φ↓" in items
    lines = [a["class"] for tag, a in page.elements if tag == "polyline"]
    assert lines.count("p-target") == 1 and lines.count("p-down") == 1


def test_report_notes_and_missing_images_are_labelled(straddle: AblationPathResult) -> None:
    still = dataclasses.replace(
        straddle, info={**straddle.info, "baseline": {"flips_class": False, "note": "n"}}
    )
    page = _Page(render_report(still))
    kinds = [t for stack, t in page.texts if stack and stack[-1][1].get("class") == "kind"]
    assert "Baseline:" in kinds
    bare = dataclasses.replace(
        straddle, features="sift", path=torch.rand(len(straddle.times), 7), frames=None
    )
    bare = dataclasses.replace(bare, masks_image=None)
    shown = _Page(render_report(bare)).texts
    notes = [t for stack, t in shown if stack and stack[-1][1] == {"class": "note"}]
    assert any("No images are stored" in t for t in notes)


def test_top_classes_of_many(straddle: AblationPathResult) -> None:
    """With 12 classes ranked 0, 1, ..., 11 at every sample and target 3, the page carries
    the ``TOP_OTHERS + 1 = 6`` most probable classes, 0 to 5, and no others."""
    n = len(straddle.all_times)
    row = torch.linspace(12, 1, 12) / 78  # class k has probability (12 - k) / 78
    probs = row.expand(n, 12).clone()
    many = dataclasses.replace(straddle, probs=probs, probs_down=probs.clone(), class_names=None)
    assert many.target == 3 and TOP_OTHERS == 5
    assert _data(render_report(many))["classes"] == [0, 1, 2, 3, 4, 5]


def test_float_frames_are_clamped(straddle: AblationPathResult) -> None:
    assert straddle.frames is not None and straddle.masks_image is not None
    frames = torch.full(straddle.frames.shape, 1.5)  # float frames beyond [0, 1]
    masks = torch.full(straddle.masks_image.shape, 0.5)
    page = render_report(dataclasses.replace(straddle, frames=frames, masks_image=masks))
    data = _data(page)
    first = _decode(data["images"][data["paths"][0]["frames"][0]])
    assert first.min() == first.max() == 255  # clamped to 1, not wrapped around
    mask = _decode(data["images"][data["paths"][0]["masks"][0]])
    assert mask.min() == mask.max() == 128


def test_write_report_creates_missing_folders(straddle: AblationPathResult, tmp_path: Path) -> None:
    out = write_report(straddle, tmp_path / "a" / "b" / "report.html")
    assert out == tmp_path / "a" / "b" / "report.html" and out.is_file()


# ------------------------------------------------------------------------------- browser test
def _artifact_dir() -> Path:
    out = Path(os.environ.get("ABLATION_PATHS_ARTIFACTS") or REPO / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


#: Reads what the page shows in one round trip (a function, as the page's CSP forbids eval).
_READ_STATE = """() => {
  const q = (s) => document.querySelector(s);
  const panel = (p) => ({
    target: q("#" + p + "target-prob").textContent,
    top: Array.from(document.querySelectorAll("#" + p + "top-classes li")).map(
      (li) => [Number(li.dataset.class), li.children[0].textContent, li.children[1].textContent]
    ),
  });
  return {
    t: q("#t-value").textContent,
    slider: q("#t-slider").value,
    frame: q("#frame-img").src,
    mask: q("#mask-img").src,
    down: q("#down-frame-img").src,
    panels: { "": panel(""), "down-": panel("down-") },
  };
}"""


def _note_console(msg: Any, problems: list[str]) -> None:
    if msg.type == "error":
        problems.append(f"console error: {msg.text}")


def _note_dialog(dialog: Any, problems: list[str]) -> None:
    problems.append(f"dialog: {dialog.message}")
    dialog.dismiss()


def _note_request(url: str, problems: list[str]) -> None:
    if not url.startswith(("data:", "file:")):
        problems.append(f"network request: {url}")


def test_report_in_headless_chromium(straddle: AblationPathResult, tmp_path: Path) -> None:
    """Open the report from disk, move along t with the slider, the arrow keys and play, and
    check that t, the images and the probabilities shown are the saved result's."""
    exe = system_chromium()
    from playwright.sync_api import sync_playwright

    r = straddle
    assert r.frames is not None and r.masks_image is not None and r.probs_down is not None
    report = write_report(r, tmp_path / "report.html")
    n = len(r.all_times)
    problems: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1250, "height": 1000})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: _note_console(msg, problems))
            page.on("dialog", lambda dialog: _note_dialog(dialog, problems))
            page.on("request", lambda request: _note_request(request.url, problems))
            page.goto(report.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=5000)

            def check(i: int) -> None:
                shown = page.evaluate(_READ_STATE)
                assert shown["t"] == f"{float(r.all_times[i]):.4f}"
                assert shown["slider"] == str(i)
                np.testing.assert_array_equal(_decode(shown["frame"]), _chw(r.frames[i]))
                np.testing.assert_array_equal(_decode(shown["mask"]), r.masks_image[i].numpy())
                for prefix, probs in (("", r.probs[i]), ("down-", r.probs_down[i])):
                    panel = shown["panels"][prefix]
                    assert panel["target"] == f"{float(probs[r.target]):.4f}"
                    expected = [
                        [k, NAMES[k], f"{float(probs[k]):.4f}"]
                        for k in _expected_top(probs, r.target)
                    ]
                    assert panel["top"] == expected
                # the second path's frame is its own, not the first path's
                if 0 < i < n - 1:
                    assert not np.array_equal(_decode(shown["down"]), _chw(r.frames[i]))

            check(0)
            # drag the slider (set its value as a user would, firing 'input')
            page.eval_on_selector(
                "#t-slider",
                "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                str(n - 2),
            )
            check(n - 2)
            # arrow keys, from the page and on the focused slider
            page.focus("body")
            page.keyboard.press("ArrowLeft")
            check(n - 3)
            page.focus("#t-slider")
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            check(n - 1)
            page.keyboard.press("Home")
            check(0)
            # clicking the curve at t ~ 0.5 jumps to the nearest sample
            hit = page.locator("#curve-hit")
            box = hit.bounding_box()
            assert box is not None
            hit.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
            nearest = int(torch.argmin((r.all_times - 0.5).abs()))
            check(nearest)
            # play with space from t = 0; it advances, then pauses on space again
            page.focus("#t-slider")
            page.keyboard.press("Home")
            page.keyboard.press(" ")
            page.wait_for_function("() => Number(document.body.dataset.index) >= 2", timeout=5000)
            page.keyboard.press(" ")
            stopped = int(page.input_value("#t-slider"))
            assert page.text_content("#play") == "\u25b6 Play"
            page.wait_for_timeout(600)
            assert int(page.input_value("#t-slider")) == stopped
            check(stopped)
            # the hostile class name is shown as text and ran nothing
            assert page.evaluate("window.__pwned") is None
            assert EVIL in (page.text_content("#top-classes") or "")
            assert page.locator(".warning").count() >= 1  # 3 iterations: not saturated
            page.focus("body")
            page.keyboard.press("ArrowRight")
            page.screenshot(path=str(_artifact_dir() / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []


#: What the hostile page shows, read in the browser.
_READ_HOSTILE = """() => ({
  title: document.title,
  heading: document.querySelector("#title").textContent,
  label: document.querySelector("#target-label").textContent,
  top: Array.from(document.querySelectorAll("#top-classes .cname")).map((e) => e.textContent),
  legend: document.querySelector("ul.legend").textContent,
  injected: document.querySelectorAll("img[src='x'], [onerror]").length,
  scripts: document.scripts.length,
  warningColour: getComputedStyle(document.querySelector(".warning")).backgroundColor,
  under: Array.from(document.querySelectorAll(".overlay img.under")).map((e) => e.src),
  target: document.querySelector("#target-img").src,
  heatOpacity: getComputedStyle(document.querySelector(".overlay img.heat")).opacity,
  cssRules: document.styleSheets[0].cssRules.length,
})"""


def _css_rule_count(css: str) -> int:
    """Top-level rules of a style sheet (comments removed): what a browser keeps when every
    rule parses."""
    text, depth, rules = re.sub(r"/\*.*?\*/", "", css, flags=re.S), 0, 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        rules += char == "}" and depth == 0
    return rules


def test_hostile_report_in_headless_chromium(hostile: AblationPathResult, tmp_path: Path) -> None:
    """The hostile string in every position runs nothing and shows as text; the page's style
    applies under the CSP; heatmaps lie over the target image and follow the opacity slider."""
    exe = system_chromium()
    from playwright.sync_api import sync_playwright

    report = write_report(hostile, tmp_path / "hostile.html", title=HOSTILE)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1250, "height": 1000})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: _note_console(msg, problems))
            page.on("dialog", lambda dialog: _note_dialog(dialog, problems))
            page.on("request", lambda request: _note_request(request.url, problems))
            page.goto(report.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=5000)
            shown = page.evaluate(_READ_HOSTILE)
            assert shown["title"] == shown["heading"] == HOSTILE
            assert shown["label"] == f"{HOSTILE}{hostile.target}"
            assert shown["top"] and all(name.startswith(HOSTILE) for name in shown["top"])
            assert HOSTILE in shown["legend"]
            assert shown["injected"] == 0 and shown["scripts"] == 2
            assert shown["warningColour"] == "rgb(255, 243, 205)"  # report.css applies
            css = template_text("report.css")
            assert shown["cssRules"] == _css_rule_count(css) > 40  # Chromium parsed every rule
            assert shown["under"] and all(src == shown["target"] for src in shown["under"])
            assert float(shown["heatOpacity"]) == pytest.approx(0.65)
            page.eval_on_selector(
                "#heat-opacity", "(el) => { el.value = 20; el.dispatchEvent(new Event('input')); }"
            )
            opacity = page.evaluate(
                "() => getComputedStyle(document.querySelector('.overlay img.heat')).opacity"
            )
            assert float(opacity) == pytest.approx(0.2)
            assert page.text_content("#heat-opacity-value") == "0.20"
            page.evaluate("() => document.querySelector('h2:nth-of-type(2)').scrollIntoView()")
            page.screenshot(path=str(_artifact_dir() / "report_heatmaps.png"))
        finally:
            browser.close()
    assert problems == []


def _tags(markup: str) -> list[tuple[str, dict[str, str]]]:
    return _Page(f"<svg>{markup}</svg>").elements[1:]


def test_axes_every_grid_line_and_tick_written_out() -> None:
    """Plot area x in [44, 548], y in [12, 186]: tick v at y = 12 + (1 - v) 174 and
    x = 44 + 504 v; left labels 6 units left of the area and 4 below the line, bottom labels
    16 below the area, the axis name ``t`` at the right end, 4 above the bottom edge."""
    from ablation_paths.report import _axes

    page = _Page(f"<svg>{_axes()}</svg>")
    lines = [a for tag, a in page.elements if tag == "line"]
    ys = [12 + (1 - v) * 174 for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert lines == [
        {"class": "grid", "x1": "44", "x2": "548", "y1": str(y), "y2": str(y)} for y in ys
    ]
    texts = [(stack[-1][1], t) for stack, t in page.texts]
    labels = ["0.0", "0.25", "0.5", "0.75", "1.0"]
    want = []
    for v, label, y in zip((0.0, 0.25, 0.5, 0.75, 1.0), labels, ys, strict=True):
        want.append(({"class": "tick", "x": "38", "y": str(y + 4), "text-anchor": "end"}, label))
        bottom = {"class": "tick", "x": str(44 + 504 * v), "y": "202", "text-anchor": "middle"}
        want.append((bottom, label))
    want.append(({"class": "tick", "x": "548", "y": "216", "text-anchor": "end"}, "t"))
    assert texts == want


@pytest.mark.parametrize(
    ("t", "anchor", "dx"), [(0.25, "start", 4), (0.5999, "start", 4), (0.6, "end", -4)]
)
def test_class_transition_marker_geometry(t: float, anchor: str, dx: int) -> None:
    from ablation_paths.report import _clt_marker

    page = _Page(f"<svg>{_clt_marker(t)}</svg>")
    x = 44 + 504 * t
    (line,) = [a for tag, a in page.elements if tag == "line"]
    assert line == {
        "id": "clt-marker",
        "class": "clt",
        "data-t": f"{t:.6f}",
        "x1": str(x),
        "x2": str(x),
        "y1": "12",
        "y2": "186",
    }
    ((stack, text),) = page.texts
    assert text == f"class transition t = {t:.3f}"
    assert stack[-1] == (
        "text",
        {"class": "clt-label", "x": str(x + dx), "y": "24", "text-anchor": anchor},
    )


def test_t_marker_and_click_area_cover_the_plot() -> None:
    from ablation_paths.report import _t_marker

    tags = _tags(_t_marker())
    assert tags == [
        ("line", {"id": "t-marker", "x1": "44.0", "x2": "44.0", "y1": "12", "y2": "186"}),
        (
            "rect",
            {
                "id": "curve-hit",
                "x": "44",
                "y": "12",
                "width": "504",
                "height": "174",
                "fill": "transparent",
            },
        ),
    ]


def test_polyline_points_in_plot_units() -> None:
    from ablation_paths.report import _polyline

    times = np.array([0.0, 0.5, 1.0])
    values = np.array([1.0, np.nan, 0.25])  # NaN is drawn at p = 0
    ((tag, attrs),) = _tags(_polyline(times, values, "p-target"))
    assert tag == "polyline" and attrs["class"] == "p-target"
    assert attrs["points"] == "44.0,12.0 296.0,186.0 548.0,142.5"
