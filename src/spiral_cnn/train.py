"""Training with checkpoints/resume, early stopping and held-out evaluation (thesis 7.4).

Inputs are masked to the particle disc for every model (the spiral net only sees the disc
anyway, so this keeps the comparison fair); the loss is the MSE over disc pixels.

* **Normalisation.** The network sees ``(x - offset) / scale`` with ``offset`` and ``scale`` the
  mean and standard deviation of the *training* noisy images over the disc
  (:class:`Normalisation`); its output is mapped back by ``y * scale + offset``. Both numbers are
  buffers of the :class:`Denoiser` wrapper, so they are saved in every checkpoint and applied by
  ``predict``/``denoise``.
* **Batch-norm statistics.** At the end of every epoch the running statistics of all batch-norm
  layers are recomputed from scratch (cumulative average over a fixed set of training batches,
  weights frozen): with the default momentum they lag the weights by many steps and the
  evaluation-mode network, which is what is scored and saved, would be worse than the weights.
* **Early stopping.** After every epoch (and once before training, epoch 0) the validation set is
  scored: MSE, PSNR, FRC 0.5 resolution and the rotation-equivariance error. Training stops when
  the validation MSE has not improved by more than ``min_delta`` (relative) for ``patience``
  epochs, or at ``epochs``; ``model.pt`` holds the weights of the best validation epoch.

``history.json`` (strict JSON: ``null`` where there is no value) holds the curves and a checkpoint
is written atomically after every epoch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
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

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
HISTORY = "history.json"
FORMAT = "spiral-cnn/2"


@dataclass
class TrainConfig:
    """Training configuration (defaults are those of the study in ``docs/spiral.md``).

    Attributes:
        model: the network.
        epochs: maximum number of passes over the training set.
        batch_size: images per step.
        lr: Adam learning rate.
        augment: rotate each training pair by a fresh random angle every epoch (thesis Fig. 7.9).
        seed: seeds initialisation, shuffling and augmentation.
        eq_images: held-out images used for the equivariance error.
        eq_angles: random angles per equivariance evaluation (the same angles every epoch).
        patience: stop after this many epochs without a relative validation-MSE improvement of
            more than ``min_delta`` (0 disables early stopping).
        min_delta: relative improvement that counts (0.005 = 0.5 %).
        bn_images: training images used to recompute batch-norm statistics after each epoch.
        device: ``cpu``, ``cuda``, ...
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    augment: bool = False
    seed: int = 0
    eq_images: int = 64
    eq_angles: int = 4
    patience: int = 4
    min_delta: float = 0.005
    bn_images: int = 512
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "eq_images": self.eq_images >= 1,
            "eq_angles": self.eq_angles >= 1,
            "patience": self.patience >= 0,
            "min_delta": 0 <= self.min_delta < 1,
            "bn_images": self.bn_images >= 1,
            "seed": self.seed >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            vals = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ValueError(f"invalid training configuration: {vals}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for checkpoints)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys are a ``ValueError``."""
        if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
            raise ValueError("training configuration must be a dict with a 'model' dict")
        d = dict(d)
        try:
            d["model"] = ModelConfig(**d["model"])
            return TrainConfig(**d)
        except TypeError as exc:
            raise ValueError(f"invalid training configuration: {exc}") from exc


@dataclass(frozen=True)
class Normalisation:
    """Affine input normalisation ``x -> (x - offset) / scale`` (undone on the output).

    Attributes:
        offset: mean of the training noisy images over the disc pixels.
        scale: their standard deviation (> 0).
    """

    offset: float
    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.offset) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"normalisation needs finite offset and scale > 0, got {self}")

    @staticmethod
    def fit(images: torch.Tensor) -> Normalisation:
        """Mean and standard deviation of ``(n, 1, L, L)`` images over their disc pixels."""
        vals = images[..., disc(images.shape[-1], images).bool()].double()
        return Normalisation(float(vals.mean()), float(vals.std()))


