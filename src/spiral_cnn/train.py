"""Training with checkpoints/resume, and held-out evaluation (thesis 7.4).

Inputs are masked to the particle disc for every model (the spiral net only sees the disc
anyway, so this keeps the comparison fair); the loss is the MSE over disc pixels. After every
epoch (and once before training, epoch 0) the held-out set is scored: MSE, PSNR, FRC 0.5
resolution and the rotation-equivariance error. ``history.json`` holds those curves and a
checkpoint is written atomically after every epoch, so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spiral_cnn.metrics import disc, equivariance_error, frc, frc_resolution, mse, psnr
from spiral_cnn.models import ModelConfig, WienerFilter, build_model, count_parameters
from spiral_cnn.rotate import rotate_images

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
HISTORY = "history.json"


@dataclass
class TrainConfig:
    """Training configuration.

    Attributes:
        model: the network.
        epochs: number of passes over the training set.
        batch_size: images per step.
        lr: Adam learning rate.
        augment: rotate each training pair by a fresh random angle every epoch (thesis Fig. 7.9).
        seed: seeds initialisation, shuffling and augmentation.
        eq_images: held-out images used for the equivariance error.
        eq_angles: random angles per equivariance evaluation (the same angles every epoch).
        device: ``cpu``, ``cuda``, ...
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    augment: bool = False
    seed: int = 0
    eq_images: int = 64
    eq_angles: int = 4
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for checkpoints)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["model"] = ModelConfig(**d["model"])
        return TrainConfig(**d)


def as_batch(images: np.ndarray | torch.Tensor, name: str = "images") -> torch.Tensor:
    """``(n, L, L)`` array -> ``(n, 1, L, L)`` float32 tensor, with checks."""
    t = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if t.ndim != 3 or t.shape[-1] != t.shape[-2]:
        raise ValueError(f"{name} must be a stack (n, L, L) of square images, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or infinity")
    return t[:, None]


def masked_mse(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scalar MSE over the disc pixels of ``(B, 1, L, L)`` batches (the training loss)."""
    m = disc(est.shape[-1], est)
    return (((est - ref) * m) ** 2).sum() / (m.sum() * est.shape[0])


@torch.no_grad()
def predict(model: nn.Module, noisy: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Denoise ``(n, 1, L, L)`` images (masked to the disc) in eval mode; output on CPU."""
    model.eval()
    dev = next(iter(model.buffers()), next(iter(model.parameters()), None))
    device = dev.device if dev is not None else torch.device("cpu")
    outs = []
    for i in range(0, noisy.shape[0], batch_size):
        x = noisy[i : i + batch_size].to(device)
        outs.append((model(x * disc(x.shape[-1], x)) * disc(x.shape[-1], x)).cpu())
    return torch.cat(outs)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    eq_images: int = 64,
    eq_angles: int = 4,
    seed: int = 1234,
) -> dict[str, float]:
    """Held-out metrics: ``mse``, ``psnr`` (dB), ``frc05`` (cycles/pixel) and ``equivariance``.

    Args:
        model: maps ``(B, 1, L, L)`` to ``(B, 1, L, L)``.
        noisy, clean: ``(n, 1, L, L)`` held-out pairs.
        eq_images: first ``eq_images`` noisy images are used for the equivariance error.
        eq_angles: random angles, drawn from ``seed`` (identical across calls).
    """
    model.eval()
    est = predict(model, noisy)
    ref = clean * disc(clean.shape[-1], clean)
    freq, curve = frc(est, ref)
    dev = next(iter(model.buffers()), next(iter(model.parameters()), None))
    device = dev.device if dev is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    eq = equivariance_error(model, noisy[:eq_images].to(device), eq_angles, generator=g)
    return {
        "mse": float(mse(est, ref).mean()),
        "psnr": float(psnr(est, ref).mean()),
        "frc05": frc_resolution(freq, curve, 0.5),
        "equivariance": eq,
    }


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Load ``model.pt`` or ``checkpoint.pt`` written by :func:`train` (``weights_only`` load)."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL if (p / MODEL).exists() else p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(f"no model checkpoint at {p}")
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{p} is not a readable spiral-cnn checkpoint: {exc}") from exc
    cfg = TrainConfig.from_dict(json.loads(ck["config"]))
    model = build_model(cfg.model).to(device)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg


