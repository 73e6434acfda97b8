"""How results are shown, in one place: colour maps and human labels for heatmaps and settings.

The PNG figures (:mod:`ablation_paths.plotting`) and the path browser
(:mod:`ablation_paths.report`) both take their colours and words from here, so a heatmap looks
and reads the same in both. Colour maps are matplotlib's: ``viridis`` for plain heatmaps, the
diverging ``RdBu_r`` (blue negative, red positive, white zero) for signed ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DIVERGING_CMAP",
    "SEQUENTIAL_CMAP",
    "WINDOW_LABEL",
    "HeatmapLabel",
    "colorize",
    "colormap_lut",
    "format_value",
    "heatmap_label",
    "is_signed",
    "setting_label",
]

#: The colour map of plain (non-negative) heatmaps, in the PNG figures and the HTML report.
SEQUENTIAL_CMAP = "viridis"
#: The colour map of signed heatmaps (symmetric range, white = 0).
DIVERGING_CMAP = "RdBu_r"
#: What the boundary window (thesis eq. 2.37) does, in words.
WINDOW_LABEL = "edges faded (boundary window)"


@dataclass(frozen=True)
class HeatmapLabel:
    """A heatmap reduction in words: a short title, one sentence, the thesis reference."""

    title: str
    description: str
    reference: str = ""


_LABELS: dict[str, HeatmapLabel] = {
    "average": HeatmapLabel(
        "Average over the path",
        "the mask averaged over t, oriented so that high = important for the target",
        "thesis 2.7.2A, eq. 2.33",
    ),
    "class_transition": HeatmapLabel(
        "At the class transition",
        "the mask at the last t where the target is still the top class (high = important)",
        "thesis 2.7.2B, eq. 2.34",
    ),
    "influence": HeatmapLabel(
        "Influence-weighted",
        "mask changes weighted by how much they moved the target probability; "
        "blue = removing it raised the target",
        "thesis 2.7.2C, eq. 2.35",
    ),
    "contrastive": HeatmapLabel(
        "Difference of the two paths",
        "where the paths φ↑ and φ↓ differ, averaged over t",
        "thesis 2.7.2D, eq. 2.36",
    ),
    "sift_contrast": HeatmapLabel(
        "Local contrast at the class transition",
        "local contrast of the image decoded from the kept SIFT features at the class "
        "transition (high = detail the classifier keeps)",
        "thesis 4.3.4A, eq. 4.48",
    ),
}

#: Reductions that are signed by definition (shown with the diverging map even when >= 0).
_SIGNED = frozenset({"influence"})


def heatmap_label(kind: str) -> HeatmapLabel:
    """The words for heatmap ``kind``; an unknown kind gets its name in words."""
    if kind in _LABELS:
        return _LABELS[kind]
    words = kind.replace("_", " ").strip() or "heatmap"
    return HeatmapLabel(words[0].upper() + words[1:], f"the {words!s} heatmap")


def is_signed(kind: str, values: np.ndarray) -> bool:
    """Whether to show ``values`` on the diverging map: a signed reduction, or any negatives."""
    return kind in _SIGNED or bool(np.nanmin(values, initial=0.0) < 0)


def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """The matplotlib colour map ``name`` sampled at ``n`` levels: ``[n, 3]`` uint8 RGB."""
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, n))
    return np.round(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)


def colorize(values: np.ndarray, signed: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """Colour a heatmap ``[H, W]``: ``min..max`` on the sequential map, or ``-m..m`` on the
    diverging one. Returns ``[H, W, 3]`` uint8 RGB and the value range of the colour scale."""
    h = np.nan_to_num(np.asarray(values, dtype=np.float64))
    if signed:
        m = float(np.abs(h).max()) or 1.0
        lo, hi, name = -m, m, DIVERGING_CMAP
    else:
        lo, hi, name = float(h.min()), float(h.max()), SEQUENTIAL_CMAP
    span = hi - lo if hi > lo else 1.0
    lut = colormap_lut(name)
    index = np.round(np.clip((h - lo) / span, 0.0, 1.0) * (len(lut) - 1)).astype(np.intp)
    return lut[index], (lo, hi)


_SETTING_LABELS = {
    "target_name": "target name",
    "path_score": "path score",
    "class_transition_time": "class transition t",
    "target_prob_image": "P(target) on the image (t = 0)",
    "target_prob_baseline": "P(target) on the baseline (t = 1)",
    "mask_shape": "mask shape",
    "image_shape": "image shape",
    "wall_seconds": "wall time (s)",
    "classifier_seconds": "time in the classifier (s)",
    "other_seconds": "other time (s)",
    "predicted": "predicted class on the image",
    "regularization_sigma_mask_px": "regularisation σ (mask pixels)",
    "n_steps": "time samples",
    "n_steps_start": "time samples at the start (coarse to fine)",
    "refine_every": "iterations per coarse number of samples",
    "sharpen": "maximum sharpened to the plateau's centre",
    "precision": "optimiser precision",
    "mask_size": "mask size (pixels per side)",
    "stop_saturation": "stop at saturation",
    "saturation_ramp": "saturation ramp (iterations)",
    "min_iterations": "minimum iterations",
    "max_iterations": "maximum iterations",
    "batch_size": "batch size",
    "score_with_ends": "score includes t = 0 and 1",
    "flips_class": "changes the predicted class",
}


def setting_label(key: str) -> str:
    """A summary or settings key in words (``"wall_seconds"`` -> ``"wall time (s)"``)."""
    return _SETTING_LABELS.get(key, key.replace("_", " "))


def format_value(value: Any, digits: int = 4) -> str:
    """A value for a table: floats to ``digits`` significant digits (recursively in lists and
    mappings), booleans as yes/no, ``None`` as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return "; ".join(
            f"{setting_label(str(k))}: {format_value(v, digits)}"
            for k, v in value.items()
            if v is not None and v != ""
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, digits) for v in value) + "]"
    return str(value)
