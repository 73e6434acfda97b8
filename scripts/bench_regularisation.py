"""Regularisation study (thesis 2.8.3): sweep the blur, record path scores and pointing game.

For each blur (fraction of the image side) and each image, optimise one ablation path and record
its path score, whether it is pinned near the maximum, and the pointing game of its heatmap
(plain and windowed). Then apply :func:`ablation_paths.bench.regularisation.select_auto`, which
sees the path scores only, and compare its pick with the blur that is best on the pointing game.

    python scripts/bench_regularisation.py --dataset localisation --n 20 --seed 1 \
        --out bench-out/reg

Writes ``OUT/regularisation.jsonl`` (resumable), ``OUT/regularisation.md`` and
``OUT/regularisation.png`` (path-score violins and pointing game against the blur, like the
thesis's Fig. 2.10).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ablation_paths.bench.metrics import default_tolerance, pointing_game
from ablation_paths.bench.regularisation import (
    DEFAULT_CANDIDATES,
    is_pinned,
    pinned_fraction,
    select_auto,
)
from ablation_paths.bench.runner import load_results, resolve_dataset
from ablation_paths.bench.summary import bootstrap_ci


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="localisation")
    p.add_argument("--n", type=int, default=20)
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed (use one other than the table's 0)"
    )
    p.add_argument("--score", default="dissipate")
    p.add_argument("--blurs", default=",".join(str(b) for b in DEFAULT_CANDIDATES))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-iterations", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ablation_paths import explain

    blurs = [float(b) for b in args.blurs.split(",")]
    load_samples, load_model = resolve_dataset(args.dataset)
    samples = load_samples(args.n, args.seed)
    model = load_model().eval()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "regularisation.jsonl"
    done = {(r["index"], r["blur"]) for r in _load(path)}
    opts = {} if args.max_iterations is None else {"max_iterations": args.max_iterations}
    with path.open("a", encoding="utf-8") as f:
        for i, s in enumerate(samples):
            tol = default_tolerance(int(s.image.shape[-1]))
            for b in blurs:
                if (i, b) in done:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = explain(
                        model, s.image, int(s.label), score=args.score, regularization=b, **opts
                    )
                rec = {
                    "index": i,
                    "blur": b,
                    "method": f"reg-{b}",
                    "path_score": float(res.path_score),
                    "pinned": is_pinned(res.path_score, args.score),
                    "pointing": pointing_game(res.heatmap(), s.mask, tol),
                    "pointing_win": pointing_game(res.heatmap(window=True), s.mask, tol),
                    "converged": bool(res.converged),
                }
                f.write(json.dumps(rec) + "\n")
                f.flush()
                print(json.dumps(rec), flush=True)
    report(_load(path), blurs, args)


def _blur(rec: dict) -> float:
    return float(rec["blur"])


def _load(path: Path) -> list[dict]:
    return [r for r in load_results(path) if "blur" in r] if path.exists() else []


def report(records: list[dict], blurs: list[float], args: argparse.Namespace) -> None:
    by = {b: [r for r in records if r["blur"] == b] for b in blurs}
    scores = {b: [r["path_score"] for r in rs] for b, rs in by.items() if rs}
    auto = select_auto(scores, score=args.score)
    best = max(scores, key=lambda b: np.mean([r["pointing"] for r in by[b]]))
    lines = [
        f"# Regularisation sweep: {args.dataset} (seed {args.seed}), score `{args.score}`, "
        f"n = {args.n}",
        "",
        "| blur (fraction of side) | mean path score | pinned | pointing | pointing (window) |",
        "|---|---|---|---|---|",
    ]
    for b, rs in by.items():
        if not rs:
            continue
        lines.append(
            f"| {b:g}{' (auto)' if b == auto else ''}{' (best PG)' if b == best else ''} | "
            f"{bootstrap_ci(scores[b]).format()} | {pinned_fraction(scores[b], args.score):.0%} | "
            f"{bootstrap_ci([r['pointing'] for r in rs]).format(2)} | "
            f"{bootstrap_ci([r['pointing_win'] for r in rs]).format(2)} |"
        )
    # per image (what ``regularization="auto"`` in explain() does): the weakest unpinned blur
    per_image = []
    for i in sorted({r["index"] for r in records}):
        rs = sorted((r for r in records if r["index"] == i and r["blur"] in blurs), key=_blur)
        if rs:
            per_image.append(next((r for r in rs if not r["pinned"]), rs[-1]))
    chosen = sorted({r["blur"] for r in per_image})
    lines.append(
        f"| per image: weakest unpinned ({', '.join(f'{b:g}' for b in chosen)}) | "
        f"{bootstrap_ci([r['path_score'] for r in per_image]).format()} | "
        f"{pinned_fraction([r['path_score'] for r in per_image], args.score):.0%} | "
        f"{bootstrap_ci([r['pointing'] for r in per_image]).format(2)} | "
        f"{bootstrap_ci([r['pointing_win'] for r in per_image]).format(2)} |"
    )
    lines += ["", f'`regularisation="auto"` picks {auto:g}; best pointing game at {best:g}.']
    (args.out / "regularisation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [b for b in blurs if b in scores]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.violinplot([scores[b] for b in keys], positions=range(len(keys)), showmeans=True)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{b:g}" for b in keys])
    ax.set_xlabel("regularisation blur (fraction of the image side)")
    ax.set_ylabel(f"path score ({args.score})")
    ax2 = ax.twinx()
    ax2.plot(range(len(keys)), [np.mean([r["pointing"] for r in by[b]]) for b in keys], "o-r")
    ax2.plot(range(len(keys)), [np.mean([r["pointing_win"] for r in by[b]]) for b in keys], "s--m")
    ax2.set_ylabel("pointing game (red: plain, magenta: window)")
    ax.axvline(keys.index(auto), color="g", ls=":", label="auto")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out / "regularisation.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
