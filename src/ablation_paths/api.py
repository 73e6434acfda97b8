"""Public entry points: :func:`explain`, the Captum-style :class:`AblationPath` and the
Quantus-style :func:`explain_func`. They check their arguments and hand over to the stages of
:mod:`ablation_paths.pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ablation_paths.devices import model_device
from ablation_paths.inputs import ImageLike
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.options import check_known
from ablation_paths.pipeline import ExplainRequest, run
from ablation_paths.result import AblationPathResult

__all__ = ["explain", "AblationPath", "explain_func", "QUANTUS_IGNORED"]

#: Keywords Quantus passes (or documents) for its own explainers; :func:`explain_func` accepts
#: and ignores them (``channel_first=False`` is honoured: inputs ``[B, H, W, C]``).
QUANTUS_IGNORED = frozenset(
    {
        "method",
        "xai_lib",
        "attributor",
        "xai_lib_kwargs",
        "softmax",
        "channel_first",
        "reduce_axes",
        "keepdims",
    }
)
#: :func:`explain_func`'s own keywords besides the :class:`AblationPathConfig` fields.
_EXPLAIN_FUNC_KEYS = frozenset({"score", "reduction", "window", "baseline", "device"})


def _config(config: AblationPathConfig | None, options: dict[str, Any]) -> AblationPathConfig:
    """``config`` (default: the defaults) with single fields overridden by ``options``."""
    check_known(options, [f.name for f in fields(AblationPathConfig)], "option")
    cfg = config or AblationPathConfig()
    return cfg.replace(**options) if options else cfg


def explain(
    model: nn.Module | Callable[[Tensor], Tensor],
    image: ImageLike,
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
        score: ``"retain"``, ``"dissipate"``, ``"contrastive"`` or ``"straddle"`` (thesis 2.3;
            :data:`ablation_paths.scores.SCORES`).
        baseline: ``"blur"`` (default, thesis 2.7.1), ``"blur:SIGMA"``, ``"black"``, ``"gray"``,
            ``"mean"``, a number, a tensor or an image. SIFT features use the implicit zero image.
        features: a registered mask space (:func:`ablation_paths.mask_spaces.mask_space_names`):
            ``"pixel"`` (low-resolution pixel masks), ``"sift"`` (SIFT feature gains), ...
        transform: preprocessing applied to images before the model (e.g. normalisation);
            masks are applied to the untransformed image.
        config: optimiser options; keyword ``options`` override single fields
            (e.g. ``n_steps=12``, ``regularization=0.05``, ``batch_size=8``); an unknown name is
            an :class:`~ablation_paths.options.UnknownOptionError`.
        class_names: names of the ``K`` classes (for ``target`` by name and for reports).
        image_size: resize file / PIL inputs to this size.
        device: where to compute; default: the model's device.
        progress: show a progress bar.
        feature_options: options of the mask space (SIFT parameters, ``mass_weighted``).
        keep_frames: store the images along the path in the result (for reports).

    Returns:
        An :class:`~ablation_paths.result.AblationPathResult`; the warnings it raised are in
        ``result.info["warnings"]``.
    """
    request = ExplainRequest(
        score=score,
        baseline=baseline,
        features=features,
        config=_config(config, options),
        feature_options=dict(feature_options or {}),
        transform=transform,
        class_names=class_names,
        image_size=image_size,
        device=device,
        progress=progress,
        keep_frames=keep_frames,
    )
    return run(model, image, target, request)


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
    >>> attributions = ap.attribute(images, baselines, labels)  # Captum's argument order

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
        inputs: Tensor | tuple[Tensor],
        baselines: Tensor | float | str | tuple[Any] | None = None,
        target: int | Sequence[int] | Tensor | np.ndarray | None = None,
        additional_forward_args: Any = None,
        internal_batch_size: int | None = None,
        *,
        show_progress: bool = False,
        return_convergence_delta: bool = False,
        score: str = "retain",
        reduction: str | None = None,
        window: bool = False,
        **options: Any,
    ) -> Tensor | tuple[Tensor]:
        """Per-pixel attributions shaped like ``inputs`` (the heatmap repeated over channels).

        The arguments follow Captum's perturbation methods (``inputs, baselines, target,
        additional_forward_args``, then ``internal_batch_size`` and ``show_progress``).

        Args:
            inputs: ``[B, C, H, W]`` (or one image ``[C, H, W]``), or a 1-tuple holding it
                (the attributions are then a 1-tuple too, as in Captum); several input tensors
                per example are not supported.
            baselines: ``None`` (blurred baseline, not Captum's zeros), a scalar, a baseline
                name, or a tensor shaped like ``inputs`` (or one image); or a 1-tuple of these.
            target: one class for all, one per input, or ``None`` for the predicted classes.
            additional_forward_args: extra arguments passed to the model after the images, as
                in Captum (``model(images, *args)``); they are passed unchanged to every batch of
                path images, so per-example tensors are not supported (an error says so).
            internal_batch_size: images per classifier call (bounds memory).
            show_progress: a progress bar per input.
            return_convergence_delta: must be ``False``: ablation paths have no convergence
                delta (``has_convergence_delta()`` is ``False`` in the Captum subclass).
            score: score function; ``reduction``: heatmap reduction (default: the score's
                natural one); ``window``: apply the boundary window; other options go to
                :class:`AblationPathConfig`.

        Returns:
            Tensor shaped like ``inputs`` on the inputs' device and dtype (a 1-tuple for a
            1-tuple input); the results are kept in ``self.results``.
        """
        if return_convergence_delta:
            raise ValueError(
                "return_convergence_delta=True: ablation paths have no convergence delta "
                "(has_convergence_delta() is False); call attribute without it"
            )
        if isinstance(inputs, tuple):
            images, baseline = _one_tensor(inputs, baselines)
            inner = self.attribute(
                images,
                baseline,
                target,
                additional_forward_args,
                internal_batch_size,
                show_progress=show_progress,
                score=score,
                reduction=reduction,
                window=window,
                **options,
            )
            assert isinstance(inner, Tensor)
            return (inner,)
        batch = _as_batch(inputs)
        targets = _per_sample(target, batch.shape[0], "target")
        forward = _with_forward_args(self.forward_func, additional_forward_args, batch.shape[0])
        bls = _per_sample_baselines(baselines, batch)
        options["score"] = score
        if internal_batch_size is not None:
            options["batch_size"] = internal_batch_size
        self._explain_each(batch, targets, bls, forward, show_progress, options)
        out = torch.empty_like(batch)
        for i, res in enumerate(self.results):
            h = res.heatmap(reduction, window=window).to(device=batch.device, dtype=batch.dtype)
            out[i] = h.unsqueeze(0).expand_as(batch[i])
        return out if inputs.dim() == 4 else out[0]

    def _explain_each(
        self,
        batch: Tensor,
        targets: list[Any],
        baselines: list[Any],
        forward: nn.Module | Callable[[Tensor], Tensor],
        progress: bool,
        options: dict[str, Any],
    ) -> None:
        """:func:`explain` for each image of ``batch`` ``[B, C, H, W]``, into ``self.results``."""
        self.results = [
            explain(
                forward,
                batch[i].detach(),
                targets[i],
                baseline=baselines[i],
                transform=self.transform,
                keep_frames=False,
                progress=progress,
                **options,
            )
            for i in range(batch.shape[0])
        ]


