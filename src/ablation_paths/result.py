"""The result of an ablation path explanation, and saving / loading it safely (``.npz``)."""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ablation_paths.io import atomic_write
from ablation_paths.reductions import boundary_window, class_transition_index, natural_reduction
from ablation_paths.scores import SCORES, max_score

__all__ = ["AblationPathResult", "ResultFileError", "load", "MAX_RESULT_BYTES"]

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
    def pinned(self) -> bool:
        """Path score pinned near its maximum: a sign of adversarial, under-regularised paths
        (thesis 2.8.3)."""
        return self.path_score > max_score(self.score) - 0.02

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
        # atomic: a full disk or an interrupt leaves the previous file intact
        return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))  # type: ignore[arg-type]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


#: Default cap on the uncompressed size of a result file's arrays (checked before inflating).
MAX_RESULT_BYTES = 2 * 1024**3

_STOPPED = ("saturated", "max_iterations", "stationary", "interrupted")
_REQUIRED_ARRAYS = ("path", "times", "probs", "image", "baseline_image")


class ResultFileError(ValueError):
    """A file is not a valid ablation-paths result; the message names the problem."""


def _declared_arrays(path: Path, max_bytes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Read the ``.npz`` directory and each member's ``.npy`` header without inflating the data;
    refuse archives whose declared sizes exceed ``max_bytes`` in total (zip bombs)."""
    if not zipfile.is_zipfile(path):
        raise ResultFileError(
            f"cannot read {path}: it is not an ablation-paths result (not a .npz archive; "
            f"results are the path.npz files written by 'explain')"
        )
    declared: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ResultFileError(f"{path} has an unexpected member {info.filename!r}")
                total += info.file_size
                if total > max_bytes:
                    raise ResultFileError(
                        f"{path} declares more than {max_bytes / 2**20:.0f} MiB of uncompressed "
                        f"data; refusing to inflate it (pass max_bytes= to load() to allow more)"
                    )
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = reader(fh, max_header_size=10_000)
                if dtype.hasobject:
                    raise ResultFileError(
                        f"{path}: array {info.filename[:-4]!r} holds Python objects; results "
                        f"contain plain numbers only"
                    )
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if nbytes > info.file_size:
                    raise ResultFileError(
                        f"{path}: array {info.filename[:-4]!r} declares {nbytes} bytes but the "
                        f"archive stores {info.file_size}: the file is corrupt"
                    )
                declared[info.filename[:-4]] = (tuple(int(n) for n in shape), dtype)
    except ResultFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ResultFileError(f"{path} is not a readable ablation-paths result: {exc}") from exc
    return declared


def _check(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise ResultFileError(f"{path} is not a valid ablation-paths result: {message}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _validate_meta(meta: object, path: Path) -> dict[str, Any]:
    _check(isinstance(meta, dict), path, "metadata is not a JSON object")
    assert isinstance(meta, dict)
    if meta.get("format") != _FORMAT:
        raise ResultFileError(
            f"{path} is not an ablation-paths result (format {meta.get('format')!r})"
        )
    version = meta.get("version")
    _check(_is_int(version), path, "metadata 'version' is not an integer")
    if isinstance(version, int) and version > _VERSION:
        raise ResultFileError(
            f"{path} was written by a newer version of ablation-paths (format {version}); "
            f"upgrade to read it"
        )
    _check(_is_int(meta.get("target")), path, "'target' is not an integer")
    _check(meta.get("score") in SCORES, path, f"unknown score {meta.get('score')!r}")
    for key in ("path_score", "saturation"):
        _check(_is_number(meta.get(key)), path, f"{key!r} is not a finite number")
    _check(
        _is_int(meta.get("iterations")) and meta["iterations"] >= 0,
        path,
        "'iterations' is not a non-negative integer",
    )
    _check(isinstance(meta.get("converged"), bool), path, "'converged' is not true/false")
    _check(meta.get("stopped") in _STOPPED, path, f"unknown 'stopped' {meta.get('stopped')!r}")
    features = meta.get("features", "pixel")
    _check(isinstance(features, str), path, "'features' is not a string")
    names = meta.get("class_names")
    _check(
        names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)),
        path,
        "'class_names' is not a list of strings",
    )
    tname = meta.get("target_name")
    _check(tname is None or isinstance(tname, str), path, "'target_name' is not a string")
    history = meta.get("history", [])
    _check(
        isinstance(history, list) and all(isinstance(h, dict) for h in history),
        path,
        "'history' is not a list of objects",
    )
    _check(isinstance(meta.get("info", {}), dict), path, "'info' is not an object")
    return meta


def _validate_shapes(
    declared: dict[str, tuple[tuple[int, ...], np.dtype]], meta: dict[str, Any], path: Path
) -> None:
    missing = [k for k in _REQUIRED_ARRAYS if k not in declared]
    _check(not missing, path, f"missing arrays: {', '.join(missing)}")
    for name, (_, dtype) in declared.items():
        _check(
            name == "meta" or dtype.kind in "fiub",
            path,
            f"array {name!r} has non-numeric dtype {dtype}",
        )
    p_shape = declared["path"][0]
    _check(len(p_shape) >= 2 and p_shape[0] >= 1, path, f"'path' has shape {p_shape}")
    n_t = p_shape[0]
    _check(
        declared["times"][0] == (n_t,),
        path,
        f"'times' has shape {declared['times'][0]}, expected ({n_t},)",
    )
    pr = declared["probs"][0]
    _check(
        len(pr) == 2 and pr[0] == n_t + 2 and pr[1] >= 1,
        path,
        f"'probs' has shape {pr}, expected ({n_t + 2}, classes)",
    )
    k = pr[1]
    _check(
        0 <= meta["target"] < k,
        path,
        f"target {meta['target']} is out of range for {k} classes",
    )
    names = meta.get("class_names")
    _check(
        names is None or len(names) == k,
        path,
        f"{len(names or [])} class names for {k} classes",
    )
    img = declared["image"][0]
    _check(
        len(img) == 3 and img[0] in (1, 3) and img[1] >= 1 and img[2] >= 1,
        path,
        f"'image' has shape {img}, expected (C, H, W)",
    )
    _check(
        declared["baseline_image"][0] == img,
        path,
        f"'baseline_image' has shape {declared['baseline_image'][0]}, the image {img}",
    )
    expected = {
        "frames": (n_t + 2, *img),
        "masks_image": (n_t + 2, *img[1:]),
        "path_down": p_shape,
        "probs_down": pr,
        "probs_complement": pr,
    }
    for name, shape in expected.items():
        if name in declared:
            _check(
                declared[name][0] == shape,
                path,
                f"{name!r} has shape {declared[name][0]}, expected {shape}",
            )
    for name, (shape, _) in declared.items():
        if name.startswith("heatmap_"):
            _check(
                shape == img[1:],
                path,
                f"{name!r} has shape {shape}, expected {img[1:]}",
            )


def load(file: str | os.PathLike, *, max_bytes: int = MAX_RESULT_BYTES) -> AblationPathResult:
    """Load a result saved with :meth:`AblationPathResult.save`.

    Safe on untrusted files: no pickle; array sizes declared in the archive are checked against
    ``max_bytes`` before anything is inflated; the metadata and every array's shape are checked
    against the result schema (lengths consistent with ``T``, ``target`` within the classes,
    finite probabilities). Raises :class:`ResultFileError` (a ``ValueError``) naming the problem.
    """
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"result file not found: {path}")
    declared = _declared_arrays(path, max_bytes)
    if "meta" not in declared:
        raise ResultFileError(f"{path} is not an ablation-paths result (no metadata)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ResultFileError(f"cannot read {path} as an ablation-paths result: {exc}") from exc
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"{path} has corrupt metadata: {exc}") from exc
    meta = _validate_meta(meta, path)
    _validate_shapes(declared, meta, path)
    for name, arr in arrays.items():
        if arr.dtype.kind == "f":
            _check(bool(np.isfinite(arr).all()), path, f"array {name!r} has NaN or infinite values")
    probs = arrays["probs"]
    _check(
        bool(((probs >= 0) & (probs <= 1)).all()),
        path,
        "'probs' holds values outside [0, 1]",
    )

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
