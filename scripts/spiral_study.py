"""Spiral vs cartesian vs steerable denoising study with controls and seeds (thesis 7.4, issue 12).

Usage::

    python scripts/spiral_study.py run --snr 0.25 --out out/spiral_study
    python scripts/spiral_study.py run --snr 0.015625 --out out/spiral_study
    python scripts/spiral_study.py report --out out/spiral_study --docs docs

``run`` simulates (ASPIRE) three stacks of *different* molecules: training (``--train-volumes``
molecules), validation (early stopping; other molecules) and test (the table; yet other
molecules), so that a model cannot win by reproducing the average training particle. It then
trains spiral, cartesian and C8-steerable networks with matched parameter counts, each without and
with random-rotation augmentation, for ``--seeds`` seeds, to a validation plateau (early
stopping), and scores the best-validation model of each on the test stack. Controls are scored
on the same test stack: the mean training image, the noisy input itself (identity) and the
least-squares radial Wiener filter; every network is also fed pure noise (the test noise without
the particles) to show how much of its output does not depend on the particle. Every cell resumes
from its files if interrupted. ``report`` writes ``spiral_study_table.md`` and
``spiral_curves_snr*.png`` into ``--docs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from spiral_cnn.data import SimConfig, simulate
from spiral_cnn.metrics import disc, frc, frc_resolution, mse, psnr
from spiral_cnn.models import ModelConfig, WienerFilter, build_model
from spiral_cnn.mrc import read_stack, write_stack
from spiral_cnn.train import (
    Denoiser,
    Normalisation,
    TrainConfig,
    as_batch,
    full_equivariance,
    load_model,
    predict,
    strict_json,
    train,
)

# name -> (arch, channels, kernel). Channels chosen so the parameter counts match (see report).
ARCHS: dict[str, tuple[str, int, int]] = {
    "spiral": ("spiral", 12, 3),
    "cartesian": ("cartesian", 12, 3),
    "steerable-C8": ("steerable", 32, 5),
}
CONTROLS = ("mean image", "identity (noisy input)", "wiener")
# Molecule seeds of the three stacks (disjoint sets of AsymmetricVolume densities).
VOLUME_SEEDS = {"train": 100, "val": 200, "test": 300}
DATA_SEEDS = {"train": 10, "val": 20, "test": 30}


def snr_tag(snr: float) -> str:
    return f"1_{round(1 / snr)}" if snr < 1 else f"{snr:g}"


def dataset(out: Path, split: str, snr: float, n: int, size: int, volumes: int) -> tuple:
    """Simulate (or read back) one stack; returns ``(noisy, clean)`` as ``(n, 1, L, L)``."""
    d = out / f"data_snr{snr_tag(snr)}" / split
    if not (d / "clean.mrcs").exists():
        cfg = SimConfig(
            n=n,
            size=size,
            snr=snr,
            seed=DATA_SEEDS[split],
            volume_seed=VOLUME_SEEDS[split],
            volumes=volumes,
        )
        st = simulate(cfg)
        d.mkdir(parents=True, exist_ok=True)
        write_stack(d / "noisy.mrcs", st.noisy, f"study {split} snr={snr:g}")
        write_stack(d / "clean.mrcs", st.clean, f"ground truth {split} snr={snr:g}")
        (d / "meta.json").write_text(json.dumps(st.meta))
    return (
        as_batch(read_stack(d / "noisy.mrcs")[0]),
        as_batch(read_stack(d / "clean.mrcs")[0]),
    )


@torch.no_grad()
def score(model: Any, noisy: torch.Tensor, clean: torch.Tensor, eq_images: int) -> dict[str, Any]:
    """Test metrics of one model, including the pure-noise-input check."""
    m = disc(clean.shape[-1], clean)
    ref = clean * m
    est = predict(model, noisy)
    freq, curve = frc(est, ref)
    res: dict[str, Any] = {
        "mse": float(mse(est, ref).mean()),
        "psnr": float(psnr(est, ref).mean()),
        "frc05": frc_resolution(freq, curve, 0.5),
        **full_equivariance(model, noisy[:eq_images]),
    }
    # Pure noise in (the same noise realisations, no particle): what does the model output?
    noise_only = (noisy - clean) * m
    out_noise = predict(model, noise_only)
    res["noise_in_mse"] = float(mse(out_noise, ref).mean())
    # Correlation of the input-dependent part of the output with the part of the truth that
    # the training mean does not explain.
    dep = (est - out_noise).flatten(1)
    truth = (ref - ref.mean(0, keepdim=True)).flatten(1)
    res["dep_corr"] = float(torch.nn.functional.cosine_similarity(dep, truth, dim=1).mean())
    return res


class MeanImage(torch.nn.Module):
    """Input-independent control: always outputs the mean clean training image."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean.expand_as(x).clone()


