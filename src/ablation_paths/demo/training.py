"""Training helpers shared by ``scripts/train_demo.py`` and ``scripts/train_bench_models.py``.

The augmentation mimics what ablation paths feed the classifier: the image blended towards a
blurred (or constant-colour) copy of itself through smooth soft masks. Where the evidence region
(the object, or the planted marker) is mostly ablated towards a strong blur, the training target
fades towards the uniform distribution, so the classifier learns "no evidence -> no opinion"
instead of guessing from the background.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablation_paths.filters import gaussian_blur

__all__ = ["TrainConfig", "augment_batch", "evaluate", "predict", "train_classifier"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier`.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        lr: peak learning rate (one-cycle schedule, AdamW).
        weight_decay: AdamW weight decay.
        p_ablate: probability that an image is blended towards a blurred/constant baseline.
        p_removed: probability that an image is replaced by its evidence-free counterfactual
            (target: uniform distribution).
        blur_sigma: range of the baseline blur in pixels.
        seed: seed of the augmentation and shuffling generator.
        ramp_epochs: the ablation/removal probabilities ramp up linearly from 0 over this many
            epochs (the plain task is learnt first; this shortens the initial plateau).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    p_ablate: float = 0.5
    p_removed: float = 0.08
    blur_sigma: tuple[float, float] = (3.0, 16.0)
    seed: int = 0
    ramp_epochs: float = 2.0


def _fast_blur(x: Tensor, sigma: float) -> Tensor:
    """Approximate Gaussian blur of ``[B, C, H, W]`` (``sigma`` in pixels): for large sigma,
    blur at a reduced resolution and upsample bilinearly (cheap augmentation only)."""
    f = 1
    while sigma / (2 * f) >= 1.5 and x.shape[-1] // (2 * f) >= 16:
        f *= 2
    if f == 1:
        return gaussian_blur(x, sigma)
    small = F.avg_pool2d(x, f)
    small = gaussian_blur(small, math.sqrt(max(sigma**2 - (f**2 - 1) / 12.0, 0.25)) / f)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _smooth_masks(b: int, h: int, w: int, gen: torch.Generator) -> Tensor:
    """Random soft masks ``[b, 1, h, w]`` in ``[0, 1]``: global levels or smooth blobs."""
    out = torch.empty(b, 1, h, w)
    for i in range(b):
        kind = int(torch.randint(3, (1,), generator=gen))
        if kind == 0:  # global level, like the affine path phi(t) = t
            out[i] = torch.rand(1, generator=gen)
        else:
            res = int(2 ** torch.randint(1, 5, (1,), generator=gen))  # 2..16
            noise = torch.rand(1, 1, res, res, generator=gen)
            noise = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0]
            level = torch.rand(1, generator=gen)
            temp = 0.02 + 0.3 * torch.rand(1, generator=gen)
            out[i] = torch.sigmoid((noise - level) / temp)
    return out


def augment_batch(
    images: Tensor,
    counterfactuals: Tensor,
    evidence: Tensor,
    labels: Tensor,
    num_classes: int,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Augment one batch and build soft targets.

    Args:
        images: ``float32 [B, 3, H, W]`` in ``[0, 1]``.
        counterfactuals: ``float32 [B, 3, H, W]``, the same scenes with the evidence removed.
        evidence: ``bool [B, H, W]``, the region that carries the label.
        labels: ``int64 [B]``.
        num_classes: number of classes.
        cfg: augmentation probabilities and blur range.
        gen: random generator (CPU).

    Returns:
        ``(images [B, 3, H, W], targets [B, num_classes])``; targets are probability vectors.
    """
    b, _, h, w = images.shape
    x = images.clone()
    ev = evidence.unsqueeze(1).float()
    cf = counterfactuals
    # random flips / quarter turns (the classes are symmetric under them)
    if bool(torch.rand(1, generator=gen) < 0.5):
        x, cf, ev = x.flip(-1), cf.flip(-1), ev.flip(-1)
    k = int(torch.randint(4, (1,), generator=gen))
    if k and h == w:
        x, cf, ev = (t.rot90(k, dims=(-2, -1)) for t in (x, cf, ev))
    onehot = F.one_hot(labels, num_classes).float()
    uniform = torch.full_like(onehot, 1.0 / num_classes)
    weight = torch.ones(b)

    # blend towards a baseline through random soft masks
    ablate = torch.rand(b, generator=gen) < cfg.p_ablate
    if bool(ablate.any()):
        lo, hi = cfg.blur_sigma
        sigma = float(
            math.exp(
                math.log(lo) + (math.log(hi) - math.log(lo)) * float(torch.rand(1, generator=gen))
            )
        )
        base = _fast_blur(x, sigma)
        const = torch.rand(b, generator=gen) < 0.15
        if bool(const.any()):
            colour = torch.rand(b, 3, 1, 1, generator=gen).expand(b, 3, h, w)
            base = torch.where(const.view(b, 1, 1, 1), colour, base)
        m = _smooth_masks(b, h, w, gen) * ablate.view(b, 1, 1, 1).float()
        x = x + m * (base - x)
        area = ev.sum(dim=(1, 2, 3)).clamp_min(1.0)
        retained = 1.0 - (m * ev).sum(dim=(1, 2, 3)) / area
        r_eff = torch.sqrt(area / math.pi)
        destroyed = const | (sigma >= 0.4 * r_eff)
        w_abl = torch.clamp(retained / 0.35, 0.0, 1.0)
        weight = torch.where(ablate & destroyed, w_abl, weight)

    # evidence removed entirely
    removed = torch.rand(b, generator=gen) < cfg.p_removed
    x = torch.where(removed.view(b, 1, 1, 1), cf, x)
    weight = torch.where(removed, torch.zeros(b), weight)

    noise = 0.02 * torch.rand(b, 1, 1, 1, generator=gen)
    x = (x + noise * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)
    targets = weight[:, None] * onehot + (1.0 - weight[:, None]) * uniform
    return x.contiguous(), targets


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Softmax probabilities ``[N, K]`` of ``images [N, 3, H, W]`` (model put in eval mode)."""
    model.eval()
    out = [
        torch.softmax(model(images[i : i + batch_size]), dim=1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in ``[0, 1]`` of ``model`` on ``images [N, 3, H, W]``, ``labels [N]``."""
    if len(images) == 0:
        raise ValueError("cannot evaluate on an empty set")
    return float((predict(model, images).argmax(1) == labels).float().mean())


