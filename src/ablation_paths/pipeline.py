"""The explain pipeline: named stages from an image to an :class:`AblationPathResult`.

::

    prepare_input    image, model, target  -> Prepared (image on its device, classifier, target)
    make_baseline    the mask space's baseline policy                      -> Baseline
    build_space      the registered mask space for this image              -> MaskSpace
    optimise         Algorithm 2 (thesis 2.6.3)                            -> OptimizationResult
    evaluate_path    probabilities along the path(s), score, saturation    -> PathEvaluation
    reduce           heatmap reductions (2.7.2) and the space's own maps   -> {name: [H, W]}
    assemble         everything into the result                            -> AblationPathResult
    finish           warnings: emitted and stored in ``result.info["warnings"]``

:func:`run` chains them for one :class:`ExplainRequest`. With ``regularization="auto"``,
:func:`auto_regularize` repeats ``build_space .. assemble`` per candidate blur, reusing the
prepared input and the baseline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ablation_paths.baselines import Baseline
from ablation_paths.devices import model_device
from ablation_paths.diagnostics import (
    AblationPathWarning,
    IgnoredOptionWarning,
    UnreliableResultWarning,
    emit,
    result_warnings,
    score_bounds,
)
from ablation_paths.inputs import ClassifierFn, ImageLike, load_image, resolve_target
from ablation_paths.mask_spaces import (
    MaskSpace,
    feature_options,
    get_mask_space,
    path_images,
    with_ends,
)
from ablation_paths.optimizer import (
    AUTO_REGULARIZATION,
    AblationPathConfig,
    OptimizationResult,
    PathProblem,
    evaluate_masks,
    optimize_paths,
    optimize_paths_many,
)
from ablation_paths.paths import path_times, saturation
from ablation_paths.reductions import average, class_transition, contrastive_average, influence
from ablation_paths.result import AblationPathResult
from ablation_paths.scores import n_paths, orientation, score_terms, score_value
from ablation_paths.sharpening import region_depth, sharpen, top_plateau

__all__ = [
    "ExplainRequest",
    "Prepared",
    "PathEvaluation",
    "run",
    "prepare_input",
    "make_baseline",
    "build_space",
    "optimise",
    "evaluate_path",
    "reduce",
    "assemble",
    "auto_regularize",
    "finish",
    "run_many",
    "explain_batch",
    "optimise_many",
    "auto_regularize_many",
]

Warning = tuple[type[AblationPathWarning], str]


@dataclass(frozen=True)
class ExplainRequest:
    """What :func:`ablation_paths.explain` was asked for, besides model, image and target
    (see its docstring). ``auto_candidates``: the blurs tried by ``regularization="auto"``,
    weak to strong."""

    score: str = "retain"
    baseline: Any = "blur"
    features: str = "pixel"
    config: AblationPathConfig = field(default_factory=AblationPathConfig)
    feature_options: Mapping[str, Any] = field(default_factory=dict)
    transform: Callable[[Tensor], Tensor] | None = None
    class_names: Sequence[str] | None = None
    image_size: int | tuple[int, int] | None = None
    device: str | torch.device | None = None
    progress: bool = False
    keep_frames: bool = True
    auto_candidates: tuple[float, ...] = AUTO_REGULARIZATION


@dataclass
class Prepared:
    """The checked input: ``image`` ``[C, H, W]`` (float, on ``device``), the classifier, the
    target index, the probabilities ``[1, K]`` on the image, and when the request started."""

    image: Tensor
    classifier: ClassifierFn
    target: int
    probs: Tensor
    device: torch.device
    class_names: list[str] | None
    start: float


@dataclass
class PathEvaluation:
    """The classifier along the optimised path(s): probabilities ``[T + 2, K]`` per path (ends
    included), along the complement ``1 - phi`` (contrastive score) and the final score and
    saturation (eq. 2.31, mean over the paths)."""

    probs: list[Tensor]
    probs_complement: Tensor | None
    path_score: float
    saturation: float


# ----------------------------------------------------------------------------- the stages


def check_request(request: ExplainRequest) -> dict[str, Any]:
    """Validate the score and features; return the checked feature options. Options that have
    no effect with these features give an ``IgnoredOptionWarning``."""
    score_terms(request.score)  # validates the name
    factory = get_mask_space(request.features)
    options = feature_options(request.features, request.feature_options)
    cfg, default = request.config, AblationPathConfig()
    if cfg.regularization == "auto" and "regularization" in factory.ignored_config:
        raise ValueError(
            f"regularization='auto' applies to mask spaces with a regularisation blur; "
            f"{request.features} features have none"
        )
    for name in factory.ignored_config:
        if getattr(cfg, name) != getattr(default, name):
            warnings.warn(
                f"{name}={getattr(cfg, name)!r} has no effect with {request.features} features",
                IgnoredOptionWarning,
                stacklevel=4,
            )
    return options


def prepare_input(
    model: nn.Module | Callable[[Tensor], Tensor],
    image: ImageLike,
    target: int | str | Tensor | None,
    request: ExplainRequest,
) -> Prepared:
    """Stage 1: wrap the model, read the image onto the compute device, resolve the target."""
    start = time.perf_counter()
    classifier = ClassifierFn(model, request.transform)
    img = load_image(image, size=request.image_size)
    size = request.image_size
    hw = (size, size) if isinstance(size, int) else size
    given = isinstance(image, (Tensor, np.ndarray))  # used as they are, never resized
    if hw is not None and given and tuple(img.shape[-2:]) != tuple(hw):
        warnings.warn(
            f"image_size={size} resizes files and PIL images only; this "
            f"{tuple(img.shape[-2:])} tensor/array is used as given",
            IgnoredOptionWarning,
            stacklevel=4,
        )
    dev = torch.device(request.device) if request.device is not None else None
    dev = dev or model_device(model) or img.device
    img = (img if torch.is_floating_point(img) else img.float()).to(dev)
    probs = classifier.probabilities(img.unsqueeze(0))
    tgt = resolve_target(target, probs, request.class_names)
    names = list(request.class_names) if request.class_names is not None else None
    if names is not None and len(names) != int(probs.shape[1]):
        raise ValueError(
            f"{len(names)} class names given but the model has {int(probs.shape[1])} classes"
        )
    return Prepared(img, classifier, tgt, probs, dev, names, start)


def make_baseline(prepared: Prepared, request: ExplainRequest) -> Baseline:
    """Stage 2a: the baseline, by the mask space's policy."""
    factory = get_mask_space(request.features)
    return factory.make_baseline(
        prepared.image, prepared.classifier, request.baseline, request.config
    )


