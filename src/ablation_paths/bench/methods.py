"""Saliency methods behind one interface, with a registry of names.

Every method is a callable ``(model, image [3, H, W], target: int, options: MethodOptions) ->
heatmap [H, W]`` (larger = more important for ``target``); it may instead return an
:class:`Explanation` carrying extra diagnostics (e.g. an ablation path's score). The options of the
configurable methods (ablation paths, Extremal Perturbation) travel as the :class:`MethodOptions`
argument, never as module state. :func:`compute` runs a method by name and checks the result.
Registered names (see :func:`available_methods`):

* ``ap-retain``, ``ap-dissipate``, ``ap-contrastive`` (class-transition heatmap) and
  ``ap-straddle`` (contrastive average): ablation paths with each score's natural reduction
  (thesis 2.7.2); a ``-win`` suffix applies the boundary window of eq. 2.37. ``ap-sift``
  (and ``ap-sift-win``): ablation paths over SIFT features (retaining score).
* ``ig``, ``saliency``, ``gradcam``, ``occlusion``: Captum.
* ``rise`` (:mod:`.rise`), ``sift-rise`` (RISE over SIFT features, :mod:`ablation_paths.sift`),
  ``extremal`` (:mod:`.extremal`).
* ``centre`` (a centred Gaussian) and ``random`` (seeded noise): baselines every real method must
  beat.

Paths are cached per (model, image, target, score, options), so a windowed variant run after its
plain twin reuses the same optimised path; the cached wall time is reported for both.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablation_paths._optional import require
from ablation_paths.devices import model_device
from ablation_paths.result import AblationPathResult
from ablation_paths.scores import SCORES

__all__ = [
    "Explanation",
    "Method",
    "MethodOptions",
    "MethodSpec",
    "available_methods",
    "compute",
    "get_method",
    "register",
]


@dataclass
class Explanation:
    """A heatmap ``[H, W]`` plus JSON-friendly diagnostics.

    ``seconds`` overrides the measured wall time (used when a cached path is reused, so each
    method reports what it would cost on its own).
    """

    heatmap: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class MethodOptions:
    """Options of the configurable methods, passed with every call.

    Attributes:
        ablation_path: keywords for :func:`ablation_paths.explain` in every ``ap-*`` method
            (e.g. ``{"regularization": 0.05}``).
        extremal: :class:`~ablation_paths.bench.extremal.ExtremalConfig` overrides
            (e.g. ``{"max_iter": 100}``).
    """

    ablation_path: Mapping[str, Any] = field(default_factory=dict)
    extremal: Mapping[str, Any] = field(default_factory=dict)


class Method(Protocol):
    """``(model, image [3, H, W], target, options) -> heatmap [H, W]`` or an
    :class:`Explanation`."""

    def __call__(
        self, model: nn.Module, image: Tensor, target: int, options: MethodOptions
    ) -> Tensor | Explanation: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, callable, family and a one-line description."""

    name: str
    fn: Method
    family: str
    description: str


_REGISTRY: dict[str, MethodSpec] = {}


def register(name: str, family: str, description: str) -> Callable[[Method], Method]:
    """Decorator adding a method to the registry under ``name``."""

    def deco(fn: Method) -> Method:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodSpec(name, fn, family, description)
        return fn

    return deco


def available_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    return list(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; ``ValueError`` lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(available_methods())}"
        ) from None


def compute(
    name: str,
    model: nn.Module,
    image: Tensor,
    target: int,
    options: MethodOptions | None = None,
) -> Explanation:
    """Run method ``name`` (with ``options``, default none) and return a checked
    :class:`Explanation` with ``seconds`` set.

    The heatmap is detached, ``float32``, on the CPU, of shape ``[H, W]`` and free of NaNs.
    """
    spec = get_method(name)
    if image.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got {tuple(image.shape)}")
    start = time.perf_counter()
    out = spec.fn(model, image, int(target), options or MethodOptions())
    elapsed = time.perf_counter() - start
    exp = out if isinstance(out, Explanation) else Explanation(out)
    h = exp.heatmap.detach().float().cpu()
    if h.shape != image.shape[-2:]:
        raise ValueError(
            f"method {name!r} returned a heatmap of shape {tuple(h.shape)}, expected "
            f"{tuple(image.shape[-2:])}"
        )
    if torch.isnan(h).any():
        raise ValueError(f"method {name!r} returned NaNs")
    exp.heatmap = h
    if exp.seconds is None:
        exp.seconds = elapsed
    return exp


