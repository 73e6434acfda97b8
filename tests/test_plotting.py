"""The PNG figures: heatmaps over the image, in the colour maps the HTML report uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ablation_paths.display import DIVERGING_CMAP, SEQUENTIAL_CMAP
from ablation_paths.plotting import plot_heatmaps
from ablation_paths.result import AblationPathResult


def _result() -> AblationPathResult:
    g = torch.Generator().manual_seed(0)
    return AblationPathResult(
        path=torch.rand(3, 4, 4, generator=g),
        times=torch.arange(1, 4) / 4,
        target=0,
        score="retain",
        probs=torch.softmax(torch.randn(5, 3, generator=g), 1),
        path_score=0.5,
        saturation=0.95,
        iterations=10,
        converged=True,
        stopped="saturated",
        heatmaps={
            "average": torch.rand(16, 16, generator=g),
            "influence": torch.randn(16, 16, generator=g),
            "grid_energy": torch.rand(16, 16, generator=g) - 0.5,
        },
        image=torch.rand(3, 16, 16, generator=g),
        baseline_image=torch.rand(3, 16, 16, generator=g),
    )


def test_heatmaps_over_image_with_colour_bars(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    shown: list[tuple[Any, tuple[int, ...], Any]] = []
    bars: list[Any] = []
    imshow, colorbar = Axes.imshow, Figure.colorbar

    def spy_imshow(self: Axes, data: Any, *args: Any, **kwargs: Any) -> Any:
        shown.append((self, np.asarray(data).shape, kwargs.get("cmap")))
        return imshow(self, data, *args, **kwargs)

    def spy_colorbar(self: Figure, mappable: Any, *args: Any, **kwargs: Any) -> Any:
        bars.append(mappable)
        return colorbar(self, mappable, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", spy_imshow)
    monkeypatch.setattr(Figure, "colorbar", spy_colorbar)
    result = _result()
    out = plot_heatmaps(result, tmp_path / "heatmaps.png")
    assert Image.open(out).size[0] > 0
    heat = [(i, s) for i, s in enumerate(shown) if s[2] is not None]
    assert len(heat) == 2 * len(result.heatmaps) == len(bars)
    cmaps = [s[2] for _, s in heat]
    assert cmaps.count(SEQUENTIAL_CMAP) == 2  # average, with and without the window
    assert cmaps.count(DIVERGING_CMAP) == 4  # influence (signed) and the map with negatives
    for i, (ax, shape, _) in heat:  # each laid over the target image on the same axes
        assert shown[i - 1][0] is ax and shown[i - 1][1] == (16, 16, 3) and shape == (16, 16)
    titles = [ax.get_title() for ax, _, cmap in shown if cmap is not None]
    assert "Average over the path" in titles and "Grid energy" in titles
    assert not any("2.3" in t for t in titles)  # words, not equation numbers
