"""Optimiser diagnostics on the shipped demo images: score-lowering steps, iterations, pinning.

For every demo image (retaining score, default options) this runs :func:`ablation_paths.explain`
with a fixed L-infinity step (``adapt_step=False``, the behaviour before Algorithm 2's step
adaptation) and with the default step adaptation, and prints per image

* the iterations to saturation and how many of them lowered the path score,
* the final path score, the target probability on the image and the baseline,
* whether the old fixed-margin test (score above ``max - 0.02``) and the current
  :func:`ablation_paths.diagnostics.is_pinned` flag the path.

Usage::

    PYTHONPATH=src python benchmarks/optimizer_steps.py [--score retain] [--json out.json]

Deterministic on CPU (one thread).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

import ablation_paths as ap
from ablation_paths.demo import CLASS_NAMES, load_demo_images, load_model
from ablation_paths.scores import SCORES, max_score


def lowering_steps(history: list[dict[str, float]]) -> int:
    """Iterations after which the path score was lower than before them."""
    scores = [h["path_score"] for h in history]
    return sum(1 for a, b in zip(scores, scores[1:], strict=False) if b < a)


def run(score: str, adapt: bool) -> list[dict[str, object]]:
    model = load_model()
    rows = []
    for d in load_demo_images():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = ap.explain(
                model,
                d.image,
                d.label,
                score=score,
                class_names=CLASS_NAMES,
                adapt_step=adapt,
                keep_frames=False,
            )
        rows.append(
            {
                "image": d.name,
                "iterations": r.iterations,
                "converged": r.converged,
                "lowering": lowering_steps(r.history),
                "path_score": round(r.path_score, 4),
                "p_image": round(float(r.probs[0, r.target]), 4),
                "p_baseline": round(float(r.probs[-1, r.target]), 4),
                "pinned_fixed_margin": r.path_score > max_score(score) - 0.02,
                "pinned": r.pinned,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score", default="retain", choices=SCORES)
    parser.add_argument("--json", type=Path, help="write all rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    for label, adapt in (("fixed step (adapt_step=False)", False), ("adapted step", True)):
        rows = run(args.score, adapt)
        out[label] = rows
        print(f"\n## {label}, score {args.score}")
        print(
            "| image | iterations | score-lowering | path score | p(image) | p(baseline) "
            "| pinned (max - 0.02) | pinned (is_pinned) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['image']} | {r['iterations']}{'' if r['converged'] else ' (not sat.)'} | "
                f"{r['lowering']} | {r['path_score']:.4f} | {r['p_image']:.4f} | "
                f"{r['p_baseline']:.4f} | {r['pinned_fixed_margin']} | {r['pinned']} |"
            )
        its = sum(int(r["iterations"]) for r in rows)  # type: ignore[call-overload]
        low = sum(int(r["lowering"]) for r in rows)  # type: ignore[call-overload]
        print(
            f"\ntotal: {low} of {its} iterations lowered the score; "
            f"pinned (fixed margin) {sum(bool(r['pinned_fixed_margin']) for r in rows)} "
            f"of {len(rows)}; pinned (is_pinned) {sum(bool(r['pinned']) for r in rows)} "
            f"of {len(rows)}; not saturated {sum(not r['converged'] for r in rows)}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