def train_classifier(
    model: nn.Module,
    images: Tensor,
    counterfactuals: Tensor,
    evidence: Tensor,
    labels: Tensor,
    num_classes: int,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
    val: tuple[Tensor, Tensor] | None = None,
) -> nn.Module:
    """Train ``model`` with AdamW + one-cycle LR and :func:`augment_batch`.

    Args:
        images: ``uint8`` or ``float32 [N, 3, H, W]`` (uint8 is scaled by 1/255).
        counterfactuals: same shape and dtype, evidence removed.
        evidence: ``bool [N, H, W]``.
        labels: ``int64 [N]``.
        num_classes: number of classes.
        cfg: see :class:`TrainConfig`.
        log: where progress lines go.
        val: optional ``(images, labels)`` evaluated after every epoch.

    Returns:
        the trained model in eval mode.
    """
    n = len(labels)
    if n == 0:
        raise ValueError("empty training set")
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2
    )

    def as_float(t: Tensor) -> Tensor:
        return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()

    t0 = time.time()
    for epoch in range(cfg.epochs):
        ramp = min(1.0, epoch / cfg.ramp_epochs) if cfg.ramp_epochs > 0 else 1.0
        cfg_epoch = dataclasses.replace(
            cfg, p_ablate=cfg.p_ablate * ramp, p_removed=cfg.p_removed * ramp
        )
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x, tgt = augment_batch(
                as_float(images[idx]),
                as_float(counterfactuals[idx]),
                evidence[idx],
                labels[idx],
                num_classes,
                cfg_epoch,
                gen,
            )
            loss = F.cross_entropy(model(x), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        msg = f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.4f} ({time.time() - t0:.0f} s)"
        if val is not None:
            msg += f" val acc {evaluate(model, val[0], val[1]):.4f}"
        log(msg)
    return model.eval()
