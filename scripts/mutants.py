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
    "paths": ("src/ablation_paths/paths.py", ["tests/test_paths.py"]),
    "scores": (
        "src/ablation_paths/scores.py",
        ["tests/test_scores.py", "tests/test_optimizer.py"],
    ),
    "optimizer": (
        "src/ablation_paths/optimizer.py",
        ["tests/test_optimizer.py", "tests/test_scores.py", "tests/test_theorem5.py"],
    ),
    "reductions": ("src/ablation_paths/reductions.py", ["tests/test_reductions.py"]),
    "diagnostics": ("src/ablation_paths/diagnostics.py", ["tests/test_diagnostics.py"]),
    "result": ("src/ablation_paths/result.py", ["tests/test_roundtrip.py"]),
    "baselines": ("src/ablation_paths/baselines.py", ["tests/test_baseline_search.py"]),
    "bench.metrics": ("src/ablation_paths/bench/metrics.py", ["tests/test_bench_metrics.py"]),
    # the report's escaping: the template renderer, and report.py judged by the report's unit
    # tests; left out: the two headless-Chromium tests (tens of seconds each) and the packaging
    # test, which fails in mutmut's copy because it sees mutmut's own .meta files
    "templates": (
        "src/ablation_paths/templates/__init__.py",
        ["tests/test_templates.py", "tests/test_report.py", "-k", _K],
    ),
    "report": ("src/ablation_paths/report.py", ["tests/test_report.py", "-k", _K]),
    "sift.decoder": (
        "src/ablation_paths/sift/decoder.py",
        ["tests/test_sift_decoder.py", "tests/test_sift_mask_space.py"],
    ),
    "sift.decomposition": (
        "src/ablation_paths/sift/decomposition.py",
        ["tests/test_sift_decoder.py", "tests/test_sift_mask_space.py"],
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


def run_module(
    name: str,
    children: int,
    survivors: bool,
    time_limit: float | None = None,
    sample: int | None = None,
    only: list[str] | None = None,
) -> dict[str, object]:
    source, tests = MODULES[name]
    # entries that start with tests/ are test files; the others are pytest options (-k ...)
    missing = [t for t in tests if t.startswith("tests/") and not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"{name}: missing test files {missing}")
    work = _scratch(source, tests)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    mutmut = [sys.executable, "-m", "mutmut"]
    start = time.perf_counter()
    names: list[str] = list(only or [])
    if only:
        # generate the mutants and the test statistics, then run only the named mutants
        subprocess.run(
            [*mutmut, "run", "--max-children", str(children), "__generate_only__"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
    elif sample is not None:
        # generate the mutants and the test statistics only (no name matches), then run a
        # seeded random sample of them
        subprocess.run(
            [*mutmut, "run", "--max-children", str(children), "__generate_only__"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        meta = json.loads((work / "mutants" / f"{source}.meta").read_text())
        keys = sorted(meta["exit_code_by_key"])
        names = sorted(random.Random(0).sample(keys, min(sample, len(keys))))
    proc = subprocess.Popen(
        [*mutmut, "run", "--max-children", str(children), *names],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run_out, run_err = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mutmut and its workers: their own session
        run_out, run_err = proc.communicate()
    seconds = time.perf_counter() - start
    res = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
    )
    counts: dict[str, int] = {}
    surviving: list[str] = []
    for line in res.stdout.splitlines():
        m = _STATUS.match(line)
        if m and (not names or m.group(1) in names):
            counts[m.group(2)] = counts.get(m.group(2), 0) + 1
            if m.group(2) in ("survived", "no tests"):
                surviving.append(m.group(1))
    unchecked = counts.pop("not checked", 0)
    total = sum(counts.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    out: dict[str, object] = {
        "module": name,
        "source": source,
        "tests": tests,
        "mutants": total,
        "killed": killed,
        "score": killed / total if total else float("nan"),
        "counts": counts,
        "not_checked": unchecked,
        "sampled": sample is not None,
        "rerun": bool(only),
        "survivors": surviving,
        "seconds": round(seconds, 1),
    }
    if total == 0:
        out["error"] = (run_out[-3000:] + run_err[-3000:]).strip()
    if survivors:
        diffs = {}
        for mutant in surviving:
            show = subprocess.run(
                [*mutmut, "show", mutant], cwd=work, env=env, capture_output=True, text=True
            )
            diffs[mutant] = show.stdout
        out["diffs"] = diffs
    shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument(
        "--minutes",
        type=float,
        help="stop each module after this many minutes; unchecked mutants are reported",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (source, tests) in MODULES.items():
            print(f"{name:14s} {source:40s} {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    print("| module | mutants checked | killed | score | surviving | not checked | seconds |")
    print("|---|---|---|---|---|---|---|")
    previous: dict[str, list[str]] = {}
    if args.rerun:
        for line in args.rerun.read_text().splitlines():
            rec = json.loads(line)
            previous[rec["module"]] = list(rec["survivors"])
    for name in args.modules or list(previous or MODULES):
        limit = None if args.minutes is None else 60 * args.minutes
        if args.rerun and not previous.get(name):
            continue
        r = run_module(
            name, args.max_children, args.survivors, limit, args.sample, previous.get(name)
        )
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps({k: v for k, v in r.items() if k != "diffs"}) + "\n")
        print(
            f"| {name} | {r['mutants']} | {r['killed']} | {float(r['score']):.0%} | "
            f"{len(r['survivors'])} | {r['not_checked']} | {r['seconds']} |",  # type: ignore[arg-type]
            flush=True,
        )
        if "error" in r:
            print(r["error"], file=sys.stderr)
        for mutant, diff in dict(r.get("diffs", {})).items():  # type: ignore[call-overload]
            print(f"\n--- {mutant}\n{diff}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
