"""Explaining many images: per-image output folders, resume, a local or a Ray engine.

>>> from ablation_paths.many import explain_many
>>> run = explain_many(model, "photos/", out="runs/photos", transform=imagenet_normalize)
>>> run.done, run.skipped, run.failed

Inputs (:func:`collect_images`): a folder (every image file below it, sorted), a glob pattern,
a ``.txt`` list file (one image path per line, relative to the list's folder, optionally
followed by a tab and a target class), or any iterable of paths, ``(name, image[, target])``
tuples, :class:`ImageItem` objects or dataset samples with ``image`` / ``label`` / ``name``
attributes (e.g. :func:`ablation_paths.bench.datasets.load_dataset`).

Output: ``OUT/NAME/`` per image (the files of :func:`ablation_paths.cli.write_outputs` plus a
thumbnail ``thumb.png`` and ``done.json``), and the gallery ``OUT/index.html``
(:mod:`ablation_paths.gallery`). Names are the sanitised file stems; a stem seen again gets a
``~2``, ``~3``, ... suffix in input order (folders, globs and lists are sorted, so names are
stable across reruns).

Resume rule: an image is *done* exactly when ``OUT/NAME/done.json`` exists. Each image's files
are written into a hidden temporary folder, ``done.json`` last, and the folder is then moved into
place with one ``os.replace``, so a kill at any moment leaves either a complete folder or none.
A rerun skips done images, and refuses to mix results computed with other settings
(``done.json`` records a fingerprint of them).

Batches: with ``batch_images=K`` the pending images go K at a time through
:func:`ablation_paths.pipeline.run_many`, whose optimisation makes one classifier pass per
iteration over all K images' paths (the other stages stay per image); each image's folder is
written as soon as its batch finishes, so Ctrl-C loses at most the unfinished batch. With Ray,
each task takes K images. Results equal the one-by-one run's up to floating-point rounding, so
the resume fingerprint does not include K. ``K = 1`` (the default): one image at a time.

Engines: ``"local"`` (this process) and ``"ray"`` (the pool of :mod:`ablation_paths.raypool`,
shared with the benchmark: one actor per CPU slot, or per GPU when the cluster has GPUs; the
model and the settings are put once into Ray's object store; actors are restarted and their
tasks retried after a crash, a dead actor's images go once to another; results stream back and
the driver writes them). Ctrl-C or SIGTERM stop the run; every finished image is kept.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ablation_paths.inputs import Preprocess
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.result import AblationPathResult

__all__ = [
    "DONE_FILE",
    "IMAGE_SUFFIXES",
    "ImageItem",
    "ManyRun",
    "ManySettings",
    "collect_images",
    "explain_many",
    "is_done",
    "read_done",
    "unique_names",
]

logger = logging.getLogger(__name__)

#: The file whose presence marks an image as done (written last, moved in atomically).
DONE_FILE = "done.json"
#: File suffixes taken as images when reading a folder or a glob.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_PARTIAL_DIR = ".partial"
_THUMB_SIDE = 96


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ImageItem:
    """One image to explain.

    Attributes:
        name: output folder name (unique within a run; see :func:`unique_names`).
        image: a file path, a tensor ``[C, H, W]``, a numpy array or a PIL image.
        target: class index or name (``None``: the run's target, else the predicted class).
        source: where the image came from (file path), for the records.
    """

    name: str
    image: Any
    target: int | str | None = None
    source: str | None = None


def _sanitise(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return clean[:120] or "image"


def unique_names(names: Sequence[str]) -> list[str]:
    """Sanitised, unique folder names in input order: a repeated name gets ``~2``, ``~3``, ...

    >>> unique_names(["a/cat", "b/cat", "dog?"])
    ['a_cat', 'b_cat', 'dog']
    >>> unique_names(["cat", "cat", "cat"])
    ['cat', 'cat~2', 'cat~3']
    """
    seen: dict[str, int] = {}
    taken: set[str] = set()
    out = []
    for raw in names:
        base = _sanitise(raw)
        name = base
        while name.lower() in taken:  # case-insensitive: safe on macOS / Windows file systems
            seen[base.lower()] = seen.get(base.lower(), 1) + 1
            name = f"{base}~{seen[base.lower()]}"
        taken.add(name.lower())
        out.append(name)
    return out


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _parse_target(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def _from_list_file(path: Path) -> list[tuple[str, Any, Any, str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        file, _, target = line.partition("\t")
        p = Path(file.strip())
        if not p.is_absolute():
            p = path.parent / p
        if not p.is_file():
            raise FileNotFoundError(f"{path}:{n}: image file not found: {p}")
        rows.append((p.stem, p, _parse_target(target.strip()) if target.strip() else None, str(p)))
    return rows


def _from_string(spec: str | os.PathLike[str]) -> list[tuple[str, Any, Any, str]]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if _is_image_file(p)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return [(p.stem, p, None, str(p)) for p in files]
    if path.is_file() and path.suffix.lower() == ".txt":
        return _from_list_file(path)
    if path.is_file():
        return [(path.stem, path, None, str(path))]
    if any(c in str(spec) for c in "*?["):
        files = sorted(Path(p) for p in globlib.glob(str(spec), recursive=True))
        files = [p for p in files if _is_image_file(p)]
        if not files:
            raise ValueError(f"no image files match {spec!r}")
        return [(p.stem, p, None, str(p)) for p in files]
    raise FileNotFoundError(f"not an image file, folder, glob or .txt list: {spec}")


def _from_object(obj: Any, index: int) -> tuple[str, Any, Any, str | None]:
    if isinstance(obj, ImageItem):
        return obj.name, obj.image, obj.target, obj.source
    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        if not p.is_file():
            raise FileNotFoundError(f"image file not found: {p}")
        return p.stem, p, None, str(p)
    if isinstance(obj, tuple):
        if len(obj) == 2:
            return str(obj[0]), obj[1], None, None
        if len(obj) == 3:
            return str(obj[0]), obj[1], obj[2], None
        raise ValueError(f"input {index}: expected (name, image) or (name, image, target)")
    if hasattr(obj, "image"):  # dataset samples: BenchSample, DemoImage, ...
        name = getattr(obj, "name", None) or f"image_{index:05d}"
        label = getattr(obj, "label", None)
        return str(name), obj.image, None if label is None else int(label), None
    if isinstance(obj, (Tensor, np.ndarray)):
        return f"image_{index:05d}", obj, None, None
    raise TypeError(
        f"input {index}: cannot use a {type(obj).__name__} as an image; give a path, a tensor, "
        f"(name, image[, target]) or an ImageItem"
    )


def collect_images(images: Any) -> list[ImageItem]:
    """Turn the inputs of :func:`explain_many` into :class:`ImageItem` objects with unique names.

    Args:
        images: a folder, a glob pattern, a ``.txt`` list, one image file, or an iterable of
            paths / ``(name, image[, target])`` tuples / :class:`ImageItem` / samples with
            ``image`` (and ``name``, ``label``) attributes. A list of strings may mix folders,
            globs and files.
    """
    rows: list[tuple[str, Any, Any, str | None]] = []
    if isinstance(images, (str, os.PathLike)):
        rows.extend(_from_string(images))
    else:
        for i, obj in enumerate(images):
            if isinstance(obj, (str, os.PathLike)) and not _is_image_file(Path(obj)):
                rows.extend(_from_string(obj))  # a folder, glob or list file inside a list
            else:
                rows.append(_from_object(obj, i))
    if not rows:
        raise ValueError("no images given")
    names = unique_names([r[0] for r in rows])
    return [
        ImageItem(name, image, target, source)
        for name, (_, image, target, source) in zip(names, rows, strict=True)
    ]


# ----------------------------------------------------------------------------- settings
@dataclass
class ManySettings:
    """Everything :func:`ablation_paths.explain` gets besides the model and the image.

    ``options`` are :class:`~ablation_paths.AblationPathConfig` field overrides. The settings
    travel once to every Ray actor, so ``transform`` must be picklable (a module-level function
    or an ``nn.Module``, not a lambda) for the Ray engine.
    """

    target: int | str | None = None
    score: str = "retain"
    baseline: Any = "blur"
    features: str = "pixel"
    transform: Callable[[Tensor], Tensor] | None = None
    config: AblationPathConfig | None = None
    class_names: list[str] | None = None
    image_size: int | tuple[int, int] | None = None
    device: str | None = None
    feature_options: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    preprocess: Preprocess | None = None

    def __post_init__(self) -> None:
        if self.preprocess is not None and not self.preprocess.active:
            self.preprocess = None
        if self.preprocess is not None and self.image_size is not None:
            raise ValueError("give either image_size (squash) or preprocess (resize + crop)")

    def fingerprint(self) -> str:
        """Short hash of every setting that changes a result (the model is not included)."""
        cfg = self.config or AblationPathConfig()
        if self.options:
            cfg = cfg.replace(**self.options)
        baseline = self.baseline
        if isinstance(baseline, Tensor):
            baseline = hashlib.sha256(baseline.detach().cpu().numpy().tobytes()).hexdigest()
        transform = self.transform
        name = None
        if transform is not None:
            name = getattr(transform, "__qualname__", type(transform).__qualname__)
        payload = {
            "target": self.target,
            "score": self.score,
            "baseline": str(baseline),
            "features": self.features,
            "transform": name,
            "config": asdict(cfg),
            "class_names": self.class_names,
            "image_size": self.image_size,
            "feature_options": self.feature_options,
        }
        if self.preprocess is not None:  # absent otherwise: older runs keep their fingerprint
            payload["preprocess"] = asdict(self.preprocess)
        blob = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]


def _payload(item: ImageItem) -> Any:
    """What travels to a worker: file contents instead of paths (no shared file system needed)."""
    if isinstance(item.image, (str, os.PathLike)):
        return Path(item.image).read_bytes()
    return item.image


def _decode(payload: Any) -> Any:
    if isinstance(payload, bytes):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(payload)) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read the image file: {exc}") from exc
    return payload


def explain_item(
    model: nn.Module | Callable[[Tensor], Tensor],
    payload: Any,
    target: int | str | None,
    settings: ManySettings,
) -> AblationPathResult:
    """One image's explanation as both engines compute it (``payload`` from the driver).

    The library's own warnings about the result are not printed (they would be repeated for
    every image and break the progress bar); their messages are added to
    ``result.info["warnings"]``, and from there go to ``done.json`` and the gallery. Other
    warnings pass through."""
    from ablation_paths.api import explain
    from ablation_paths.diagnostics import AblationPathWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AblationPathWarning)
        result = _explain(explain, model, payload, target, settings)
    ours = []
    for w in caught:
        if issubclass(w.category, AblationPathWarning):
            ours.append(" ".join(str(w.message).split()))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    stored = [" ".join(str(m).split()) for m in result.info.get("warnings", [])]
    result.info["warnings"] = list(dict.fromkeys([*stored, *ours]))
    result.info["wall_seconds"] = time.perf_counter() - start
    return result


def _explain(
    explain: Callable[..., AblationPathResult],
    model: nn.Module | Callable[[Tensor], Tensor],
    payload: Any,
    target: int | str | None,
    settings: ManySettings,
) -> AblationPathResult:
    image = _decode(payload)
    if settings.preprocess is not None:
        image = settings.preprocess.load(image)
    return explain(
        model,
        image,
        target if target is not None else settings.target,
        score=settings.score,
        baseline=settings.baseline,
        features=settings.features,
        transform=settings.transform,
        config=settings.config,
        class_names=settings.class_names,
        image_size=settings.image_size,
        device=settings.device,
        feature_options=settings.feature_options,
        **settings.options,
    )


# ----------------------------------------------------------------------------- outputs
def is_done(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a finished image (its ``done.json`` exists and parses)."""
    return read_done(folder) is not None


