"""Throughput of many-image runs: images per minute, one by one vs the Ray engine.

Three ways over the same ``--n`` planted-bias test images (128x128, the shipped
``bench_planted_bias`` classifier, default settings):

* ``explain`` loop: :func:`ablation_paths.explain` one image after another, nothing written
  (the compute alone);
* ``explain_many`` local: the same plus every image's outputs (``path.npz``, two PNG figures, the
  HTML report, the thumbnail, ``done.json``) and the gallery;
* ``explain_many`` Ray: the same on a local Ray instance with ``--workers`` actors of one torch
  thread each (Ray's start-up is timed separately, not included);
* both ``explain_many`` runs again with ``figures=False`` (no Matplotlib PNG figures).

Prints a Markdown table (and the load average, since shared machines vary).

    python benchmarks/many_throughput.py --n 16 --workers 2 --out /tmp/ap/many_tp
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

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
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    try:
        run = explain_many(
            model,
            samples,
            out=out / "ray",
            class_names=names,
            engine="ray",
            workers=args.workers,
            progress=False,
        )
        assert run.complete
    finally:
        ray.shutdown()
    rows.append((f"`explain_many`, Ray, {args.workers} actors, outputs written", run.seconds))
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        run = explain_many(
            model,
            samples,
            out=out / "ray_nofig",
            class_names=names,
            engine="ray",
            workers=args.workers,
            progress=False,
            figures=False,
        )
        assert run.complete
    finally:
        ray.shutdown()
    rows.append(
        (f"`explain_many`, Ray, {args.workers} actors, without the PNG figures", run.seconds)
    )
    load_after = os.getloadavg()

    print(f"{args.n} images, {os.cpu_count()} CPU cores, torch {torch.__version__}, ")
    print(f"torch threads {torch.get_num_threads()}; Ray start-up {ray_start:.1f} s (not counted)")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}\n")
    print("| run | seconds | images per minute |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {60 * args.n / seconds:.1f} |")


if __name__ == "__main__":
    main()
