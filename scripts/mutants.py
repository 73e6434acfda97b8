"""Mutation testing of the core modules, one module at a time (``make mutants``).

Each module is mutated by `mutmut <https://github.com/boxed/mutmut>`_ (3.x) in a scratch copy of
the repository, and each mutant is judged by that module's own tests only (a few seconds per
mutant instead of the whole suite). The per-module score is printed and, with ``--markdown``,
written as a table for ``docs/testing.md``.

Usage::

    python scripts/mutants.py                       # every module of MODULES
    python scripts/mutants.py reductions scores     # some of them
    python scripts/mutants.py --list                # the module -> tests table
    python scripts/mutants.py reductions --survivors  # also print each surviving mutant's diff

Mutants are run with ``OMP_NUM_THREADS=1`` and ``--max-children`` (default 1) workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_K = "not chromium and not package_data"

#: module (short name) -> (source file, the tests that guard it, with pytest options if any)
MODULES: dict[str, tuple[str, list[str]]] = {
    "paths": ("src/ablation_paths/paths.py", ["tests/test_paths.py", "tests/test_paths_mut.py"]),
    "scores": (
        "src/ablation_paths/scores.py",
        ["tests/test_scores.py", "tests/test_optimizer.py"],
    ),
    "optimizer": (
        "src/ablation_paths/optimizer.py",
        [
            "tests/test_optimizer.py",
            "tests/test_optimizer_mut.py",
            "tests/test_scores.py",
            "tests/test_theorem5.py",
            "tests/test_batched_paths.py",
        ],
    ),
    "reductions": ("src/ablation_paths/reductions.py", ["tests/test_reductions.py"]),
    "diagnostics": ("src/ablation_paths/diagnostics.py", ["tests/test_diagnostics.py"]),
    # save/load round trips, and the hostile-file tests of load's validation (not the ones
    # that run the command line or send signals to subprocesses: seconds each)
    "result": (
        "src/ablation_paths/result.py",
        ["tests/test_roundtrip.py", "tests/test_hostile.py", "-k", "not cli and not sig"],
    ),
    "sharpening": ("src/ablation_paths/sharpening.py", ["tests/test_sharpening.py"]),
    "baselines": ("src/ablation_paths/baselines.py", ["tests/test_baseline_search.py"]),
    "bench.metrics": ("src/ablation_paths/bench/metrics.py", ["tests/test_bench_metrics.py"]),
    # the report's escaping: the template renderer, and report.py judged by the report's unit
    # tests; left out: the two headless-Chromium tests (tens of seconds each) and the packaging
    # test, which fails in mutmut's copy because it sees mutmut's own .meta files
    "templates": (
        "src/ablation_paths/templates/__init__.py",
        ["tests/test_templates.py", "tests/test_report.py", "-k", _K],
    ),
    "report": (
        "src/ablation_paths/report.py",
        ["tests/test_report.py", "tests/test_report_content.py", "-k", _K],
    ),
    "sift.decoder": (
        "src/ablation_paths/sift/decoder.py",
        ["tests/test_sift_decoder.py", "tests/test_sift_mask_space.py", "tests/test_sift_mut.py"],
    ),
    # the decomposition's keypoints, detection, cells and heatmaps have test files of their own
    "sift.decomposition": (
        "src/ablation_paths/sift/decomposition.py",
        [
            "tests/test_sift_decoder.py",
            "tests/test_sift_mask_space.py",
            "tests/test_sift_keypoints.py",
            "tests/test_sift_detection.py",
            "tests/test_sift_cells.py",
            "tests/test_sift_heatmaps.py",
            "tests/test_sift_mut.py",
        ],
    ),
    "spiral.geometry": (
        "src/spiral_cnn/geometry.py",
        [
            "tests/spiral/test_spiral_geometry.py",
            "tests/spiral/test_spiral_geometry_edges.py",
            "tests/spiral/test_spiral_layers.py",
        ],
    ),
    "spiral.resample": (
        "src/spiral_cnn/resample.py",
        [
            "tests/spiral/test_spiral_geometry.py",
            "tests/spiral/test_spiral_resample_edges.py",
            "tests/spiral/test_spiral_layers.py",
            "tests/spiral/test_spiral_equivariance.py",
        ],
    ),
    "spiral.metrics": (
        "src/spiral_cnn/metrics.py",
        [
            "tests/spiral/test_spiral_metrics.py",
            "tests/spiral/test_spiral_metrics_edges.py",
            "tests/spiral/test_spiral_frc.py",
            "tests/spiral/test_spiral_equivariance.py",
        ],
    ),
}

_COPY = ("src", "tests", "pyproject.toml")


def _config(source: str, tests: list[str]) -> str:
    args = ", ".join(json.dumps(t) for t in tests)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = [{json.dumps(source)}]\n"
        f"pytest_add_cli_args_test_selection = [{args}]\n"
        'pytest_add_cli_args = ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly"]\n'
        # torch is not fork-safe after it has started threads: fork workers from a clean server
        'process_isolation = "forkserver"\n'
        # the wording of error messages is not a number a user reads: raise statements are
        # not mutated (the conditions that lead to them are)
        "do_not_mutate_patterns = ['^\\s*raise \\w+\\(']\n"
        "use_git_change_detection = false\n"
    )


def _scratch(source: str, tests: list[str]) -> Path:
    work = Path(tempfile.mkdtemp(prefix="mutants-"))
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    pyproject = work / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text())
    pyproject.write_text(text + _config(source, tests))
    return work


_STATUS = re.compile(r"^\s*(\S+): (\w[\w ]*)$")


def _env() -> dict[str, str]:
    """The environment of mutmut: one thread, and the scratch copy's sources, not ours."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return env