def controls(out: Path, a: argparse.Namespace, data: dict[str, tuple]) -> None:
    (tn, tc), (en, ec) = data["train"], data["test"]
    f = out / f"snr{snr_tag(a.snr)}" / "controls.json"
    if f.exists():
        return
    size = tn.shape[-1]
    wf_cfg = ModelConfig(arch="wiener", size=size)
    norm = Normalisation.fit(tn)
    wiener = Denoiser(WienerFilter(wf_cfg), norm)
    m = disc(size, tn)
    wiener.net.fit(wiener.normalise(tn), (tc - norm.offset) / norm.scale * m)
    models = {
        "mean image": MeanImage((tc * m).mean(0)),
        "identity (noisy input)": torch.nn.Identity(),
        "wiener": wiener,
    }
    res = {name: score(mod, en, ec, a.eq_images) for name, mod in models.items()}
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(strict_json(res))
    print(strict_json({"snr": a.snr, "controls": res}), flush=True)


def cmd_run(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    t_start = time.perf_counter()
    data = {
        "train": dataset(out, "train", a.snr, a.n_train, a.size, a.train_volumes),
        "val": dataset(out, "val", a.snr, a.n_val, a.size, a.test_volumes),
        "test": dataset(out, "test", a.snr, a.n_test, a.size, a.test_volumes),
    }
    controls(out, a, data)
    (tn, tc), (vn, vc), (en, ec) = data["train"], data["val"], data["test"]
    names = a.models.split(",")
    # Seed-major, so that partial results stay balanced across models; --reverse walks the same
    # cells from the other end, for a second worker (cells are claimed with lock files).
    cells = [(seed, n, aug) for seed in range(a.seeds) for n in names for aug in (False, True)]
    if a.middle:  # a third worker: start in the middle of the list
        cells = cells[len(cells) // 2 :] + cells[: len(cells) // 2]
    for seed, name, aug in reversed(cells) if a.reverse else cells:
        arch, channels, kernel = ARCHS[name]
        run_dir = out / f"snr{snr_tag(a.snr)}" / f"{name}{'+aug' if aug else ''}" / f"s{seed}"
        if (run_dir / "final.json").exists() or not _claim(run_dir):
            continue
        cfg = TrainConfig(
            model=ModelConfig(
                arch=arch, size=a.size, channels=channels, depth=a.depth, kernel=kernel
            ),
            epochs=a.max_epochs,
            batch_size=32,
            lr=a.lr,
            augment=aug,
            seed=seed,
            eq_images=a.eq_images,
            eq_angles=4,
            patience=a.patience,
        )
        t0 = time.perf_counter()
        with open(out / "run.log", "a") as log:

            def say(msg: str, log: Any = log) -> None:
                log.write(msg + "\n")
                log.flush()

            hist = train(cfg, tn, tc, vn, vc, run_dir, progress=False, report=say)
        model, _ = load_model(run_dir)
        res = {
            "seconds": time.perf_counter() - t0,
            "epochs": hist[-1]["epoch"],
            "best_epoch": hist[-1]["best_epoch"],
            "stopped": hist[-1]["stopped"],
            "eq_epoch0": hist[0]["equivariance"],
            "n_params": sum(p.numel() for p in model.parameters()),
            **score(model, en, ec, a.eq_images),
        }
        (run_dir / "final.json").write_text(strict_json(res))
        (run_dir / "lock").unlink(missing_ok=True)
        print(strict_json({"snr": a.snr, "run": str(run_dir), **res}), flush=True)
    print(f"done in {time.perf_counter() - t_start:.0f} s", flush=True)


def _claim(run_dir: Path) -> bool:
    """Claim a cell for this process (a lock file with the PID; stale locks are taken over)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / "lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text() or "0")
            os.kill(pid, 0)
            return False  # another live worker holds it
        except (ValueError, ProcessLookupError):
            lock.write_text(str(os.getpid()))
            return True
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


COLS = [
    ("mse", "MSE", "{:.4f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("frc05", "FRC 0.5 (1/px)", "{:.3f}"),
    ("noise_in_mse", "MSE, noise in", "{:.4f}"),
    ("dep_corr", "corr. input-dep. part", "{:.2f}"),
    ("eq_epoch0", "eq. epoch 0", "{:.3f}"),
    ("eq_full_any", "eq. full disc, any angle", "{:.3f}"),
    ("eq_inner_any", "eq. inner disc, any angle", "{:.3f}"),
    ("eq_full_90", "eq. full disc, 90 deg", "{:.3f}"),
    ("eq_inner_90", "eq. inner disc, 90 deg", "{:.3f}"),
]


def _cell(vals: list[float], fmt: str) -> str:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format(statistics.stdev(vals))}"


def cmd_report(a: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, docs = Path(a.out), Path(a.docs)
    head = "| SNR (power; amplitude) | model | params | seeds | epochs (best) | s/run | "
    head += " | ".join(c[1] for c in COLS) + " |"
    lines = [head, "|" + "---|" * (6 + len(COLS))]
    for snr_dir in sorted(out.glob("snr*"), key=lambda p: -len(p.name)):
        tag = snr_dir.name[3:]
        p_snr = 1 / float(tag[2:]) if tag.startswith("1_") else float(tag)
        snr_txt = f"{tag.replace('_', '/')}; {_frac(math.sqrt(p_snr))}"
        ctl = json.loads((snr_dir / "controls.json").read_text())
        for name in CONTROLS:
            r = ctl[name]
            cells = [_cell([r.get(k)], f) for k, _, f in COLS]
            lines.append(f"| {snr_txt} | *{name}* | - | - | - | - | " + " | ".join(cells) + " |")
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
        for name in ARCHS:
            for suffix in ("", "+aug"):
                runs = sorted((snr_dir / f"{name}{suffix}").glob("s*/final.json"))
                if not runs:
                    continue
                rs = [json.loads(f.read_text()) for f in runs]
                cells = [_cell([r[k] for r in rs], f) for k, _, f in COLS]
                ep = _cell([r["epochs"] for r in rs], "{:.0f}")
                be = _cell([r["best_epoch"] for r in rs], "{:.0f}")
                sec = statistics.mean(r["seconds"] for r in rs)
                lines.append(
                    f"| {snr_txt} | {name}{suffix} | {rs[0]['n_params']} | {len(rs)} | "
                    f"{ep} ({be}) | {sec:.0f} | " + " | ".join(cells) + " |"
                )
                for f in runs:
                    h = json.loads((f.parent / "history.json").read_text())["history"]
                    ep_ = [r["epoch"] for r in h]
                    ls = "--" if suffix else "-"
                    col = {"spiral": "C0", "cartesian": "C1", "steerable-C8": "C2"}[name]
                    lab = f"{name}{suffix}" if f == runs[0] else None
                    axes[0].plot(ep_, [r["mse"] for r in h], ls, color=col, label=lab, lw=1)
                    axes[1].plot(ep_, [r["equivariance"] for r in h], ls, color=col, lw=1)
        mean_mse = ctl["mean image"]["mse"]
        axes[0].axhline(mean_mse, color="k", lw=0.8, ls=":", label="mean image")
        axes[0].set(xlabel="epoch", ylabel="validation MSE (disc)", yscale="log")
        axes[1].set(xlabel="epoch", ylabel="equivariance error (val.)", yscale="log")
        axes[0].legend(fontsize=6)
        fig.suptitle(f"SNR {tag.replace('_', '/')} (power), all seeds")
        fig.tight_layout()
        fig.savefig(docs / f"spiral_curves_snr{tag}.png")
        plt.close(fig)
    (docs / "spiral_study_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


@torch.no_grad()
def cmd_bare(a: argparse.Namespace) -> None:
    """Equivariance of the bare networks (no output offset), untrained and trained.

    The models of the table add the training mean back to their output, which is rotation
    invariant and enlarges ``||F(x)||``; this measures ``net`` on the normalised inputs it sees.
    """
    torch.set_num_threads(a.threads)
    out, docs = Path(a.out), Path(a.docs)
    lines = [
        "| SNR (power) | model | seeds | bare eq. epoch 0, any angle | bare eq. trained, any angle "
        "| bare eq. trained, inner disc |",
        "|---|---|---|---|---|---|",
    ]
    for snr_dir in sorted(out.glob("snr*"), key=lambda p: -len(p.name)):
        tag = snr_dir.name[3:]
        noisy = as_batch(read_stack(out / f"data_snr{tag}" / "test" / "noisy.mrcs")[0])
        x = noisy[: a.eq_images]
        for name in ARCHS:
            for suffix in ("", "+aug"):
                runs = sorted((snr_dir / f"{name}{suffix}").glob("s*/model.pt"))
                e0, e1, e2 = [], [], []
                for f in runs:
                    model, cfg = load_model(f)
                    z = model.normalise(x)
                    torch.manual_seed(cfg.seed)
                    fresh = Denoiser(build_model(cfg.model), model.normalisation).net.eval()
                    e0.append(full_equivariance(fresh, z)["eq_full_any"])
                    eq = full_equivariance(model.net.eval(), z)
                    e1.append(eq["eq_full_any"])
                    e2.append(eq["eq_inner_any"])
                lines.append(
                    f"| {tag.replace('_', '/')} | {name}{suffix} | {len(runs)} | "
                    f"{_cell(e0, '{:.3f}')} | {_cell(e1, '{:.3f}')} | {_cell(e2, '{:.3f}')} |"
                )
    (docs / "spiral_study_bare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _frac(x: float) -> str:
    return f"1/{1 / x:g}" if x < 1 else f"{x:g}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--snr", type=float, required=True, help="power SNR (ASPIRE convention)")
    r.add_argument("--out", default="out/spiral_study")
    r.add_argument("--size", type=int, default=24)
    r.add_argument("--n-train", type=int, default=768)
    r.add_argument("--n-val", type=int, default=192)
    r.add_argument("--n-test", type=int, default=384)
    r.add_argument("--train-volumes", type=int, default=8)
    r.add_argument("--test-volumes", type=int, default=4)
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--max-epochs", type=int, default=30)
    r.add_argument("--patience", type=int, default=4)
    r.add_argument("--depth", type=int, default=5)
    r.add_argument("--lr", type=float, default=2e-3)
    r.add_argument("--eq-images", type=int, default=64)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--models", default=",".join(ARCHS))
    r.add_argument("--reverse", action="store_true", help="walk the cells from the last one")
    r.add_argument("--middle", action="store_true", help="start from the middle cell")
    r.set_defaults(func=cmd_run)
    q = sub.add_parser("report")
    q.add_argument("--out", default="out/spiral_study")
    q.add_argument("--docs", default="docs")
    q.set_defaults(func=cmd_report)
    b = sub.add_parser("bare")
    b.add_argument("--out", default="out/spiral_study")
    b.add_argument("--docs", default="docs")
    b.add_argument("--eq-images", type=int, default=64)
    b.add_argument("--threads", type=int, default=2)
    b.set_defaults(func=cmd_bare)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
