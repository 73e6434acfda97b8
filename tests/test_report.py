"""The path browser (SPEC A7): the self-contained HTML report, unit-tested and driven in a real
headless Chromium (Debian's ``chromium`` package through Playwright)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths
from ablation_paths.report import TOP_OTHERS, _pixel_frames, render_report, write_report
from ablation_paths.result import AblationPathResult

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
    assert pinned.pinned and "pinned near its maximum" in render_report(pinned)
    clean = dataclasses.replace(
        straddle, converged=True, path_score=0.5, info={**straddle.info, "baseline": {}}
    )
    page = render_report(clean)
    assert 'class="warning"' not in page
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


# ------------------------------------------------------------------------------- browser test
def _chromium() -> str:
    """Path of a system Chromium usable by Playwright, or skip (fail when CI requires it)."""
    required = os.environ.get("ABLATION_PATHS_REQUIRE_BROWSER", "") not in ("", "0")
    reason = ""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the Python package 'playwright' is not installed (pip install '.[report]')"
    exe = next(
        (
            p
            for p in (
                "/usr/bin/chromium",
                shutil.which("chromium"),
                shutil.which("chromium-browser"),
            )
            if p and os.access(p, os.X_OK)
        ),
        None,
    )
    if not reason and exe is None:
        reason = "no system Chromium found (apt-get install chromium chromium-driver)"
    if reason:
        if required:
            pytest.fail(f"ABLATION_PATHS_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    assert exe is not None
    return exe


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
    exe = _chromium()
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
