"""Mask spaces: how a mask is applied to an image, and the registry of named spaces.

This is the one seam between the optimiser and the feature representation (thesis 2.1.1 "Masks",
4.3). The optimiser works on paths ``[T, *mask_shape]`` with values in ``[0, 1]`` where ``1`` means
"removed" and only ever calls the methods of :class:`MaskSpace`, so pixel masks and SIFT feature
gains plug in the same way.

A *registered* mask space is a name (``features="pixel"``, ``--features sift``) bound to a
:class:`MaskSpaceFactory`: it resolves its baseline (:meth:`~MaskSpaceFactory.make_baseline`),
builds itself for one image (:meth:`~MaskSpaceFactory.build`), says which ``feature_options`` it
accepts and which optimiser options it ignores, and rebuilds itself from a saved result for the
report (:meth:`~MaskSpaceFactory.from_result`). A :class:`MaskSpace` subclass is its own
factory, so a new space is one class in one file::

    @register_mask_space("grid")
    class GridMaskSpace(MaskSpace):
        options = ("cells",)
        ...  # __init__, apply, to_image, build (and optionally from_result)

Built in: ``"pixel"`` (:mod:`ablation_paths.pixel_space`) and ``"sift"``
(:mod:`ablation_paths.sift.mask_space`, imported on first use). Installed packages can offer
more through the ``ablation_paths.mask_spaces`` entry-point group (``NAME = "module"``).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from ablation_paths.diagnostics import IgnoredOptionWarning
from ablation_paths.options import check_known

if TYPE_CHECKING:
    from ablation_paths.baselines import Baseline
    from ablation_paths.inputs import ClassifierFn
    from ablation_paths.optimizer import AblationPathConfig
    from ablation_paths.pixel_space import PixelMaskSpace
    from ablation_paths.result import AblationPathResult

__all__ = [
    "MaskSpace",
    "MaskSpaceFactory",
    "PixelMaskSpace",
    "register_mask_space",
    "get_mask_space",
    "mask_space_names",
    "feature_options",
    "with_ends",
    "display_uint8",
    "path_images",
    "frames_for_result",
    "images_for_result",
]


class MaskSpaceFactory:
    """How a registered mask space is made; the defaults suit spaces that blend the image with
    an image baseline.

    Attributes:
        options: names of the ``feature_options`` the space accepts (others are an error).
        ignored_config: :class:`~ablation_paths.AblationPathConfig` fields without effect in
            this space (changing them from the default gives an ``IgnoredOptionWarning``).
    """

    options: ClassVar[tuple[str, ...]] = ()
    ignored_config: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def make_baseline(
        cls, image: Tensor, classifier: ClassifierFn, spec: Any, config: AblationPathConfig
    ) -> Baseline:
        """The baseline ``[C, H, W]`` for ``spec`` (see :func:`ablation_paths.baselines.
        make_baseline`); an error when it equals the image (nothing could be ablated)."""
        from ablation_paths.baselines import make_baseline

        base = make_baseline(spec, classifier, image, batch_size=config.batch_size)
        if float((base.image - image).abs().max()) == 0.0:
            raise ValueError("the baseline is identical to the image; nothing can be ablated")
        return base

    @classmethod
    def build(
        cls,
        image: Tensor,
        baseline: Baseline,
        config: AblationPathConfig,
        options: Mapping[str, Any],
    ) -> MaskSpace:
        """The space for ``image`` ``[C, H, W]`` and ``baseline``, with checked ``options``."""
        raise NotImplementedError(f"{cls.__name__} does not implement build()")

    @classmethod
    def from_result(cls, result: AblationPathResult) -> MaskSpace | None:
        """Rebuild the space from a saved result (for the report); ``None`` if it cannot."""
        return None


class MaskSpace(MaskSpaceFactory, abc.ABC):
    """Abstract mask space (and, through :class:`MaskSpaceFactory`, its own factory).

    Subclasses define ``mask_shape`` (shape of one mask, e.g. ``(h, w)`` for pixels or ``(K,)`` for
    features) and :meth:`apply`. ``target`` and ``baseline`` are the images ``[C, H, W]`` that the
    masks ``0`` (all kept) and ``1`` (all removed) produce.
    """

    mask_shape: tuple[int, ...]
    target: Tensor
    baseline: Tensor

    @abc.abstractmethod
    def apply(self, masks: Tensor) -> Tensor:
        """Apply masks ``[B, *mask_shape]`` and return images ``[B, C, H, W]``.

        Must be differentiable with respect to ``masks``.
        """

    def regularize(self, masks: Tensor) -> Tensor:
        """Smooth a batch of masks ``[B, *mask_shape]`` (thesis eq. 2.24). Identity by default."""
        return masks

    def weights(self) -> Tensor | None:
        """Per-feature mass weights ``[*mask_shape]`` summing to 1 for the constant-speed metric.

        ``None`` means the plain mean (thesis 2.2 "Constant speed"; weighted variant 4.3.3).
        """
        return None

    @abc.abstractmethod
    def to_image(self, values: Tensor) -> Tensor:
        """Turn a per-feature map ``[*mask_shape]`` into an image-resolution heatmap ``[H, W]``."""

    def extra_heatmaps(self, path: Tensor, probs: Tensor, target: int) -> dict[str, Tensor]:
        """Space-specific heatmaps ``{name: [H, W]}`` at image resolution, added to the result's
        heatmaps. ``path``: interior samples ``[T, *mask_shape]``; ``probs``: ``[T + 2, K]``
        along the path, ends included. None by default."""
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-friendly facts about this space for ``result.info`` (none by default)."""
        return {}

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.target.shape[-2]), int(self.target.shape[-1])


