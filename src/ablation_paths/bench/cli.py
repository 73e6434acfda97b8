"""``ablation-paths bench``: run (or resume) a benchmark and summarise it.

Wire into the main CLI with :func:`add_bench_parser` and :func:`run_bench`; meanwhile run it as
``python -m ablation_paths.bench.cli --dataset localisation --methods ig,rise --n 20 --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ablation_paths.bench.methods import available_methods

__all__ = ["add_bench_parser", "build_parser", "main", "run_bench"]

#: ``--methods`` default: every registered method, in registration order.
DEFAULT_METHODS = ",".join(available_methods())


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="localisation, planted_bias or toy")
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated method names, or 'list' to print them (default: all)",
    )
    p.add_argument("--n", type=int, default=200, help="number of test images (default 200)")
    p.add_argument("--out", type=Path, required=True, help="output directory (resumable)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where to compute (ray: the shared Ray pool, actors restarted after a crash)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument(
        "--workers", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)"
    )
    p.add_argument(
        "--sanity-n",
        type=int,
        default=20,
        help="images for the weight-randomisation sanity check (-1: all; default 20)",
    )
    p.add_argument("--tolerance", type=float, default=None, help="pointing radius in px")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument(
        "--ap-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ablation-path option, e.g. regularization=0.05 (repeatable; JSON values)",
    )
    p.add_argument(
        "--extremal-iter",
        type=int,
        default=None,
        help="Extremal Perturbation iterations (default 300; TorchRay 800)",
    )
    p.add_argument("--no-summary", action="store_true", help="skip the summary step")
    p.add_argument("--quiet", action="store_true")


def add_bench_parser(subparsers: Any) -> None:
    """Add the ``bench`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark saliency methods on ground-truth datasets (resumable)",
        description=__doc__,
    )
    _configure(p)
    p.set_defaults(func=run_bench)


def build_parser() -> argparse.ArgumentParser:
    """Stand-alone parser (``python -m ablation_paths.bench.cli``)."""
    p = argparse.ArgumentParser(prog="ablation-paths bench", description=__doc__)
    _configure(p)
    return p


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--ap-option needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of Ray's long retries) when a ``host:port`` Ray address does not
    answer; ``auto`` / ``local`` and addresses without a port are left to Ray."""
    import socket

    host, sep, port = address.split("://")[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}"
        ) from None


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; returns a process exit code."""
    from ablation_paths.bench.methods import get_method
    from ablation_paths.bench.runner import BenchConfig, run_benchmark
    from ablation_paths.bench.summary import write

    if args.methods == "list":
        for name in available_methods():
            spec = get_method(name)
            print(f"{name:20s} {spec.family:14s} {spec.description}")
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        config = BenchConfig(
            dataset=args.dataset,
            methods=methods,
            n=args.n,
            out=args.out,
            seed=args.seed,
            engine=args.engine,
            address=args.address,
            workers=args.workers,
            sanity_n=args.sanity_n,
            tolerance=args.tolerance,
            threads=args.threads,
            ap_options=_parse_options(args.ap_option),
            extremal_options={} if args.extremal_iter is None else {"max_iter": args.extremal_iter},
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    count = 0

    def progress(rec: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if not args.quiet:
            status = rec.get("error") or (
                f"pointing {rec['pointing']:.2f}  deletion {rec['deletion_auc']:.3f}  "
                f"{rec['time_s']:.2f} s"
            )
            print(f"[{count}] image {rec['index']:4d} {rec['method']:20s} {status}", flush=True)

    from ablation_paths.bench.runner import load_results
    from ablation_paths.io import OutputPathError, check_output_dir

    try:
        check_output_dir(config.out)
        if config.engine == "ray" and config.address:
            _check_reachable(config.address)
        path = run_benchmark(config, progress=progress)
    except (ValueError, OSError, OutputPathError) as err:  # incl. an unreachable Ray address
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{count} new results in {time.perf_counter() - start:.1f} s -> {path}")
    if not args.no_summary:
        md = write(path, methods=methods, title=f"{args.dataset} (n = {args.n})")
        if not args.quiet:
            print(md.read_text(encoding="utf-8"))
    failed = [
        r
        for r in load_results(path)
        if "error" in r and r.get("dataset") == config.dataset and r.get("seed") == config.seed
    ]
    if failed:
        print(
            f"error: {len(failed)} (image, method) pair(s) failed, e.g. image {failed[0]['index']} "
            f"{failed[0]['method']}: {failed[0]['error']}; rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ablation_paths.bench.cli``."""
    return run_bench(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
