"""Batched vs one-by-one path optimisation: ``optimize_paths_many`` on N images against N
``optimize_paths`` calls, side by side in one run.

For each classifier (the demo CNN on the shipped demo images, the ``bench_planted_bias``
classifier on planted-bias test scenes) the mask spaces are built by the pipeline's own stages
(prepared input, blur baseline, pixel space, default settings), then the two ways alternate
``--repeats`` times on the same problems: the best time of each, and the median and range of
the ratios of the pairs run back to back (which a drifting load on a shared machine disturbs
less). Also checks that both give the same paths and iterations.

    python benchmarks/batched_paths.py --n 8 --repeats 2 --threads 1 [--device cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings

import torch
from torch import nn

from ablation_paths import pipeline
from ablation_paths.optimizer import PathProblem, optimize_paths, optimize_paths_many


def _problems(model: nn.Module, images: list[torch.Tensor], batch_size: int | None):
    request = pipeline.ExplainRequest()
    request = dataclasses.replace(request, config=request.config.replace(batch_size=batch_size))
    options = pipeline.check_request(request)
    out = []
    for img in images:
        prepared = pipeline.prepare_input(model, img, None, request)
        baseline = pipeline.make_baseline(prepared, request)
        space = pipeline.build_space(prepared, baseline, request, options)
        out.append(
            PathProblem(prepared.classifier, space, prepared.target, "retain", request.config)
        )
    return out


def _time(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _compare(label: str, problems: list[PathProblem], repeats: int) -> list[str]:
    one: list[float] = []
    many: list[float] = []
    for _ in range(repeats):
        t, alone = _time(
            lambda: [
                optimize_paths(p.classifier, p.space, p.target, p.score, p.config) for p in problems
            ]
        )
        one.append(t)
        t, batched = _time(lambda: optimize_paths_many(problems))
        many.append(t)
    diff = max(float((a.paths - b.paths).abs().max()) for a, b in zip(alone, batched, strict=True))
    same_its = all(a.iterations == b.iterations for a, b in zip(alone, batched, strict=True))
    its = sum(a.iterations for a in alone)
    longest = max(a.iterations for a in alone)
    bs = problems[0].config.batch_size if problems[0].config else None
    ratios = sorted(a / b for a, b in zip(one, many, strict=True))
    median = (
        ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1 :][:2]) / 2
    )
    return [
        f"| {label}, batch_size {bs} | {len(problems)} | {its} / {longest} | {min(one):.2f} | "
        f"{min(many):.2f} | {min(one) / min(many):.2f} | {median:.2f} "
        f"({ratios[0]:.2f}-{ratios[-1]:.2f}) | {diff:.1e} | {same_its} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from ablation_paths.bench.datasets import load_bench_model, load_dataset
    from ablation_paths.demo import load_demo_images
    from ablation_paths.demo.model import load_model

    cases = [
        (
            "demo CNN",
            load_model(device=args.device),
            [d.image for d in load_demo_images()[: args.n]],
        ),
        (
            "bench planted_bias",
            load_bench_model("planted_bias", device=args.device),
            [s.image for s in load_dataset("planted_bias", args.n, seed=0)],
        ),
    ]
    load_before = os.getloadavg()
    rows = []
    for label, model, images in cases:
        side = f"{images[0].shape[-1]} px"
        for batch_size in (32, None):
            problems = _problems(model, images, batch_size)
            rows += _compare(f"{label} ({side})", problems, args.repeats)
    load_after = os.getloadavg()
    print(
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}\n")
    print(
        "| classifier | images | iterations (sum / longest) | one by one, s | batched, s | "
        "speed-up (best times) | speed-up, median of pairs (range) | max path difference | "
        "same iterations |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