def _one_tensor(inputs: tuple[Any, ...], baselines: Any) -> tuple[Tensor, Any]:
    """Captum's tuple form with one input tensor: ``((batch,), (baseline,))`` -> ``(batch,
    baseline)``; several tensors per example are refused."""
    if len(inputs) != 1 or not isinstance(inputs[0], Tensor):
        raise TypeError(
            f"AblationPath explains one image tensor per example; tuple inputs with "
            f"{len(inputs)} entries are not supported (a 1-tuple (images,) is)"
        )
    return inputs[0], baselines


def _per_sample_baselines(baselines: Any, batch: Tensor) -> list[Any]:
    """One baseline per image of ``batch`` ``[B, C, H, W]``: a tensor shaped like the batch (or
    one image, broadcast) is split, anything else is repeated (``None`` -> ``"blur"``). A
    1-tuple is Captum's form of one baseline (``NoiseTunnel`` passes that)."""
    if isinstance(baselines, tuple):
        if len(baselines) != 1:
            raise TypeError(
                f"baselines: a tuple of {len(baselines)} entries; one image tensor per example "
                f"takes one baseline (or a 1-tuple of it)"
            )
        baselines = baselines[0]
    if isinstance(baselines, Tensor) and baselines.dim() >= 3:
        bl = _as_batch(baselines)
        if bl.shape[0] == 1:
            bl = bl.expand(batch.shape[0], *bl.shape[1:])
        if bl.shape != batch.shape:
            raise ValueError(
                f"baselines shape {tuple(bl.shape)} does not match inputs {tuple(batch.shape)}"
            )
        return list(bl)
    return [baselines if baselines is not None else "blur"] * batch.shape[0]