def train(
    cfg: TrainConfig,
    train_noisy: torch.Tensor,
    train_clean: torch.Tensor,
    val_noisy: torch.Tensor,
    val_clean: torch.Tensor,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train a denoiser, evaluating on held-out data every epoch.

    Args:
        cfg: configuration (``cfg.model.size`` must match the images).
        train_noisy, train_clean, val_noisy, val_clean: ``(n, 1, L, L)`` float tensors.
        out_dir: receives ``checkpoint.pt`` (every epoch), ``model.pt`` and ``history.json``.
        resume: continue from ``out_dir/checkpoint.pt`` if present (same configuration except
            ``epochs``, which may be raised to train longer).
        progress: show tqdm progress bars.

    Returns:
        The history: one dict per evaluation (epoch 0 = before training) with ``epoch``,
        ``train_loss``, ``mse``, ``psnr``, ``frc05``, ``equivariance``, ``seconds``.
    """
    size = cfg.model.size
    for name, t in (("train_noisy", train_noisy), ("train_clean", train_clean)):
        if t.ndim != 4 or t.shape[1:] != (1, size, size):
            raise ValueError(f"{name} must be (n, 1, {size}, {size}), got {tuple(t.shape)}")
    if train_noisy.shape != train_clean.shape or val_noisy.shape != val_clean.shape:
        raise ValueError("noisy and clean stacks must have equal shapes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    cfg_json = json.dumps(cfg.to_dict())
    history: list[dict[str, float]] = []

    def write_history() -> None:
        (out / HISTORY).write_text(json.dumps({"config": cfg.to_dict(), "history": history}))

    def ev() -> dict[str, float]:
        return evaluate(model, val_noisy, val_clean, cfg.eq_images, cfg.eq_angles)

    if isinstance(model, WienerFilter):  # closed-form fit, no epochs
        m = disc(size, train_noisy)
        model.fit((train_noisy * m).to(device), (train_clean * m).to(device))
        history.append({"epoch": 0.0, "train_loss": math.nan, **ev(), "seconds": 0.0})
        _save_atomic({"model": model.state_dict(), "config": cfg_json}, out / MODEL)
        write_history()
        return history

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = 0
    ck_path = out / CHECKPOINT
    if resume and ck_path.exists():
        ck = torch.load(ck_path, map_location=device, weights_only=True)
        old = json.loads(ck["config"])
        if {k: v for k, v in old.items() if k != "epochs"} != {
            k: v for k, v in cfg.to_dict().items() if k != "epochs"
        }:
            raise ValueError(
                f"{ck_path} was written with a different configuration (only --epochs may "
                "change on resume); use another --out or --no-resume"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        start = int(ck["epoch"])
        history = json.loads(ck["history"])
    if start == 0 and not history:
        history.append({"epoch": 0.0, "train_loss": math.nan, **ev(), "seconds": 0.0})
    n = train_noisy.shape[0]
    m = disc(size, train_noisy).to(device)
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        perm = torch.randperm(n, generator=g)
        angles = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        model.train()
        total, count = 0.0, 0
        bar = tqdm(
            range(0, n, cfg.batch_size),
            desc=f"{cfg.model.arch} epoch {epoch}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for i in bar:
            idx = perm[i : i + cfg.batch_size]
            x, y = train_noisy[idx].to(device), train_clean[idx].to(device)
            if cfg.augment:
                a = angles[idx].to(device)
                x, y = rotate_images(x, a[:, None]), rotate_images(y, a[:, None])
            loss = masked_mse(model(x * m), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
            bar.set_postfix(loss=f"{total / count:.4f}")
        rec = {"epoch": float(epoch), "train_loss": total / count, **ev()}
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        _save_atomic(
            {
                "model": model.state_dict(),
                "optim": opt.state_dict(),
                "epoch": epoch,
                "history": json.dumps(history),
                "config": cfg_json,
            },
            ck_path,
        )
        write_history()
        if progress:
            tqdm.write(
                f"{cfg.model.arch} epoch {epoch}: train {rec['train_loss']:.4f} "
                f"val mse {rec['mse']:.4f} psnr {rec['psnr']:.2f} "
                f"eq {rec['equivariance']:.4f} ({rec['seconds']:.0f}s)"
            )
    _save_atomic(
        {"model": model.state_dict(), "config": cfg_json, "n_params": count_parameters(model)},
        out / MODEL,
    )
    write_history()
    return history