# ----------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, type[MaskSpaceFactory]] = {}
#: Built-in spaces, registered when their module is first imported.
_BUILTIN = {"pixel": "ablation_paths.pixel_space", "sift": "ablation_paths.sift.mask_space"}
#: Entry-point group through which installed packages offer mask spaces: ``NAME = "module"``,
#: the module registering ``NAME`` when imported (so ``--features NAME`` finds it).
ENTRY_POINT_GROUP = "ablation_paths.mask_spaces"


def _modules() -> dict[str, str]:
    """Where the not yet imported spaces live: built-ins and installed plugins."""
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**plugins, **_BUILTIN}


F = TypeVar("F", bound=type[MaskSpaceFactory])


def register_mask_space(name: str) -> Callable[[F], F]:
    """Class decorator registering a :class:`MaskSpaceFactory` (usually a :class:`MaskSpace`
    subclass) as ``features=name``; a name can be registered once."""

    def deco(factory: F) -> F:
        if not (isinstance(factory, type) and issubclass(factory, MaskSpaceFactory)):
            raise TypeError(f"mask space {name!r} must be a MaskSpaceFactory subclass")
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"mask space {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def mask_space_names() -> list[str]:
    """Names of the built-in, installed (entry points) and registered mask spaces."""
    return list(dict.fromkeys([*_BUILTIN, *_modules(), *_REGISTRY]))


def get_mask_space(name: str) -> type[MaskSpaceFactory]:
    """The factory registered as ``name``; ``ValueError`` lists the known names."""
    modules = _modules() if name not in _REGISTRY else {}
    if name in modules:
        importlib.import_module(modules[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown features {name!r}; use one of {', '.join(mask_space_names())}")
    return _REGISTRY[name]


def feature_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``options`` against what space ``name`` accepts: unknown names raise
    :class:`~ablation_paths.options.UnknownOptionError`; options for a space that takes none
    are ignored with an ``IgnoredOptionWarning``."""
    import warnings

    given = dict(options or {})
    factory = get_mask_space(name)
    if given and not factory.options:
        warnings.warn(
            f"{name} features take no feature_options; ignored: {', '.join(sorted(given))}",
            IgnoredOptionWarning,
            stacklevel=5,
        )
        return {}
    check_known(given, factory.options, f"feature option for {name} features")
    return given


# ----------------------------------------------------------------------------- frames


def with_ends(path: Tensor) -> Tensor:
    """Interior samples ``[T, *mask_shape]`` -> ``[T + 2, *mask_shape]`` with the fixed ends
    ``phi(0) = 0`` and ``phi(1) = 1``."""
    zeros = torch.zeros_like(path[:1])
    return torch.cat([zeros, path, torch.ones_like(zeros)])


def display_uint8(images: Tensor) -> Tensor:
    """Images ``[B, C, H, W]`` as uint8 on the CPU: ``[0, 1]`` -> ``0..255``; images that leave
    ``[0, 1]`` (e.g. normalised inputs) are scaled from their own value range."""
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        images = (images - lo) / max(hi - lo, 1e-12)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def path_images(space: MaskSpace, path: Tensor) -> tuple[Tensor, Tensor]:
    """Frames ``[T + 2, C, H, W]`` and masks ``[T + 2, H, W]`` (uint8, CPU) along a path of
    interior samples ``[T, *mask_shape]``, ends included."""
    full = with_ends(path)
    with torch.no_grad():
        frames = display_uint8(space.apply(full))
        masks = torch.stack([space.to_image(m) for m in full])
    return frames, (masks.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def _space_for(result: AblationPathResult, path: Tensor) -> MaskSpace | None:
    try:
        factory = get_mask_space(result.features)
    except ValueError:
        return None
    space = factory.from_result(result)
    if space is None or tuple(path.shape[1:]) != tuple(space.mask_shape):
        return None
    return space


def images_for_result(result: AblationPathResult, path: Tensor) -> tuple[Tensor, Tensor] | None:
    """Frames ``[T + 2, C, H, W]`` and masks ``[T + 2, H, W]`` (uint8) along ``path``
    ``[T, *mask_shape]``, ends included, rebuilt from what a saved result holds; ``None`` when
    its space cannot be rebuilt from a result (or ``path`` does not fit it)."""
    space = _space_for(result, path)
    return None if space is None else path_images(space, path.to(space.target.dtype))


def frames_for_result(result: AblationPathResult, path: Tensor) -> Tensor | None:
    """Decoded images ``[T + 2, C, H, W]`` (uint8) along ``path`` (see
    :func:`images_for_result`)."""
    images = images_for_result(result, path)
    return None if images is None else images[0]


def __getattr__(name: str) -> Any:
    # ``PixelMaskSpace`` lives in ablation_paths.pixel_space (it needs the optimiser's config);
    # kept importable from here.
    if name == "PixelMaskSpace":
        from ablation_paths.pixel_space import PixelMaskSpace

        return PixelMaskSpace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
