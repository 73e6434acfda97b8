"""Projected gradient ascent of ablation paths (thesis 2.4-2.6, Algorithm 2).

The optimiser only talks to a :class:`~ablation_paths.mask_spaces.MaskSpace` (how masks are
applied to the image, how they are regularised, how mass is weighted) and to a classifier, so
pixel masks and SIFT feature gains share it unchanged.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import Tensor

from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import MaskSpace
from ablation_paths.paths import affine_path, project, resample_path, saturation
from ablation_paths.scores import n_paths, score_terms

__all__ = [
    "AblationPathConfig",
    "OptimizationResult",
    "optimize_paths",
    "optimize_paths_many",
    "PathProblem",
    "MaskBatch",
    "evaluate_masks",
    "evaluate_mask_batches",
    "saturate",
    "pinch",
    "score_gradient",
    "ScoreGradient",
    "AUTO_REGULARIZATION",
]

#: Candidate blurs for ``regularization="auto"``, weak to strong, as fractions of the image side
#: (0.01 ~ 2.2 px and 0.09 ~ 20 px at 224 px, spanning the thesis's sweep of 1-10 px and more).
AUTO_REGULARIZATION: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.045, 0.065, 0.09)

#: Precisions of the optimiser's classifier passes (``AblationPathConfig.precision``).
PRECISIONS: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

#: Bounds of the adapted step size (``adapt_step``) as multiples of ``step_size``.
STEP_RANGE: tuple[float, float] = (0.25, 2.0)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")


@dataclass
class AblationPathConfig:
    """Every option of the optimiser, with defaults measured on the demo classifier.

    Attributes:
        n_steps: interior time samples ``T`` of the path (thesis: 14-16).
        mask_size: longer side of pixel masks in mask pixels; ``None`` picks
            ``clamp(round(image_side / 3.5), 8, 64)`` (64 for 224 px images, as in thesis 2.6.1).
        step_size: L-infinity norm of each update, in mask units (thesis 2.8.2: about 1).
            The defaults of step size and saturation were chosen on the demo classifier (40
            held-out scenes, seed 1): the thesis's ``zeta_sat = 0.8`` with half steps needed
            about 38 iterations to saturate; a saturation ramping from 0 to 3 over 10
            iterations with full steps needs about 11 (at most 16) with the same pointing
            accuracy. A strong saturation from the first step instead locks in the first,
            IG-like features (thesis 2.5.2). With the coarse-to-fine schedule a ramp over 8
            iterations keeps the benchmark's averages (n = 80 per dataset) and saves one
            iteration in ten, but the demo disc's path score falls from 0.94 to 0.75 (its
            steps oscillate); over 6 it loses mass inside the object (docs/performance.md).
        regularization: Gaussian regularisation blur (eq. 2.24) as a fraction of the image's
            longer side, so one value serves every resolution (0.03 = 6.7 px at 224 px, the
            thesis's best of about 7 px). Converted to mask pixels internally; 0 disables it.
            ``"auto"`` (in :func:`ablation_paths.explain`) tries :data:`AUTO_REGULARIZATION`
            from weak to strong and keeps the first path whose score is not pinned near its
            maximum (thesis 2.8.3: pinned scores reveal adversarial masks); it costs one
            optimisation per candidate tried.
        adapt_step: step-size adaptation (Algorithm 2, line 9): after each iteration the
            L-infinity size ``a`` of the step actually performed (after regularisation,
            saturation, pinching and projection) is measured per path and that path's next
            step is multiplied by ``sqrt(step_size / a)``, kept within :data:`STEP_RANGE`
            times ``step_size``: steps that regularisation or projection undo grow, steps that
            saturation amplifies shrink. ``False``: a fixed L-infinity step. On the 8 demo
            images it lowers the path score in 18 of 90 iterations instead of 23 of 97, each
            image saturating in the same or fewer iterations (``benchmarks/optimizer_steps.py``).
        saturation: artificial saturation strength ``zeta_sat`` (eq. 2.26); 0 disables it.
        saturation_ramp: iterations over which ``zeta_sat`` ramps up linearly from 0 (2.8.5C),
            so the first steps follow the classifier's gradient almost unaffected.
        pinch: pinching strength ``zeta_pinch`` for the straddling pair (eq. 2.29).
        stop_saturation: stop once the saturation level (eq. 2.31) reaches this value.
        max_iterations: iteration cap; a path stopped by it is flagged as not converged.
        min_iterations: never stop before this many iterations.
        batch_size: images per classifier call (bounds memory); ``None`` = whole path at once.
        monotonize: ``"minimax"`` or ``"flatten"`` (see :func:`ablation_paths.monotonize`).
        score_with_ends: include the fixed ends ``t = 0, 1`` in the reported path score.
        n_steps_start: coarse-to-fine in ``t``: start with this many interior samples and
            double them every ``refine_every`` iterations until ``n_steps`` (the path is
            resampled piecewise linearly, :func:`~ablation_paths.paths.resample_path`); the
            classifier's cost per iteration is proportional to the number of samples.
            ``None`` (or a value >= ``n_steps``): ``n_steps`` from the start (the thesis's
            schedule). The stop rule only applies at the full ``n_steps``.
        refine_every: iterations spent at each coarse number of samples.
        precision: ``"float32"`` or a reduced precision (``"bfloat16"``, ``"float16"``) for
            the optimiser's forward and backward passes (``torch.autocast``); the path's
            probabilities, score and heatmaps are always evaluated in the model's own precision
            afterwards, so reduced precision only changes the search direction.
        sharpen: break the ties of the average and class-transition heatmaps' top plateau
            towards the plateau's centre (:mod:`ablation_paths.sharpening`; changes no value
            by more than ``1e-5``). Used by :func:`ablation_paths.explain`, not the optimiser.
    """

    n_steps: int = 16
    mask_size: int | None = None
    step_size: float = 1.0
    adapt_step: bool = True
    regularization: float | str = 0.03
    saturation: float = 3.0
    saturation_ramp: int = 10
    pinch: float = 0.5
    stop_saturation: float = 0.8
    max_iterations: int = 50
    min_iterations: int = 1
    batch_size: int | None = 32
    monotonize: str = "minimax"
    score_with_ends: bool = False
    n_steps_start: int | None = 4
    refine_every: int = 3
    sharpen: bool = True
    precision: str = "float32"

    def __post_init__(self) -> None:
        for name in (
            "n_steps",
            "saturation_ramp",
            "max_iterations",
            "min_iterations",
            "refine_every",
        ):
            _check_int(name, getattr(self, name))
        for name in ("mask_size", "batch_size", "n_steps_start"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name))
        for name in ("step_size", "saturation", "pinch", "stop_saturation"):
            _check_number(name, getattr(self, name))
        if not isinstance(self.regularization, str):
            _check_number("regularization", self.regularization)
        for name in ("score_with_ends", "adapt_step", "sharpen"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.mask_size is not None and self.mask_size < 1:
            raise ValueError(f"mask_size must be >= 1, got {self.mask_size}")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if isinstance(self.regularization, str) and self.regularization != "auto":
            raise ValueError(
                f"regularization must be a number or 'auto', got {self.regularization!r}"
            )
        for name in ("saturation", "pinch"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.pinch <= 1:
            raise ValueError(f"pinch must be in [0, 1] (eq. 2.29), got {self.pinch}")
        if not isinstance(self.regularization, str) and not self.regularization >= 0:
            raise ValueError(f"regularization must be >= 0, got {self.regularization}")
        if not 0 < self.stop_saturation <= 1:
            raise ValueError(f"stop_saturation must be in (0, 1], got {self.stop_saturation}")
        if self.saturation_ramp < 0:
            raise ValueError(f"saturation_ramp must be >= 0, got {self.saturation_ramp}")
        if self.max_iterations < 0 or self.min_iterations < 0:
            raise ValueError("iteration counts must be >= 0")
        if self.min_iterations > self.max_iterations:
            raise ValueError(
                f"min_iterations ({self.min_iterations}) exceeds max_iterations "
                f"({self.max_iterations})"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.n_steps_start is not None and self.n_steps_start < 1:
            raise ValueError(f"n_steps_start must be >= 1 or None, got {self.n_steps_start}")
        if self.refine_every < 1:
            raise ValueError(f"refine_every must be >= 1, got {self.refine_every}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.monotonize not in ("minimax", "flatten"):
            raise ValueError(f"monotonize must be 'minimax' or 'flatten', got {self.monotonize!r}")

    def replace(self, **changes: object) -> AblationPathConfig:
        """A copy with some fields changed; unknown names raise a ``TypeError``."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(asdict(self)))}"
            )
        return AblationPathConfig(**{**asdict(self), **changes})  # type: ignore[arg-type]

    def n_steps_at(self, iteration: int) -> int:
        """Interior samples used at ``iteration`` (0-based) by the coarse-to-fine schedule."""
        if self.n_steps_start is None:
            return self.n_steps
        return min(self.n_steps, self.n_steps_start * 2 ** (iteration // self.refine_every))

    def resolved_mask_size(self, height: int, width: int) -> tuple[int, int]:
        """Mask ``(h, w)`` for an image of ``height x width`` pixels (aspect ratio kept)."""
        side = max(height, width)
        m = self.mask_size or min(64, max(8, round(side / 3.5)))
        m = min(m, side)
        return max(1, round(m * height / side)), max(1, round(m * width / side))


@dataclass
class OptimizationResult:
    """What :func:`optimize_paths` returns."""

    paths: Tensor  # [P, T, *mask_shape], valid ablation paths
    iterations: int
    converged: bool
    stopped: str  # "saturated", "max_iterations", "stationary" or "interrupted"
    history: list[dict[str, float]] = field(default_factory=list)
    classifier_seconds: float = 0.0
    other_seconds: float = 0.0


def saturate(path: Tensor, zeta: float) -> Tensor:
    """Artificial saturation (eq. 2.26): push values below 1/2 to 0 and above to 1."""
    if zeta <= 0:
        return path
    return 0.5 * (torch.tanh((2.0 * path - 1.0) * zeta) / math.tanh(zeta) + 1.0)


def pinch(path_up: Tensor, path_down: Tensor, zeta: float) -> Tensor:
    """Boundary pinching (eq. 2.27-2.29): new ``phi_down`` closer to ``phi_up`` where they differ
    a little, ``delta <- delta (1 - zeta) + delta^2 zeta``.

    ``Pi_pinch`` is defined on ``[-1, 1]`` (eq. 2.28), the range of differences of two valid
    paths. Unprojected iterates can leave it (a step or the saturation overshoots ``[0, 1]``),
    where the quadratic would flip the sign of large negative differences and blow up large
    positive ones, so the difference is clamped to ``[-1, 1]`` first.
    """
    if zeta <= 0:
        return path_down
    delta = (path_down - path_up).clamp(-1.0, 1.0)
    return path_up + delta * (1.0 - zeta) + delta * delta * zeta


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``precision`` on ``device`` (nothing for ``"float32"``)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


@dataclass(frozen=True)
class MaskBatch:
    """Masks of one mask space to classify, as one part of a shared classifier pass.

    ``masks``: ``[M, *mask_shape]``; ``target``: the class whose probability is weighted;
    ``coefficients``: ``[M]`` weights of ``F_target`` in the objective, or ``None`` for
    probabilities only (then every part of the pass must have ``None``).
    """

    space: MaskSpace
    masks: Tensor
    target: int
    coefficients: Tensor | None = None


def _chunks(parts: Sequence[MaskBatch], size: int | None) -> list[list[tuple[int, int, int]]]:
    """Classifier calls for ``parts``: lists of ``(part, start, stop)`` row ranges, at most
    ``size`` rows per call (``None``: no limit). Only parts whose images share shape, dtype and
    device go into one call (grouped in order of first appearance); a call may span parts."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, part in enumerate(parts):
        t = part.space.target
        groups.setdefault((tuple(t.shape), t.dtype, t.device), []).append(i)
    calls: list[list[tuple[int, int, int]]] = []
    for members in groups.values():
        call: list[tuple[int, int, int]] = []
        room = size
        for i in members:
            start, m = 0, parts[i].masks.shape[0]
            while start < m:
                stop = m if room is None else min(m, start + room)
                call.append((i, start, stop))
                if room is not None:
                    room -= stop - start
                start = stop
                if room == 0:
                    calls.append(call)
                    call, room = [], size
        if call:
            calls.append(call)
    return calls


def _classify_call(
    classifier: ClassifierFn,
    parts: Sequence[MaskBatch],
    call: list[tuple[int, int, int]],
    precision: str,
) -> tuple[Tensor, list[Tensor] | None]:
    """One classifier call over the row ranges ``call`` of ``parts``: probabilities ``[R, K]``
    (float32 for reduced precision) and, when the parts have coefficients, the gradients
    ``[rows, *mask_shape]`` of ``sum_r coefficient_r F_target_r(image_r)`` per range."""
    if parts[call[0][0]].coefficients is None:
        with torch.no_grad():
            plain = [parts[i].space.apply(parts[i].masks[a:b]) for i, a, b in call]
            logits = classifier(plain[0] if len(plain) == 1 else torch.cat(plain))
            return torch.softmax(logits, dim=1), None
    chunks = [parts[i].masks[a:b].detach().requires_grad_(True) for i, a, b in call]
    with torch.enable_grad():
        with _autocast(chunks[0].device, precision):
            images = [parts[i].space.apply(x) for (i, _, _), x in zip(call, chunks, strict=True)]
            logits = classifier(images[0] if len(images) == 1 else torch.cat(images))
        if precision != "float32":  # autocast's half-precision logits
            logits = logits.float()
        probs = torch.softmax(logits, dim=1)
        targets = torch.cat(
            [torch.full((b - a,), parts[i].target, device=probs.device) for i, a, b in call]
        )
        coef = torch.cat([parts[i].coefficients[a:b] for i, a, b in call])  # type: ignore[index]
        objective = (probs.gather(1, targets.unsqueeze(1)).squeeze(1) * coef).sum()
        if not objective.requires_grad:
            raise ValueError(
                "the model's output has no gradient path to its input (is it wrapped in "
                "torch.no_grad, detached, or not differentiable?); ablation paths need "
                "a differentiable classifier"
            )
        grads = torch.autograd.grad(objective, chunks, allow_unused=True)
    if any(g is None for g in grads):
        raise ValueError(
            "the model's output has no gradient path to its input image (detached or "
            "not differentiable); ablation paths need a differentiable classifier"
        )
    return probs.detach(), list(grads)


def evaluate_mask_batches(
    classifier: ClassifierFn,
    parts: Sequence[MaskBatch],
    batch_size: int | None = None,
    precision: str = "float32",
) -> list[tuple[Tensor, Tensor | None]]:
    """Classify the masks of several mask spaces (e.g. several images) in shared classifier
    calls of at most ``batch_size`` images (``None``: one call per image shape), optionally with
    the gradient of ``sum_parts sum_m coefficients[m] * F_target(image_m)``.

    Images of different shapes never share a call. The model must treat the images of a batch
    independently (no batch statistics: eval mode), so the result equals one
    :func:`evaluate_masks` per part up to floating-point rounding.

    Returns:
        per part, ``(probs [M, K], grad [M, *mask_shape] or None)``.
    """
    if not parts:
        return []
    if len({p.coefficients is None for p in parts}) > 1:
        raise ValueError("either every part has coefficients (a gradient pass) or none has")
    probs: list[list[Tensor]] = [[] for _ in parts]
    grads: list[list[Tensor]] = [[] for _ in parts]
    for call in _chunks(parts, batch_size):
        p, g = _classify_call(classifier, parts, call, precision)
        rows = [b - a for _, a, b in call]
        for (i, _, _), pi, k in zip(call, p.split(rows), range(len(call)), strict=True):
            probs[i].append(pi)
            if g is not None:
                grads[i].append(g[k])
    return [
        (torch.cat(pr), torch.cat(gr) if gr else None) for pr, gr in zip(probs, grads, strict=True)
    ]


def evaluate_masks(
    classifier: ClassifierFn,
    space: MaskSpace,
    masks: Tensor,
    target: int,
    coefficients: Tensor | None = None,
    batch_size: int | None = None,
    precision: str = "float32",
) -> tuple[Tensor, Tensor | None]:
    """Classify the images of a batch of masks, optionally with the gradient of a weighted sum.

    Args:
        classifier: the model (with its preprocessing).
        space: mask space that turns masks into images.
        masks: ``[M, *mask_shape]``.
        target: class index.
        coefficients: ``[M]``; if given, returns the gradient of
            ``sum_m coefficients[m] * F_target(image_m)`` with respect to ``masks``.
        batch_size: images per classifier call.
        precision: autocast precision of the gradient passes (see
            :attr:`AblationPathConfig.precision`); probabilities are returned in float32.

    Returns:
        ``(probs [M, K], grad [M, *mask_shape] or None)``.
    """
    part = MaskBatch(space, masks, target, coefficients)
    return evaluate_mask_batches(classifier, [part], batch_size, precision)[0]


def term_masks(paths: Tensor, score: str) -> Tensor:
    """Masks ``[n_terms * T, *mask_shape]`` at which the classifier is evaluated for a score."""
    parts = []
    for term in score_terms(score):
        p = paths[term.path_index]
        parts.append(1.0 - p if term.complement else p)
    return torch.cat(parts)


@dataclass
class ScoreGradient:
    """A score and its gradient at some paths (see :func:`score_gradient`)."""

    value: float  # the score (eq. 2.13-2.16) over the interior samples
    term_values: list[float]  # each term's contribution, in the order of ``score_terms``
    target_probs: list[Tensor]  # [T] target probabilities per term
    grad: Tensor  # [P, T, *mask_shape]: d score / d paths

    def path_values(self, score: str) -> list[float]:
        """Each path's share of the score (the sum of the terms that evaluate it)."""
        out = [0.0] * n_paths(score)
        for term, v in zip(score_terms(score), self.term_values, strict=True):
            out[term.path_index] += v
        return out


def _score_part(space: MaskSpace, paths: Tensor, target: int, score: str) -> MaskBatch:
    """The masks and coefficients at which a score's gradient at ``paths`` is evaluated:
    each term's time-mean contributes ``sign / T`` (dissipating terms have ``sign = -1``)."""
    t_count = paths.shape[1]
    coefficients = torch.cat(
        [
            torch.full((t_count,), term.sign / t_count, dtype=paths.dtype, device=paths.device)
            for term in score_terms(score)
        ]
    )
    return MaskBatch(space, term_masks(paths, score), target, coefficients)


def _score_from(
    paths: Tensor, target: int, score: str, probs: Tensor, grad: Tensor | None
) -> ScoreGradient:
    """The :class:`ScoreGradient` from the classifier's output on :func:`_score_part`'s masks:
    ``probs [n_terms * T, K]``, ``grad [n_terms * T, *mask_shape]``; complement terms
    ``1 - phi`` get the chain rule's ``-1``."""
    assert grad is not None
    terms = score_terms(score)
    t_count = paths.shape[1]
    target_probs = list(probs[:, target].split(t_count))
    term_values = [
        score_value_term(term.sign, tp) for term, tp in zip(terms, target_probs, strict=True)
    ]
    g = torch.zeros_like(paths)
    for term, gt in zip(terms, grad.split(t_count), strict=True):
        g[term.path_index] += -gt if term.complement else gt
    return ScoreGradient(sum(term_values), term_values, target_probs, g)


def score_gradient(
    classifier: ClassifierFn,
    space: MaskSpace,
    paths: Tensor,
    target: int,
    score: str,
    batch_size: int | None = None,
    precision: str = "float32",
) -> ScoreGradient:
    """Value and gradient of a score at ``paths [P, T, *mask_shape]`` (one classifier pass).

    The gradient is that of the score with respect to every stored sample ``phi(t_k)``:
    each term's time-mean contributes ``sign / T`` times the gradient of the target probability
    (dissipating terms have ``sign = -1``), and complement terms ``1 - phi`` the chain rule's
    ``-1``.
    """
    part = _score_part(space, paths, target, score)
    ((probs, grad),) = evaluate_mask_batches(classifier, [part], batch_size, precision)
    return _score_from(paths, target, score, probs, grad)


def score_value_term(sign: float, target_probs: Tensor) -> float:
    """One term of a score: the time-mean of the target probability (``sign > 0``) or one minus
    it (``sign < 0``)."""
    mean = float(target_probs.double().mean())
    return mean if sign > 0 else 1.0 - mean


@dataclass(frozen=True)
class PathProblem:
    """One optimisation for :func:`optimize_paths_many`: the arguments of
    :func:`optimize_paths` (classifier, mask space for one image and baseline, target class,
    score, options, per-iteration ``progress`` callback)."""

    classifier: ClassifierFn
    space: MaskSpace
    target: int
    score: str = "retain"
    config: AblationPathConfig | None = None
    progress: Callable[[int, dict[str, float], Tensor], None] | None = None


@dataclass(frozen=True)
class _Problem:
    """The fixed inputs of one run (a checked :class:`PathProblem`).

    ``weights``: the mask space's mass weights ``[*mask_shape]`` (``None``: plain mean);
    ``w_flat``: the same normalised to sum 1 and flattened to ``[N]`` in the mask dtype.
    """

    classifier: ClassifierFn
    space: MaskSpace
    target: int
    score: str
    config: AblationPathConfig
    weights: Tensor | None
    w_flat: Tensor | None
    progress: Callable[[int, dict[str, float], Tensor], None] | None


def _problem(p: PathProblem) -> _Problem:
    if not isinstance(p, PathProblem):
        raise TypeError(f"expected PathProblem objects, got a {type(p).__name__}")
    cfg = p.config or AblationPathConfig()
    n_paths(p.score)  # validates the name
    weights = p.space.weights()
    dtype = p.space.target.dtype
    w_flat = None if weights is None else (weights / weights.sum()).reshape(-1).to(dtype)
    return _Problem(p.classifier, p.space, p.target, p.score, cfg, weights, w_flat, p.progress)


@dataclass
class _Run:
    """The state of one :func:`optimize_paths` run, updated every iteration.

    ``paths``: the current valid paths ``[P, T, *mask_shape]``; ``steps``: one step size per
    path (Algorithm 2, line 9); the timings are in seconds.
    """

    paths: Tensor
    steps: list[float]
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    stopped: str = "max_iterations"
    converged: bool = False
    classifier_seconds: float = 0.0
    other_seconds: float = 0.0

    def result(self) -> OptimizationResult:
        """The run as an :class:`OptimizationResult` (paths detached)."""
        return OptimizationResult(
            paths=self.paths.detach(),
            iterations=self.iterations,
            converged=self.converged,
            stopped=self.stopped,
            history=self.history,
            classifier_seconds=self.classifier_seconds,
            other_seconds=self.other_seconds,
        )


def _ascent_direction(
    grad: Tensor, n_p: int, t_count: int, w_flat: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The mass-preserving ascent direction and its size.

    Removes each time slice's (weighted) spatial mean from ``grad`` ``[P, T, *mask_shape]``.
    Returns the direction ``[P, T, N]`` (``N`` features) and its L-infinity norm per path
    ``[P, 1, 1]``. Raises ``ValueError`` if the gradient is not finite.
    """
    flat = grad.reshape(n_p, t_count, -1)
    if w_flat is None:
        flat = flat - flat.mean(dim=2, keepdim=True)
    else:
        flat = flat - (flat @ w_flat).unsqueeze(2)
    norm = flat.abs().amax(dim=(1, 2), keepdim=True)
    if not bool(torch.isfinite(norm).all()):
        raise ValueError("the score's gradient contains NaN or infinite values")
    return flat, norm


def _is_stationary(norm: Tensor, grad: Tensor, iteration: int) -> bool:
    """Whether no mass-preserving direction is left (all direction norms ``norm`` are zero).

    That happens e.g. for a single feature, whose only constant-speed path is the affine one.
    Raises ``ValueError`` if the raw gradient ``grad`` is exactly zero at iteration 0: the model
    does not see the ablation at all.
    """
    if not bool((norm == 0).all()):
        return False
    if iteration == 0 and bool((grad == 0).all()):
        raise ValueError(
            "the score's gradient is exactly zero on the affine start path: the "
            "model's output does not change between the image and the baseline"
        )
    return True


def _take_step(
    paths: Tensor, flat: Tensor, norm: Tensor, steps: list[float], prob: _Problem, iteration: int
) -> Tensor:
    """One projected step (Algorithm 2, lines 10-15) from ``paths`` ``[P, T, *mask_shape]``.

    Scales the direction ``flat`` ``[P, T, N]`` to L-infinity norm ``steps[p]`` per path, then
    regularises (eq. 2.24), saturates (eq. 2.26, ramped in over ``saturation_ramp``
    iterations), pinches a straddling pair (eq. 2.27) and projects onto the axioms. Returns the
    new valid paths, same shape as ``paths``.
    """
    cfg, space = prob.config, prob.space
    n_p, t_count = paths.shape[:2]
    h = torch.tensor(steps, dtype=flat.dtype, device=flat.device).view(n_p, 1, 1)
    step = flat * (h / torch.where(norm > 0, norm, 1.0))
    new = (paths.reshape(n_p, t_count, -1) + step).reshape(paths.shape)
    new = space.regularize(new.reshape(n_p * t_count, *space.mask_shape))
    new = new.reshape(paths.shape)
    if cfg.saturation > 0:
        ramp = 1.0 if cfg.saturation_ramp <= 0 else min(1.0, (iteration + 1) / cfg.saturation_ramp)
        new = saturate(new, cfg.saturation * ramp)
    if n_p == 2 and cfg.pinch > 0:
        new = torch.stack([new[0], pinch(new[0], new[1], cfg.pinch)])
    return torch.stack(
        [
            project(p, prob.weights, monotonize_method=cfg.monotonize, check_finite=False)
            for p in new
        ]
    )


def _adapt_steps(steps: list[float], paths: Tensor, old_paths: Tensor, step_size: float) -> None:
    """Adapt the per-path step sizes in place (Algorithm 2, line 9).

    The step actually performed (``paths - old_paths`` after regularisation, saturation,
    pinching and projection, L-infinity per path) differs from the intended ``step_size``; the
    next step is scaled by ``sqrt(step_size / actual)``, within ``STEP_RANGE * step_size``.
    """
    min_step, max_step = step_size * STEP_RANGE[0], step_size * STEP_RANGE[1]
    actual = (paths - old_paths).abs().reshape(len(steps), -1).amax(dim=1)
    for i in range(len(steps)):
        a = float(actual[i])
        if a > 0:
            factor = math.sqrt(step_size / a)
            steps[i] = min(max_step, max(min_step, steps[i] * factor))


def _refine(run: _Run, t_count: int, prob: _Problem) -> None:
    """Resample ``run.paths`` to ``t_count`` interior samples if they have another number
    (coarse-to-fine in ``t``), projected onto the axioms again (interpolation keeps them up to
    rounding)."""
    if run.paths.shape[1] == t_count:
        return
    cfg = prob.config
    run.paths = torch.stack(
        [
            project(resample_path(p, t_count), prob.weights, monotonize_method=cfg.monotonize)
            for p in run.paths
        ]
    )


def _gradients(
    runs: Sequence[_Run], probs: Sequence[_Problem], iteration: int
) -> list[ScoreGradient]:
    """Lines 3-6 of Algorithm 2 for several runs at once: resample each run to its
    coarse-to-fine number of samples, then ONE shared classifier pass (chunks of
    ``batch_size`` images that may span runs) for every run's score and gradient. The pass's
    time is shared out to the runs' ``classifier_seconds`` by their number of images."""
    for run, prob in zip(runs, probs, strict=True):
        _refine(run, prob.config.n_steps_at(iteration), prob)
    first = probs[0]
    device = first.space.target.device
    parts = [
        _score_part(prob.space, run.paths, prob.target, prob.score)
        for run, prob in zip(runs, probs, strict=True)
    ]
    _sync(device)
    t0 = time.perf_counter()
    out = evaluate_mask_batches(
        first.classifier, parts, first.config.batch_size, first.config.precision
    )
    _sync(device)
    seconds = time.perf_counter() - t0
    total = sum(part.masks.shape[0] for part in parts)
    for run, part in zip(runs, parts, strict=True):
        run.classifier_seconds += seconds * part.masks.shape[0] / total
    return [
        _score_from(run.paths, prob.target, prob.score, p, g)
        for run, prob, (p, g) in zip(runs, probs, out, strict=True)
    ]


def _advance(run: _Run, sg: ScoreGradient, iteration: int, prob: _Problem) -> bool:
    """Lines 7-16 of Algorithm 2 on ``run`` (updated in place) from its score gradient ``sg``:
    the step, the step-size adaptation, the stop rule. ``True``: the run stops."""
    cfg = prob.config
    device = prob.space.target.device
    t1 = time.perf_counter()
    n_p = run.paths.shape[0]
    flat, norm = _ascent_direction(sg.grad, n_p, run.paths.shape[1], prob.w_flat)
    if _is_stationary(norm, sg.grad, iteration):
        run.stopped = "stationary"
        return True
    used = max(run.steps)
    old_paths = run.paths
    run.paths = _take_step(run.paths, flat, norm, run.steps, prob, iteration)
    if cfg.adapt_step:
        _adapt_steps(run.steps, run.paths, old_paths, cfg.step_size)
    sat = sum(saturation(p, prob.weights) for p in run.paths) / n_p
    run.iterations = iteration + 1
    _sync(device)
    run.other_seconds += time.perf_counter() - t1
    stats = {
        "iteration": float(run.iterations),
        "path_score": sg.value,
        "saturation": sat,
        "step_size": used,
    }
    run.history.append(stats)
    if prob.progress is not None:
        prob.progress(run.iterations, stats, run.paths)
    full = run.paths.shape[1] == cfg.n_steps
    if full and sat >= cfg.stop_saturation and run.iterations >= cfg.min_iterations:
        run.converged = True
        run.stopped = "saturated"
        return True
    return False


def _lockstep(
    runs: list[_Run],
    probs: list[_Problem],
    active: list[int],
    iteration: int,
    errors: dict[int, ValueError] | None,
) -> None:
    """Iteration ``iteration`` of every run in ``active`` (indices): one shared gradient pass,
    then each run's own step. Runs that stop (saturated, stationary, ``max_iterations``) leave
    ``active`` (updated in place); a run's ``ValueError`` goes to ``errors`` (that run leaves)
    or, when ``errors`` is ``None``, is raised."""
    sgs = _gradients([runs[i] for i in active], [probs[i] for i in active], iteration)
    for i, sg in zip(list(active), sgs, strict=True):
        try:
            stop = _advance(runs[i], sg, iteration, probs[i])
        except ValueError as exc:
            if errors is None:
                raise
            errors[i] = exc
            stop = True
        if stop or iteration + 1 >= probs[i].config.max_iterations:
            active.remove(i)


def _check_shared(probs: list[_Problem]) -> None:
    """Batched runs share one classifier call: same classifier, device, batch size, precision."""
    if not probs:
        raise ValueError("no problems given")
    first = probs[0]
    for k, p in enumerate(probs[1:], 1):
        same = p.classifier is first.classifier or (
            isinstance(p.classifier, ClassifierFn)
            and isinstance(first.classifier, ClassifierFn)
            and p.classifier.model is first.classifier.model
            and p.classifier.transform is first.classifier.transform
        )
        if not same:
            raise ValueError(
                f"problem {k} has another classifier than problem 0: batched runs share one "
                "classifier (the same model and transform objects)"
            )
        dev, dev0 = p.space.target.device, first.space.target.device
        if dev != dev0:
            raise ValueError(
                f"problem {k} is on {dev} but problem 0 on {dev0}: batched runs share one device"
            )
        for name in ("batch_size", "precision"):
            if getattr(p.config, name) != getattr(first.config, name):
                raise ValueError(
                    f"problem {k} has {name}={getattr(p.config, name)!r} but problem 0 "
                    f"{getattr(first.config, name)!r}: batched runs share the classifier calls"
                )


def _optimize(problems: Sequence[PathProblem], errors: dict[int, ValueError] | None) -> list[_Run]:
    """The lockstep loop of :func:`optimize_paths_many`; every run ends at ``n_steps``."""
    probs = [_problem(p) for p in problems]
    _check_shared(probs)
    runs = []
    for prob in probs:
        n_p, cfg = n_paths(prob.score), prob.config
        dtype, device = prob.space.target.dtype, prob.space.target.device
        path = affine_path(cfg.n_steps_at(0), prob.space.mask_shape, dtype=dtype, device=device)
        paths = path.unsqueeze(0).repeat(n_p, *([1] * path.dim()))
        runs.append(_Run(paths=paths, steps=[cfg.step_size] * n_p))
    active = [i for i, prob in enumerate(probs) if prob.config.max_iterations > 0]
    try:
        iteration = 0
        while active:
            _lockstep(runs, probs, active, iteration, errors)
            iteration += 1
    except KeyboardInterrupt:
        for i in active:
            runs[i].stopped = "interrupted"
    for i, (run, prob) in enumerate(zip(runs, probs, strict=True)):
        if errors is None or i not in errors:
            _refine(run, prob.config.n_steps, prob)
    return runs


@overload
def optimize_paths_many(
    problems: Sequence[PathProblem], *, return_exceptions: Literal[False] = False
) -> list[OptimizationResult]: ...


@overload
def optimize_paths_many(
    problems: Sequence[PathProblem], *, return_exceptions: Literal[True]
) -> list[OptimizationResult | ValueError]: ...


def optimize_paths_many(
    problems: Sequence[PathProblem], *, return_exceptions: bool = False
) -> list[OptimizationResult] | list[OptimizationResult | ValueError]:
    """Several independent runs of Algorithm 2 (e.g. one per image) in lockstep, sharing the
    classifier calls: each iteration makes ONE gradient pass over the masks of every run still
    going (``n_terms * T`` images per run, in calls of ``batch_size`` images that may span
    runs; images of different shapes never share a call) and hands each run its own
    probabilities and gradient; then every run takes its own step (see
    :func:`optimize_paths`). A run that stops (saturated, stationary, its ``max_iterations``)
    leaves the batch; coarse-to-fine in ``t`` follows each run's own config.

    Each result equals that of :func:`optimize_paths` on the same problem up to floating-point
    rounding of the batched classifier (the model must not mix the images of a batch: eval
    mode). A ``KeyboardInterrupt`` stops every run still going with its last valid paths and
    ``stopped="interrupted"``; runs already finished keep their results.

    Args:
        problems: :class:`PathProblem` objects with the same classifier (model and transform
            objects), device, ``batch_size`` and ``precision``; mask spaces, targets, scores and
            other options may differ.
        return_exceptions: a run's own ``ValueError`` (e.g. a zero or non-finite gradient) is
            returned in its place and the others go on; otherwise it is raised. Errors of the
            shared pass (e.g. a model without gradients) are always raised.

    Returns:
        one :class:`OptimizationResult` per problem (paths ``[P, n_steps, *mask_shape]``), in
        order.
    """
    errors: dict[int, ValueError] | None = {} if return_exceptions else None
    runs = _optimize(problems, errors)
    if errors:
        return [errors[i] if i in errors else run.result() for i, run in enumerate(runs)]
    return [run.result() for run in runs]


def optimize_paths(
    classifier: ClassifierFn,
    space: MaskSpace,
    target: int,
    score: str = "retain",
    config: AblationPathConfig | None = None,
    *,
    progress: Callable[[int, dict[str, float], Tensor], None] | None = None,
) -> OptimizationResult:
    """Optimise the ablation path(s) of ``score`` for class ``target`` (Algorithm 2).

    Each iteration: classify all interpolated images of the path(s) in chunks, take the gradient
    of the score, remove each slice's (weighted) spatial mean so the step keeps mass, scale the
    step to L-infinity norm ``step_size``, regularise (eq. 2.24), saturate (eq. 2.26), pinch the
    straddling pair (eq. 2.27), and project onto the axioms (Algorithm 2, lines 12-15). Stops once
    the saturation level (eq. 2.31) reaches ``stop_saturation`` or after ``max_iterations``.
    A ``KeyboardInterrupt`` stops the loop and returns the last valid path(s).

    This is :func:`optimize_paths_many` with one problem (one code path).

    Args:
        classifier: model with preprocessing.
        space: the mask space.
        target: class index.
        score: one of ``retain``, ``dissipate``, ``contrastive``, ``straddle``.
        config: options; defaults to :class:`AblationPathConfig()`.
        progress: called after every iteration with ``(iteration, stats, paths)``; ``paths``
            ``[P, T, *mask_shape]`` are the projected paths after the step.
    """
    problem = PathProblem(classifier, space, target, score, config, progress)
    return optimize_paths_many([problem])[0]


def regularization_sigma(config: AblationPathConfig, mask_shape: tuple[int, ...]) -> float:
    """The regularisation blur in mask pixels for pixel masks of ``mask_shape``."""
    if isinstance(config.regularization, str):
        raise ValueError("regularization='auto' must be resolved by explain() first")
    return float(config.regularization) * max(mask_shape)
