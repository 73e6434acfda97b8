"""``spiral-cnn`` command line: simulate, train, denoise, evaluate.

Examples::

    spiral-cnn simulate --out data/train --n 2048 --snr 0.25
    spiral-cnn simulate --out data/test --n 256 --snr 0.25 --seed 1 --volume-seed 0
    spiral-cnn train --data data/train --val data/test --arch spiral --epochs 10 --out runs/sp
    spiral-cnn denoise data/test/noisy.mrcs denoised.mrcs --model runs/sp
    spiral-cnn evaluate --model runs/sp --noisy data/test/noisy.mrcs --clean data/test/clean.mrcs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from spiral_cnn.models import ARCHS, ModelConfig
from spiral_cnn.mrc import read_stack, write_stack


def _stack_pair(d: Path) -> tuple[torch.Tensor, torch.Tensor, float]:
    from spiral_cnn.train import as_batch

    noisy, px, _ = read_stack(d / "noisy.mrcs")
    clean, _, _ = read_stack(d / "clean.mrcs")
    return as_batch(noisy, f"{d}/noisy.mrcs"), as_batch(clean, f"{d}/clean.mrcs"), px


def cmd_simulate(a: argparse.Namespace) -> int:
    from spiral_cnn.data import SimConfig, simulate

    cfg = SimConfig(
        n=a.n,
        size=a.size,
        snr=a.snr,
        noise=a.noise,
        ctf=a.ctf,
        atoms=a.atoms,
        pixel_size=a.pixel_size,
        seed=a.seed,
        volume_seed=a.volume_seed,
    )
    stack = simulate(cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"simulate snr={cfg.snr:g} noise={cfg.noise} ctf={int(cfg.ctf)} seed={cfg.seed}"
    write_stack(out / "noisy.mrcs", stack.noisy, tag, cfg.pixel_size)
    write_stack(out / "clean.mrcs", stack.clean, "ground truth " + tag, cfg.pixel_size)
    meta = dict(stack.meta, angles_zyz=stack.angles.tolist())
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    snr = stack.meta.get("snr_measured", float("inf"))
    print(f"wrote {cfg.n} particles {cfg.size}x{cfg.size} to {out} (measured SNR {snr:.4g})")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from spiral_cnn.train import TrainConfig, train

    noisy, clean, _ = _stack_pair(Path(a.data))
    if a.val:
        vn, vc, _ = _stack_pair(Path(a.val))
    else:
        k = max(1, int(round(noisy.shape[0] * a.val_fraction)))
        noisy, vn = noisy[:-k], noisy[-k:]
        clean, vc = clean[:-k], clean[-k:]
    torch.set_num_threads(a.threads) if a.threads else None
    cfg = TrainConfig(
        model=ModelConfig(
            arch=a.arch,
            size=int(noisy.shape[-1]),
            channels=a.channels,
            depth=a.depth,
            kernel=a.kernel,
        ),
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        augment=a.augment,
        seed=a.seed,
        eq_images=a.eq_images,
        device=a.device,
    )
    hist = train(cfg, noisy, clean, vn, vc, a.out, resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(hist[-1]))
    return 0


def cmd_denoise(a: argparse.Namespace) -> int:
    from spiral_cnn.train import as_batch, load_model, predict

    model, cfg = load_model(a.model, a.device)
    imgs, px, _ = read_stack(a.input)
    if imgs.shape[-1] != cfg.model.size:
        raise ValueError(
            f"{a.input} has {imgs.shape[-1]}px images but the model was trained on "
            f"{cfg.model.size}px"
        )
    out = predict(model, as_batch(imgs, str(a.input)), a.batch_size)[:, 0].numpy()
    write_stack(a.output, out, f"denoise model={cfg.model.arch} src={Path(a.input).name}", px)
    print(f"wrote {out.shape[0]} denoised particles to {a.output}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from spiral_cnn.train import as_batch, evaluate, load_model

    model, _ = load_model(a.model, a.device)
    noisy = as_batch(read_stack(a.noisy)[0], str(a.noisy))
    clean = as_batch(read_stack(a.clean)[0], str(a.clean))
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy {tuple(noisy.shape)} and clean {tuple(clean.shape)} differ")
    res = evaluate(model, noisy, clean, a.eq_images, a.eq_angles)
    print(json.dumps(res, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="spiral-cnn", description="Rotation-equivariant spiral CNN denoiser for cryo-EM."
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="simulate a particle stack with ASPIRE")
    s.add_argument("--out", required=True, help="output directory (noisy.mrcs, clean.mrcs)")
    s.add_argument("--n", type=int, default=1024)
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--snr", type=float, default=0.25, help="mean signal energy / noise variance")
    s.add_argument("--noise", choices=["gaussian", "poisson", "none"], default="gaussian")
    s.add_argument("--ctf", action="store_true", help="apply a radial CTF")
    s.add_argument("--atoms", type=int, default=64)
    s.add_argument("--pixel-size", type=float, default=1.0, help="angstrom per pixel")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--volume-seed", type=int, default=None, help="density seed (default: seed)")
    s.set_defaults(func=cmd_simulate)

    t = sub.add_parser("train", help="train a denoiser (resumes from OUT/checkpoint.pt)")
    t.add_argument("--data", required=True, help="directory from `simulate`")
    t.add_argument("--val", default=None, help="held-out directory (default: split --data)")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--out", required=True)
    t.add_argument("--arch", choices=ARCHS, default="spiral")
    t.add_argument("--channels", type=int, default=16)
    t.add_argument("--depth", type=int, default=5)
    t.add_argument("--kernel", type=int, default=3)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--augment", action="store_true", help="random rotations each epoch")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eq-images", type=int, default=64)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("denoise", help="denoise an MRC particle stack")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--model", required=True, help="run directory or model.pt")
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--device", default="cpu")
    d.set_defaults(func=cmd_denoise)

    e = sub.add_parser("evaluate", help="MSE, PSNR, FRC and equivariance error on held-out data")
    e.add_argument("--model", required=True)
    e.add_argument("--noisy", required=True)
    e.add_argument("--clean", required=True)
    e.add_argument("--eq-images", type=int, default=64)
    e.add_argument("--eq-angles", type=int, default=4)
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)
    from ablation_paths import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spiral-cnn`` console script."""
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"spiral-cnn: error: {exc}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
