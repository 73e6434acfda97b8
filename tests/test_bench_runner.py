"""Runner: results appended per (image, method), resume after a kill, summary, Ray engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from ablation_paths.bench.cli import main
from ablation_paths.bench.runner import (
    RESULTS_FILE,
    BenchConfig,
    load_results,
    run_benchmark,
    work_units,
)
from ablation_paths.bench.summary import bootstrap_ci, summarise, write

METHODS = ["centre", "random", "saliency", "gradcam"]


def _keys(path: Path) -> list[tuple[int, str]]:
    return [(r["index"], r["method"]) for r in load_results(path)]


def test_work_units_group_windowed_twins() -> None:
    assert work_units(["ap-retain", "ig", "ap-retain-win", "ap-straddle-win"]) == [
        ["ap-retain", "ap-retain-win"],
        ["ig"],
        ["ap-straddle-win"],
    ]


def test_run_writes_every_pair_once_and_resumes(tmp_path: Path) -> None:
    cfg = BenchConfig(dataset="toy", methods=METHODS, n=3, out=tmp_path, sanity_n=1)
    path = run_benchmark(cfg)
    keys = _keys(path)
    assert sorted(keys) == sorted((i, m) for i in range(3) for m in METHODS)
    recs = load_results(path)
    assert all("error" not in r for r in recs)
    assert all(0 <= r["pointing"] <= 1 and 0 <= r["deletion_auc"] <= 1 for r in recs)
    assert sum("sanity_spearman" in r for r in recs) == len(METHODS)  # first image only
    # simulate a kill mid-write: drop two records and tear the last line
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:25])
    assert len(load_results(path)) == len(lines) - 2
    seen = []
    run_benchmark(cfg, progress=seen.append)
    assert len(seen) == 2
    assert sorted(_keys(path)) == sorted((i, m) for i in range(3) for m in METHODS)
    # nothing left: a third run computes nothing
    seen.clear()
    run_benchmark(cfg, progress=seen.append)
    assert seen == []


def test_failed_sanity_rerun_keeps_the_heatmap_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablation_paths.bench import methods

    calls = []

    def flaky(
        model: torch.nn.Module, image: torch.Tensor, target: int, options: methods.MethodOptions
    ) -> torch.Tensor:
        calls.append(model)
        if len(calls) > 1:  # the rerun on the randomised model
            raise ValueError("zero gradient")
        return image.mean(0)

    spec = methods.MethodSpec("flaky", flaky, "test", "fails on the randomised model")
    monkeypatch.setitem(methods._REGISTRY, "flaky", spec)
    path = run_benchmark(BenchConfig(dataset="toy", methods=["flaky"], n=1, out=tmp_path))
    (rec,) = load_results(path)
    assert "error" not in rec and "pointing" in rec
    assert "sanity_spearman" not in rec and "zero gradient" in rec["sanity_error"]


def test_unknown_method_and_dataset_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="available"):
        BenchConfig(dataset="toy", methods=["nope"], n=1, out=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        run_benchmark(BenchConfig(dataset="imagenet", methods=["centre"], n=1, out=tmp_path))


def test_summary_table_and_plots(tmp_path: Path) -> None:
    assert (
        main(
            [
                "--dataset",
                "toy",
                "--methods",
                "centre,gradcam",
                "--n",
                "4",
                "--out",
                str(tmp_path),
                "--quiet",
                "--sanity-n",
                "0",
            ]
        )
        == 0
    )
    md = (tmp_path / "summary.md").read_text()
    assert "`gradcam`" in md and "pointing game" in md and "sanity" not in md
    assert (tmp_path / "metrics.png").stat().st_size > 1000
    assert (tmp_path / "time.png").exists()
    s = summarise(load_results(tmp_path))
    assert s["gradcam"]["pointing"].mean > s["centre"]["pointing"].mean
    assert write(tmp_path).exists()


def test_bootstrap_ci_contains_mean() -> None:
    s = bootstrap_ci([0.0, 1.0] * 50)
    assert s.low < 0.5 < s.high and s.n == 100
    assert bootstrap_ci([]).n == 0


@pytest.mark.slow
def test_resume_after_kill(tmp_path: Path) -> None:
    """Kill a real run with SIGKILL mid-way; the rerun completes it without duplicates."""
    cmd = [
        sys.executable, "-m", "ablation_paths.bench.cli", "--dataset", "toy", "--methods",
        "occlusion,centre", "--n", "12", "--out", str(tmp_path), "--quiet", "--no-summary",
        "--sanity-n", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True)
    results = tmp_path / RESULTS_FILE
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and len(load_results(results)) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(load_results(results))
    assert 3 <= before < 24
    subprocess.run(cmd, check=True)
    keys = _keys(results)
    assert len(keys) == len(set(keys)) == 24
    for line in results.read_text().splitlines():
        if line.strip():
            json.loads(line)  # a torn line would have been ended and is tolerated


# what a record measures; host, timings and the engine differ between engines by design
MEASURED = (
    "dataset", "seed", "index", "method", "name", "label", "settings", "predicted",
    "prob_target", "pointing", "pointing_strict", "mass_inside", "deletion_auc", "insertion_auc",
    "sanity_spearman",
)  # fmt: skip


def _measured(path: Path) -> dict[tuple[int, str], dict[str, Any]]:
    return {(r["index"], r["method"]): {k: r.get(k) for k in MEASURED} for r in load_results(path)}


@pytest.mark.slow
def test_ray_engine_gives_the_local_records(tmp_path: Path, ray_two_workers: Any) -> None:
    methods = ["centre", "saliency", "gradcam"]
    common = dict(dataset="toy", methods=methods, n=3, sanity_n=1, threads=1)
    local = run_benchmark(BenchConfig(out=tmp_path / "local", **common))  # type: ignore[arg-type]
    seen: list[dict[str, Any]] = []
    remote = run_benchmark(
        BenchConfig(out=tmp_path / "ray", engine="ray", workers=2, **common),  # type: ignore[arg-type]
        progress=seen.append,
    )
    recs = load_results(remote)
    assert len(seen) == len(recs) == 3 * len(methods)
    assert all(r["engine"] == "ray" and "error" not in r for r in recs)
    assert sum("sanity_spearman" in r for r in recs) == len(methods)
    assert _measured(remote) == _measured(local)
    # resume rule unchanged: nothing left to do, nothing appended
    before = remote.read_text()
    run_benchmark(BenchConfig(out=tmp_path / "ray", engine="ray", workers=2, **common))  # type: ignore[arg-type]
    assert remote.read_text() == before


@pytest.mark.slow
def test_ray_actor_killed_mid_run_is_restarted_and_retried(
    tmp_path: Path, ray_two_workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor process dying mid-image (os._exit, once) is restarted by Ray and its unit
    retried: the run completes with every record and no error."""
    import ablation_paths.bench.runner as runner

    flag = tmp_path / "crashed-once"

    class CrashOnce(torch.nn.Module):  # defined here: pickled by value for the Ray workers
        def __init__(self, inner: torch.nn.Module, flag: str) -> None:
            super().__init__()
            self.inner = inner
            self.flag = flag

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not os.path.exists(self.flag):
                Path(self.flag).touch()
                os._exit(1)  # the actor's process dies without a Python exception
            return self.inner(x)

    resolve = runner.resolve_dataset

    def crashing(name: str) -> Any:
        load_samples, load_model = resolve(name)
        return load_samples, lambda: CrashOnce(load_model(), str(flag))

    monkeypatch.setattr(runner, "resolve_dataset", crashing)
    cfg = BenchConfig(
        dataset="toy", methods=["centre", "gradcam"], n=3, out=tmp_path / "out", engine="ray",
        workers=2, sanity_n=0, threads=1,
    )  # fmt: skip
    path = run_benchmark(cfg)
    assert flag.exists()  # it did crash
    recs = load_results(path)
    assert sorted(_keys(path)) == [(i, m) for i in range(3) for m in ["centre", "gradcam"]]
    assert all("error" not in r for r in recs), [r.get("error") for r in recs]
    assert len(path.read_text().splitlines()) == len(recs)  # each pair written once