def _mutmut(work: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mutmut ARGS`` in the scratch copy and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
    )


def _generated(work: Path, source: str) -> list[str]:
    """The names of every mutant mutmut generated for ``source`` (sorted)."""
    meta = work / "mutants" / f"{source}.meta"
    if not meta.exists():
        return []
    return sorted(json.loads(meta.read_text())["exit_code_by_key"])


def _run(work: Path, children: int, names: list[str], time_limit: float | None) -> str:
    """``mutmut run`` on ``names`` (all mutants when empty), stopped after ``time_limit`` s;
    returns its output (for the error message when nothing ran)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mutmut and its workers: their own session
        out, err = proc.communicate()
    return (out[-3000:] + err[-3000:]).strip()


def _statuses(work: Path, names: list[str]) -> dict[str, str]:
    """Mutant name -> mutmut status (``killed``, ``survived``, ``not checked``, ...), for the
    named mutants only when ``names`` is not empty."""
    res = _mutmut(work, ["results", "--all", "true"])
    found = {}
    for line in res.stdout.splitlines():
        m = _STATUS.match(line)
        if m and (not names or m.group(1) in names):
            found[m.group(1)] = m.group(2)
    return found


def run_module(
    name: str,
    children: int,
    survivors: bool,
    time_limit: float | None = None,
    sample: int | None = None,
    only: list[str] | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """Mutate one module of :data:`MODULES` and judge its mutants with the module's tests.

    ``only`` runs just these mutants (``--rerun``); ``sample`` a random sample of that size,
    drawn with ``random.Random(seed)`` from the sorted mutant names; otherwise all of them.
    The score is *killed / run*: killed (a test failed or timed out) over every mutant that
    ran to a verdict (``not checked`` ones, left by ``time_limit``, are reported apart).
    """
    source, tests = MODULES[name]
    # entries that start with tests/ are test files; the others are pytest options (-k ...)
    missing = [t for t in tests if t.startswith("tests/") and not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"{name}: missing test files {missing}")
    work = _scratch(source, tests)
    start = time.perf_counter()
    names: list[str] = list(only or [])
    if only or sample is not None:
        # generate the mutants and the test statistics only (no name matches), then select
        _mutmut(work, ["run", "--max-children", str(children), "__generate_only__"])
    generated = _generated(work, source)
    if not only and sample is not None:
        names = sorted(random.Random(seed).sample(generated, min(sample, len(generated))))
    log = _run(work, children, names, time_limit)
    seconds = time.perf_counter() - start
    status = _statuses(work, names)
    counts: dict[str, int] = {}
    for verdict in status.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    surviving = [m for m, v in status.items() if v in ("survived", "no tests")]
    unchecked = counts.pop("not checked", 0)
    total = sum(counts.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    out: dict[str, object] = {
        "module": name,
        "source": source,
        "tests": tests,
        "generated": len(generated),
        "mutants": total,
        "killed": killed,
        "score": killed / total if total else float("nan"),
        "counts": counts,
        "not_checked": unchecked,
        "sampled": sample if sample is not None and not only else None,
        "seed": seed if sample is not None and not only else None,
        "rerun": bool(only),
        "survivors": surviving,
        "seconds": round(seconds, 1),
    }
    if total == 0:
        out["error"] = log
    if survivors:
        out["diffs"] = {m: _mutmut(work, ["show", m]).stdout for m in surviving}
    shutil.rmtree(work, ignore_errors=True)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--survivors", action="store_true", help="print surviving mutants")
    parser.add_argument("--json", type=Path, help="append one JSON line per module here")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--rerun",
        type=Path,
        help="a --json file of an earlier run: run only its surviving mutants again",
    )
    parser.add_argument(
        "--sample",
        type=int,
        help="run a seeded random sample of this many mutants per module (large modules)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument(
        "--minutes",
        type=float,
        help="stop each module after this many minutes; unchecked mutants are reported",
    )
    return parser


def _report(r: dict[str, object], json_path: Path | None) -> None:
    """Print one table row (stdout) and the surviving mutants' diffs (stderr); append the
    record to ``json_path``."""
    if json_path:
        with open(json_path, "a") as fh:
            fh.write(json.dumps({k: v for k, v in r.items() if k != "diffs"}) + "\n")
    of = f" of {r['generated']}" if r["sampled"] is not None or r["rerun"] else ""
    print(
        f"| {r['module']} | {r['mutants']}{of} | {r['killed']} | {float(r['score']):.1%} | "  # type: ignore[arg-type]
        f"{len(r['survivors'])} | {r['not_checked']} | {r['seconds']} |",  # type: ignore[arg-type]
        flush=True,
    )
    if "error" in r:
        print(r["error"], file=sys.stderr)
    for mutant, diff in dict(r.get("diffs", {})).items():  # type: ignore[call-overload]
        print(f"\n--- {mutant}\n{diff}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the named modules (default all) and print the score table."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, (source, tests) in MODULES.items():
            print(f"{name:14s} {source:40s} {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    print("| module | mutants run | killed | killed / run | surviving | not checked | seconds |")
    print("|---|---|---|---|---|---|---|")
    previous: dict[str, list[str]] = {}
    if args.rerun:
        for line in args.rerun.read_text().splitlines():
            rec = json.loads(line)
            previous[rec["module"]] = list(rec["survivors"])
    limit = None if args.minutes is None else 60 * args.minutes
    for name in args.modules or list(previous or MODULES):
        if args.rerun and not previous.get(name):
            continue
        r = run_module(
            name,
            args.max_children,
            args.survivors,
            limit,
            args.sample,
            previous.get(name),
            args.seed,
        )
        _report(r, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