def build_space(
    prepared: Prepared, baseline: Baseline, request: ExplainRequest, options: Mapping[str, Any]
) -> MaskSpace:
    """Stage 2b: the registered mask space for this image and baseline."""
    factory = get_mask_space(request.features)
    return factory.build(prepared.image, baseline, request.config, options)


def progress_fraction(
    iterations: int, saturation: float, start: float, config: AblationPathConfig
) -> float:
    """How far the optimisation is towards its stop, in ``[0, 1]``: the larger of the share of
    ``max_iterations`` used and the share of the way from the first saturation ``start`` to
    ``stop_saturation`` (eq. 2.31) covered. The path stops at whichever comes first, so a bar
    over this fraction ends at 100 % when the path does."""
    by_iterations = iterations / config.max_iterations
    span = config.stop_saturation - start
    by_saturation = (saturation - start) / span if span > 0 else 1.0
    return min(1.0, max(by_iterations, by_saturation, 0.0))


def optimise(prepared: Prepared, space: MaskSpace, request: ExplainRequest) -> OptimizationResult:
    """Stage 3: optimise the path(s) (Algorithm 2), with a progress bar if asked."""
    cfg = request.config
    bar = None
    if request.progress:
        from tqdm.auto import tqdm

        desc = f"ablation path ({request.score})"
        bar = tqdm(total=100, desc=desc, unit="%", leave=False)
    first: list[float] = []

    def on_step(it: int, stats: dict[str, float], paths: Tensor) -> None:
        if bar is not None:
            first.extend([] if first else [stats["saturation"]])
            done = progress_fraction(it, stats["saturation"], first[0], cfg)
            bar.update(max(0, round(100 * done) - bar.n))
            bar.set_postfix(
                it=it, score=f"{stats['path_score']:.3f}", sat=f"{stats['saturation']:.2f}"
            )

    try:
        return optimize_paths(
            prepared.classifier, space, prepared.target, request.score, cfg, progress=on_step
        )
    finally:
        if bar is not None:
            bar.close()


