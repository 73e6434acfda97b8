"""Static figures of a result (matplotlib, no display needed).

Heatmaps are laid over the target image with a colour bar, in the colour maps and words of
:mod:`ablation_paths.display` (the same as the HTML report's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ablation_paths.display import (
    DIVERGING_CMAP,
    SEQUENTIAL_CMAP,
    WINDOW_LABEL,
    heatmap_label,
    is_signed,
)
from ablation_paths.result import AblationPathResult

__all__ = ["HEATMAP_ALPHA", "plot_heatmaps", "plot_path_strip"]

#: Opacity of a heatmap over the target image.
HEATMAP_ALPHA = 0.6


def _rgb(img: Tensor) -> np.ndarray:
    a = img.detach().cpu().float().numpy()
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        a = (a - lo) / max(hi - lo, 1e-12)
    return np.clip(a.transpose(1, 2, 0), 0, 1)


def _label(result: AblationPathResult) -> str:
    return result.target_name if result.target_name is not None else f"class {result.target}"


def _overlay(
    fig: Any, ax: Any, image: np.ndarray, result: AblationPathResult, kind: str, window: bool
) -> None:
    """Heatmap ``kind`` over the target image, with its colour bar and title."""
    h = result.heatmap(kind, window=window).detach().cpu().double().numpy()
    if is_signed(kind, h):
        v = float(np.abs(np.nan_to_num(h)).max()) or 1.0
        cmap, vmin, vmax = DIVERGING_CMAP, -v, v
    else:
        cmap, vmin, vmax = SEQUENTIAL_CMAP, float(np.nanmin(h)), float(np.nanmax(h))
    ax.imshow(image)
    shown = ax.imshow(h, cmap=cmap, vmin=vmin, vmax=vmax, alpha=HEATMAP_ALPHA)
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=6)
    bar.solids.set_alpha(1.0)
    title = heatmap_label(kind).title
    ax.set_title(title + (f"\n{WINDOW_LABEL}" if window else ""), fontsize=8)


def plot_heatmaps(result: AblationPathResult, file: str | os.PathLike[str]) -> Path:
    """Target, baseline and every reduction (with and without the boundary window) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result.heatmaps)
    cols = 2 + len(kinds)
    fig, axes = plt.subplots(2, cols, figsize=(2.9 * cols, 5.6), squeeze=False)
    image = _rgb(result.image)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(
        f"target: {_label(result)}\np={float(result.probs[0, result.target]):.2f}", fontsize=8
    )
    axes[0, 1].imshow(_rgb(result.baseline_image))
    axes[0, 1].set_title(f"baseline\np={float(result.probs[-1, result.target]):.2f}", fontsize=8)
    t = result.all_times.numpy()
    axes[1, 0].plot(t, result.probs[:, result.target].numpy(), "k.-")
    axes[1, 0].axvline(result.class_transition_time, color="r", lw=0.8)
    axes[1, 0].set_ylim(0, 1)
    axes[1, 0].set_xlabel("t", fontsize=8)
    axes[1, 0].set_title(f"target prob. along path\nscore {result.path_score:.3f}", fontsize=8)
    axes[1, 1].axis("off")
    status = "saturated" if result.converged else f"NOT saturated ({result.stopped})"
    axes[1, 1].text(
        0,
        0.5,
        f"{result.score} path\n{status}\nsaturation {result.saturation:.2f}\n"
        f"{result.iterations} iterations" + ("\nscore pinned near max!" if result.pinned else ""),
        fontsize=8,
        va="center",
    )
    for j, kind in enumerate(kinds):
        for i, window in enumerate((False, True)):
            _overlay(fig, axes[i, 2 + j], image, result, kind, window)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].set_xticks([0, 0.5, 1])
    axes[1, 0].set_yticks([0, 0.5, 1])
    fig.tight_layout()
    path = Path(file)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_path_strip(
    result: AblationPathResult, file: str | os.PathLike[str], max_frames: int = 10
) -> Path:
    """A strip of masked images along ``t`` with the target probability under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.frames is None:
        raise ValueError("the result has no frames (explain(..., keep_frames=True) stores them)")
    n = result.frames.shape[0]
    idx = np.unique(np.round(np.linspace(0, n - 1, min(max_frames, n))).astype(int))
    fig, axes = plt.subplots(1, len(idx), figsize=(1.7 * len(idx), 2.2), squeeze=False)
    times = result.all_times.numpy()
    for ax, k in zip(axes[0], idx, strict=True):
        ax.imshow(result.frames[k].numpy().transpose(1, 2, 0))
        ax.set_title(f"t={times[k]:.2f}", fontsize=8)
        ax.set_xlabel(f"p={float(result.probs[k, result.target]):.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{result.score} path for {_label(result)}", fontsize=9)
    fig.tight_layout()
    path = Path(file)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