class Denoiser(nn.Module):
    """A network wrapped in its training normalisation: ``y = net((x - o) / s * m) * s + o``.

    ``m`` is the disc mask; ``o`` and ``s`` are buffers (saved with the weights).
    """

    offset: torch.Tensor
    scale: torch.Tensor

    def __init__(self, net: nn.Module, norm: Normalisation) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("offset", torch.tensor(norm.offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(norm.scale, dtype=torch.float32))

    @property
    def normalisation(self) -> Normalisation:
        """The stored normalisation."""
        return Normalisation(float(self.offset), float(self.scale))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - offset) / scale`` on the disc, zero outside."""
        return (x - self.offset) / self.scale * disc(x.shape[-1], x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.normalise(x)) * self.scale + self.offset
        return out


def as_batch(images: np.ndarray | torch.Tensor, name: str = "images") -> torch.Tensor:
    """``(n, L, L)`` array -> ``(n, 1, L, L)`` float32 tensor, with checks."""
    t = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if t.ndim != 3 or t.shape[-1] != t.shape[-2]:
        raise ValueError(f"{name} must be a stack (n, L, L) of square images, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or infinity")
    return t[:, None]


def masked_mse(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scalar MSE over the disc pixels of ``(B, 1, L, L)`` batches (the training loss)."""
    m = disc(est.shape[-1], est)
    return (((est - ref) * m) ** 2).sum() / (m.sum() * est.shape[0])


def _device_of(model: nn.Module) -> torch.device:
    t = next(iter(model.buffers()), next(iter(model.parameters()), None))
    return t.device if t is not None else torch.device("cpu")


@torch.no_grad()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor], noisy: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """Denoise ``(n, 1, L, L)`` images (masked to the disc) in eval mode; output on CPU."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device("cpu")
    if isinstance(model, nn.Module):
        model.eval()
        device = _device_of(model)
    outs = []
    for i in range(0, noisy.shape[0], batch_size):
        x = noisy[i : i + batch_size].to(device)
        outs.append((model(x * disc(x.shape[-1], x)) * disc(x.shape[-1], x)).cpu())
    return torch.cat(outs)


@torch.no_grad()
def matched_predict(
    model: Denoiser, noisy: torch.Tensor, batch_size: int = 128
) -> tuple[torch.Tensor, Normalisation]:
    """Denoise a stack whose scale differs from the training data (e.g. integer counts).

    The stack's own disc mean and standard deviation ``(mu, sd)`` are mapped onto the training
    normalisation before the network and back afterwards::

        out = (F((x - mu) / sd * s + o) - o) / s * sd + mu

    Returns:
        ``(denoised, stack_normalisation)``.
    """
    own = Normalisation.fit(noisy)
    tr = model.normalisation
    x = (noisy - own.offset) / own.scale * tr.scale + tr.offset
    y = predict(model, x, batch_size)
    out = (y - tr.offset) / tr.scale * own.scale + own.offset
    return out * disc(out.shape[-1], out), own


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
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
    if eq_images < 1 or eq_angles < 1:
        raise ValueError(f"eq_images and eq_angles must be >= 1, got {eq_images}, {eq_angles}")
    est = predict(model, noisy)
    ref = clean * disc(clean.shape[-1], clean)
    freq, curve = frc(est, ref)
    device = _device_of(model) if isinstance(model, nn.Module) else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    eq = equivariance_error(model, noisy[:eq_images].to(device), eq_angles, generator=g)
    return {
        "mse": float(mse(est, ref).mean()),
        "psnr": float(psnr(est, ref).mean()),
        "frc05": frc_resolution(freq, curve, 0.5),
        "equivariance": eq,
    }


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> int:
    """Recompute every batch-norm layer's running statistics from ``inputs``, weights frozen.

    The running mean and variance are reset and accumulated as a plain (cumulative) average over
    the batches of ``inputs`` (``momentum=None``), i.e. the statistics of the current weights.

    Args:
        model: the network (inputs are fed to it as given).
        inputs: ``(n, 1, L, L)`` tensor on the model's device.

    Returns:
        Number of batch-norm layers recalibrated (0: nothing to do).
    """
    bns = _batchnorms(model)
    if not bns:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for i in range(0, inputs.shape[0], batch_size):
        model(inputs[i : i + batch_size])
    for bn, mom in zip(bns, momenta, strict=True):
        bn.momentum = mom
    model.train(was_training)
    return len(bns)


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def strict_json(obj: Any) -> str:
    """JSON with non-finite floats written as ``null`` (``json.loads`` round-trips it)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), allow_nan=False)


def _read_checkpoint(p: Path, device: str | torch.device) -> dict[str, Any]:
    """Load and validate a checkpoint dict (clear ``ValueError`` for anything malformed)."""
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        # torch's own message is many lines and suggests weights_only=False, which would run
        # code from the file: report only what failed.
        raise ValueError(
            f"{p} is not a readable spiral-cnn checkpoint (a safe weights-only load failed: "
            f"{type(exc).__name__})"
        ) from exc
    if not isinstance(ck, dict):
        raise ValueError(f"{p} is not a spiral-cnn checkpoint (top level is not a dict)")
    missing = [k for k in ("model", "config", "normalisation") if k not in ck]
    if missing:
        raise ValueError(
            f"{p} is not a spiral-cnn checkpoint of this version (missing {', '.join(missing)})"
        )
    if not isinstance(ck["model"], dict) or not isinstance(ck["config"], str):
        raise ValueError(f"{p} is not a spiral-cnn checkpoint (wrong types of model/config)")
    return ck


