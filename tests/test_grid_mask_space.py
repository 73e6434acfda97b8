"""A new mask space in one file: grid cells.

Each feature is one rectangular cell of a ``cells x cells`` grid over the image; removing it
blends that cell into the baseline. Registering the class is all it takes for ``explain``,
``--features grid`` on the command line and the HTML report to use it (docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

import ablation_paths as ap
from ablation_paths.baselines import Baseline
from ablation_paths.mask_spaces import (
    MaskSpace,
    frames_for_result,
    images_for_result,
    mask_space_names,
    register_mask_space,
)
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.result import AblationPathResult
from ablation_paths.sharpening import SHARPEN_SCALE


@register_mask_space("grid")
class GridMaskSpace(MaskSpace):
    """Masks ``[cells * cells]``: one value per grid cell, 1 = the cell shows the baseline."""

    options = ("cells",)
    ignored_config = ("mask_size", "regularization")

    def __init__(self, target: Tensor, baseline: Tensor, cells: int = 4) -> None:
        self.target = target
        self.baseline = baseline.to(target)
        self.cells = int(cells)
        self.mask_shape = (self.cells * self.cells,)
        height, width = self.image_size
        rows = torch.arange(height, device=target.device) * self.cells // height
        cols = torch.arange(width, device=target.device) * self.cells // width
        self.index = rows[:, None] * self.cells + cols[None, :]  # [H, W] cell of every pixel

    @classmethod
    def build(
        cls,
        image: Tensor,
        baseline: Baseline,
        config: AblationPathConfig,
        options: Mapping[str, Any],
    ) -> GridMaskSpace:
        return cls(image, baseline.image, int(options.get("cells", 4)))

    @classmethod
    def from_result(cls, result: AblationPathResult) -> GridMaskSpace:
        cells = math.isqrt(int(result.path.shape[-1]))
        return cls(result.image.float(), result.baseline_image.float(), cells)

    def apply(self, masks: Tensor) -> Tensor:
        theta = masks.to(self.target.dtype)[:, self.index].unsqueeze(1)  # [B, 1, H, W]
        return self.target.unsqueeze(0) + theta * (self.baseline - self.target).unsqueeze(0)

    def to_image(self, values: Tensor) -> Tensor:
        return values[self.index]

    def extra_heatmaps(self, path: Tensor, probs: Tensor, target: int) -> dict[str, Tensor]:
        # when each cell is half removed, as a fraction of the path (early = removed first)
        removal_time = (path < 0.5).float().mean(dim=0)
        return {"removal_time": self.to_image(removal_time)}


FAST = {"n_steps": 5, "max_iterations": 3}


def test_grid_space_through_explain(tiny_model, tiny_image):
    r = ap.explain(tiny_model, tiny_image, features="grid", feature_options={"cells": 3}, **FAST)
    assert r.features == "grid" and r.path.shape == (5, 9)
    assert ap.check_axioms(r.path) == []
    assert r.heatmap().shape == (32, 32) and r.heatmap("removal_time").shape == (32, 32)
    # a heatmap is constant on each cell (up to the sharpened top plateau, by at most 1e-5)
    h = r.heatmap("influence")
    assert torch.equal(h[:11, :11], h[0, 0].expand(11, 11))
    h = r.heatmap("average")
    assert (h[:11, :11] - h[0, 0]).abs().max() <= SHARPEN_SCALE
    assert r.frames is not None and r.frames.shape == (7, 3, 32, 32)
    assert r.info["feature_options"] == {"cells": 3}
    with pytest.raises(ValueError, match=r"'cell' \(did you mean 'cells'\?\)"):
        ap.explain(tiny_model, tiny_image, features="grid", feature_options={"cell": 3}, **FAST)


def test_grid_space_frames_rebuilt_from_a_saved_result(tmp_path, tiny_model, tiny_image):
    r = ap.explain(tiny_model, tiny_image, features="grid", score="straddle", **FAST)
    loaded = ap.load(r.save(tmp_path / "grid.npz"))
    assert r.frames is not None and r.masks_image is not None
    frames, masks = images_for_result(loaded, loaded.path)  # type: ignore[misc]
    assert torch.equal(frames, r.frames) and torch.equal(masks, r.masks_image)
    assert loaded.path_down is not None
    down = frames_for_result(loaded, loaded.path_down)
    assert down is not None and down.shape == (7, 3, 32, 32) and down.dtype == torch.uint8
    assert not torch.equal(down, frames)


def test_grid_space_in_the_report(tiny_model, tiny_image):
    from ablation_paths.report import render_report

    r = ap.explain(tiny_model, tiny_image, features="grid", score="straddle", **FAST)
    page = render_report(r)
    assert 'data-features="grid"' in page
    # both paths of the pair have frames: the second one rebuilt through the registry
    r.frames = r.masks_image = None
    page = render_report(r)
    assert "cannot be rendered" not in page


def test_grid_space_on_the_command_line(tmp_path):
    from ablation_paths.cli import main

    assert "grid" in mask_space_names()
    out = tmp_path / "out"
    argv = ["explain", "--features", "grid", "--out", str(out), "--quiet"]
    assert main([*argv, "--n-steps", "4", "--max-iterations", "2"]) == 0
    result = ap.load(out / "path.npz")
    assert result.features == "grid" and result.path.shape == (4, 16)
    assert 'data-features="grid"' in (out / "report.html").read_text(encoding="utf-8")