def evaluate_path(
    prepared: Prepared, space: MaskSpace, opt: OptimizationResult, request: ExplainRequest
) -> PathEvaluation:
    """Stage 4: classify the images along each path (ends included) and along the complement
    for the contrastive score; the path score (eq. 2.13-2.16) and saturation (eq. 2.31)."""
    cfg, tgt = request.config, prepared.target

    def probs_along(masks: Tensor) -> Tensor:
        return evaluate_masks(prepared.classifier, space, masks, tgt, None, cfg.batch_size)[0]

    full = [with_ends(p) for p in opt.paths]  # [T + 2, *mask_shape] each
    probs = [probs_along(f) for f in full]
    complement = None
    term_probs = []
    for term in score_terms(request.score):
        if term.complement:
            complement = probs_along(1.0 - full[term.path_index])
        p = complement if term.complement else probs[term.path_index]
        assert p is not None
        term_probs.append(p[:, tgt] if cfg.score_with_ends else p[1:-1, tgt])
    weights = space.weights()
    sat = sum(saturation(p, weights) for p in opt.paths) / len(opt.paths)
    return PathEvaluation(probs, complement, score_value(request.score, term_probs), float(sat))


def reduce(
    space: MaskSpace,
    opt: OptimizationResult,
    evaluation: PathEvaluation,
    score: str,
    target: int,
    sharpened: bool = True,
) -> dict[str, Tensor]:
    """Stage 5: heatmaps ``[H, W]`` (CPU, float): the reductions of thesis 2.7.2 (average,
    class transition, influence; the contrastive average for a pair) and the space's own.

    With ``sharpened`` (``sharpen`` in the config, the default), the ties of the average and
    class-transition maps' top plateau are broken towards the plateau's centre
    (:mod:`ablation_paths.sharpening`); no value moves by more than ``SHARPEN_SCALE``.
    """
    path, orient = opt.paths[0], orientation(score)
    maps = {
        "average": average(path, orient),
        "class_transition": class_transition(path, evaluation.probs[0][1:-1], target, orient),
        "influence": influence(path, evaluation.probs[0][:, target]),
    }
    if n_paths(score) == 2:
        maps["contrastive"] = contrastive_average(opt.paths[0], opt.paths[1])
    heatmaps = {k: space.to_image(v).double().cpu() for k, v in maps.items()}
    sharpened_maps = ("average", "class_transition", "contrastive") if sharpened else ()
    for name in set(sharpened_maps) & set(heatmaps):
        heatmaps[name] = sharpen(heatmaps[name], region_depth(top_plateau(heatmaps[name])))
    heatmaps = {k: v.float() for k, v in heatmaps.items()}
    extra = space.extra_heatmaps(path, evaluation.probs[0], target)
    heatmaps.update({k: v.float().cpu() for k, v in extra.items()})
    return heatmaps


def _info(
    prepared: Prepared,
    baseline: Baseline,
    space: MaskSpace,
    opt: OptimizationResult,
    request: ExplainRequest,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "config": asdict(request.config),
        "baseline": {
            "kind": baseline.kind,
            "sigma": baseline.sigma,
            "flips_class": baseline.flips_class,
            "note": baseline.note,
        },
        "mask_shape": list(space.mask_shape),
        "image_shape": list(prepared.image.shape),
        "device": str(prepared.device),
        "wall_seconds": time.perf_counter() - prepared.start,
        "classifier_seconds": opt.classifier_seconds,
        "other_seconds": opt.other_seconds,
        "predicted": int(prepared.probs[0].argmax()),
        **space.describe(),
    }
    if options:
        info["feature_options"] = dict(options)
    return info


def assemble(
    prepared: Prepared,
    baseline: Baseline,
    space: MaskSpace,
    opt: OptimizationResult,
    evaluation: PathEvaluation,
    heatmaps: dict[str, Tensor],
    request: ExplainRequest,
    options: Mapping[str, Any],
) -> AblationPathResult:
    """Stage 6: the result (everything on the CPU), frames along the first path if kept."""
    path, pair = opt.paths[0], len(opt.paths) == 2
    frames, masks = path_images(space, path) if request.keep_frames else (None, None)
    names, pc = prepared.class_names, evaluation.probs_complement
    return AblationPathResult(
        path=path.cpu(),
        times=path_times(request.config.n_steps, dtype=path.dtype).cpu(),
        target=prepared.target,
        score=request.score,
        probs=evaluation.probs[0].float().cpu(),
        path_score=evaluation.path_score,
        saturation=evaluation.saturation,
        iterations=opt.iterations,
        converged=opt.converged,
        stopped=opt.stopped,
        heatmaps=heatmaps,
        image=prepared.image.detach().cpu(),
        baseline_image=space.baseline.detach().cpu(),
        frames=frames,
        masks_image=masks,
        path_down=opt.paths[1].cpu() if pair else None,
        probs_down=evaluation.probs[1].float().cpu() if pair else None,
        probs_complement=None if pc is None else pc.float().cpu(),
        features=request.features,
        class_names=names,
        target_name=names[prepared.target] if names is not None else None,
        history=opt.history,
        info=_info(prepared, baseline, space, opt, request, options),
    )


