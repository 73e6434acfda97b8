"""Throughput of many-image runs: images per minute, one by one vs the Ray engine.

Three ways over the same ``--n`` planted-bias test images (128x128, the shipped
``bench_planted_bias`` classifier, default settings):

* ``explain`` loop: :func:`ablation_paths.explain` one image after another, nothing written
  (the compute alone);
* ``explain_many`` local: the same plus every image's outputs (``path.npz``, two PNG figures, the
  HTML report, the thumbnail, ``done.json``) and the gallery;
* ``explain_many`` Ray: the same on a local Ray instance with ``--workers`` actors of one torch
  thread each (Ray's start-up is timed separately, not included);
* both ``explain_many`` runs again with ``figures=False`` (no Matplotlib PNG figures);
* ``explain_many`` local with ``figures=False`` and ``batch_images=K`` for each ``--batches`` K
  (several images' paths in one classifier pass per iteration), one after the other in the same
  run on the same images, with the ratio to the first K (give a K twice, e.g. ``1 4 8 8 4 1``,
  to see the drift of a shared machine's load).

Prints a Markdown table (and the load average, since shared machines vary).

    python benchmarks/many_throughput.py --n 16 --workers 2 --out /tmp/ap/many_tp
    python benchmarks/many_throughput.py --n 16 --only-batches --batches 1 4 8 --threads 1 \
        [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ablation_paths import explain
from ablation_paths.bench.datasets import PLANTED_BIAS_CLASSES, load_bench_model, load_dataset
from ablation_paths.many import explain_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (local runs)")
    parser.add_argument("--out", default="/tmp/ap/many_tp")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--device", default="cpu", help="device of the batch rows, e.g. cuda")
    parser.add_argument("--only-batches", action="store_true", help="only the batch_images rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    samples = load_dataset("planted_bias", args.n, seed=0)
    model = load_bench_model("planted_bias")
    names = list(PLANTED_BIAS_CLASSES)
    rows = []
    load_before = os.getloadavg()

    ray_start = None
    if not args.only_batches:
        ray_start = _one_by_one_rows(rows, model, samples, names, out, args.workers)
    rows += _batch_rows(model.to(args.device), samples, names, out, args.batches)
    load_after = os.getloadavg()

    print(f"{args.n} images, {os.cpu_count()} CPU cores, torch {torch.__version__}, ")
    ray_note = "" if ray_start is None else f"; Ray start-up {ray_start:.1f} s (not counted)"
    print(f"torch threads {torch.get_num_threads()}{ray_note}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}\n")
    print("| run | seconds | images per minute |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {60 * args.n / seconds:.1f} |")


def _batch_rows(
    model: Any, samples: list[Any], names: list[str], out: Path, batches: list[int]
) -> list[tuple[str, float]]:
    """``explain_many`` local, ``figures=False``, for each ``batch_images`` K in ``batches``."""
    rows = []
    first = None
    for i, k in enumerate(batches):
        run = explain_many(
            model, samples, out=out / f"batch{i}_{k}", class_names=names, progress=False,
            figures=False, batch_images=k,
        )  # fmt: skip
        assert run.complete
        first = first or run.seconds
        label = f"`explain_many`, local, no PNG figures, `batch_images={k}`"
        rows.append((f"{label} ({first / run.seconds:.2f} x K={batches[0]})", run.seconds))
    return rows


def _one_by_one_rows(
    rows: list[tuple[str, float]],
    model: Any,
    samples: list[Any],
    names: list[str],
    out: Path,
    workers: int,
) -> float:
    """The one-by-one rows (loop, local, Ray); returns Ray's start-up seconds."""
    start = time.perf_counter()
    for s in samples:
        explain(model, s.image, s.label, class_names=names)
    rows.append(("`explain` loop, nothing written", time.perf_counter() - start))

    run = explain_many(model, samples, out=out / "local", class_names=names, progress=False)
    assert run.complete
    rows.append(("`explain_many`, local, outputs written", run.seconds))

    run = explain_many(
        model, samples, out=out / "nofig", class_names=names, progress=False, figures=False
    )
    assert run.complete
    rows.append(("`explain_many`, local, outputs without the PNG figures", run.seconds))

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    try:
        run = explain_many(
            model,
            samples,
            out=out / "ray",
            class_names=names,
            engine="ray",
            workers=workers,
            progress=False,
        )
        assert run.complete
    finally:
        ray.shutdown()
    rows.append((f"`explain_many`, Ray, {workers} actors, outputs written", run.seconds))
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        run = explain_many(
            model,
            samples,
            out=out / "ray_nofig",
            class_names=names,
            engine="ray",
            workers=workers,
            progress=False,
            figures=False,
        )
        assert run.complete
    finally:
        ray.shutdown()
    rows.append((f"`explain_many`, Ray, {workers} actors, without the PNG figures", run.seconds))
    return ray_start


if __name__ == "__main__":
    main()