def _device_of(model: nn.Module) -> torch.device:
    return model_device(model) or torch.device("cpu")


def _batch(model: nn.Module, image: Tensor) -> Tensor:
    return image.detach().to(_device_of(model)).unsqueeze(0)


# ----------------------------------------------------------------------------- ablation paths

_PATH_CACHE: OrderedDict[tuple[Any, ...], tuple[Any, float]] = OrderedDict()
_CACHE_SIZE = 8


def _image_key(image: Tensor) -> str:
    data = image.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def ablation_path_result(
    model: nn.Module, image: Tensor, target: int, score: str, **options: Any
) -> tuple[AblationPathResult, float]:
    """``(result, seconds)`` for one path (``options``: :func:`ablation_paths.explain`
    keywords), from the cache when possible."""
    from ablation_paths import explain

    opts = dict(options)
    key = (id(model), _image_key(image), target, score, tuple(sorted(opts.items(), key=str)))
    if key in _PATH_CACHE:
        _PATH_CACHE.move_to_end(key)
        return _PATH_CACHE[key]
    start = time.perf_counter()
    res = explain(model, image.detach().to(_device_of(model)), target, score=score, **opts)
    value = (res, time.perf_counter() - start)
    _PATH_CACHE[key] = value
    while len(_PATH_CACHE) > _CACHE_SIZE:
        _PATH_CACHE.popitem(last=False)
    return value


def _path_info(res: AblationPathResult) -> dict[str, Any]:
    return {
        "path_score": float(res.path_score),
        "saturation": float(res.saturation),
        "converged": bool(res.converged),
        "iterations": int(res.iterations),
        "pinned": bool(res.pinned),
    }


def _make_ap(score: str, window: bool, reduction: str | None = None, **fixed: Any) -> Method:
    def method(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Explanation:
        opts = {**options.ablation_path, **fixed}
        res, seconds = ablation_path_result(model, image, target, score, **opts)
        return Explanation(res.heatmap(reduction, window=window), _path_info(res), seconds)

    return method


for _score in SCORES:
    for _win in (False, True):
        _name = f"ap-{_score}" + ("-win" if _win else "")
        _red = "contrastive average" if _score == "straddle" else "class transition"
        register(
            _name,
            "ablation path",
            f"ablation path, {_score} score, {_red}" + (", boundary window" if _win else ""),
        )(_make_ap(_score, _win))

for _win in (False, True):
    register(
        "ap-sift" + ("-win" if _win else ""),
        "ablation path",
        "ablation path over SIFT features, retain score, class transition"
        + (", boundary window" if _win else ""),
    )(_make_ap("retain", _win, features="sift"))


# ----------------------------------------------------------------------------- Captum methods


def _last_conv(model: nn.Module) -> nn.Module:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a model with at least one nn.Conv2d layer")
    return convs[-1]


@register("ig", "gradient", "Integrated Gradients (Captum), black baseline, 32 steps")
def integrated_gradients(
    model: nn.Module, image: Tensor, target: int, options: MethodOptions
) -> Tensor:
    IntegratedGradients = require("captum.attr", extra="bench").IntegratedGradients

    x = _batch(model, image)
    attr = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=32, internal_batch_size=32
    )
    return attr[0].sum(0)


@register("saliency", "gradient", "gradient magnitude (Captum Saliency), max over channels")
def gradient_saliency(
    model: nn.Module, image: Tensor, target: int, options: MethodOptions
) -> Tensor:
    Saliency = require("captum.attr", extra="bench").Saliency

    attr = Saliency(model).attribute(_batch(model, image), target=target, abs=True)
    return attr[0].max(0).values


