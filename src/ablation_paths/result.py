"""The result of an ablation path explanation, and saving / loading it safely (``.npz``)."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ablation_paths.diagnostics import ScoreBounds, is_pinned, score_bounds
from ablation_paths.reductions import boundary_window, class_transition_index, natural_reduction

__all__ = ["AblationPathResult", "load"]

_FORMAT = "ablation-paths-result"
_VERSION = 1


@dataclass
class AblationPathResult:
    """An optimised ablation path and everything needed to read it.

    Shapes: ``T`` interior time samples, ``K`` classes, ``[C, H, W]`` images, ``mask_shape`` the
    mask space's shape (``(h, w)`` for pixel masks, ``(n_features,)`` for SIFT gains).

    Attributes:
        path: the (first) path ``[T, *mask_shape]``; ``1`` = removed (baseline).
        times: ``[T]`` interior times ``k / (T + 1)``.
        target: class index explained; ``target_name`` its name if known.
        score: score function name; ``path_score`` its final value.
        probs: classifier probabilities ``[T + 2, K]`` along the path, ends included
            (``t = 0`` is the target image, ``t = 1`` the baseline).
        saturation: final saturation level (eq. 2.31); ``converged`` whether it reached the
            configured stop level; ``iterations``; ``stopped`` ("saturated", "max_iterations",
            "interrupted").
        path_down / probs_down: second path of the boundary-straddling pair.
        probs_complement: probabilities along ``1 - phi`` (contrastive score).
        heatmaps: image-resolution saliency maps ``[H, W]`` per reduction (higher = more
            important; ``influence`` is signed), without window.
        image / baseline_image: ``[C, H, W]`` target and baseline as given to the mask space.
        frames: images along the path ``[T + 2, C, H, W]`` as uint8 (for browsing).
        masks_image: image-resolution masks along the path ``[T + 2, H, W]`` as uint8.
        features: mask space name ("pixel" or "sift").
        class_names: optional list of ``K`` names.
        history: per-iteration statistics (path score entering the iteration, saturation).
        info: settings and timings (config, baseline, wall time, ...).
    """

    path: Tensor
    times: Tensor
    target: int
    score: str
    probs: Tensor
    path_score: float
    saturation: float
    iterations: int
    converged: bool
    stopped: str
    heatmaps: dict[str, Tensor]
    image: Tensor
    baseline_image: Tensor
    frames: Tensor | None = None
    masks_image: Tensor | None = None
    path_down: Tensor | None = None
    probs_down: Tensor | None = None
    probs_complement: Tensor | None = None
    features: str = "pixel"
    class_names: list[str] | None = None
    target_name: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived quantities
    @property
    def target_probs(self) -> Tensor:
        """Target probability at the interior samples ``[T]`` (aligned with ``path``)."""
        return self.probs[1:-1, self.target]

    @property
    def all_times(self) -> Tensor:
        """Times ``[T + 2]`` including the ends 0 and 1 (aligned with ``probs``)."""
        zero = torch.zeros(1, dtype=self.times.dtype)
        return torch.cat([zero, self.times.cpu(), zero + 1])

    @property
    def class_transition_time(self) -> float:
        """``t_clt`` of the class-transition reduction (2.7.2B)."""
        return float(self.times[class_transition_index(self.probs[1:-1], self.target)])

    @property
    def score_bounds(self) -> ScoreBounds:
        """What the path score can reach for this ``T`` and the target probabilities at the
        ends (see :func:`ablation_paths.diagnostics.score_bounds`)."""
        return score_bounds(
            self.score,
            float(self.probs[0, self.target]),
            float(self.probs[-1, self.target]),
            n_steps=int(self.path.shape[0]),
            with_ends=bool(self.info.get("config", {}).get("score_with_ends", False)),
        )

    @property
    def pinned(self) -> bool:
        """Path score pinned near what any path can reach and above what a faithful one
        reaches: a sign of adversarial, under-regularised paths (thesis 2.8.3; the test is
        :func:`ablation_paths.diagnostics.is_pinned`)."""
        return is_pinned(
            self.path_score,
            self.score,
            float(self.probs[0, self.target]),
            float(self.probs[-1, self.target]),
            n_steps=int(self.path.shape[0]),
            with_ends=bool(self.info.get("config", {}).get("score_with_ends", False)),
        )

    @property
    def default_reduction(self) -> str:
        return natural_reduction(self.score)

    def heatmap(self, kind: str | None = None, window: bool = False) -> Tensor:
        """Image-resolution heatmap ``[H, W]`` (higher = more salient).

        Args:
            kind: ``"average"``, ``"class_transition"``, ``"influence"`` or ``"contrastive"``
                (straddling pair only); ``None`` = the score's natural reduction.
            window: multiply by the boundary window of eq. 2.37.
        """
        kind = kind or self.default_reduction
        if kind not in self.heatmaps:
            raise ValueError(
                f"no heatmap {kind!r} for score {self.score!r}; available: "
                f"{', '.join(self.heatmaps)}"
            )
        h = self.heatmaps[kind]
        if window:
            h = h * boundary_window(h.shape[0], h.shape[1], dtype=h.dtype, device=h.device)
        return h

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary of the result."""
        return {
            "target": self.target,
            "target_name": self.target_name,
            "score": self.score,
            "features": self.features,
            "path_score": self.path_score,
            "saturation": self.saturation,
            "iterations": self.iterations,
            "converged": self.converged,
            "stopped": self.stopped,
            "pinned": self.pinned,
            "class_transition_time": self.class_transition_time,
            "target_prob_image": float(self.probs[0, self.target]),
            "target_prob_baseline": float(self.probs[-1, self.target]),
            **{k: v for k, v in self.info.items() if k != "config"},
            "settings": self.info.get("config", {}),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, file: str | os.PathLike) -> Path:
        """Save to a ``.npz`` file (plain arrays + JSON metadata; no pickle)."""
        path = Path(file)
        arrays: dict[str, np.ndarray] = {
            "path": _np(self.path),
            "times": _np(self.times),
            "probs": _np(self.probs),
            "image": _np(self.image),
            "baseline_image": _np(self.baseline_image),
        }
        for name in ("frames", "masks_image", "path_down", "probs_down", "probs_complement"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = _np(value)
        for kind, h in self.heatmaps.items():
            arrays[f"heatmap_{kind}"] = _np(h)
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "target": self.target,
            "target_name": self.target_name,
            "score": self.score,
            "path_score": self.path_score,
            "saturation": self.saturation,
            "iterations": self.iterations,
            "converged": self.converged,
            "stopped": self.stopped,
            "features": self.features,
            "class_names": self.class_names,
            "history": self.history,
            "info": self.info,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        return path


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def load(file: str | os.PathLike) -> AblationPathResult:
    """Load a result saved with :meth:`AblationPathResult.save` (safe: no pickle)."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"result file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path} as an ablation-paths result: {exc}") from exc
    if "meta" not in arrays:
        raise ValueError(f"{path} is not an ablation-paths result (no metadata)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has corrupt metadata: {exc}") from exc
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an ablation-paths result")
    if int(meta.get("version", 0)) > _VERSION:
        raise ValueError(f"{path} was written by a newer version (format {meta['version']})")
    required = {"path", "times", "probs", "image", "baseline_image"}
    missing = required - set(arrays)
    if missing:
        raise ValueError(f"{path} lacks arrays: {', '.join(sorted(missing))}")

    def t(name: str) -> Tensor | None:
        return torch.from_numpy(arrays[name]) if name in arrays else None

    heatmaps = {
        k[len("heatmap_") :]: torch.from_numpy(v)
        for k, v in arrays.items()
        if k.startswith("heatmap_")
    }
    return AblationPathResult(
        path=torch.from_numpy(arrays["path"]),
        times=torch.from_numpy(arrays["times"]),
        target=int(meta["target"]),
        score=str(meta["score"]),
        probs=torch.from_numpy(arrays["probs"]),
        path_score=float(meta["path_score"]),
        saturation=float(meta["saturation"]),
        iterations=int(meta["iterations"]),
        converged=bool(meta["converged"]),
        stopped=str(meta["stopped"]),
        heatmaps=heatmaps,
        image=torch.from_numpy(arrays["image"]),
        baseline_image=torch.from_numpy(arrays["baseline_image"]),
        frames=t("frames"),
        masks_image=t("masks_image"),
        path_down=t("path_down"),
        probs_down=t("probs_down"),
        probs_complement=t("probs_complement"),
        features=str(meta.get("features", "pixel")),
        class_names=meta.get("class_names"),
        target_name=meta.get("target_name"),
        history=list(meta.get("history", [])),
        info=dict(meta.get("info", {})),
    )
