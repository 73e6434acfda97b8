"""Summaries of benchmark results: per-method means with bootstrap confidence intervals, a
markdown table and PNG plots."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ablation_paths.bench.runner import finite, load_results

__all__ = ["METRICS", "MetricSummary", "bootstrap_ci", "markdown_table", "summarise", "write"]

#: (record key, column title, better direction) of every summarised metric, in table order.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("pointing", "pointing game", "higher"),
    ("pointing_strict", "pointing (0 px)", "higher"),
    ("mass_inside", "mass inside", "higher"),
    ("mass_on_object", "mass on decoy object", "lower"),
    ("pointing_object", "points at decoy", "lower"),
    ("deletion_auc", "deletion AUC", "lower"),
    ("insertion_auc", "insertion AUC", "higher"),
    ("sanity_spearman", "sanity rank corr.", "lower"),
    ("time_s", "s / image", "lower"),
)


@dataclass
class MetricSummary:
    """Mean of one metric over the images of one method, with a 95% bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        if self.n == 0:
            return "-"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_ci(
    values: Sequence[Any], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> MetricSummary:
    """Mean and percentile-bootstrap confidence interval of ``values`` (seeded)."""
    x = np.asarray(finite(values), dtype=np.float64)
    if x.size == 0:
        return MetricSummary(math.nan, math.nan, math.nan, 0)
    if x.size == 1 or np.ptp(x) == 0:
        return MetricSummary(float(x.mean()), float(x.mean()), float(x.mean()), int(x.size))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    a = (1 - level) / 2
    return MetricSummary(
        float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a)), x.size
    )


def summarise(
    records: Sequence[dict[str, Any]], methods: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """``{method: {metric: MetricSummary, "n": images, "errors": count, "path_score": ...}}``."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(str(r["method"]), []).append(r)
    order = list(methods) if methods else list(by_method)
    out: dict[str, dict[str, Any]] = {}
    for m in order:
        recs = by_method.get(m, [])
        ok = [r for r in recs if "error" not in r]
        row: dict[str, Any] = {"n": len(ok), "errors": len(recs) - len(ok)}
        for key, _, _ in METRICS:
            row[key] = bootstrap_ci([r.get(key) for r in ok])
        infos = [r.get("info") or {} for r in ok]
        if any("path_score" in i for i in infos):
            row["path_score"] = bootstrap_ci([i.get("path_score") for i in infos])
            row["pinned"] = float(np.mean([bool(i.get("pinned")) for i in infos]))
            row["converged"] = float(np.mean([bool(i.get("converged")) for i in infos]))
        out[m] = row
    return out


def markdown_table(summary: dict[str, dict[str, Any]], *, digits: int = 3) -> str:
    """The summary as a markdown table; columns without data are dropped."""
    cols = [c for c in METRICS if any(row[c[0]].n for row in summary.values())]
    head = ["method", "n"] + [f"{title} ({'↑' if d == 'higher' else '↓'})" for _, title, d in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary.items():
        n = f"{row['n']}" + (f" (+{row['errors']} err)" if row["errors"] else "")
        cells = [f"`{m}`", n]
        for key, _, _ in cols:
            cells.append(row[key].format(2 if key == "time_s" else digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def path_table(summary: dict[str, dict[str, Any]]) -> str:
    """Ablation-path diagnostics: mean path score, fraction pinned, fraction converged."""
    rows = [(m, r) for m, r in summary.items() if "path_score" in r]
    if not rows:
        return ""
    lines = [
        "| method | path score | pinned near max | converged (saturation reached) |",
        "|---|---|---|---|",
    ]
    for m, r in rows:
        lines.append(
            f"| `{m}` | {r['path_score'].format()} | {r['pinned']:.0%} | {r['converged']:.0%} |"
        )
    return "\n".join(lines)


def _plot(summary: dict[str, dict[str, Any]], out: Path, prefix: str, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = list(summary)
    y = np.arange(len(methods))
    panels = [
        (k, t) for k, t, _ in METRICS if k != "time_s" and any(summary[m][k].n for m in methods)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 0.35 * len(methods) + 1.6))
    axes = np.atleast_1d(axes)
    for ax, (key, label) in zip(axes, panels, strict=True):
        vals = [summary[m][key] for m in methods]
        means = [v.mean if v.n else np.nan for v in vals]
        err = np.array([[v.mean - v.low, v.high - v.mean] if v.n else [0, 0] for v in vals]).T
        colours = ["tab:orange" if m.startswith("ap-") else "tab:blue" for m in methods]
        colours = [
            "tab:gray" if m in ("centre", "random") else c
            for m, c in zip(methods, colours, strict=True)
        ]
        ax.barh(y, means, xerr=err, color=colours, capsize=2)
        ax.set_title(label, fontsize=9)
        ax.set_yticks(y)
        ax.set_yticklabels(methods if ax is axes[0] else [], fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    f = out / f"{prefix}metrics.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)

    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(methods) + 1.2))
    t = [summary[m]["time_s"].mean if summary[m]["time_s"].n else np.nan for m in methods]
    ax.barh(y, t, color="tab:green")
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(methods, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per image (log scale)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    f = out / f"{prefix}time.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)
    return files


def write(
    results: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    methods: Sequence[str] | None = None,
    title: str | None = None,
    prefix: str = "",
) -> Path:
    """Summarise a results file (or a directory holding ``results.jsonl``) into ``summary.md``
    and PNG plots in ``out`` (default: beside the results). Returns the markdown file."""
    res = Path(results)
    out_dir = Path(out) if out is not None else (res if res.is_dir() else res.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = load_results(res)
    if not records:
        raise ValueError(f"no results in {res}")
    datasets = sorted({str(r.get("dataset")) for r in records})
    summary = summarise(records, methods)
    name = title or ", ".join(datasets)
    files = _plot(summary, out_dir, prefix, name)
    text = [f"# Benchmark: {name}", "", markdown_table(summary), ""]
    pt = path_table(summary)
    if pt:
        text += ["Ablation-path diagnostics:", "", pt, ""]
    text += [f"![{f.stem}]({f.name})" for f in files]
    md = out_dir / f"{prefix}summary.md"
    md.write_text("\n".join(text) + "\n", encoding="utf-8")
    return md
