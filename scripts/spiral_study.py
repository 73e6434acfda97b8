"""Spiral vs cartesian denoising study (thesis 7.4, Figures 7.7-7.9), sized for a small CPU.

Usage::

    python scripts/spiral_study.py run --snr 0.25 --out out/spiral_study      # one SNR
    python scripts/spiral_study.py run --snr 0.015625 --out out/spiral_study
    python scripts/spiral_study.py report --out out/spiral_study --docs docs    # plots + table

``run`` simulates (with ASPIRE) a training and a held-out stack of the same molecule, then
trains, in order: spiral, cartesian, cartesian + rotation augmentation, C8-steerable (e2cnn)
and the Wiener filter; each run resumes from its checkpoint if interrupted. ``report`` writes
``spiral_curves_snr*.png`` and ``spiral_study.md`` (a table) into ``--docs``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spiral_cnn.data import SimConfig, simulate
from spiral_cnn.models import ModelConfig
from spiral_cnn.mrc import read_stack, write_stack
from spiral_cnn.train import TrainConfig, as_batch, train

RUNS = {
    "spiral": ("spiral", False, 3),
    "cartesian": ("cartesian", False, 3),
    "cartesian+aug": ("cartesian", True, 3),
    "steerable-C8": ("steerable", False, 5),
    "wiener": ("wiener", False, 3),
}


def snr_tag(snr: float) -> str:
    return f"1_{round(1 / snr)}" if snr < 1 else f"{snr:g}"


def dataset(out: Path, snr: float, n: int, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    d = out / f"data_snr{snr_tag(snr)}_{seed}"
    if not (d / "clean.mrcs").exists():
        st = simulate(SimConfig(n=n, size=size, snr=snr, seed=seed, volume_seed=0))
        d.mkdir(parents=True, exist_ok=True)
        write_stack(d / "noisy.mrcs", st.noisy, f"study snr={snr:g} seed={seed}")
        write_stack(d / "clean.mrcs", st.clean, f"ground truth snr={snr:g} seed={seed}")
        (d / "meta.json").write_text(json.dumps(st.meta))
    return (
        as_batch(read_stack(d / "noisy.mrcs")[0]),
        as_batch(read_stack(d / "clean.mrcs")[0]),
    )


def cmd_run(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    tn, tc = dataset(out, a.snr, a.n_train, a.size, seed=10)
    vn, vc = dataset(out, a.snr, a.n_val, a.size, seed=20)
    for name in a.runs.split(","):
        arch, aug, kernel = RUNS[name]
        cfg = TrainConfig(
            model=ModelConfig(
                arch=arch, size=a.size, channels=a.channels, depth=a.depth, kernel=kernel
            ),
            epochs=a.epochs,
            batch_size=32,
            lr=a.lr,
            augment=aug,
            seed=0,
            eq_images=64,
            eq_angles=4,
        )
        run_dir = out / f"snr{snr_tag(a.snr)}" / name
        print(f"== {name} at SNR {a.snr:g} -> {run_dir}", flush=True)
        train(cfg, tn, tc, vn, vc, run_dir, resume=True, progress=False)
        h = json.loads((run_dir / "history.json").read_text())["history"][-1]
        print(json.dumps({"run": name, **h}), flush=True)


def cmd_report(a: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, docs = Path(a.out), Path(a.docs)
    rows = []
    for snr_dir in sorted(out.glob("snr*")):
        tag = snr_dir.name[3:]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
        for name in RUNS:
            f = snr_dir / name / "history.json"
            if not f.exists():
                continue
            h = json.loads(f.read_text())["history"]
            ep = [r["epoch"] for r in h]
            style = "--" if name == "wiener" else "-"
            if len(h) == 1:  # closed form: horizontal line
                ep = [0, a.epochs]
                h = h * 2
            axes[0].plot(ep, [r["mse"] for r in h], style, label=name)
            axes[1].plot(ep, [r["equivariance"] for r in h], style, label=name)
            last = h[-1]
            best = min(h, key=lambda r: r["mse"])
            rows.append(
                (
                    tag.replace("_", "/"),
                    name,
                    h[0]["equivariance"],
                    last,
                    best["mse"],
                    last["seconds"],
                )
            )
        axes[0].set(xlabel="epoch", ylabel="held-out MSE (disc)", yscale="log")
        axes[1].set(xlabel="epoch", ylabel="equivariance error", yscale="log")
        axes[1].legend(fontsize=7)
        fig.suptitle(f"SNR {tag.replace('_', '/')}")
        fig.tight_layout()
        fig.savefig(docs / f"spiral_curves_snr{tag}.png")
        plt.close(fig)
    lines = [
        "| SNR | model | equivariance err. (epoch 0) | equivariance err. (final) | "
        "MSE (final) | best MSE | PSNR dB | FRC 0.5 (1/px) | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for snr, name, eq0, last, best, sec in rows:
        lines.append(
            f"| {snr} | {name} | {eq0:.3f} | {last['equivariance']:.3f} | {last['mse']:.4f} | "
            f"{best:.4f} | {last['psnr']:.2f} | {last['frc05']:.3f} | {sec:.0f} |"
        )
    (docs / "spiral_study_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--snr", type=float, required=True)
    r.add_argument("--out", default="out/spiral_study")
    r.add_argument("--size", type=int, default=32)
    r.add_argument("--n-train", type=int, default=1024)
    r.add_argument("--n-val", type=int, default=256)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--channels", type=int, default=16)
    r.add_argument("--depth", type=int, default=5)
    r.add_argument("--lr", type=float, default=2e-3)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--runs", default=",".join(RUNS))
    r.set_defaults(func=cmd_run)
    q = sub.add_parser("report")
    q.add_argument("--out", default="out/spiral_study")
    q.add_argument("--docs", default="docs")
    q.add_argument("--epochs", type=int, default=8)
    q.set_defaults(func=cmd_report)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