@register("gradcam", "gradient", "Grad-CAM (Captum) on the last conv layer, bilinear upsampling")
def grad_cam(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Tensor:
    attr = require("captum.attr", extra="bench")
    LayerAttribution, LayerGradCam = attr.LayerAttribution, attr.LayerGradCam

    x = _batch(model, image)
    attr = LayerGradCam(model, _last_conv(model)).attribute(
        x, target=target, relu_attributions=True
    )
    up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return up[0, 0]


@register("occlusion", "perturbation", "Occlusion (Captum), window 1/8, stride 1/16 of the side")
def occlusion(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Tensor:
    Occlusion = require("captum.attr", extra="bench").Occlusion

    x = _batch(model, image)
    side = max(x.shape[-2:])
    win, stride = max(2, side // 8), max(1, side // 16)
    attr = Occlusion(model).attribute(
        x,
        target=target,
        sliding_window_shapes=(x.shape[1], win, win),
        strides=(x.shape[1], stride, stride),
        baselines=0.0,
        perturbations_per_eval=32,
    )
    return attr[0].mean(0)


# ----------------------------------------------------------------------------- perturbation


@register("rise", "perturbation", "RISE, 2000 masks, 8x8 grid, p = 0.5")
def rise_method(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Tensor:
    from ablation_paths.bench.rise import rise

    return rise(model, image.detach().to(_device_of(model)), target, n_masks=2000)


#: Number of random gain vectors of the ``sift-rise`` method. Fewer than pixel RISE's 2000 masks
#: because decoding SIFT gains costs more than masking pixels (128 px scenes: 3-383 features).
SIFT_RISE_SAMPLES = 1000


@register("sift-rise", "perturbation", "RISE over SIFT features, 1000 samples, p = 0.5")
def sift_rise_method(
    model: nn.Module, image: Tensor, target: int, options: MethodOptions
) -> Explanation:
    """RISE with whole SIFT features switched on or off (:func:`ablation_paths.sift.sift_rise`),
    drawn as a Voronoi-field heatmap; the feature decomposition is timed with the method."""
    from ablation_paths.sift import decompose, sift_rise, sift_rise_heatmap

    dec = decompose(image.detach().float().to(_device_of(model)))
    g = torch.Generator(device=dec.device).manual_seed(0)
    saliency = sift_rise(
        model, dec, target, n_samples=SIFT_RISE_SAMPLES, p_keep=0.5, batch_size=100, generator=g
    )
    heat = sift_rise_heatmap(dec, saliency)
    return Explanation(heat, {"n_features": int(dec.num_features)})


@register("extremal", "perturbation", "Extremal Perturbation (own implementation), 4 areas")
def extremal_method(
    model: nn.Module, image: Tensor, target: int, options: MethodOptions
) -> Explanation:
    from dataclasses import replace

    from ablation_paths.bench.extremal import ExtremalConfig, extremal_perturbation

    cfg = replace(ExtremalConfig(), **options.extremal)
    h = extremal_perturbation(model, image.detach().to(_device_of(model)), target, cfg)
    return Explanation(h, {"max_iter": cfg.max_iter})


# ----------------------------------------------------------------------------- baselines


@register("centre", "baseline", "centred Gaussian (sigma = side / 4); ignores the model")
def centre(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Tensor:
    h, w = int(image.shape[-2]), int(image.shape[-1])
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    s = max(h, w) / 4
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2) / s**2)


@register("random", "baseline", "smoothed uniform noise seeded by the image; ignores the model")
def random_map(model: nn.Module, image: Tensor, target: int, options: MethodOptions) -> Tensor:
    seed = zlib.crc32(image.detach().float().cpu().numpy().tobytes()) ^ target
    g = torch.Generator().manual_seed(seed)
    h, w = int(image.shape[-2]), int(image.shape[-1])
    coarse = torch.rand(1, 1, max(2, h // 8), max(2, w // 8), generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