def _build(cfg: TrainConfig, norm: Normalisation) -> Denoiser:
    return Denoiser(build_model(cfg.model), norm)


def load_model(path: str | Path, device: str = "cpu") -> tuple[Denoiser, TrainConfig]:
    """Load ``model.pt`` or ``checkpoint.pt`` written by :func:`train` (``weights_only`` load).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is truncated, malformed or from another program/version.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MODEL if (p / MODEL).exists() else p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(f"no model checkpoint at {p}")
    ck = _read_checkpoint(p, device)
    try:
        cfg = TrainConfig.from_dict(json.loads(ck["config"]))
        norm = Normalisation(**json.loads(json.dumps(ck["normalisation"])))
        model = _build(cfg, norm).to(device)
        model.load_state_dict(ck["model"])
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{p} does not hold a valid spiral-cnn model: {exc}") from exc
    model.eval()
    return model, cfg


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_inputs(cfg: TrainConfig, *stacks: tuple[str, torch.Tensor]) -> None:
    size = cfg.model.size
    for name, t in stacks:
        if t.ndim != 4 or t.shape[1:] != (1, size, size) or t.shape[0] < 1:
            raise ValueError(f"{name} must be (n >= 1, 1, {size}, {size}), got {tuple(t.shape)}")
    shapes = {name: t.shape for name, t in stacks}
    if shapes["train_noisy"] != shapes["train_clean"] or shapes["val_noisy"] != shapes["val_clean"]:
        raise ValueError("noisy and clean stacks must have equal shapes")


@dataclass
class _Stopper:
    """Early-stopping state: best validation MSE so far, its weights, epochs without gain."""

    best_mse: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0
    stopped: str = ""

    def update(self, mse_: float, epoch: int, model: nn.Module, cfg: TrainConfig) -> None:
        """Record one validation score (relative gain ``> min_delta`` resets the patience)."""
        if mse_ < self.best_mse * (1.0 - cfg.min_delta):
            self.stale = 0
        else:
            self.stale += 1
        if mse_ < self.best_mse:  # a small gain keeps the weights, not the patience
            self.best_mse, self.best_epoch, self.best_state = mse_, epoch, _state(model)
        if cfg.patience and self.stale >= cfg.patience:
            self.stopped = "early"

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "best_model": self.best_state,
            "best_mse": self.best_mse,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "stopped": self.stopped,
        }

    @staticmethod
    def from_checkpoint(ck: dict[str, Any]) -> _Stopper:
        return _Stopper(
            float(ck["best_mse"]),
            int(ck["best_epoch"]),
            ck["best_model"],
            int(ck["stale"]),
            str(ck["stopped"]),
        )


def _train_epoch(
    model: Denoiser,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    epoch: int,
    progress: bool,
) -> float:
    """One pass over the training pairs (shuffled, optionally rotated); mean training loss."""
    device = torch.device(cfg.device)
    n = noisy.shape[0]
    m = disc(cfg.model.size, noisy).to(device)
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
        x, y = noisy[idx].to(device), clean[idx].to(device)
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
    return total / count


def _resume(
    ck_path: Path, cfg: TrainConfig, model: Denoiser, opt: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]], _Stopper]:
    """Load ``checkpoint.pt`` into ``model`` and ``opt``; returns (epoch, history, stopper)."""
    ck = _read_checkpoint(ck_path, cfg.device)
    old = json.loads(ck["config"])
    new = cfg.to_dict()
    if {k: v for k, v in old.items() if k != "epochs"} != {
        k: v for k, v in new.items() if k != "epochs"
    }:
        raise ValueError(
            f"{ck_path} was written with a different configuration (only --epochs may "
            "change on resume); use another --out or --no-resume"
        )
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        return int(ck["epoch"]), json.loads(ck["history"]), _Stopper.from_checkpoint(ck)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{ck_path} is a malformed checkpoint: {exc}") from exc


def _fit_wiener(model: Denoiser, noisy: torch.Tensor, clean: torch.Tensor) -> None:
    """Least-squares fit of a wrapped :class:`WienerFilter` in the normalised units."""
    assert isinstance(model.net, WienerFilter)
    norm, m = model.normalisation, disc(noisy.shape[-1], noisy)
    model.net.fit(model.normalise(noisy), ((clean - norm.offset) / norm.scale) * m)


@dataclass
class _Session:
    """One :func:`train` call: the model, its validation data, where it writes, its progress.

    ``fixed``: the checkpoint fields that never change (configuration, normalisation, format);
    ``history``: one record per evaluation; ``stop``: the early-stopping state.
    """

    cfg: TrainConfig
    model: Denoiser
    out: Path
    say: Callable[[str], None]
    val_noisy: torch.Tensor
    val_clean: torch.Tensor
    fixed: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: _Stopper = field(default_factory=_Stopper)

    def write_history(self) -> None:
        """Write ``history.json`` (configuration, normalisation, history) in strict JSON."""
        doc = {
            "config": self.cfg.to_dict(),
            "normalisation": self.fixed["normalisation"],
            "history": self.history,
        }
        (self.out / HISTORY).write_text(strict_json(doc))

    def evaluate(self) -> dict[str, float]:
        """The validation metrics of the model now (see :func:`evaluate`)."""
        cfg = self.cfg
        return evaluate(self.model, self.val_noisy, self.val_clean, cfg.eq_images, cfg.eq_angles)


def _fixed_fields(cfg: TrainConfig, model: Denoiser) -> dict[str, Any]:
    """The checkpoint fields shared by ``checkpoint.pt`` and ``model.pt``."""
    return {
        "config": json.dumps(cfg.to_dict()),
        "normalisation": asdict(model.normalisation),
        "format": FORMAT,
    }


def _prepare(
    s: _Session, train_noisy: torch.Tensor, train_clean: torch.Tensor, resume: bool
) -> tuple[int, torch.optim.Optimizer | None]:
    """Fit a Wiener filter in closed form, or make an Adam optimiser and resume if asked.

    Returns the last epoch already trained (0 for a fresh run) and the optimiser (``None``:
    no epochs to train).
    """
    cfg, model = s.cfg, s.model
    device = torch.device(cfg.device)
    ck_path = s.out / CHECKPOINT
    start, opt = 0, None
    if isinstance(model.net, WienerFilter):  # closed-form fit, no epochs
        _fit_wiener(model, train_noisy.to(device), train_clean.to(device))
        s.stop.stopped = "closed-form"
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if resume and ck_path.exists():
            start, s.history, s.stop = _resume(ck_path, cfg, model, opt)
            s.say(f"resuming from epoch {start} (best epoch {s.stop.best_epoch})")
            if s.stop.stopped == "early" and cfg.epochs > start:
                s.say("that run had stopped early on a validation plateau; not training further")
    return start, opt


def _evaluate_epoch_zero(s: _Session) -> None:
    """Record the untrained (or closed-form) model as epoch 0 and start early stopping there."""
    s.history.append({"epoch": 0, "train_loss": None, **s.evaluate(), "seconds": 0.0})
    s.stop.update(s.history[0]["mse"], 0, s.model, s.cfg)
    s.stop.stale = 0
    s.say(f"epoch 0: val mse {s.stop.best_mse:.4f} eq {s.history[0]['equivariance']:.4f}")


def _bn_inputs(cfg: TrainConfig, model: Denoiser, train_noisy: torch.Tensor) -> torch.Tensor:
    """Normalised ``(bn_images, 1, L, L)`` training inputs (a fixed random subset, on the
    configured device) for the batch-norm recalibration after each epoch."""
    bn_idx = torch.randperm(
        train_noisy.shape[0], generator=torch.Generator().manual_seed(cfg.seed + 7)
    )
    return model.normalise(train_noisy[bn_idx[: cfg.bn_images]].to(torch.device(cfg.device)))


def _run_epoch(
    s: _Session,
    opt: torch.optim.Optimizer,
    epoch: int,
    train_noisy: torch.Tensor,
    train_clean: torch.Tensor,
    bn_inputs: torch.Tensor,
    progress: bool,
) -> None:
    """Train epoch ``epoch``, recalibrate batch norm, evaluate, checkpoint and report."""
    cfg, model, stop = s.cfg, s.model, s.stop
    t0 = time.perf_counter()
    loss = _train_epoch(model, opt, cfg, train_noisy, train_clean, epoch, progress)
    recalibrate_batchnorm(model.net, bn_inputs, cfg.batch_size)
    rec: dict[str, Any] = {"epoch": epoch, "train_loss": loss, **s.evaluate()}
    rec["seconds"] = time.perf_counter() - t0
    s.history.append(rec)
    stop.update(rec["mse"], epoch, model, cfg)
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch}
    _save_atomic(
        {**state, "history": json.dumps(s.history), **s.fixed, **stop.to_checkpoint()},
        s.out / CHECKPOINT,
    )
    s.write_history()
    s.say(
        f"{cfg.model.arch} epoch {epoch}: train {loss:.4f} val mse {rec['mse']:.4f} "
        f"psnr {rec['psnr']:.2f} eq {rec['equivariance']:.4f} ({rec['seconds']:.0f}s)"
        + (f"; stopping, no gain for {stop.stale} epochs" if stop.stopped else "")
    )


def _finish(s: _Session, n_par: int) -> None:
    """Close the history, restore the best weights and write ``model.pt`` and the history."""
    stop = s.stop
    s.history[-1].update(best_epoch=stop.best_epoch, stopped=stop.stopped or "max")
    if stop.best_state is not None:  # the last weights stay in checkpoint.pt
        s.model.load_state_dict(stop.best_state)
    best = {"n_params": n_par, "best_epoch": stop.best_epoch}
    _save_atomic({"model": s.model.state_dict(), **s.fixed, **best}, s.out / MODEL)
    s.write_history()


def train(
    cfg: TrainConfig,
    train_noisy: torch.Tensor,
    train_clean: torch.Tensor,
    val_noisy: torch.Tensor,
    val_clean: torch.Tensor,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train a denoiser with early stopping, evaluating on held-out data every epoch.

    Args:
        cfg: configuration (``cfg.model.size`` must match the images).
        train_noisy, train_clean, val_noisy, val_clean: ``(n, 1, L, L)`` float tensors.
        out_dir: receives ``checkpoint.pt`` (every epoch), ``model.pt`` (best validation epoch)
            and ``history.json``.
        resume: continue from ``out_dir/checkpoint.pt`` if present (same configuration except
            ``epochs``, which may be raised to train longer).
        progress: show tqdm progress bars.
        report: receives one line at the start and one per epoch (default: ``logging.info``).

    Returns:
        The history: one dict per evaluation (epoch 0 = before training) with ``epoch``,
        ``train_loss`` (``None`` at epoch 0), ``mse``, ``psnr``, ``frc05``, ``equivariance``,
        ``seconds``; the last record also has ``best_epoch`` and ``stopped`` (``early``/``max``).
    """
    say = report or logger.info
    _check_inputs(
        cfg,
        ("train_noisy", train_noisy),
        ("train_clean", train_clean),
        ("val_noisy", val_noisy),
        ("val_clean", val_clean),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = _build(cfg, Normalisation.fit(train_noisy)).to(device)
    n_par = count_parameters(model)
    s = _Session(cfg, model, out, say, val_noisy, val_clean, _fixed_fields(cfg, model))
    say(
        f"{cfg.model.arch}: {train_noisy.shape[0]} training / {val_noisy.shape[0]} validation "
        f"images, {n_par} parameters, up to {cfg.epochs} epochs; evaluating epoch 0"
    )
    start, opt = _prepare(s, train_noisy, train_clean, resume)
    if start == 0 and not s.history:
        _evaluate_epoch_zero(s)
    bn_inputs = _bn_inputs(cfg, model, train_noisy)
    epoch = start
    while opt is not None and not s.stop.stopped and epoch < cfg.epochs:
        epoch += 1
        _run_epoch(s, opt, epoch, train_noisy, train_clean, bn_inputs, progress)
    _finish(s, n_par)
    return s.history


def full_equivariance(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_angles: int = 8,
    seed: int = 1234,
    inner_radius: float = 0.5,
) -> dict[str, float]:
    """Equivariance error on the full and the inner disc, at 90 degrees and at random angles.

    Args:
        model: maps ``(B, 1, L, L)`` to ``(B, 1, L, L)``.
        x: ``(B, 1, L, L)`` noisy inputs.
        n_angles: random angles (uniform in ``[0, 2 pi)``, from ``seed``).
        inner_radius: radius of the inner disc (disc units).

    Returns:
        ``eq_full_any``, ``eq_full_90``, ``eq_inner_any``, ``eq_inner_90``.
    """
    res = {}
    for tag, radius in (("full", 1.0), ("inner", inner_radius)):
        g = torch.Generator().manual_seed(seed)
        res[f"eq_{tag}_any"] = equivariance_error(model, x, n_angles, generator=g, radius=radius)
        res[f"eq_{tag}_90"] = equivariance_error(
            model, x, angles=[math.pi / 2, math.pi, 3 * math.pi / 2], radius=radius
        )
    return res
