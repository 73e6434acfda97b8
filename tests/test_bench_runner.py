"""Runner: results appended per (image, method), resume after a kill, summary, Ray engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.slow
def test_ray_engine_small_run(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = BenchConfig(
            dataset="toy", methods=["centre", "gradcam"], n=2, out=tmp_path, engine="ray",
            sanity_n=0, workers=2, threads=1,
        )  # fmt: skip
        path = run_benchmark(cfg)
    finally:
        ray.shutdown()
    recs = load_results(path)
    assert sorted((r["index"], r["method"]) for r in recs) == sorted(
        (i, m) for i in range(2) for m in ["centre", "gradcam"]
    )
    assert all(r["engine"] == "ray" and "error" not in r for r in recs)


def test_select_auto_picks_smallest_unpinned_blur() -> None:
    from ablation_paths.bench.regularisation import is_pinned, select_auto

    sweep = {0.01: [0.999, 0.995, 0.7], 0.02: [0.99, 0.6, 0.5], 0.05: [0.4, 0.3, 0.5]}
    assert select_auto(sweep) == 0.05
    assert select_auto(sweep, max_pinned=0.34) == 0.02
    assert select_auto({0.01: [1.0], 0.02: [1.0]}) == 0.02  # none qualifies: strongest
    assert is_pinned(1.99, "straddle") and not is_pinned(1.5, "straddle")
    with pytest.raises(ValueError):
        select_auto({})


def test_explain_auto_stops_at_first_unpinned() -> None:
    from ablation_paths.bench.regularisation import explain_auto
    from ablation_paths.bench.toy import load_toy_dataset, load_toy_model

    s = load_toy_dataset(1, seed=2)[0]
    res = explain_auto(
        load_toy_model(), s.image, s.label, candidates=(0.0, 0.05, 0.2), max_iterations=8
    )
    auto = res.info["regularization_auto"]
    assert auto["chosen"] in (0.0, 0.05, 0.2)
    tried = list(auto["tried"].values())
    assert all(t > 0.98 for t in tried[:-1])


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
