"""The gallery page: structure, escaping, CSP, links to the reports, and sorting in Chromium."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from ablation_paths.gallery import GalleryEntry, gallery_entries, render_gallery, write_gallery
from ablation_paths.many import explain_many
from conftest import system_chromium

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _entries() -> list[GalleryEntry]:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    return [
        GalleryEntry("b", EVIL, "dog & <b>co</b>", 0.9, 0.5, 0.82, True, [], png, "b/report.html"),
        GalleryEntry("a", "cat", "cat", 0.2, 0.9, 0.41, False, [f"warn {EVIL}"], png, None),
        GalleryEntry("c", "cat", "cat", 0.5, math.nan, 0.9, True, [], None, "c/report.html"),
    ]


def test_page_structure_escaping_and_csp() -> None:
    page = render_gallery(_entries(), title=f"t {EVIL}")
    # only our own script element; every hostile label is inert text
    assert page.count("<script") == 1
    assert "window.__pwned" in page  # present, but escaped
    assert "<img src=x" not in page and "<b>co</b>" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    # the CSP allows exactly the inline script's hash and no network
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and f"'sha256-{digest}'" in csp.group(1)
    assert "default-src 'none'" in csp.group(1) and "http" not in csp.group(1)
    # rows: one per entry, in the given order, with sortable numeric data
    rows = re.findall(r'<tr(?: class="flagged")? data-name="([^"]+)"', page)
    assert rows == ["b", "a", "c"]
    assert '<tr class="flagged" data-name="a"' in page
    assert 'href="b/report.html"' in page and 'href="c/report.html"' in page
    assert page.count("data:image/png;base64,") == 2
    assert 'data-value="nan"' in page and "n/a" in page
    assert "(not saturated)" in page
    for key in ("path_score", "saturation", "warnings", "target_prob"):
        assert f'data-kind="num" data-key="{key}"' in page


def _net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery")
    g = torch.Generator().manual_seed(0)
    images = [(f"im{i}", torch.rand(3, 20, 20, generator=g)) for i in range(3)]
    explain_many(
        _net(), images, out=out, class_names=["x", EVIL, "z"], progress=False,
        max_iterations=3, n_steps=4,
    )  # fmt: skip
    return out


def test_gallery_over_a_run(run_dir: Path) -> None:
    (run_dir / "not-done").mkdir(exist_ok=True)  # no done.json: not listed
    entries = gallery_entries(run_dir)
    assert [e.name for e in entries] == ["im0", "im1", "im2"]
    assert all(e.thumbnail and e.report == f"{e.name}/report.html" for e in entries)
    page = write_gallery(run_dir).read_text(encoding="utf-8")
    assert page.count("<script") == 1 and "<img src=x" not in page
    assert not list(run_dir.glob(".index.html.*"))  # temp file moved into place
    with pytest.raises(FileNotFoundError):
        write_gallery(run_dir / "missing")


def test_sorting_in_headless_chromium(tmp_path: Path) -> None:
    exe = system_chromium()
    from playwright.sync_api import sync_playwright

    file = tmp_path / "index.html"
    file.write_text(render_gallery(_entries()), encoding="utf-8")
    problems: list[str] = []
    order = (
        "() => Array.from(document.querySelectorAll('#gallery tbody tr')).map(r => r.dataset.name)"
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on(
                "request",
                lambda r: None if r.url.startswith(("data:", "file:")) else problems.append(r.url),
            )
            page.goto(file.as_uri())
            assert page.evaluate(order) == ["b", "a", "c"]
            page.click("th[data-key=path_score] button")  # first click: descending, NaN last
            assert page.evaluate(order) == ["a", "b", "c"]
            page.click("th[data-key=path_score] button")
            assert page.evaluate(order) == ["c", "b", "a"]
            page.click("th[data-key=saturation] button")
            assert page.evaluate(order) == ["c", "b", "a"]
            page.click("th[data-key=warnings] button")
            assert page.evaluate(order)[0] == "a"
            page.click("th[data-key=name] button")
            assert page.evaluate(order) == ["c", "b", "a"]
            sort_state = "th[data-key=name]"
            assert page.get_attribute(sort_state, "aria-sort") == "descending"
            assert page.evaluate("() => window.__pwned") is None
        finally:
            browser.close()
    assert problems == []