def finish(result: AblationPathResult, extra: Sequence[Warning] = ()) -> AblationPathResult:
    """Last stage: the checks of :func:`~ablation_paths.diagnostics.result_warnings` (and
    ``extra`` ones), stored in ``result.info["warnings"]`` and issued as warnings."""
    items = [*extra, *result_warnings(result)]
    result.info["warnings"] = [message for _, message in items]
    emit(items, stacklevel=5)
    return result


# ----------------------------------------------------------------------------- chains


def explain_once(
    prepared: Prepared, baseline: Baseline, request: ExplainRequest, options: Mapping[str, Any]
) -> AblationPathResult:
    """Stages 2b-6 for one configuration."""
    space = build_space(prepared, baseline, request, options)
    opt = optimise(prepared, space, request)
    return _conclude(prepared, baseline, space, opt, request, options)


#: The blur ``regularization="auto"`` keeps when the pinned test cannot decide.
DEFAULT_REGULARIZATION: float = float(AblationPathConfig().regularization)


def pinned_test_decidable(prepared: Prepared, baseline: Baseline, request: ExplainRequest) -> bool:
    """Whether the pinned test can tell candidate blurs apart: it depends only on ``T`` and the
    target probabilities at the path's ends (image and baseline), which every candidate shares
    (:meth:`ablation_paths.diagnostics.ScoreBounds.decidable`)."""
    with torch.no_grad():
        p_base = prepared.classifier.probabilities(baseline.image.unsqueeze(0))
    bounds = score_bounds(
        request.score,
        float(prepared.probs[0, prepared.target]),
        float(p_base[0, prepared.target]),
        n_steps=request.config.n_steps,
        with_ends=request.config.score_with_ends,
    )
    return bounds.decidable()


@dataclass
class _AutoSearch:
    """``regularization="auto"`` for one image: the candidate blurs (weak to strong), the one
    being tried, the path scores so far and the last result."""

    candidates: tuple[float, ...]
    decidable: bool
    tried: dict[str, float] = field(default_factory=dict)
    index: int = 0
    result: AblationPathResult | None = None

    @classmethod
    def start(cls, prepared: Prepared, baseline: Baseline, request: ExplainRequest) -> _AutoSearch:
        """The candidates: all of ``request.auto_candidates`` when the pinned test can decide,
        else only :data:`DEFAULT_REGULARIZATION`."""
        if not request.auto_candidates:
            raise ValueError("no candidate blurs for regularization='auto'")
        decidable = pinned_test_decidable(prepared, baseline, request)
        candidates = request.auto_candidates if decidable else (DEFAULT_REGULARIZATION,)
        return cls(tuple(candidates), decidable)

    def attempt(self, request: ExplainRequest) -> ExplainRequest:
        """``request`` with the blur to try next."""
        blur = self.candidates[self.index]
        return dataclasses.replace(request, config=request.config.replace(regularization=blur))

    def record(self, result: AblationPathResult) -> bool:
        """Take the result of :meth:`attempt`; ``True`` when the search is over (not pinned,
        or no stronger blur left)."""
        self.result = result
        self.tried[str(self.candidates[self.index])] = result.path_score
        if not result.pinned or self.index + 1 == len(self.candidates):
            return True
        self.index += 1
        return False

    def outcome(self, prepared: Prepared) -> tuple[AblationPathResult, list[Warning]]:
        """The chosen result with ``info["regularization_auto"]``, and its extra warnings."""
        result, blur = self.result, self.candidates[self.index]
        assert result is not None
        pinned = result.pinned
        result.info["regularization_auto"] = {
            "chosen": blur,
            "tried": self.tried,
            "all_pinned": pinned,
            "decidable": self.decidable,
        }
        result.info["wall_seconds"] = time.perf_counter() - prepared.start
        if not pinned:
            return result, []
        message = (
            f"regularization='auto': the path score was pinned near its maximum for every "
            f"candidate blur ({', '.join(self.tried)}); returning the strongest ({blur:g}), "
            "which is still pinned: do not trust this path (thesis 2.8.3)"
        )
        return result, [(UnreliableResultWarning, message)]


