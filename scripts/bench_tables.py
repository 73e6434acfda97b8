"""Tables and plots for docs/benchmarks.md from one or more benchmark results folders.

Restricts every method to the images ``index < n`` that *all* listed methods finished without
error, so the rows of a table are computed on the same images, then writes per dataset:

* ``OUT/benchmarks_<dataset>.md``: the full table (means, 95 % bootstrap intervals), the
  ablation-path diagnostics and paired differences against the best comparison method;
* ``OUT/benchmarks_<dataset>_metrics.png`` and ``OUT/benchmarks_<dataset>_time.png``.

    python scripts/bench_tables.py --n 50 --out docs \\
        localisation=bench-out/localisation planted_bias=bench-out/planted_bias
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ablation_paths.bench.cli import DEFAULT_METHODS
from ablation_paths.bench.runner import load_results
from ablation_paths.bench.summary import (
    METRICS,
    _plot,
    markdown_table,
    path_table,
    summarise,
)

BASELINES = ("centre", "random")

#: metrics compared pairwise, per dataset: (key, higher is better)
PAIRED = {
    "localisation": [
        ("pointing", True),
        ("pointing_strict", True),
        ("mass_inside", True),
        ("deletion_auc", False),
    ],
    "planted_bias": [
        ("pointing", True),
        ("pointing_strict", True),
        ("mass_inside", True),
        ("mass_on_object", False),
        ("deletion_auc", False),
    ],
}


def paired_diff(
    a: dict[int, float], b: dict[int, float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """Mean of ``a - b`` over shared images, with a 95 % paired percentile-bootstrap interval."""
    keys = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return (
        float(d.mean()),
        float(np.quantile(means, 0.025)),
        float(np.quantile(means, 0.975)),
        d.size,
    )


def per_image(records: list[dict[str, Any]], method: str, key: str) -> dict[int, float]:
    return {
        int(r["index"]): float(r[key])
        for r in records
        if r["method"] == method and r.get(key) is not None and np.isfinite(r[key])
    }


def dataset_page(name: str, folder: Path, n: int, methods: list[str], out: Path) -> str:
    records = [r for r in load_results(folder) if int(r["index"]) < n]
    methods = [m for m in methods if any(r["method"] == m for r in records)]
    complete = [
        i
        for i in range(n)
        if all(
            any(r["index"] == i and r["method"] == m and "error" not in r for r in records)
            for m in methods
        )
    ]
    errors = [r for r in records if "error" in r]
    keep = set(complete)
    recs = [r for r in records if int(r["index"]) in keep]
    summary = summarise(recs, methods)
    files = _plot(summary, out, f"benchmarks_{name}_", f"{name} (n = {len(complete)})")
    lines = [
        f"#### `{name}`: n = {len(complete)} images (seed 0, test split)",
        "",
        markdown_table(summary),
        "",
    ]
    if errors:
        lines += [
            f"{len(errors)} (image, method) pairs failed and their images are left out of every "
            "row: "
            + "; ".join(
                sorted({f"`{r['method']}` image {r['index']}: {r['error']}" for r in errors})
            )
            + ".",
            "",
        ]
    sanity_err = [r for r in recs if "sanity_error" in r]
    if sanity_err:
        lines += [
            f"The sanity rerun failed on {len(sanity_err)} pairs (heatmap kept, no sanity value): "
            + "; ".join(sorted({f"`{r['method']}`: {r['sanity_error']}" for r in sanity_err}))
            + ".",
            "",
        ]
    first = {int(r["index"]): r for r in recs if "predicted" in r}
    correct = sum(int(r["predicted"]) == int(r["label"]) for r in first.values())
    lines += [
        f"The classifier gets {correct} of these {len(first)} images right; the target is always "
        "the true label.",
        "",
    ]
    pt = path_table(summary)
    if pt:
        lines += ["Ablation-path diagnostics:", "", pt, ""]
    comparison = [m for m in methods if not m.startswith("ap-") and m not in BASELINES]
    aps = [m for m in methods if m.startswith("ap-")]
    titles = {k: t for k, t, _ in METRICS}
    for key, higher in PAIRED.get(name, []):
        if not any(summary[m][key].n for m in comparison):
            continue
        best = max(comparison, key=lambda m: summary[m][key].mean * (1 if higher else -1))
        lines += [
            f"Paired difference in **{titles[key]}** ({'higher' if higher else 'lower'} is "
            f"better) against the best comparison method on it, `{best}` "
            f"({summary[best][key].format()}); 95 % paired bootstrap interval:",
            "",
            "| ablation path | difference | better? |",
            "|---|---|---|",
        ]
        ref = per_image(recs, best, key)
        for m in aps:
            mean, lo, hi, k = paired_diff(per_image(recs, m, key), ref)
            good = lo > 0 if higher else hi < 0
            bad = hi < 0 if higher else lo > 0
            verdict = "better" if good else "worse" if bad else "not distinguishable"
            lines.append(f"| `{m}` | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | {verdict} |")
        lines.append("")
    lines += [f"![{f.stem}]({f.name})" for f in files]
    text = "\n".join(lines) + "\n"
    (out / f"benchmarks_{name}.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="DATASET=RESULTS_FOLDER")
    p.add_argument("--n", type=int, required=True, help="use images 0 .. n-1")
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.folders:
        name, folder = item.split("=", 1)
        print(dataset_page(name, Path(folder), args.n, methods, args.out))


if __name__ == "__main__":
    main()
