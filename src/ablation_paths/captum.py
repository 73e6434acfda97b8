"""Captum conformance: :class:`AblationPathAttribution`, an :class:`~ablation_paths.AblationPath`
that *is* a Captum attribution method (needs the ``bench`` extra, which installs Captum).

>>> from captum.attr import NoiseTunnel, visualization
>>> from ablation_paths.captum import AblationPathAttribution
>>> ap = AblationPathAttribution(model)
>>> isinstance(ap, captum.attr.Attribution)               # True
>>> attributions = ap.attribute(images, baselines=None, target=labels)   # [B, C, H, W]
>>> smooth = NoiseTunnel(ap).attribute(images, nt_samples=4, stdevs=0.05, target=labels)

It subclasses ``captum.attr.PerturbationAttribution``, so Captum's wrappers that require an
``Attribution`` (``NoiseTunnel``) and utilities that read its properties accept it, and its
``attribute`` carries Captum's ``log_usage`` wrapper (``attribute.__wrapped__``, which
``NoiseTunnel`` calls). Where it differs from Captum's perturbation methods:

* ``baselines=None`` means the blurred baseline (thesis 2.7.1), not zeros; names such as
  ``"black"`` and ``"blur:SIGMA"`` are accepted besides scalars and tensors;
* the attributions are the ablation-path heatmap ``[H, W]`` (non-negative) repeated over the
  channels, not a per-channel signed score; ``multiplies_by_inputs`` is ``False``;
* one optimised path per example: ``internal_batch_size`` bounds the images per classifier call
  *within* one example's path, examples are explained one after another;
* tuple inputs: a 1-tuple ``(images,)`` (answered by a 1-tuple); several input tensors per
  example are a ``TypeError``; ``additional_forward_args`` with one row per example are refused;
* ``has_convergence_delta()`` is ``False``: ``return_convergence_delta=True`` is a
  ``ValueError``; ``attribute_future`` is not provided;
* Captum's ``feature_mask``, ``sliding_window_shapes`` or ``perturbations_per_eval`` do not
  exist here: unknown keywords are an error naming the closest known option.
"""

from __future__ import annotations

from typing import Any

from ablation_paths._optional import require
from ablation_paths.api import AblationPath

_attr = require("captum.attr", "bench", purpose="the Captum attribution class")
_log = require("captum.log", "bench", purpose="the Captum attribution class")

__all__ = ["AblationPathAttribution"]

_PerturbationAttribution: Any = _attr.PerturbationAttribution


class AblationPathAttribution(AblationPath, _PerturbationAttribution):
    """:class:`~ablation_paths.AblationPath` as a ``captum.attr.PerturbationAttribution``.

    Args:
        forward_func: the classifier (logits ``[B, K]`` for images ``[B, C, H, W]``), in eval
            mode.
        transform: optional preprocessing before the model (e.g. normalisation); the masks act
            on the untransformed images.
    """

    def __init__(self, forward_func: Any, transform: Any = None) -> None:
        AblationPath.__init__(self, forward_func, transform)

    #: :meth:`AblationPath.attribute` behind Captum's usage-logging wrapper.
    attribute = _log.log_usage()(AblationPath.attribute)

    @property
    def multiplies_by_inputs(self) -> bool:
        """``False``: the heatmap ranks pixels by when their removal changes the class; it is
        not multiplied by the input."""
        return False

    def has_convergence_delta(self) -> bool:
        """``False``: an ablation path has no approximation error to report."""
        return False