def auto_regularize(
    prepared: Prepared, baseline: Baseline, request: ExplainRequest, options: Mapping[str, Any]
) -> tuple[AblationPathResult, list[Warning]]:
    """``regularization="auto"``: the weakest blur of ``request.auto_candidates`` whose path
    is not pinned (:attr:`AblationPathResult.pinned`, thesis 2.8.3), so no ground truth is
    needed. Where the pinned test cannot decide (:func:`pinned_test_decidable`: the classifier
    is about as confident on the image as a score can show), every candidate would pass, so the
    default blur (:data:`DEFAULT_REGULARIZATION`) is kept instead of the weakest.

    Returns the result, with ``info["regularization_auto"] = {"chosen", "tried", "all_pinned"}``,
    and the warnings to add: when every candidate is pinned, the strongest blur's result comes
    with an ``UnreliableResultWarning`` saying so.
    """
    search = _AutoSearch.start(prepared, baseline, request)
    while not search.record(explain_once(prepared, baseline, search.attempt(request), options)):
        pass
    return search.outcome(prepared)


# ----------------------------------------------------------------------------- many images

Outcome = tuple[AblationPathResult, list[Warning]]


def _attempt(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the ``Exception`` it raised (one image's error stays that image's)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - returned to the caller, per image
        return exc


def optimise_many(
    jobs: Sequence[tuple[Prepared, MaskSpace, ExplainRequest]],
) -> list[OptimizationResult | Exception]:
    """Stage 3 for several images at once (:func:`~ablation_paths.optimizer.optimize_paths_many`:
    one classifier pass per iteration over every image's path masks). One image's own error
    (e.g. a zero gradient) is returned in its place; when the shared pass fails (e.g. out of
    memory), each image is optimised alone. A single job is :func:`optimise` (progress bar)."""
    if len(jobs) <= 1:
        return [_attempt(optimise, *job) for job in jobs]
    problems = [
        PathProblem(p.classifier, space, p.target, r.score, r.config) for p, space, r in jobs
    ]
    try:
        return list(optimize_paths_many(problems, return_exceptions=True))
    except Exception:  # noqa: BLE001 - the shared pass: retried image by image
        return [_attempt(optimise, *job) for job in jobs]


def _conclude(
    prepared: Prepared,
    baseline: Baseline,
    space: MaskSpace,
    opt: OptimizationResult,
    request: ExplainRequest,
    options: Mapping[str, Any],
) -> AblationPathResult:
    """Stages 4-6 (evaluate_path, reduce, assemble) after the optimisation."""
    evaluation = evaluate_path(prepared, space, opt, request)
    heatmaps = reduce(
        space, opt, evaluation, request.score, prepared.target, request.config.sharpen
    )
    return assemble(prepared, baseline, space, opt, evaluation, heatmaps, request, options)


def explain_batch(
    attempts: Sequence[tuple[Prepared, Baseline, ExplainRequest]], options: Mapping[str, Any]
) -> list[AblationPathResult | Exception]:
    """Stages 2b-6 (:func:`explain_once`) for several images: ``build_space`` and stages 4-6
    image by image, the optimisation batched (:func:`optimise_many`). Each image's error is
    returned in its place."""
    out: list[Any] = [_attempt(build_space, p, b, r, options) for p, b, r in attempts]
    live = [i for i, space in enumerate(out) if not isinstance(space, Exception)]
    opts = optimise_many([(attempts[i][0], out[i], attempts[i][2]) for i in live])
    for i, opt in zip(live, opts, strict=True):
        prepared, baseline, request = attempts[i]
        space, out[i] = out[i], opt
        if not isinstance(opt, Exception):
            out[i] = _attempt(_conclude, prepared, baseline, space, opt, request, options)
    return out


def auto_regularize_many(
    jobs: Sequence[tuple[Prepared, Baseline]], request: ExplainRequest, options: Mapping[str, Any]
) -> list[Outcome | Exception]:
    """:func:`auto_regularize` for several images, batched by rounds: every image's first
    candidate blur in one :func:`explain_batch`, then the next candidate of the images whose
    path was pinned, and so on. Each image's error is returned in its place."""
    out: list[Any] = [_attempt(_AutoSearch.start, p, b, request) for p, b in jobs]
    pending = [i for i, s in enumerate(out) if not isinstance(s, Exception)]
    searches: dict[int, _AutoSearch] = {i: out[i] for i in pending}
    while pending:
        attempts = [(*jobs[i], searches[i].attempt(request)) for i in pending]
        still = []
        for i, result in zip(pending, explain_batch(attempts, options), strict=True):
            if isinstance(result, Exception):
                out[i] = result
            elif searches[i].record(result):
                out[i] = searches[i].outcome(jobs[i][0])
            else:
                still.append(i)
        pending = still
    return out


@contextlib.contextmanager
def _recording(into: list[warnings.WarningMessage]) -> Iterator[None]:
    """Record the warnings issued inside (the filters stay as they are) into ``into``."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    into.extend(caught)


def _prepare(
    model: nn.Module | Callable[[Tensor], Tensor],
    image: ImageLike,
    target: int | str | Tensor | None,
    request: ExplainRequest,
) -> tuple[Prepared, Baseline]:
    prepared = prepare_input(model, image, target, request)
    return prepared, make_baseline(prepared, request)


def _optimised(
    jobs: list[tuple[Prepared, Baseline]], request: ExplainRequest, options: Mapping[str, Any]
) -> list[Outcome | Exception]:
    if request.config.regularization == "auto":
        return auto_regularize_many(jobs, request, options)
    results = explain_batch([(p, b, request) for p, b in jobs], options)
    return [r if isinstance(r, Exception) else (r, []) for r in results]


def run_many(
    model: nn.Module | Callable[[Tensor], Tensor],
    items: Sequence[tuple[ImageLike, int | str | Tensor | None]],
    request: ExplainRequest,
) -> list[AblationPathResult | Exception]:
    """The pipeline for several images ``(image, target)`` with the optimisation batched: the
    per-image stages (prepare_input, make_baseline, build_space, evaluate_path, reduce,
    assemble, finish) run image by image, the optimise stage once for all
    (:func:`optimise_many`: one classifier pass per iteration over every image's path
    masks, ``config.batch_size`` images per call). ``regularization="auto"`` is batched by
    rounds (:func:`auto_regularize_many`). No per-path progress bar.

    Each result equals :func:`run` on that image up to the rounding of batched classifier
    calls. ``info["batch"] = {"images", "seconds"}`` records the batch; ``info["wall_seconds"]``
    is the batch's wall time divided by its images. The warnings of each image (and those of
    the request, e.g. ignored options) are issued and stored in its ``info["warnings"]``.

    Returns:
        per item, its result or the ``Exception`` that stopped it (a bad request raises).
    """
    start = time.perf_counter()
    common: list[warnings.WarningMessage] = []
    with _recording(common):
        options = check_request(request)
    caught: list[list[warnings.WarningMessage]] = [[] for _ in items]
    out: list[Any] = []
    for (image, target), rec in zip(items, caught, strict=True):
        with _recording(rec):
            out.append(_attempt(_prepare, model, image, target, request))
    live = [i for i, job in enumerate(out) if not isinstance(job, Exception)]
    outcomes = _optimised([out[i] for i in live], request, options)
    for i, outcome in zip(live, outcomes, strict=True):
        out[i] = outcome
        if not isinstance(outcome, Exception):
            with _recording(caught[i]):
                out[i] = _attempt(finish, *outcome)
    seconds = time.perf_counter() - start
    for result, rec in zip(out, caught, strict=True):
        if not isinstance(result, Exception):
            ours = [
                str(w.message)
                for w in [*common, *rec]
                if issubclass(w.category, AblationPathWarning)
            ]
            result.info["warnings"] = list(dict.fromkeys([*ours, *result.info["warnings"]]))
            result.info["wall_seconds"] = seconds / len(items)
            result.info["batch"] = {"images": len(items), "seconds": seconds}
    for w in [*common, *(w for rec in caught for w in rec)]:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def run(
    model: nn.Module | Callable[[Tensor], Tensor],
    image: ImageLike,
    target: int | str | Tensor | None,
    request: ExplainRequest,
) -> AblationPathResult:
    """The whole pipeline for one image (what :func:`ablation_paths.explain` calls)."""
    options = check_request(request)
    prepared = prepare_input(model, image, target, request)
    baseline = make_baseline(prepared, request)
    if request.config.regularization == "auto":
        result, extra = auto_regularize(prepared, baseline, request, options)
    else:
        result, extra = explain_once(prepared, baseline, request, options), []
    return finish(result, extra)
