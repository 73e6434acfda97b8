"""A dataset audit: what does the classifier rely on, class by class, across many images?

Input: a folder of saved results (``path.npz`` files, e.g. written by
:func:`ablation_paths.many.explain_many` or ``ablation-paths explain DIR``), and optionally the
objects' boxes (COCO-style JSON) or masks (a folder of ``NAME.png``). Output, per explained class
and for all classes together: the mean heatmap, the mean path curve (target probability along
``t``), the fraction of the evidence inside the given objects, and flags; written as
``audit.json`` and one offline ``audit.html``.

Statistics (all on each image's *evidence*: the top ``evidence_fraction`` of its heatmap's
pixels, weighted equally and normalised to total mass 1, so that every image counts the same):

**Co-location** (flag "same place"): do different images' evidence regions land on the same
pixels (of the image frame) more often than chance? Each image's evidence is resampled to a
``grid x grid`` frame and smoothed by a Gaussian of ``location_sigma`` times the side, giving a
density ``g_i``. For two images the overlap ``A * <g_i, g_j>`` (``A`` = number of grid cells) is
1 in expectation when one of them is placed uniformly at random, whatever the shapes, and is
large when both sit at the same place. The class's co-location is the mean over all pairs of
different images::

    colocation = A * sum_{i != j} <g_i, g_j> / (n (n - 1))

It is about 1 when evidence sits at independent places, a little above 1 when objects merely
prefer the centre of the frame, and large when evidence concentrates on a few fixed places, even
several (e.g. a marker in one of four corners gives about ``A / (4 * spot area)``). A class is
flagged when ``colocation >= colocation_threshold`` (default 4, an effect size) over at least
``min_images`` images *and* the value is significant: random circular shifts of every image's
evidence (each moved to an independent random place) reach it with probability below ``alpha``
(default 0.01, from 499 seeded shifts). The threshold keeps a mild centre bias of natural
objects from being flagged however many images there are; the test keeps a few overlapping
images of a small class from being flagged by chance. Nothing about the places is given to it.

**Inside the objects** (flag "outside the objects", only with boxes or masks): the mean over
images of the fraction of the evidence inside the image's objects; flagged below
``inside_threshold`` (default 0.5: most of the evidence lies outside every given object).

>>> from ablation_paths.audit import audit_folder, write_audit
>>> audit = audit_folder("runs/photos", boxes="instances.json")
>>> write_audit(audit, "runs/photos")  # audit.json + audit.html
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ablation_paths.filters import gaussian_blur
from ablation_paths.result import AblationPathResult
from ablation_paths.templates import Html, content_security_policy, element, inline, join, render

__all__ = [
    "AuditConfig",
    "AuditResult",
    "ClassAudit",
    "audit_folder",
    "audit_results",
    "colocation",
    "evidence_map",
    "shift_test",
    "find_results",
    "load_coco_boxes",
    "load_mask_folder",
    "mass_inside",
    "render_audit",
    "write_audit",
]

logger = logging.getLogger(__name__)

ALL_CLASSES = "all classes"


@dataclass(frozen=True)
class AuditConfig:
    """Settings of the audit (see the module docstring for the statistics).

    Attributes:
        grid: side of the common frame every map is resampled to.
        evidence_fraction: fraction of each heatmap's pixels taken as its evidence (the top ones;
            ties at the threshold are all included, so a flat map is all evidence).
        location_sigma: smoothing of the evidence for co-location, as a fraction of the side.
        colocation_threshold: flag "same place" at or above this co-location.
        inside_threshold: flag "outside the objects" below this mean fraction inside.
        min_images: fewest images of a class for any flag.
        alpha, permutations, seed: "same place" also needs the co-location to be significant:
            its p-value against ``permutations`` random circular shifts of every image's
            evidence (seeded) must be below ``alpha``.
        reduction: heatmap reduction (``None``: each result's natural one).
        curve_points: samples of the mean path curve over ``t`` in ``[0, 1]``.
    """

    grid: int = 64
    evidence_fraction: float = 0.02
    location_sigma: float = 0.05
    colocation_threshold: float = 4.0
    inside_threshold: float = 0.5
    min_images: int = 3
    alpha: float = 0.01
    permutations: int = 499
    seed: int = 0
    reduction: str | None = None
    curve_points: int = 33

    def __post_init__(self) -> None:
        if self.grid < 4:
            raise ValueError(f"grid must be >= 4, got {self.grid}")
        if not 0 < self.evidence_fraction <= 1:
            raise ValueError(f"evidence_fraction must be in (0, 1], got {self.evidence_fraction}")
        if not self.location_sigma >= 0:
            raise ValueError(f"location_sigma must be >= 0, got {self.location_sigma}")
        if self.min_images < 2:
            raise ValueError(f"min_images must be >= 2, got {self.min_images}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {self.permutations}")
        if self.curve_points < 2:
            raise ValueError(f"curve_points must be >= 2, got {self.curve_points}")


# ----------------------------------------------------------------------------- pure functions
def evidence_map(heatmap: Tensor, fraction: float) -> Tensor:
    """The top ``fraction`` of ``heatmap [H, W]``'s pixels (ties at the threshold included),
    equally weighted, total mass 1, ``float64``. NaNs never count as evidence."""
    h = torch.nan_to_num(heatmap.detach().to(torch.float64).cpu(), nan=-math.inf)
    flat = h.flatten()
    k = max(1, min(flat.numel(), round(fraction * flat.numel())))
    threshold = torch.topk(flat, k).values[-1]
    region = (h >= threshold).to(torch.float64)
    return region / region.sum()


def resample(map_: Tensor, grid: int) -> Tensor:
    """``[H, W]`` -> ``[grid, grid]`` by area averaging (bilinear when enlarging); the image
    frame is stretched to the square, so positions are relative to the frame."""
    x = map_.to(torch.float64)[None, None]
    if x.shape[-2] >= grid and x.shape[-1] >= grid:
        y = F.adaptive_avg_pool2d(x, grid)
    else:
        y = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
    return y[0, 0]


def mass_inside(evidence: Tensor, region: Tensor) -> float:
    """Fraction of ``evidence`` (mass 1) inside the boolean ``region`` of the same shape."""
    if evidence.shape != region.shape:
        raise ValueError(f"evidence {tuple(evidence.shape)} vs region {tuple(region.shape)}")
    total = float(evidence.sum())
    return float(evidence[region.bool()].sum()) / total if total > 0 else math.nan


def smoothed(evidence_grid: Tensor, sigma_fraction: float) -> Tensor:
    """Gaussian-smoothed evidence ``[n, g, g]`` (reflecting edges), renormalised to mass 1."""
    g = evidence_grid.shape[-1]
    out = gaussian_blur(evidence_grid, sigma_fraction * g) if sigma_fraction > 0 else evidence_grid
    return out / out.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-300)


def colocation(densities: Tensor) -> tuple[float, list[float]]:
    """Co-location of ``densities [n, g, g]`` (each of mass 1): ``A * mean_{i != j} <g_i, g_j>``
    and each image's ``A * mean_{j != i} <g_i, g_j>``; NaN for fewer than two images."""
    n = densities.shape[0]
    if n < 2:
        return math.nan, [math.nan] * n
    area = densities.shape[-1] * densities.shape[-2]
    flat = densities.reshape(n, -1).to(torch.float64)
    total = flat.sum(dim=0)
    each = area * ((total[None] - flat) * flat).sum(dim=1) / (n - 1)
    return float(each.mean()), [float(v) for v in each]


def shift_test(densities: Tensor, observed: float, permutations: int, seed: int = 0) -> float:
    """p-value of ``observed`` co-location against random circular shifts of every density
    (each image's evidence moved to an independent, uniformly random place of the frame):
    ``(1 + #{null >= observed}) / (1 + permutations)``."""
    n, gh, gw = densities.shape
    if n < 2 or not math.isfinite(observed):
        return math.nan
    gen = torch.Generator().manual_seed(seed)
    d = densities.to(torch.float32)
    rows = torch.arange(gh)[None, None, :, None]
    cols = torch.arange(gw)[None, None, None, :]
    img = torch.arange(n)[None, :, None, None]
    exceed = 0
    done = 0
    while done < permutations:
        p = min(32, permutations - done)
        dy = torch.randint(0, gh, (p, n, 1, 1), generator=gen)
        dx = torch.randint(0, gw, (p, n, 1, 1), generator=gen)
        shifted = d[img, (rows - dy) % gh, (cols - dx) % gw].reshape(p, n, -1)  # [p, n, A]
        total = shifted.sum(dim=1, keepdim=True)
        null = gh * gw * ((total - shifted) * shifted).sum(dim=2).mean(dim=1) / (n - 1)
        exceed += int((null >= observed * (1 - 1e-6)).sum())
        done += p
    return (1 + exceed) / (1 + permutations)


# ----------------------------------------------------------------------------- annotations
def load_coco_boxes(
    file: str | os.PathLike[str],
) -> dict[str, list[tuple[float, float, float, float, int, int]]]:
    """Boxes of a COCO-style JSON file, by image file stem.

    Returns ``{stem: [(x, y, w, h, image_width, image_height), ...]}`` (COCO ``bbox`` is
    ``[x, y, width, height]`` in pixels of the image as listed under ``images``).
    """
    path = Path(file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path} as COCO JSON: {exc}") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path} is not COCO-style JSON (needs 'images' and 'annotations')")
    images = {}
    for im in data["images"]:
        try:
            images[im["id"]] = (
                Path(str(im["file_name"])).stem,
                int(im["width"]),
                int(im["height"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: image entry {im!r} lacks id/file_name/width/height") from exc
    out: dict[str, list[tuple[float, float, float, float, int, int]]] = {}
    for ann in data["annotations"]:
        try:
            stem, w, h = images[ann["image_id"]]
            x, y, bw, bh = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: annotation {ann!r} lacks image_id/bbox") from exc
        out.setdefault(stem, []).append((x, y, bw, bh, w, h))
    return out


def boxes_region(
    boxes: Iterable[tuple[float, float, float, float, int, int]], height: int, width: int
) -> Tensor:
    """Boolean ``[height, width]``: pixels whose centre lies in any box (scaled to this size)."""
    region = torch.zeros(height, width, dtype=torch.bool)
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    for x, y, bw, bh, iw, ih in boxes:
        sx, sy = width / iw, height / ih
        inside_y = (ys >= y * sy) & (ys < (y + bh) * sy)
        inside_x = (xs >= x * sx) & (xs < (x + bw) * sx)
        region |= inside_y[:, None] & inside_x[None, :]
    return region


def load_mask_folder(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Mask files of a folder by stem (``NAME.png``, nonzero = object)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"mask folder not found: {root}")
    masks = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() in (".png", ".bmp")}
    if not masks:
        raise ValueError(f"no mask files (.png) in {root}")
    return masks


def _mask_region(file: Path, height: int, width: int) -> Tensor:
    from PIL import Image

    with Image.open(file) as im:
        grey = im.convert("L").resize((width, height), Image.Resampling.NEAREST)
        return torch.from_numpy(np.asarray(grey) > 0)


# ----------------------------------------------------------------------------- results
@dataclass
class ClassAudit:
    """The audit of one class (or of all classes together).

    Attributes:
        label: class index (``-1`` for all classes); ``name`` its name.
        images: the images' names.
        mean_heatmap: ``[grid, grid]`` mean of the per-image heatmaps, each scaled to ``[0, 1]``.
        mean_evidence: ``[grid, grid]`` mean evidence density (mass 1).
        curve_t / curve_mean / curve_std: mean and spread of the target probability along ``t``.
        colocation: see the module docstring; ``image_colocation`` per image;
            ``colocation_p`` its shift-test p-value (NaN below ``min_images`` images).
        inside: mean fraction of evidence inside the objects (``None``: none supplied);
            ``inside_images``: how many images had objects; ``object_area``: their mean area
            fraction (the chance level of ``inside``).
        path_score / saturation: means over the images.
        flags: human-readable reasons to look closer (empty: nothing flagged).
    """

    label: int
    name: str
    images: list[str]
    mean_heatmap: np.ndarray
    mean_evidence: np.ndarray
    curve_t: np.ndarray
    curve_mean: np.ndarray
    curve_std: np.ndarray
    colocation: float
    colocation_p: float
    image_colocation: list[float]
    inside: float | None
    inside_images: int
    object_area: float | None
    path_score: float
    saturation: float
    flags: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.images)

    def to_json(self, maps: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "name": self.name,
            "n": self.n,
            "images": self.images,
            "colocation": _num(self.colocation),
            "colocation_p": _num(self.colocation_p),
            "image_colocation": [_num(v) for v in self.image_colocation],
            "inside": _num(self.inside),
            "inside_images": self.inside_images,
            "object_area": _num(self.object_area),
            "path_score": _num(self.path_score),
            "saturation": _num(self.saturation),
            "flags": self.flags,
            "curve": {
                "t": np.round(self.curve_t, 5).tolist(),
                "mean": np.round(self.curve_mean, 5).tolist(),
                "std": np.round(self.curve_std, 5).tolist(),
            },
        }
        if maps:
            d["mean_heatmap"] = np.round(self.mean_heatmap, 5).tolist()
            d["mean_evidence"] = np.round(self.mean_evidence, 7).tolist()
        return d


@dataclass
class AuditResult:
    """Per-class audits (by class index) and the all-classes row."""

    classes: list[ClassAudit]
    overall: ClassAudit
    config: AuditConfig
    source: str = ""
    annotations: str | None = None

    @property
    def flagged(self) -> list[ClassAudit]:
        """Classes (and the all-classes row) with at least one flag."""
        return [c for c in [*self.classes, self.overall] if c.flags]

    def to_json(self, maps: bool = True) -> dict[str, Any]:
        return {
            "format": "ablation-paths-audit",
            "version": 1,
            "source": self.source,
            "annotations": self.annotations,
            "config": asdict(self.config),
            "classes": [c.to_json(maps) for c in self.classes],
            "all": self.overall.to_json(maps),
        }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class _Image:
    name: str
    label: int
    label_name: str
    heat: Tensor  # [grid, grid] scaled to [0, 1]
    evidence: Tensor  # [grid, grid] mass 1
    curve: np.ndarray
    inside: float | None
    area: float | None
    path_score: float
    saturation: float


def find_results(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``path.npz`` below ``folder`` (hidden folders skipped), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder not found: {root}")
    return sorted(
        p
        for p in root.rglob("path.npz")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _image_name(result: AblationPathResult, file: Path | None, index: int) -> str:
    if file is not None and file.parent.name:
        return file.parent.name
    return str(result.info.get("input") or f"image_{index:05d}")


def _one(
    result: AblationPathResult,
    name: str,
    cfg: AuditConfig,
    region: Tensor | None,
) -> _Image:
    h = result.heatmap(cfg.reduction).detach().to(torch.float64).cpu()
    if h.dim() != 2:
        raise ValueError(f"{name}: heatmap must be [H, W], got {tuple(h.shape)}")
    ev = evidence_map(h, cfg.evidence_fraction)
    inside = area = None
    if region is not None:
        inside = mass_inside(ev, region)
        area = float(region.to(torch.float64).mean())
    lo, hi = float(h.min()), float(h.max())
    scaled = (h - lo) / (hi - lo) if hi > lo else torch.zeros_like(h)
    t = result.all_times.double().numpy()
    p = result.probs[:, result.target].double().numpy()
    grid_t = np.linspace(0.0, 1.0, cfg.curve_points)
    return _Image(
        name=name,
        label=int(result.target),
        label_name=result.target_name or str(result.target),
        heat=resample(scaled, cfg.grid),
        evidence=resample(ev, cfg.grid) * (h.numel() / cfg.grid**2),
        curve=np.interp(grid_t, t, p),
        inside=inside,
        area=area,
        path_score=float(result.path_score),
        saturation=float(result.saturation),
    )


def _summarise(label: int, name: str, items: list[_Image], cfg: AuditConfig) -> ClassAudit:
    heat = torch.stack([it.heat for it in items])
    ev = torch.stack([it.evidence for it in items])
    ev = ev / ev.sum(dim=(-2, -1), keepdim=True)
    dens = smoothed(ev, cfg.location_sigma)
    coloc, each = colocation(dens)
    enough = len(items) >= cfg.min_images and math.isfinite(coloc)
    p_value = shift_test(dens, coloc, cfg.permutations, cfg.seed) if enough else math.nan
    big = enough and coloc >= cfg.colocation_threshold
    curves = np.stack([it.curve for it in items])
    insides = [it.inside for it in items if it.inside is not None and math.isfinite(it.inside)]
    areas = [it.area for it in items if it.area is not None]
    inside = float(np.mean(insides)) if insides else None
    flags = []
    if big and p_value < cfg.alpha:
        flags.append(
            f"same place: the evidence of these {len(items)} images concentrates on the same "
            f"places of the frame ({coloc:.1f} x chance, p = {p_value:.3g}; threshold "
            f"{cfg.colocation_threshold:g}). Look at the mean evidence map for a shared cue "
            "(a marker, a watermark, a border)."
        )
    if inside is not None and len(insides) >= cfg.min_images and inside < cfg.inside_threshold:
        flags.append(
            f"outside the objects: only {100 * inside:.0f}% of the evidence lies inside the given "
            f"objects (which cover {100 * float(np.mean(areas)):.0f}% of the images; threshold "
            f"{100 * cfg.inside_threshold:.0f}%)."
        )
    return ClassAudit(
        label=label,
        name=name,
        images=[it.name for it in items],
        mean_heatmap=heat.mean(dim=0).numpy(),
        mean_evidence=ev.mean(dim=0).numpy(),
        curve_t=np.linspace(0.0, 1.0, cfg.curve_points),
        curve_mean=curves.mean(axis=0),
        curve_std=curves.std(axis=0),
        colocation=coloc,
        colocation_p=p_value,
        image_colocation=each,
        inside=inside,
        inside_images=len(insides),
        object_area=float(np.mean(areas)) if areas else None,
        path_score=float(np.mean([it.path_score for it in items])),
        saturation=float(np.mean([it.saturation for it in items])),
        flags=flags,
    )


def audit_results(
    results: Iterable[tuple[str, AblationPathResult]],
    *,
    regions: Mapping[str, Tensor] | None = None,
    config: AuditConfig | None = None,
) -> AuditResult:
    """Audit named results (in memory); ``regions`` maps image names to boolean object masks
    of the result's image size."""
    cfg = config or AuditConfig()
    items = []
    for name, res in results:
        region = None if regions is None else regions.get(name)
        if region is not None and tuple(region.shape) != tuple(res.heatmap(cfg.reduction).shape):
            raise ValueError(
                f"{name}: object mask {tuple(region.shape)} does not match the heatmap "
                f"{tuple(res.heatmap(cfg.reduction).shape)}"
            )
        items.append(_one(res, name, cfg, region))
    return _assemble(items, cfg, "")


def _assemble(items: list[_Image], cfg: AuditConfig, source: str) -> AuditResult:
    if not items:
        raise ValueError("no results to audit")
    by_label: dict[int, list[_Image]] = {}
    for it in items:
        by_label.setdefault(it.label, []).append(it)
    classes = [
        _summarise(label, group[0].label_name, group, cfg)
        for label, group in sorted(by_label.items())
    ]
    overall = _summarise(-1, ALL_CLASSES, items, cfg)
    return AuditResult(classes=classes, overall=overall, config=cfg, source=source)


def audit_folder(
    folder: str | os.PathLike[str],
    *,
    boxes: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
    config: AuditConfig | None = None,
    progress: bool = False,
) -> AuditResult:
    """Audit every saved result below ``folder``.

    Args:
        folder: where the ``path.npz`` files are (e.g. an :func:`explain_many` output folder).
        boxes: COCO-style JSON; matched to results by the image file's stem (the result's
            ``info["source"]``, else its folder name).
        masks: a folder of ``STEM.png`` object masks (nonzero = object), matched the same way.
        config: :class:`AuditConfig`.
        progress: show a progress bar while reading.
    """
    from ablation_paths.result import load

    if boxes is not None and masks is not None:
        raise ValueError("give boxes or masks, not both")
    cfg = config or AuditConfig()
    files = find_results(folder)
    if not files:
        raise ValueError(f"no results (path.npz) below {folder}")
    coco = load_coco_boxes(boxes) if boxes is not None else None
    mask_files = load_mask_folder(masks) if masks is not None else None
    iterator: Iterable[Path] = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="audit", unit="result")
    items = []
    unmatched = 0
    for i, file in enumerate(iterator):
        res = load(file)
        name = _image_name(res, file, i)
        source = res.info.get("source")
        keys = [Path(str(source)).stem] if source else []
        keys += [name, str(res.info.get("input", ""))]
        h, w = res.heatmap(cfg.reduction).shape
        region = None
        if coco is not None:
            found = next((coco[k] for k in keys if k in coco), None)
            region = boxes_region(found, h, w) if found is not None else None
        elif mask_files is not None:
            mf = next((mask_files[k] for k in keys if k in mask_files), None)
            region = _mask_region(mf, h, w) if mf is not None else None
        if (coco is not None or mask_files is not None) and region is None:
            unmatched += 1
        items.append(_one(res, name, cfg, region))
    if unmatched:
        logger.warning("%d of %d results have no matching boxes/masks", unmatched, len(items))
    audit = _assemble(items, cfg, str(folder))
    audit.annotations = str(boxes or masks) if (boxes or masks) else None
    return audit


# ----------------------------------------------------------------------------- output
def _png(rgb: np.ndarray, scale: int = 3) -> str:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colour(values: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    v = np.nan_to_num(values.astype(np.float64))
    hi = float(v.max())
    v = v / hi if hi > 0 else v
    return (colormaps["inferno"](v)[..., :3] * 255).round().astype(np.uint8)


def _curve_svg(c: ClassAudit) -> Html:
    def xy(t: float, p: float) -> str:
        return f"{10 + 200 * t:.1f},{110 - 100 * p:.1f}"

    upper = [
        xy(t, min(1.0, m + s)) for t, m, s in zip(c.curve_t, c.curve_mean, c.curve_std, strict=True)
    ]
    lower = [
        xy(t, max(0.0, m - s)) for t, m, s in zip(c.curve_t, c.curve_mean, c.curve_std, strict=True)
    ]
    band = " ".join(upper + lower[::-1])
    line = " ".join(xy(t, m) for t, m in zip(c.curve_t, c.curve_mean, strict=True))
    return render("audit_curve.html", band=band, line=line)


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.0f}%" if pct else f"{x:.3g}"


def _card(c: ClassAudit, frac: str) -> Html:
    """One class's card (``templates/audit_card.html``)."""
    flags = [element("p", f, class_="flag", role="alert") for f in c.flags]
    inside: object = ""
    if c.inside is not None:
        detail = f"{_fmt(c.inside, True)} ({c.inside_images} images; objects cover "
        detail += f"{_fmt(c.object_area, True)})"
        inside = element("tr", element("th", "evidence inside objects"), element("td", detail))
    return render(
        "audit_card.html",
        css_class="card flagged" if c.flags else "card",
        label=c.label,
        class_name=c.name,
        n=c.n,
        flags=join(flags) if flags else element("p", "no flag", class_="ok"),
        heatmap=_png(_colour(c.mean_heatmap)),
        evidence=_png(_colour(c.mean_evidence)),
        frac=frac,
        curve=_curve_svg(c),
        colocation=_fmt(c.colocation),
        colocation_p=f"(p = {c.colocation_p:.3g})" if math.isfinite(c.colocation_p) else "",
        inside=inside,
        path_score=_fmt(c.path_score),
        saturation=_fmt(c.saturation),
        images=", ".join(c.images),
    )


def render_audit(audit: AuditResult) -> str:
    """``audit.html`` (``templates/audit.html``): one offline page (no script; CSP forbids
    every request)."""
    frac = f"{100 * audit.config.evidence_fraction:g}%"
    flagged = audit.flagged
    summary = (
        "Flagged: " + ", ".join(c.name for c in flagged) + "." if flagged else "Nothing flagged."
    )
    cfg = audit.config
    objects: object = " No boxes or masks were given."
    if audit.annotations:
        objects = join(
            [
                " ",
                element("strong", "Evidence inside objects"),
                f" is flagged below {_fmt(cfg.inside_threshold, True)} "
                f"(objects from {audit.annotations}).",
            ]
        )
    return render(
        "audit.html",
        csp=content_security_policy(),
        style=inline("audit.css"),
        source=audit.source,
        heading=audit.source or "results",
        summary=summary,
        frac=frac,
        threshold=f"{cfg.colocation_threshold:g}",
        min_images=cfg.min_images,
        alpha=f"{cfg.alpha:g}",
        objects=objects,
        cards=join(_card(c, frac) for c in [audit.overall, *audit.classes]),
    )


def write_audit(audit: AuditResult, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``audit.json`` and ``audit.html`` into ``folder``; returns both paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "audit.json", "html": out / "audit.html"}
    texts = {
        "json": json.dumps(audit.to_json(), indent=1, allow_nan=False),
        "html": render_audit(audit),
    }
    for key, f in files.items():
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        tmp.write_text(texts[key], encoding="utf-8")
        os.replace(tmp, f)
    return files
