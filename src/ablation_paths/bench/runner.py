"""The benchmark runner: every (image, method) pair evaluated once, results appended as they finish.

Results go to ``OUT/results.jsonl``, one JSON object per (image, method), written and flushed
(``fsync``) the moment it is computed. A second run with the same settings reads the file, skips
what is already there and computes only the rest, so an interrupted or crashed run loses at most
the pairs in flight; a torn last line (a kill mid-write) is ignored and recomputed.

Engines: ``local`` (this process) and ``ray`` (the shared pool of :mod:`ablation_paths.raypool`:
the model and the settings put once into Ray's object store, one actor per CPU slot or per GPU
when the cluster has GPUs, actors restarted and tasks retried after a crash, records streamed
back and written by the driver; a local Ray instance or an existing cluster via ``address``).
Ablation-path variants that share an optimised path (``ap-x`` and ``ap-x-win``) travel together
as one unit of work so the path is optimised once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ablation_paths.bench import methods as methods_mod
from ablation_paths.bench.metrics import (
    ablation_curves,
    default_tolerance,
    mass_inside,
    pointing_game,
    randomise_top_layers,
    rank_correlation,
)

__all__ = [
    "BenchConfig",
    "RESULTS_FILE",
    "Worker",
    "load_results",
    "resolve_dataset",
    "run_benchmark",
    "work_units",
]

RESULTS_FILE = "results.jsonl"


@dataclass
class BenchConfig:
    """Settings of one benchmark run.

    Attributes:
        dataset: ``"localisation"``, ``"planted_bias"`` or ``"toy"`` (tests).
        methods: method names (see :func:`ablation_paths.bench.methods.available_methods`).
        n: number of images (the first ``n`` of the seeded test split).
        out: output directory; results go to ``out / "results.jsonl"``.
        seed: dataset seed.
        engine: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``None``: start a local instance).
        workers: Ray actors (``None``: one per CPU, or per GPU when there are GPUs).
        sanity_n: run the model-randomisation sanity check on the first ``sanity_n`` images
            (``-1``: all).
        sanity_layers: how many top weight layers to randomise.
        tolerance: pointing-game radius in px (``None``: TorchRay's 15 px scaled from 224 px).
        auc_steps: pixel-ablation increments for the deletion/insertion curves.
        threads: torch threads per worker (``None``: leave torch's default).
        ap_options: options passed to every ablation-path run (e.g. ``{"regularization": 0.05}``).
        extremal_options: :class:`~ablation_paths.bench.extremal.ExtremalConfig` overrides.
    """

    dataset: str
    methods: list[str]
    n: int
    out: Path
    seed: int = 0
    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    sanity_n: int = 20
    sanity_layers: int = 2
    tolerance: float | None = None
    auc_steps: int = 32
    threads: int | None = None
    ap_options: dict[str, Any] = field(default_factory=dict)
    extremal_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if not self.methods:
            raise ValueError("no methods given")
        for m in self.methods:
            methods_mod.get_method(m)  # raises with the list of known names

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def settings_fingerprint(config: BenchConfig) -> str:
    """Short hash of every setting that changes a record's numbers: the full ablation-path
    configuration (defaults included, so a change of the engine's defaults shows), the extremal
    options, the metrics' tolerance and steps, and the package version."""
    from ablation_paths import __version__
    from ablation_paths.optimizer import AblationPathConfig

    known = set(asdict(AblationPathConfig()))
    ap_config = AblationPathConfig().replace(
        **{k: v for k, v in config.ap_options.items() if k in known}
    )
    payload = {
        "version": __version__,
        "ablation_path_config": asdict(ap_config),
        "other_ap_options": {k: v for k, v in config.ap_options.items() if k not in known},
        "extremal_options": config.extremal_options,
        "tolerance": config.tolerance,
        "auc_steps": config.auc_steps,
        "sanity_layers": config.sanity_layers,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------- datasets


def resolve_dataset(
    name: str,
) -> tuple[Callable[[int, int], Sequence[Any]], Callable[[], nn.Module]]:
    """``(load_samples(n, seed), load_model())`` for a dataset name.

    ``"toy"`` is :mod:`ablation_paths.bench.toy`; everything else goes to
    :mod:`ablation_paths.bench.datasets`.
    """
    if name == "toy":
        from ablation_paths.bench import toy

        return (lambda n, seed: toy.load_toy_dataset(n, seed)), toy.load_toy_model
    from ablation_paths.bench import datasets

    if name not in datasets.BENCH_DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; available: toy, {', '.join(datasets.BENCH_DATASETS)}"
        )
    return (lambda n, seed: datasets.load_dataset(name, n, seed=seed, split="test")), (
        lambda: datasets.load_bench_model(name)
    )


def object_mask(sample: Any, threshold: float = 1e-3) -> Tensor | None:
    """Pixels where the scene differs from its ``object_removed`` counterfactual (or ``None``)."""
    cf = getattr(sample, "counterfactuals", None) or {}
    removed = cf.get("object_removed")
    if removed is None:
        return None
    return (sample.image.cpu() - removed.cpu()).abs().amax(dim=0) > threshold


# ----------------------------------------------------------------------------- one evaluation


def work_units(methods: Sequence[str]) -> list[list[str]]:
    """Group method names that share an optimised path (``ap-x``, ``ap-x-win``), order kept."""
    groups: dict[str, list[str]] = {}
    for m in methods:
        key = m[: -len("-win")] if m.startswith("ap-") and m.endswith("-win") else m
        groups.setdefault(key, []).append(m)
    return list(groups.values())


class Worker:
    """Holds one model (and its randomised copy) and evaluates (image, method) pairs.

    ``model`` and ``samples`` default to the data set's (loaded here); the Ray engine passes the
    driver's model and no samples, and ships each image with its task instead.
    """

    def __init__(
        self,
        config: BenchConfig,
        model: nn.Module | None = None,
        samples: Sequence[Any] | None = None,
    ) -> None:
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        if model is None or samples is None:
            load_samples, load_model = resolve_dataset(config.dataset)
            model = load_model() if model is None else model
            samples = load_samples(config.n, config.seed) if samples is None else samples
        self.samples = list(samples)
        self.model = model.eval()
        self.random_model: nn.Module | None = None
        self.options = methods_mod.MethodOptions(
            ablation_path=dict(config.ap_options), extremal=dict(config.extremal_options)
        )
        self.host = platform.node()

    def _randomised(self) -> nn.Module:
        if self.random_model is None:
            self.random_model = randomise_top_layers(
                self.model, self.config.sanity_layers, seed=self.config.seed
            )
        return self.random_model

    def evaluate(
        self, index: int, methods: Sequence[str], sample: Any = None
    ) -> list[dict[str, Any]]:
        """Records for image ``index`` and each of ``methods`` (errors are recorded, not raised);
        ``sample``: the image's sample when this worker does not hold the data set."""
        return [self.evaluate_one(index, m, sample) for m in methods]

    def evaluate_one(self, index: int, method: str, sample: Any = None) -> dict[str, Any]:
        """The record of image ``index`` (or ``sample``) explained by ``method``."""
        cfg = self.config
        sample = self.samples[index] if sample is None else sample
        image: Tensor = sample.image.float()
        label = int(sample.label)
        rec: dict[str, Any] = {
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "index": index,
            "method": method,
            "name": getattr(sample, "name", str(index)),
            "label": label,
            "settings": settings_fingerprint(cfg),
        }
        try:
            with torch.no_grad():
                probs = torch.softmax(self.model(image.unsqueeze(0)).float(), dim=1)[0]
            rec["predicted"] = int(probs.argmax())
            rec["prob_target"] = float(probs[label])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exp = methods_mod.compute(method, self.model, image, label, self.options)
            h = exp.heatmap
            mask = sample.mask.bool()
            tol = cfg.tolerance if cfg.tolerance is not None else default_tolerance(h.shape[-1])
            rec["time_s"] = float(exp.seconds or 0.0)
            rec["pointing"] = pointing_game(h, mask, tol)
            rec["pointing_strict"] = pointing_game(h, mask, 0.0)
            rec["mass_inside"] = mass_inside(h, mask)
            curves = ablation_curves(self.model, image, h, label, steps=cfg.auc_steps)
            rec["deletion_auc"] = curves.deletion_auc
            rec["insertion_auc"] = curves.insertion_auc
            obj = object_mask(sample) if cfg.dataset == "planted_bias" else None
            if obj is not None and bool(obj.any()):
                rec["mass_on_object"] = mass_inside(h, obj)
                rec["pointing_object"] = pointing_game(h, obj, tol)
            rec["info"] = exp.info
            if cfg.sanity_n < 0 or index < cfg.sanity_n:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = self._randomised()
                        hr = methods_mod.compute(method, model, image, label, self.options).heatmap
                    rec["sanity_spearman"] = rank_correlation(h, hr)
                except Exception as err:  # noqa: BLE001 - the heatmap itself is still valid
                    rec["sanity_error"] = f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - recorded so one failure does not stop a run
            rec["error"] = f"{type(err).__name__}: {err}"
        rec["host"] = self.host
        rec["finished"] = time.time()
        return rec


# ----------------------------------------------------------------------------- results file


def load_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete records of a results file; torn or corrupt lines are skipped."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        return []
    out = []
    with p.open("r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "method" in rec and "index" in rec:
                out.append(rec)
    return _latest_per_pair(out)


def _latest_per_pair(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (dataset, seed, settings, image, method): the last one, so a pair that
    failed and was retried on resume counts once, with its retry's outcome (order kept)."""
    latest: dict[tuple[Any, ...], int] = {}
    for i, r in enumerate(records):
        key = (r.get("dataset"), r.get("seed"), r.get("settings"), r["index"], r["method"])
        latest[key] = i
    keep = set(latest.values())
    return [r for i, r in enumerate(records) if i in keep]


class _Appender:
    """Append-only JSON-lines writer that flushes and fsyncs every record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.f = path.open("a", encoding="utf-8")
        if torn:  # a previous run died mid-line: terminate it so the next record parses
            self.f.write("\n")

    def write(self, rec: dict[str, Any]) -> None:
        self.f.write(json.dumps(rec, allow_nan=True) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def _pending(config: BenchConfig, done: set[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    units = []
    for i in range(config.n):
        for group in work_units(config.methods):
            todo = [m for m in group if (i, m) not in done]
            if todo:
                units.append((i, todo))
    return units


def run_benchmark(
    config: BenchConfig, *, progress: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """Run (or resume) a benchmark; returns the results file.

    Pairs already in ``config.out / results.jsonl`` for the same dataset and seed are skipped.
    Every record carries :func:`settings_fingerprint`; a results file written with other
    settings (another ablation-path configuration, including changed engine defaults) is
    refused rather than silently mixed.
    ``progress`` is called with each new record.
    """
    path = config.out / RESULTS_FILE
    mine = [
        r
        for r in load_results(path)
        if r.get("dataset") == config.dataset and r.get("seed") == config.seed
    ]
    current = settings_fingerprint(config)
    stale = {str(r.get("settings", "unknown")) for r in mine} - {current}
    if stale:
        raise ValueError(
            f"{path} holds results computed with other settings ({', '.join(sorted(stale))}; "
            f"now {current}): resuming would mix them in one table. Use a new --out, or "
            f"delete the file to start again"
        )
    # failed pairs are not done: a resume retries them (the retry's record supersedes)
    done = {(int(r["index"]), str(r["method"])) for r in mine if "error" not in r}
    units = _pending(config, done)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    if not units:
        return path
    writer = _Appender(path)

    def emit(rec: dict[str, Any]) -> None:
        rec["engine"] = config.engine
        writer.write(rec)
        if progress is not None:
            progress(rec)

    try:
        (_run_local if config.engine == "local" else _run_ray)(config, units, emit)
    finally:
        writer.close()
    return path


Units = list[tuple[int, list[str]]]


def _run_local(config: BenchConfig, units: Units, emit: Callable[[dict[str, Any]], None]) -> None:
    worker = Worker(config)
    for index, group in units:
        for m in group:
            emit(worker.evaluate_one(index, m))


def _run_ray(config: BenchConfig, units: Units, emit: Callable[[dict[str, Any]], None]) -> None:
    """The shared Ray pool (:mod:`ablation_paths.raypool`): the driver loads the data set and
    the model once; the model and the settings go once into Ray's object store, one
    :class:`_RayWorker` per CPU/GPU slot, each task carries its image's sample, and the driver
    writes the records as they come back. A unit whose actor died for good becomes error
    records (retried on resume)."""
    from ablation_paths.raypool import PoolOptions, run_pool

    load_samples, load_model = resolve_dataset(config.dataset)
    samples = list(load_samples(config.n, config.seed))
    model = load_model().eval().cpu()

    def finish(unit: tuple[int, list[str]], records: Any, error: str | None) -> None:
        index, group = unit
        if records is None:
            records = [_error_record(config, index, m, samples[index], error) for m in group]
        for rec in records:
            emit(rec)

    run_pool(
        _RayWorker,
        (config, model),
        "evaluate",
        units,
        lambda unit: (unit[0], unit[1], samples[unit[0]]),
        finish,
        PoolOptions(config.address, config.workers),
    )


def _error_record(
    config: BenchConfig, index: int, method: str, sample: Any, error: str | None
) -> dict[str, Any]:
    """The record of a pair that could not be computed at all (its Ray actor died)."""
    return {
        "dataset": config.dataset,
        "seed": config.seed,
        "index": index,
        "method": method,
        "name": getattr(sample, "name", str(index)),
        "label": int(sample.label),
        "settings": settings_fingerprint(config),
        "error": error or "unknown error",
        "host": None,
        "finished": time.time(),
    }


class _RayWorker(Worker):
    """Ray actor: :class:`Worker` with the driver's model (from the object store) on the
    actor's GPU when it has one; images arrive with their tasks."""

    def __init__(self, config: BenchConfig, model: nn.Module) -> None:
        super().__init__(config, model=model, samples=[])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = self.model.to(self.device)

    def evaluate(
        self, index: int, methods: Sequence[str], sample: Any = None
    ) -> list[dict[str, Any]]:
        if sample is not None and self.device.type != "cpu":
            sample.image = sample.image.to(self.device)
        return super().evaluate(index, methods, sample)


def finite(values: Iterable[Any]) -> list[float]:
    """The finite floats among ``values`` (skips ``None``, NaN and infinities)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]