def _with_forward_args(
    model: nn.Module | Callable[[Tensor], Tensor], args: Any, n_inputs: int
) -> nn.Module | Callable[[Tensor], Tensor]:
    """``model`` itself, or a callable ``x -> model(x, *args)`` (Captum's
    ``additional_forward_args``). Tensors with one row per input cannot follow the path images'
    batches, so they are refused with a clear message."""
    if args is None:
        return model
    extra = args if isinstance(args, tuple) else (args,)
    for a in extra:
        if isinstance(a, Tensor) and a.dim() > 0 and n_inputs > 1 and a.shape[0] == n_inputs:
            raise ValueError(
                "additional_forward_args with one row per input are not supported: call "
                "attribute once per input, or pass arguments shared by all inputs"
            )
    if isinstance(model, nn.Module) and model.training:  # the wrapper would hide this check
        raise ValueError("model is in training mode: call model.eval() before explaining")

    def forward(x: Tensor) -> Tensor:
        return model(x, *extra)

    return forward


def explain_func(
    model: nn.Module | Callable[[Tensor], Tensor],
    inputs: np.ndarray | Tensor,
    targets: np.ndarray | Tensor | Sequence[int] | int | None,
    **kwargs: Any,
) -> np.ndarray:
    """Quantus-style explanation function: returns heatmaps ``[B, 1, H, W]`` as a numpy array.

    ``kwargs`` may hold ``score``, ``reduction``, ``window``, ``baseline``, ``device`` and any
    :class:`AblationPathConfig` field; the keywords Quantus passes to its own explainers
    (:data:`QUANTUS_IGNORED`) are accepted and ignored, except ``channel_first=False``, which
    reads ``inputs`` as ``[B, H, W, C]``. Any other name is an error (a ``ValueError``
    naming it and the closest known keyword), so a typo never silently changes nothing.
    """
    config_fields = {f.name for f in fields(AblationPathConfig)}
    allowed = config_fields | _EXPLAIN_FUNC_KEYS | QUANTUS_IGNORED
    check_known(kwargs, allowed, "explain_func keyword")
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    if kwargs.get("channel_first") is False and x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    x = _as_batch(x.float())
    device = kwargs.get("device")
    x = x.to(device if device is not None else (model_device(model) or x.device))
    attr = AblationPath(model).attribute(
        x,
        target=targets,
        baselines=kwargs.get("baseline"),
        score=kwargs.get("score", "retain"),
        reduction=kwargs.get("reduction"),
        window=bool(kwargs.get("window", False)),
        **{k: v for k, v in kwargs.items() if k in config_fields},
    )
    assert isinstance(attr, Tensor)  # a tensor in, a tensor out
    return attr[:, :1].detach().cpu().numpy()
