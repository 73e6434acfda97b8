"""``spiral-cnn`` command line: simulate, train, denoise, evaluate.

Examples (the README quickstart; runs as is in an empty directory)::

    spiral-cnn simulate --out data/train --n 1024 --snr 0.25 --volumes 8 --volume-seed 100
    spiral-cnn simulate --out data/test --n 256 --snr 0.25 --volumes 4 --volume-seed 300 --seed 1
    spiral-cnn train --data data/train --val data/test --arch spiral --out runs/sp
    spiral-cnn denoise data/test/noisy.mrcs denoised.mrcs --model runs/sp
    spiral-cnn evaluate --model runs/sp --noisy data/test/noisy.mrcs --clean data/test/clean.mrcs

Output: results are strict JSON on stdout (``null`` where a value does not exist); progress and
notes go to stderr. ``train`` prints one line when it starts and one per epoch; ``--quiet`` hides
only the progress bars. Every expected failure is one ``spiral-cnn: error: ...`` line on stderr
and exit status 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spiral_cnn.models import ARCHS, ModelConfig
from spiral_cnn.mrc import MrcNote, read_stack, write_stack


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _device(name: str) -> str:
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"invalid --device {name!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine")
    return name


def _stack_pair(d: Path) -> tuple[torch.Tensor, torch.Tensor, float]:
    from spiral_cnn.train import as_batch

    if not d.is_dir():
        raise FileNotFoundError(f"no data directory {d} (expected noisy.mrcs and clean.mrcs)")
    noisy, px, _ = read_stack(d / "noisy.mrcs")
    clean, _, _ = read_stack(d / "clean.mrcs")
    if noisy.shape != clean.shape:
        raise ValueError(f"{d}: noisy {noisy.shape} and clean {clean.shape} stacks differ")
    return as_batch(noisy, f"{d}/noisy.mrcs"), as_batch(clean, f"{d}/clean.mrcs"), px


def cmd_simulate(a: argparse.Namespace) -> int:
    from spiral_cnn.data import SimConfig, simulate
    from spiral_cnn.train import strict_json

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
        volumes=a.volumes,
    )
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    _err(f"simulating {cfg.n} particles of {cfg.volumes} molecule(s) with ASPIRE ...")
    stack = simulate(cfg)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"simulate snr={cfg.snr:g} noise={cfg.noise} ctf={int(cfg.ctf)} seed={cfg.seed}"
    write_stack(out / "noisy.mrcs", stack.noisy, tag, cfg.pixel_size)
    write_stack(out / "clean.mrcs", stack.clean, "ground truth " + tag, cfg.pixel_size)
    meta = dict(stack.meta, angles_zyz=stack.angles.tolist(), molecule=stack.molecule.tolist())
    (out / "meta.json").write_text(strict_json(meta))
    snr = stack.meta.get("snr_measured")
    print(
        strict_json({"out": str(out), "n": cfg.n, "size": cfg.size, "snr_measured": snr}),
        flush=True,
    )
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from spiral_cnn.train import TrainConfig, strict_json, train

    device = _device(a.device)
    if a.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {a.threads}")
    noisy, clean, _ = _stack_pair(Path(a.data))
    if a.val:
        vn, vc, _ = _stack_pair(Path(a.val))
    else:
        if not 0 < a.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {a.val_fraction}")
        k = max(1, int(round(noisy.shape[0] * a.val_fraction)))
        if k >= noisy.shape[0]:
            raise ValueError(
                f"--val-fraction {a.val_fraction} leaves no training images out of "
                f"{noisy.shape[0]}; use a smaller fraction or --val"
            )
        noisy, vn = noisy[:-k], noisy[-k:]
        clean, vc = clean[:-k], clean[-k:]
    if vn.shape[-1] != noisy.shape[-1]:
        raise ValueError(
            f"validation images are {vn.shape[-1]}px, training images {noisy.shape[-1]}px"
        )
    if a.threads:
        torch.set_num_threads(a.threads)
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
        eq_angles=a.eq_angles,
        patience=a.patience,
        device=device,
    )
    hist = train(
        cfg,
        noisy,
        clean,
        vn,
        vc,
        a.out,
        resume=not a.no_resume,
        progress=not a.quiet,
        report=_err,
    )
    print(strict_json(hist[-1]), flush=True)
    return 0


def cmd_denoise(a: argparse.Namespace) -> int:
    from spiral_cnn.train import Normalisation, as_batch, load_model, matched_predict, predict

    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    out_path = Path(a.output)
    if out_path.resolve() == Path(a.input).resolve():
        raise ValueError("the output would overwrite the input stack; choose another name")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"output folder {out_path.parent} does not exist")
    model, cfg = load_model(a.model, _device(a.device))
    imgs, px, _ = read_stack(a.input)
    if imgs.shape[-1] != cfg.model.size:
        raise ValueError(
            f"{a.input} has {imgs.shape[-1]}px images but the model was trained on "
            f"{cfg.model.size}px"
        )
    x = as_batch(imgs, str(a.input))
    tr = model.normalisation
    own = Normalisation.fit(x)
    mode = a.normalise
    if mode == "auto":
        ratio = own.scale / tr.scale
        far = not 0.5 <= ratio <= 2.0 or abs(own.offset - tr.offset) > tr.scale
        mode = "stack" if far else "train"
        if far:
            _err(
                f"note: {a.input} has mean {own.offset:.4g} and std {own.scale:.4g} on the disc, "
                f"the training data {tr.offset:.4g} and {tr.scale:.4g}: matching the stack to "
                "the training statistics (--normalise stack)"
            )
    if mode == "stack":
        out, _ = matched_predict(model, x, a.batch_size)
    else:
        out = predict(model, x, a.batch_size)
    write_stack(
        out_path,
        out[:, 0].numpy(),
        f"denoise model={cfg.model.arch} norm={mode} src={Path(a.input).name}",
        px,
    )
    _err(f"wrote {out.shape[0]} denoised particles to {out_path}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from spiral_cnn.train import as_batch, evaluate, load_model, strict_json

    model, _ = load_model(a.model, _device(a.device))
    noisy = as_batch(read_stack(a.noisy)[0], str(a.noisy))
    clean = as_batch(read_stack(a.clean)[0], str(a.clean))
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy {tuple(noisy.shape)} and clean {tuple(clean.shape)} differ")
    res = evaluate(model, noisy, clean, a.eq_images, a.eq_angles)
    print(strict_json(res), flush=True)
    return 0


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from exc
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from exc
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {s}")
    return v


def _add_simulate(sub: Any) -> None:
    """The ``simulate`` subcommand."""
    s = sub.add_parser("simulate", help="simulate a particle stack with ASPIRE")
    s.add_argument("--out", required=True, help="output directory (noisy.mrcs, clean.mrcs)")
    s.add_argument("--n", type=_positive_int, default=1024)
    s.add_argument("--size", type=_positive_int, default=32)
    s.add_argument(
        "--snr",
        type=_positive_float,
        default=0.25,
        help="power SNR (ASPIRE): mean clean^2 on the disc / noise variance",
    )
    s.add_argument("--noise", choices=["gaussian", "poisson", "none"], default="gaussian")
    s.add_argument("--ctf", action="store_true", help="apply a radial CTF")
    s.add_argument("--atoms", type=_positive_int, default=64)
    s.add_argument("--pixel-size", type=_positive_float, default=1.0, help="angstrom per pixel")
    s.add_argument("--seed", type=int, default=0, help="orientations and noise")
    s.add_argument(
        "--volume-seed",
        type=int,
        default=None,
        help="density seed (default: --seed); equal values give the same molecules",
    )
    s.add_argument("--volumes", type=_positive_int, default=1, help="number of molecules")
    s.set_defaults(func=cmd_simulate)


def _add_train(sub: Any) -> None:
    """The ``train`` subcommand."""
    t = sub.add_parser(
        "train",
        help="train a denoiser (resumes from OUT/checkpoint.pt)",
        description="Train with early stopping on the validation MSE; defaults are the study's.",
    )
    t.add_argument("--data", required=True, help="directory from `simulate`")
    t.add_argument("--val", default=None, help="held-out directory (default: split --data)")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--out", required=True)
    t.add_argument("--arch", choices=ARCHS, default="spiral")
    t.add_argument("--channels", type=_positive_int, default=12)
    t.add_argument("--depth", type=_positive_int, default=5)
    t.add_argument("--kernel", type=_positive_int, default=3)
    t.add_argument("--epochs", type=_positive_int, default=30, help="maximum epochs")
    t.add_argument(
        "--patience", type=int, default=4, help="stop after this many epochs without gain (0: off)"
    )
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=_positive_float, default=2e-3)
    t.add_argument("--augment", action="store_true", help="random rotations each epoch")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eq-images", type=_positive_int, default=64)
    t.add_argument("--eq-angles", type=_positive_int, default=4)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (the start line and one line per epoch still go to stderr)",
    )
    t.set_defaults(func=cmd_train)


def _add_denoise(sub: Any) -> None:
    """The ``denoise`` subcommand."""
    d = sub.add_parser("denoise", help="denoise an MRC particle stack")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--model", required=True, help="run directory or model.pt")
    d.add_argument("--batch-size", type=_positive_int, default=128)
    d.add_argument(
        "--normalise",
        choices=["auto", "train", "stack"],
        default="auto",
        help="train: apply the stored training normalisation; stack: first map the stack's own "
        "disc mean/std onto the training ones (for other scales, e.g. integer data); auto: "
        "stack when its std differs from training by more than 2x or its mean by more than "
        "one training std",
    )
    d.add_argument("--device", default="cpu")
    d.set_defaults(func=cmd_denoise)


def _add_evaluate(sub: Any) -> None:
    """The ``evaluate`` subcommand."""
    e = sub.add_parser("evaluate", help="MSE, PSNR, FRC and equivariance error on held-out data")
    e.add_argument("--model", required=True)
    e.add_argument("--noisy", required=True)
    e.add_argument("--clean", required=True)
    e.add_argument("--eq-images", type=_positive_int, default=64)
    e.add_argument("--eq-angles", type=_positive_int, default=4)
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="spiral-cnn", description="Rotation-equivariant spiral CNN denoiser for cryo-EM."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="cmd", required=True)

    for add in (_add_simulate, _add_train, _add_denoise, _add_evaluate):
        add(sub)
    from ablation_paths import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spiral-cnn`` console script."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", MrcNote)
        warnings.showwarning = _show_note  # notes as one plain line on stderr
        try:
            rc: int = args.func(args)
        except (FileNotFoundError, ValueError, OSError, ImportError) as exc:
            if args.debug:
                raise
            _err(f"spiral-cnn: error: {exc}")
            return 2
        except KeyboardInterrupt:
            _err("spiral-cnn: interrupted (train resumes from its checkpoint)")
            return 130
    return rc


def _show_note(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    _err(f"spiral-cnn: note: {message}" if category is MrcNote else f"warning: {message}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