def read_done(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record in ``folder / done.json``, or ``None`` when the image is not done."""
    f = Path(folder) / DONE_FILE
    try:
        rec = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def _thumbnail(result: AblationPathResult, file: Path) -> None:
    """The image with its heatmap overlaid (red = important), ``_THUMB_SIDE`` px long side."""
    from PIL import Image

    img = result.image.float()
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:
        img = (img - lo) / max(hi - lo, 1e-12)
    rgb = img.clamp(0, 1).expand(3, -1, -1) if img.shape[0] == 1 else img.clamp(0, 1)
    h = result.heatmap().float()
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-12)
    red = torch.tensor([1.0, 0.1, 0.1]).view(3, 1, 1)
    alpha = 0.6 * h.unsqueeze(0)
    mixed = (1 - alpha) * (0.35 + 0.65 * rgb) * 0.9 + alpha * red
    arr = (mixed.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    pil.thumbnail((_THUMB_SIDE, _THUMB_SIDE), Image.Resampling.LANCZOS)
    pil.save(file, format="PNG")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_image_outputs(
    result: AblationPathResult,
    out: Path,
    item: ImageItem,
    record: dict[str, Any],
    figures: bool = True,
) -> Path:
    """Write one image's folder atomically: files into ``OUT/.partial/NAME``, ``done.json``
    last, then one ``os.replace`` to ``OUT/NAME``. Returns the final folder.

    With ``figures`` the files are those of :func:`ablation_paths.cli.write_outputs`; without,
    the two Matplotlib PNG figures are left out (``path.npz``, ``report.html``,
    ``summary.json``), which halves the writing time on small images."""
    from ablation_paths.cli import write_outputs
    from ablation_paths.diagnostics import result_warnings
    from ablation_paths.report import write_report

    final = out / item.name
    tmp = out / _PARTIAL_DIR / f"{item.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    result.info["input"] = item.name
    if item.source is not None:
        result.info["source"] = item.source
    if figures:
        write_outputs(result, tmp)
    else:
        result.save(tmp / "path.npz")
        write_report(result, tmp / "report.html")
        summary = json.dumps(result.summary(), indent=2, default=str)
        (tmp / "summary.json").write_text(summary, encoding="utf-8")
    _thumbnail(result, tmp / "thumb.png")
    predicted = int(result.probs[0].argmax())
    record = {
        **record,
        "name": item.name,
        "source": item.source,
        "target": result.target,
        "target_name": result.target_name,
        "predicted": predicted,
        "predicted_name": result.class_names[predicted] if result.class_names else None,
        "target_prob_image": float(result.probs[0, result.target]),
        "score": result.score,
        "path_score": result.path_score,
        "saturation": result.saturation,
        "converged": result.converged,
        "pinned": result.pinned,
        "iterations": result.iterations,
        "warnings": list(
            dict.fromkeys(
                " ".join(m.split())
                for m in [
                    *result.info.get("warnings", []),
                    *(m for _, m in result_warnings(result)),
                ]
            )
        ),
        "seconds": float(result.info.get("wall_seconds", 0.0)),
        "finished": time.time(),
    }
    with open(tmp / DONE_FILE, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # an unfinished folder from elsewhere (no done.json): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(out)
    return final


# ----------------------------------------------------------------------------- the run
@dataclass
class ManyRun:
    """What :func:`explain_many` did.

    Attributes:
        out: the output folder.
        names: every image's folder name, in input order.
        done: images computed by this run (in completion order); ``skipped``: images
            already done before it.
        failed: image name -> error message (not done; a rerun tries them again).
        interrupted: stopped by Ctrl-C / SIGTERM (``done`` still holds what finished).
        seconds: wall time of this run; ``engine``: ``"local"`` or ``"ray"``.
        gallery: the gallery file, if written.
    """

    out: Path
    names: list[str]
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    engine: str = "local"
    gallery: Path | None = None

    @property
    def complete(self) -> bool:
        """Every image is done."""
        return (
            not self.failed
            and not self.interrupted
            and len(self.done) + len(self.skipped) == len(self.names)
        )

    def folders(self) -> list[Path]:
        """The finished images' folders, in input order."""
        return [self.out / n for n in self.names if is_done(self.out / n)]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` while the run lasts (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="images", unit="img", dynamic_ncols=True)


def explain_many(
    model: nn.Module | Callable[[Tensor], Tensor],
    images: Any,
    *,
    out: str | os.PathLike[str],
    target: int | str | None = None,
    score: str = "retain",
    baseline: Any = "blur",
    features: str = "pixel",
    transform: Callable[[Tensor], Tensor] | None = None,
    config: AblationPathConfig | None = None,
    class_names: Sequence[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    feature_options: dict[str, Any] | None = None,
    preprocess: Preprocess | None = None,
    resume: bool = True,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    max_restarts: int = 2,
    max_task_retries: int = 2,
    progress: bool = True,
    gallery: bool = True,
    figures: bool = True,
    on_result: Callable[[str, AblationPathResult], None] | None = None,
    batch_images: int = 1,
    **options: Any,
) -> ManyRun:
    """Explain many images, one output folder each, resumably; see the module docstring.

    Args:
        model: the classifier (eval mode); picklable for ``engine="ray"``.
        images: a folder, glob, ``.txt`` list or iterable (see :func:`collect_images`).
        out: output folder (``OUT/NAME/`` per image, ``OUT/index.html`` the gallery).
        target, score, baseline, features, transform, config, class_names, image_size,
            device, feature_options, options: as for :func:`ablation_paths.explain`; an item's
            own target (a list's second column, a sample's label) wins over ``target``;
            ``preprocess``: a resize + centre crop of every image (:class:`Preprocess`).
        resume: skip images already done (``False`` recomputes and replaces them).
        engine: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``None``: a local instance, or the one already started).
        workers: Ray actors (default: one per GPU when there are GPUs, else one per CPU).
        max_restarts, max_task_retries: Ray actor restarts and task retries after a crash.
        progress, gallery: a progress bar over images; ``OUT/index.html`` (also after Ctrl-C).
        figures: also write each image's Matplotlib figures (not needed by report or gallery).
        on_result: called with ``(name, result)`` after each image's folder is written.
        batch_images: images optimised together (see "Batches" in the module docstring).

    Returns:
        a :class:`ManyRun`; single images' errors are in ``failed`` (and logged), not raised;
        Ctrl-C and SIGTERM end the run with ``interrupted=True``.
    """
    _check_run(engine, batch_images, model)
    settings = ManySettings(
        target=target,
        score=score,
        baseline=baseline,
        features=features,
        transform=transform,
        config=config,
        class_names=list(class_names) if class_names is not None else None,
        image_size=image_size,
        device=str(device) if device is not None else None,
        feature_options=dict(feature_options) if feature_options else None,
        options=dict(options),
        preprocess=preprocess,
    )
    fingerprint = settings.fingerprint()  # also validates the option names
    items = _outside(collect_images(images), Path(out))
    Path(out).mkdir(parents=True, exist_ok=True)
    run = ManyRun(out=Path(out), names=[it.name for it in items], engine=engine)
    todo = _pending(items, run, fingerprint, resume)
    bar = _progress_bar(progress, len(items), len(run.skipped))
    sink = _Sink(run, fingerprint, figures, on_result, bar)
    runner = _run_local if engine == "local" else _run_ray
    engine_args = (address, workers, max_restarts, max_task_retries, batch_images)
    work = lambda: runner(model, todo, settings, sink, *engine_args) if todo else None  # noqa: E731
    return _execute(run, sink, work, gallery)


def _check_run(engine: str, batch_images: int, model: object) -> None:
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    check_batch_images(batch_images)
    if isinstance(model, nn.Module) and model.training:
        raise ValueError("model is in training mode; call model.eval() first")


def check_batch_images(value: object) -> int:
    """``batch_images`` must be an integer >= 1; returns it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"batch_images must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"batch_images must be >= 1, got {value}")
    return int(value)


def _batches(todo: list[ImageItem], size: int) -> list[list[ImageItem]]:
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def _execute(run: ManyRun, sink: _Sink, work: Callable[[], None], gallery: bool) -> ManyRun:
    """Run ``work`` with SIGTERM as Ctrl-C; whatever happens, close the progress bar, drop
    unfinished folders and write the gallery of what is done."""
    start = time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            work()
    except KeyboardInterrupt:
        run.interrupted = True
        logger.warning("interrupted: %d finished image(s) kept in %s", len(run.done), run.out)
    finally:
        sink.close()
        run.seconds = time.perf_counter() - start
        shutil.rmtree(run.out / _PARTIAL_DIR, ignore_errors=True)
        if gallery:
            from ablation_paths.gallery import write_gallery

            run.gallery = write_gallery(run.out)
    return run


def _pending(
    items: list[ImageItem], run: ManyRun, fingerprint: str, resume: bool
) -> list[ImageItem]:
    """The items still to compute; done ones go to ``run.skipped`` (other settings: refused)."""
    todo: list[ImageItem] = []
    for it in items:
        rec = read_done(run.out / it.name) if resume else None
        if rec is None:
            todo.append(it)
            continue
        if rec.get("settings") != fingerprint:
            raise ValueError(
                f"{run.out / it.name} was computed with other settings ({rec.get('settings')}; "
                f"now {fingerprint}): resuming would mix them. Use another output folder, or "
                f"resume=False (--no-resume) to recompute everything"
            )
        run.skipped.append(it.name)
    return todo


class _Sink:
    """Where finished images go, in the driver: written, counted, shown on the progress bar."""

    def __init__(
        self,
        run: ManyRun,
        fingerprint: str,
        figures: bool,
        on_result: Callable[[str, AblationPathResult], None] | None,
        bar: Any,
    ) -> None:
        self.run = run
        self.record = {"settings": fingerprint, "engine": run.engine}
        self.figures = figures
        self.on_result = on_result
        self.bar = bar

    def __call__(
        self, item: ImageItem, result: AblationPathResult | None, error: str | None
    ) -> None:
        if result is not None and result.stopped == "interrupted":
            raise KeyboardInterrupt  # a partial path is never recorded as done
        if result is None:
            self.run.failed[item.name] = error or "unknown error"
            logger.warning("%s failed: %s", item.name, error)
        else:
            rec = {**self.record, "host": result.info.get("host")}
            write_image_outputs(result, self.run.out, item, rec, figures=self.figures)
            self.run.done.append(item.name)
            if self.on_result is not None:
                self.on_result(item.name, result)
        if self.bar is not None:
            if result is not None:
                score, sat = f"{result.path_score:.3f}", f"{result.saturation:.2f}"
                self.bar.set_postfix(score=score, sat=sat, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _outside(items: list[ImageItem], out_dir: Path) -> list[ImageItem]:
    """Drop input files that lie inside the output folder (thumbnails and figures of an earlier
    run when ``out`` is inside the image folder)."""
    root = out_dir.resolve()
    kept = [
        it
        for it in items
        if not (
            isinstance(it.image, (str, os.PathLike)) and root in Path(it.image).resolve().parents
        )
    ]
    if len(kept) < len(items):
        logger.info("skipped %d image file(s) inside the output folder", len(items) - len(kept))
    if not kept:
        raise ValueError(f"every input image lies inside the output folder {out_dir}")
    return kept


Finish = Callable[[ImageItem, AblationPathResult | None, str | None], None]


def _run_local(
    model: Any,
    todo: list[ImageItem],
    settings: ManySettings,
    finish: Finish,
    address: str | None,
    workers: int | None,
    max_restarts: int,
    max_task_retries: int,
    batch_images: int = 1,
) -> None:
    host = socket.gethostname()
    if batch_images == 1:
        for item in todo:
            finish(item, *_explain_or_error(model, _payload(item), item.target, settings, host))
        return
    for batch in _batches(todo, batch_images):
        payloads = [_payload(item) for item in batch]
        targets = [item.target for item in batch]
        _finish_batch(batch, _explain_batch(model, payloads, targets, settings, host), finish)


def _finish_batch(
    batch: list[ImageItem],
    outcomes: list[tuple[AblationPathResult | None, str | None]],
    finish: Finish,
) -> None:
    """Hand a batch's images to ``finish`` in order; images whose path was interrupted by
    Ctrl-C (never recorded as done) come last, so every finished image of the batch is kept."""
    interrupted = []
    for item, (result, error) in zip(batch, outcomes, strict=True):
        if result is not None and result.stopped == "interrupted":
            interrupted.append(item)
        else:
            finish(item, result, error)
    if interrupted:
        raise KeyboardInterrupt(f"{len(interrupted)} image(s) of the batch were interrupted")


#: Errors that fail one image (recorded in ``ManyRun.failed``) instead of stopping the run.
IMAGE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, FileNotFoundError, RuntimeError)


def _explain_or_error(
    model: Any, payload: Any, target: Any, settings: ManySettings, host: str
) -> tuple[AblationPathResult | None, str | None]:
    """Explain one image; an expected failure becomes an error message for its record instead
    of stopping the run. The result records the ``host`` that computed it."""
    try:
        result = explain_item(model, payload, target, settings)
    except IMAGE_ERRORS as exc:
        return None, f"{type(exc).__name__}: {exc}"
    result.info["host"] = host
    return result, None


def _request(settings: ManySettings) -> Any:
    """The :class:`~ablation_paths.pipeline.ExplainRequest` that :func:`_explain` makes through
    :func:`ablation_paths.explain`."""
    from ablation_paths.api import _config
    from ablation_paths.pipeline import ExplainRequest

    return ExplainRequest(
        score=settings.score,
        baseline=settings.baseline,
        features=settings.features,
        config=_config(settings.config, dict(settings.options)),
        feature_options=dict(settings.feature_options or {}),
        transform=settings.transform,
        class_names=settings.class_names,
        image_size=settings.image_size,
        device=settings.device,
    )


def _load(payload: Any, settings: ManySettings) -> Any:
    image = _decode(payload)
    return settings.preprocess.load(image) if settings.preprocess is not None else image


def _explain_batch(
    model: Any, payloads: list[Any], targets: list[Any], settings: ManySettings, host: str
) -> list[tuple[AblationPathResult | None, str | None]]:
    """Several images at once (:func:`ablation_paths.pipeline.run_many`: the optimisation
    batched), each image's outcome as :func:`_explain_or_error` gives it; the library's
    warnings are stored per image (``info["warnings"]``), not printed, as in
    :func:`explain_item`."""
    from ablation_paths.diagnostics import AblationPathWarning
    from ablation_paths.pipeline import run_many

    request = _request(settings)
    out: list[Any] = []
    for payload in payloads:
        try:
            out.append(_load(payload, settings))
        except IMAGE_ERRORS as exc:
            out.append(exc)
    live = [i for i, x in enumerate(out) if not isinstance(x, Exception)]
    items = [(out[i], settings.target if targets[i] is None else targets[i]) for i in live]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AblationPathWarning)
        results = run_many(model, items, request) if items else []
    for w in caught:
        if not issubclass(w.category, AblationPathWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for i, result in zip(live, results, strict=True):
        out[i] = result
    outcomes: list[tuple[AblationPathResult | None, str | None]] = []
    for x in out:
        if isinstance(x, IMAGE_ERRORS):
            outcomes.append((None, f"{type(x).__name__}: {x}"))
        elif isinstance(x, Exception):
            raise x
        else:
            x.info["warnings"] = list(
                dict.fromkeys(" ".join(m.split()) for m in x.info["warnings"])
            )
            x.info["host"] = host
            outcomes.append((x, None))
    return outcomes


class _Actor:
    """Ray actor: holds the model (from the object store) on its device and explains images."""

    def __init__(self, model: Any, settings: ManySettings) -> None:
        self.settings = settings
        self.host = socket.gethostname()
        if isinstance(model, nn.Module):  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU
            if settings.device is not None:
                model = model.to(settings.device)
            elif torch.cuda.is_available():
                model = model.cuda()
        self.model = model

    def explain(self, payload: Any, target: Any) -> tuple[AblationPathResult | None, str | None]:
        return _explain_or_error(self.model, payload, target, self.settings, self.host)

    def explain_batch(
        self, payloads: list[Any], targets: list[Any]
    ) -> list[tuple[AblationPathResult | None, str | None]]:
        return _explain_batch(self.model, payloads, targets, self.settings, self.host)


def _run_ray(
    model: Any,
    todo: list[ImageItem],
    settings: ManySettings,
    finish: Finish,
    address: str | None,
    workers: int | None,
    max_restarts: int,
    max_task_retries: int,
    batch_images: int = 1,
) -> None:
    """The shared Ray pool (:mod:`ablation_paths.raypool`): the model and the settings go once
    into the object store, one :class:`_Actor` per slot, each image's bytes per task (a batch
    of ``batch_images`` images per task when it is above 1)."""
    from ablation_paths.raypool import PoolOptions, run_pool

    if isinstance(model, nn.Module):
        model = model.cpu()
    options = PoolOptions(address, workers, max_restarts, max_task_retries)
    if batch_images == 1:

        def done(item: ImageItem, value: Any, error: str | None) -> None:
            result, message = value if value is not None else (None, error)
            finish(item, result, message)

        args = lambda item: (_payload(item), item.target)  # noqa: E731
        run_pool(_Actor, (model, settings), "explain", todo, args, done, options)
        return

    def done_batch(batch: list[ImageItem], value: Any, error: str | None) -> None:
        _finish_batch(batch, value if value is not None else [(None, error)] * len(batch), finish)

    batch_args = lambda b: ([_payload(i) for i in b], [i.target for i in b])  # noqa: E731
    batches = _batches(todo, batch_images)
    run_pool(_Actor, (model, settings), "explain_batch", batches, batch_args, done_batch, options)