def test_select_auto_picks_smallest_unpinned_blur() -> None:
    from ablation_paths.bench.regularisation import is_pinned, select_auto

    sweep = {0.01: [0.999, 0.995, 0.7], 0.02: [0.99, 0.6, 0.5], 0.05: [0.4, 0.3, 0.5]}
    assert select_auto(sweep) == 0.05
    assert select_auto(sweep, max_pinned=0.34) == 0.02
    assert select_auto({0.01: [1.0], 0.02: [1.0]}) == 0.02  # none qualifies: strongest
    assert is_pinned(1.99, "straddle") and not is_pinned(1.5, "straddle")
    with pytest.raises(ValueError):
        select_auto({})


def test_explain_auto_stops_at_first_unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    import ablation_paths.bench.regularisation as reg
    from ablation_paths.bench.toy import load_toy_dataset, load_toy_model
    from ablation_paths.result import AblationPathResult

    # a stand-in pinned test: blurs below 0.05 pin, so auto tries two and keeps 0.05
    monkeypatch.setattr(
        AblationPathResult,
        "pinned",
        property(lambda self: self.info["config"]["regularization"] < 0.05),
    )
    s = load_toy_dataset(1, seed=2)[0]
    res = reg.explain_auto(
        load_toy_model(), s.image, s.label, candidates=(0.0, 0.05, 0.2), max_iterations=8
    )
    auto = res.info["regularization_auto"]
    assert auto["chosen"] == 0.05
    assert [float(k) for k in auto["tried"]] == [0.0, 0.05]


def test_resume_refuses_results_with_other_settings(tmp_path: Path) -> None:
    cfg = BenchConfig(dataset="toy", methods=["centre"], n=1, out=tmp_path, sanity_n=0)
    run_benchmark(cfg)
    changed = BenchConfig(
        dataset="toy",
        methods=["centre"],
        n=2,
        out=tmp_path,
        sanity_n=0,
        ap_options={"regularization": 0.05},
    )
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(changed)
    run_benchmark(BenchConfig(dataset="toy", methods=["centre"], n=2, out=tmp_path, sanity_n=0))
    assert len(load_results(tmp_path / "results.jsonl")) == 2
