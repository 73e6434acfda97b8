"""Public entry points: :func:`explain`, the Captum-style :class:`AblationPath` and the
Quantus-style :func:`explain_func`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ablation_paths.baselines import Baseline, make_baseline
from ablation_paths.inputs import ClassifierFn, load_image, resolve_target
from ablation_paths.mask_spaces import MaskSpace, PixelMaskSpace
from ablation_paths.optimizer import (
    AUTO_REGULARIZATION,
    AblationPathConfig,
    evaluate_masks,
    optimize_paths,
    regularization_sigma,
)
from ablation_paths.paths import path_times, saturation
from ablation_paths.reductions import (
    average,
    class_transition,
    contrastive_average,
    influence,
)
from ablation_paths.result import AblationPathResult
from ablation_paths.scores import n_paths, orientation, score_terms, score_value

__all__ = ["explain", "AblationPath", "explain_func", "FEATURES"]

FEATURES = ("pixel", "sift")


def _model_device(model: object) -> torch.device | None:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return None


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


def _with_ends(path: Tensor) -> Tensor:
    zeros = torch.zeros_like(path[:1])
    return torch.cat([zeros, path, torch.ones_like(zeros)])


def _display_uint8(images: Tensor) -> Tensor:
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:  # e.g. normalised inputs: scale to the shown range
        images = (images - lo) / max(hi - lo, 1e-12)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def _build_space(
    features: str,
    image: Tensor,
    baseline: Baseline | None,
    cfg: AblationPathConfig,
    feature_options: dict[str, Any],
) -> MaskSpace:
    if features == "pixel":
        assert baseline is not None
        mask_size = cfg.resolved_mask_size(int(image.shape[1]), int(image.shape[2]))
        return PixelMaskSpace(
            image, baseline.image, mask_size, regularization_sigma(cfg, mask_size)
        )
    if features == "sift":
        from ablation_paths import sift

        mass_weighted = bool(feature_options.pop("mass_weighted", False))
        decomposition = sift.decompose(image, **feature_options)
        return sift.SiftMaskSpace(decomposition, mass_weighted=mass_weighted)
    raise ValueError(f"unknown features {features!r}; use one of {', '.join(FEATURES)}")


def explain(
    model: nn.Module | Callable[[Tensor], Tensor],
    image: Any,
    target: int | str | Tensor | None = None,
    *,
    score: str = "retain",
    baseline: Any = "blur",
    features: str = "pixel",
    transform: Callable[[Tensor], Tensor] | None = None,
    config: AblationPathConfig | None = None,
    class_names: Sequence[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    feature_options: dict[str, Any] | None = None,
    keep_frames: bool = True,
    **options: Any,
) -> AblationPathResult:
    """Explain ``model``'s decision for ``target`` on ``image`` with an optimised ablation path.

    Args:
        model: classifier returning logits ``[B, K]`` for images ``[B, C, H, W]``; must be in
            eval mode and differentiable.
        image: tensor ``[C, H, W]``, numpy array, PIL image or image file path. Files and PIL
            images become RGB in ``[0, 1]``.
        target: class index or name; ``None`` explains the predicted class.
        score: ``"retain"``, ``"dissipate"``, ``"contrastive"`` or ``"straddle"`` (thesis 2.3).
        baseline: ``"blur"`` (default, thesis 2.7.1), ``"blur:SIGMA"``, ``"black"``, ``"gray"``,
            ``"mean"``, a number, a tensor or an image. SIFT features use the implicit zero image.
        features: ``"pixel"`` (low-resolution pixel masks) or ``"sift"`` (SIFT feature gains).
        transform: preprocessing applied to images before the model (e.g. normalisation);
            masks are applied to the untransformed image.
        config: optimiser options; keyword ``options`` override single fields
            (e.g. ``n_steps=12``, ``regularization=0.05``, ``batch_size=8``).
        class_names: names of the ``K`` classes (for ``target`` by name and for reports).
        image_size: resize file / PIL inputs to this size.
        device: where to compute; default: the model's device.
        progress: show a progress bar.
        feature_options: options for the feature decomposition (SIFT parameters,
            ``mass_weighted``).
        keep_frames: store the images along the path in the result (for reports).

    Returns:
        An :class:`~ablation_paths.result.AblationPathResult`.
    """
    if (config is not None and config.regularization == "auto") or options.get(
        "regularization"
    ) == "auto":
        return _explain_auto_regularization(
            model,
            image,
            target,
            score=score,
            baseline=baseline,
            features=features,
            transform=transform,
            config=config,
            class_names=class_names,
            image_size=image_size,
            device=device,
            progress=progress,
            feature_options=feature_options,
            keep_frames=keep_frames,
            **options,
        )
    start = time.perf_counter()
    cfg = (
        (config or AblationPathConfig()).replace(**options)
        if options
        else (config or AblationPathConfig())
    )
    score_terms(score)  # validates the name
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; use one of {', '.join(FEATURES)}")
    classifier = ClassifierFn(model, transform)
    img = load_image(image, size=image_size)
    dev = torch.device(device) if device is not None else (_model_device(model) or img.device)
    if not torch.is_floating_point(img):
        img = img.float()
    img = img.to(dev)
    probs0 = classifier.probabilities(img.unsqueeze(0))
    tgt = resolve_target(target, probs0, class_names)
    n_classes = int(probs0.shape[1])
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(
            f"{len(class_names)} class names given but the model has {n_classes} classes"
        )

    base: Baseline | None = None
    if features == "pixel":
        base = make_baseline(baseline, classifier, img, batch_size=cfg.batch_size)
        if float((base.image - img).abs().max()) == 0.0:
            raise ValueError("the baseline is identical to the image; nothing can be ablated")
    elif baseline not in ("blur", None, "zero"):
        raise ValueError("SIFT features use the implicit all-zero baseline (thesis 4.3.1)")
    space = _build_space(features, img, base, cfg, dict(feature_options or {}))
    if base is None:
        base = Baseline(space.baseline, "zero")

    bar = _progress_bar(progress, cfg.max_iterations, f"ablation path ({score})")

    def on_step(it: int, stats: dict[str, float], paths: Tensor) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(score=f"{stats['path_score']:.3f}", sat=f"{stats['saturation']:.2f}")

    try:
        opt = optimize_paths(classifier, space, tgt, score, cfg, progress=on_step)
    finally:
        if bar is not None:
            bar.close()

    weights = space.weights()
    t_count = cfg.n_steps
    full = [_with_ends(p) for p in opt.paths]  # [T + 2, *mask_shape] each
    probs_paths = [evaluate_masks(classifier, space, f, tgt, None, cfg.batch_size)[0] for f in full]
    probs_complement = None
    term_probs = []
    for term in score_terms(score):
        if term.complement:
            probs_complement = evaluate_masks(
                classifier, space, 1.0 - full[term.path_index], tgt, None, cfg.batch_size
            )[0]
            p = probs_complement
        else:
            p = probs_paths[term.path_index]
        term_probs.append(p[:, tgt] if cfg.score_with_ends else p[1:-1, tgt])
    final_score = score_value(score, term_probs)
    sat = sum(saturation(p, weights) for p in opt.paths) / len(opt.paths)

    path = opt.paths[0]
    orient = orientation(score)
    maps = {
        "average": average(path, orient),
        "class_transition": class_transition(path, probs_paths[0][1:-1], tgt, orient),
        "influence": influence(path, probs_paths[0][:, tgt]),
    }
    if n_paths(score) == 2:
        maps["contrastive"] = contrastive_average(opt.paths[0], opt.paths[1])
    heatmaps = {k: space.to_image(v).float().cpu() for k, v in maps.items()}

    frames = masks_image = None
    if keep_frames:
        with torch.no_grad():
            frames = _display_uint8(space.apply(full[0]))
            masks_image = torch.stack([space.to_image(m) for m in full[0]])
            masks_image = (masks_image.clamp(0, 1) * 255).round().to(torch.uint8).cpu()

    names = list(class_names) if class_names is not None else None
    info: dict[str, Any] = {
        "config": asdict(cfg),
        "baseline": {
            "kind": base.kind,
            "sigma": base.sigma,
            "flips_class": base.flips_class,
            "note": base.note,
        },
        "mask_shape": list(space.mask_shape),
        "image_shape": list(img.shape),
        "device": str(dev),
        "wall_seconds": time.perf_counter() - start,
        "classifier_seconds": opt.classifier_seconds,
        "other_seconds": opt.other_seconds,
        "predicted": int(probs0[0].argmax()),
    }
    if features == "pixel":
        info["regularization_sigma_mask_px"] = regularization_sigma(cfg, space.mask_shape)
    return AblationPathResult(
        path=path.cpu(),
        times=path_times(t_count, dtype=path.dtype).cpu(),
        target=tgt,
        score=score,
        probs=probs_paths[0].float().cpu(),
        path_score=final_score,
        saturation=float(sat),
        iterations=opt.iterations,
        converged=opt.converged,
        stopped=opt.stopped,
        heatmaps=heatmaps,
        image=img.detach().cpu(),
        baseline_image=space.baseline.detach().cpu(),
        frames=frames,
        masks_image=masks_image,
        path_down=opt.paths[1].cpu() if len(opt.paths) == 2 else None,
        probs_down=probs_paths[1].float().cpu() if len(opt.paths) == 2 else None,
        probs_complement=None if probs_complement is None else probs_complement.float().cpu(),
        features=features,
        class_names=names,
        target_name=names[tgt] if names is not None else None,
        history=opt.history,
        info=info,
    )


def _explain_auto_regularization(
    model: Any, image: Any, target: Any, *, config: AblationPathConfig | None, **kwargs: Any
) -> AblationPathResult:
    """``regularization="auto"``: the weakest blur of :data:`AUTO_REGULARIZATION` whose path
    score is not pinned near its maximum (thesis 2.8.3), judged from path scores alone."""
    if kwargs.get("features", "pixel") != "pixel":
        raise ValueError("regularization='auto' applies to pixel masks only")
    kwargs.pop("regularization", None)
    cfg = config or AblationPathConfig()
    tried: dict[str, float] = {}
    result = None
    for blur in AUTO_REGULARIZATION:
        result = explain(model, image, target, config=cfg.replace(regularization=blur), **kwargs)
        tried[str(blur)] = result.path_score
        if not result.pinned:
            break
    assert result is not None
    result.info["regularization_auto"] = {
        "chosen": result.info["config"]["regularization"],
        "tried": tried,
        "all_pinned": result.pinned,
    }
    return result


def _as_batch(inputs: Tensor) -> Tensor:
    if inputs.dim() == 3:
        return inputs.unsqueeze(0)
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be [B, C, H, W] or [C, H, W], got {tuple(inputs.shape)}")
    return inputs


def _per_sample(value: Any, n: int, name: str) -> list[Any]:
    if value is None or isinstance(value, (int, str, np.integer)):
        return [value] * n
    if isinstance(value, Tensor) and value.dim() == 0:
        return [int(value)] * n
    seq = list(value.tolist() if isinstance(value, (Tensor, np.ndarray)) else value)
    if len(seq) != n:
        raise ValueError(f"{name} has {len(seq)} entries for {n} inputs")
    return seq


class AblationPath:
    """Captum-style attribution with optimised ablation paths.

    >>> ap = AblationPath(model)
    >>> attributions = ap.attribute(images, target=labels)  # [B, C, H, W]

    Args:
        forward_func: the classifier (logits), in eval mode.
        transform: optional preprocessing before the model.
    """

    def __init__(
        self,
        forward_func: nn.Module | Callable[[Tensor], Tensor],
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.forward_func = forward_func
        self.transform = transform
        self.results: list[AblationPathResult] = []

    def attribute(
        self,
        inputs: Tensor,
        target: int | Sequence[int] | Tensor | np.ndarray | None = None,
        baselines: Tensor | float | str | None = None,
        internal_batch_size: int | None = None,
        *,
        score: str = "retain",
        reduction: str | None = None,
        window: bool = False,
        **options: Any,
    ) -> Tensor:
        """Per-pixel attributions shaped like ``inputs`` (the heatmap repeated over channels).

        Args:
            inputs: ``[B, C, H, W]`` (or one image ``[C, H, W]``).
            target: one class for all, one per input, or ``None`` for the predicted classes.
            baselines: ``None`` (blurred baseline), a scalar, a baseline name, or a tensor
                shaped like ``inputs`` (or one image).
            internal_batch_size: images per classifier call (bounds memory).
            score: score function; ``reduction``: heatmap reduction (default: the score's
                natural one); ``window``: apply the boundary window; other options go to
                :class:`AblationPathConfig`.

        Returns:
            Tensor shaped like ``inputs`` on the inputs' device and dtype; the results are kept
            in ``self.results``.
        """
        batch = _as_batch(inputs)
        targets = _per_sample(target, batch.shape[0], "target")
        if isinstance(baselines, Tensor) and baselines.dim() >= 3:
            bl = _as_batch(baselines)
            if bl.shape[0] == 1:
                bl = bl.expand(batch.shape[0], *bl.shape[1:])
            if bl.shape != batch.shape:
                raise ValueError(
                    f"baselines shape {tuple(bl.shape)} does not match inputs {tuple(batch.shape)}"
                )
            bls: list[Any] = list(bl)
        else:
            bls = [baselines if baselines is not None else "blur"] * batch.shape[0]
        if internal_batch_size is not None:
            options["batch_size"] = internal_batch_size
        self.results = []
        out = torch.empty_like(batch)
        for i in range(batch.shape[0]):
            res = explain(
                self.forward_func,
                batch[i].detach(),
                targets[i],
                score=score,
                baseline=bls[i],
                transform=self.transform,
                keep_frames=False,
                **options,
            )
            self.results.append(res)
            h = res.heatmap(reduction, window=window).to(device=batch.device, dtype=batch.dtype)
            out[i] = h.unsqueeze(0).expand_as(batch[i])
        return out if inputs.dim() == 4 else out[0]


def explain_func(
    model: nn.Module | Callable[[Tensor], Tensor],
    inputs: np.ndarray | Tensor,
    targets: np.ndarray | Tensor | Sequence[int] | int | None,
    **kwargs: Any,
) -> np.ndarray:
    """Quantus-style explanation function: returns heatmaps ``[B, 1, H, W]`` as a numpy array.

    ``kwargs`` may hold ``score``, ``reduction``, ``window``, ``baseline``, ``device`` and any
    :class:`AblationPathConfig` field; unknown Quantus keywords (``channel_first``,
    ``method``, ``abs``, ...) are ignored.
    """
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    x = _as_batch(x.float())
    device = kwargs.pop("device", None)
    if device is not None:
        x = x.to(device)
    elif (d := _model_device(model)) is not None:
        x = x.to(d)
    config_fields = set(asdict(AblationPathConfig()))
    options = {k: v for k, v in kwargs.items() if k in config_fields}
    explainer = AblationPath(model)
    attr = explainer.attribute(
        x,
        target=targets,
        baselines=kwargs.get("baseline"),
        score=kwargs.get("score", "retain"),
        reduction=kwargs.get("reduction"),
        window=bool(kwargs.get("window", False)),
        **options,
    )
    return attr[:, :1].detach().cpu().numpy()
