"""Command-line interface: ``ablation-paths explain | view | bench``.

Every expected failure (bad input, bad option, unusable output path) is one line on stderr and a
non-zero exit (2); anything else is reported as an internal error in one line (exit 1) unless
``--debug`` asks for the traceback. SIGTERM is handled like Ctrl-C: the path found so far is kept
and written consistently (exit 130).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from ablation_paths.api import explain
from ablation_paths.bench.cli import add_bench_parser
from ablation_paths.diagnostics import result_warnings
from ablation_paths.inputs import Preprocess
from ablation_paths.io import (
    OutputPathError,
    atomic_path,
    atomic_write_text,
    check_not_input,
    check_output_dir,
    unique_names,
)
from ablation_paths.labels import LABEL_SETS, load_class_names
from ablation_paths.many.cli import add_audit_parser, add_many_arguments, run_many, wants_many
from ablation_paths.mask_spaces import mask_space_names
from ablation_paths.models import (
    NORMALIZATIONS,
    PREPROCESS_PRESETS,
    LoadedModel,
    load_model_spec,
    parse_model_args,
    resolve_device,
)
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.plotting import plot_heatmaps, plot_path_strip
from ablation_paths.report import write_report
from ablation_paths.result import AblationPathResult, load
from ablation_paths.scores import SCORES

__all__ = ["main", "write_outputs", "OUTPUT_FILES", "ModelSetup", "model_setup", "preprocessing"]

#: Files ``explain`` writes per image; ``summary.json`` is written last, so its presence means
#: the other four belong to the same, complete result.
OUTPUT_FILES = ("path.npz", "heatmaps.png", "path.png", "report.html", "summary.json")

#: Failures that are the user's to fix: reported in one line, exit status 2.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    OSError,
    ImportError,
    OutputPathError,
)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT / SIGTERM while a set of output files is written, then act on them: a second
    Ctrl-C never leaves a new ``path.npz`` beside an old ``summary.json``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


def write_outputs(result: AblationPathResult, out_dir: Path) -> dict[str, Path]:
    """Write ``path.npz``, ``heatmaps.png``, ``path.png``, ``report.html`` and, last,
    ``summary.json`` into ``out_dir``, each atomically; an old ``summary.json`` is removed first,
    so a folder with a summary always holds one complete result. Signals wait until the set is
    written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_file = out_dir / "summary.json"
    with _signals_deferred():
        summary_file.unlink(missing_ok=True)
        files = {"result": result.save(out_dir / "path.npz")}
        with atomic_path(out_dir / "heatmaps.png") as tmp:
            plot_heatmaps(result, tmp)
        files["heatmaps"] = out_dir / "heatmaps.png"
        with atomic_path(out_dir / "path.png") as tmp:
            plot_path_strip(result, tmp)
        files["strip"] = out_dir / "path.png"
        files["report"] = write_report(result, out_dir / "report.html")
        files["summary"] = atomic_write_text(
            summary_file, json.dumps(result.summary(), indent=2, default=str)
        )
    return files


# ----------------------------------------------------------------------------- argument types
def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _regularization(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {text!r}")
    return value


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def _config_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimiser options (AblationPathConfig)")
    defaults = AblationPathConfig()
    for f in fields(AblationPathConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("mask_size", "batch_size"):
            g.add_argument(flag, type=_int_at_least(1), default=None, help=f"default: {default}")
        elif f.name == "regularization":
            g.add_argument(
                flag, type=_regularization, default=None, help=f"default: {default}; or 'auto'"
            )
        elif isinstance(default, float):
            g.add_argument(flag, type=_finite_float, default=None, help=f"default: {default}")
        elif isinstance(default, int):
            g.add_argument(flag, type=_int_at_least(0), default=None, help=f"default: {default}")
        else:
            g.add_argument(flag, type=type(default), default=None, help=f"default: {default}")


def _parse_target(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _demo_inputs() -> list[tuple[str, Any, int | None]]:
    from ablation_paths.demo import load_demo_images

    return [(d.name, d.image, d.label) for d in load_demo_images()[:1]]


def _print_warnings(caught: list[warnings.WarningMessage], result: AblationPathResult) -> None:
    """The same warnings the library gives (``result_warnings``), once each, one line each."""
    seen: set[str] = set()
    messages = [
        str(w.message)
        for w in caught
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
    ]
    messages += [message for _, message in result_warnings(result)]
    for message in messages:
        if message not in seen:
            seen.add(message)
            print(f"  warning: {' '.join(message.split())}", file=sys.stderr)


def _plan_outputs(args: argparse.Namespace) -> list[tuple[str, Any, int | None, Path]]:
    """``(name, image, label, out_dir)`` per input, after every check that needs no model:
    input files exist, output folders are writable, no output file is one of the inputs, and
    inputs with the same file stem get folders ``cat``, ``cat-2``, ..."""
    if args.images:
        for p in args.images:
            if not Path(p).is_file():
                raise FileNotFoundError(f"image file not found: {p}")
        names = unique_names(Path(p).stem for p in args.images)
        inputs: list[tuple[str, Any, int | None]] = [
            (n, p, None) for n, p in zip(names, args.images, strict=True)
        ]
    elif args.model == "demo":
        inputs = _demo_inputs()
    else:
        raise ValueError("give at least one IMAGE for a model other than the demo")
    out_root = check_output_dir(args.out)
    several = len(inputs) > 1
    out_dirs = [check_output_dir(out_root / n) if several else out_root for n, _, _ in inputs]
    read_files = list(args.images)
    for extra in (args.labels, args.baseline, args.model, args.weights):
        if extra and Path(extra).is_file():
            read_files.append(extra)
    check_not_input([d / f for d in out_dirs for f in OUTPUT_FILES], read_files)
    return [(n, img, label, d) for (n, img, label), d in zip(inputs, out_dirs, strict=True)]


@dataclass
class ModelSetup:
    """What ``explain`` (one image or many) computes with, from the command-line options."""

    loaded: LoadedModel
    class_names: list[str] | None
    transform: Callable[[Any], Any] | None
    image_size: int | None  # --size (squash), or the model's own size; None with preprocess
    preprocess: Preprocess | None  # --resize / --crop / --preprocess


def preprocessing(args: argparse.Namespace) -> tuple[Preprocess | None, str | None]:
    """``(resize + crop, normalisation name)`` from ``--preprocess``, ``--resize``, ``--crop``
    and ``--normalize`` (explicit options override the preset's). ``--size`` with a resize or a
    crop is an error: it squashes, they keep the aspect ratio."""
    preset = PREPROCESS_PRESETS[args.preprocess] if args.preprocess else {}
    resize = args.resize if args.resize is not None else preset.get("resize")
    crop = args.crop if args.crop is not None else preset.get("crop")
    normalize = args.normalize if args.normalize is not None else preset.get("normalize")
    if args.size is not None and (resize is not None or crop is not None):
        raise ValueError(
            "--size squashes images to SIZE x SIZE; --resize/--crop/--preprocess resize the "
            "shorter side and centre-crop: give one or the other"
        )
    prep = Preprocess(resize, crop)
    return (prep if prep.active else None), normalize


def model_setup(args: argparse.Namespace, device: Any) -> ModelSetup:
    """Check the preprocessing options, load the model (``--model``, ``--model-arg``,
    ``--weights``) on ``device`` and resolve class names (``--labels``, else the model's own)
    and the transform (``--normalize``/``--preprocess``, else the model's own)."""
    prep, normalize = preprocessing(args)
    model_args = parse_model_args(args.model_arg)
    class_names = load_class_names(args.labels) if args.labels else None
    loaded = load_model_spec(args.model, device=device, model_args=model_args, weights=args.weights)
    size = args.size if args.size is not None else loaded.image_size
    return ModelSetup(
        loaded=loaded,
        class_names=class_names if class_names is not None else loaded.class_names,
        transform=NORMALIZATIONS[normalize] if normalize is not None else loaded.transform,
        image_size=None if prep is not None else size,
        preprocess=prep,
    )


def cmd_explain(args: argparse.Namespace) -> int:
    if wants_many(args):  # a folder, glob, LIST.txt or --engine ray
        return run_many(args)
    device = resolve_device(args.device)
    # everything that can be checked is checked before the model is loaded or anything computed
    planned = _plan_outputs(args)
    setup = model_setup(args, device)
    options = {
        f.name: getattr(args, f.name)
        for f in fields(AblationPathConfig)
        if getattr(args, f.name) is not None
    }
    target = _parse_target(args.target)
    for name, image, label, out_dir in planned:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = explain(
                setup.loaded.model,
                setup.preprocess.load(image) if setup.preprocess is not None else image,
                target,
                score=args.score,
                baseline=args.baseline,
                features=args.features,
                transform=setup.transform,
                class_names=setup.class_names,
                image_size=setup.image_size,
                device=device,
                progress=not args.quiet,
                **options,
            )
        result.info["wall_seconds"] = time.perf_counter() - start
        result.info["input"] = str(image) if isinstance(image, str) else str(name)
        result.info["model"] = setup.loaded.description
        if setup.preprocess is not None:
            result.info["preprocess"] = asdict(setup.preprocess)
        if label is not None:
            result.info["true_label"] = int(label)
        write_outputs(result, out_dir)
        status = "saturated" if result.converged else f"NOT saturated ({result.stopped})"
        who = result.target_name or result.target
        print(
            f"{name}: target {who}, {result.score} path score {result.path_score:.3f}, "
            f"saturation {result.saturation:.2f} ({status}), {result.iterations} iterations, "
            f"{result.info['wall_seconds']:.1f}s -> {out_dir}"
        )
        _print_warnings(caught, result)
        if result.stopped == "interrupted":
            print("interrupted: wrote the partial path; stopping", file=sys.stderr)
            return 130
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    source = Path(args.result)
    out = Path(args.out) if args.out else source.with_suffix(".html")
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a folder; give an .html file name")
    check_not_input([out], [source])
    check_output_dir(out.parent)
    result = load(source)
    write_report(result, out)
    print(f"wrote {out}")
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def _add_debug(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the full traceback of errors",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``PROG: error: ...``, exit status 2), without the usage text
    (``--help`` shows it); subcommand parsers inherit this class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _preprocessing_args(ex: argparse.ArgumentParser) -> None:
    g = ex.add_argument_group(
        "image preprocessing and class names",
        "torchvision's evaluation transform is --resize 256 --crop 224 --normalize imagenet "
        "(= --preprocess imagenet); --size instead squashes every image to a square.",
    )
    g.add_argument(
        "--size",
        type=_int_at_least(2),
        help="squash images to SIZE x SIZE, aspect ratio NOT kept (default: the model's size "
        "if known; otherwise images over 512x512 pixels are downscaled, aspect kept)",
    )
    g.add_argument(
        "--resize",
        type=_int_at_least(2),
        metavar="N",
        help="resize the shorter side to N pixels, aspect kept (bilinear, antialiased), as "
        "torchvision's Resize(N)",
    )
    g.add_argument(
        "--crop",
        type=_int_at_least(2),
        metavar="M",
        help="then keep the central M x M pixels, as torchvision's CenterCrop(M)",
    )
    g.add_argument(
        "--normalize",
        choices=tuple(NORMALIZATIONS),
        help="normalisation before the model (default: none, or the preset's)",
    )
    presets = "; ".join(
        f"{k} = --resize {v['resize']} --crop {v['crop']} --normalize {v['normalize']}"
        for k, v in PREPROCESS_PRESETS.items()
    )
    g.add_argument(
        "--preprocess",
        choices=tuple(PREPROCESS_PRESETS),
        help=f"named preprocessing: {presets} (explicit options override its parts)",
    )
    g.add_argument(
        "--labels",
        "--class-names",
        dest="labels",
        metavar="NAME|FILE",
        help=f"class names: {', '.join(LABEL_SETS)} (the bundled 1000 ImageNet-1k names) or a "
        "text file with one name per line (default: the model's own; the ImageNet names for a "
        "torchvision model with 1000 classes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ablation-paths",
        description="Explain image classifiers with optimised ablation paths.",
    )
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain images (default: the built-in demo)")
    ex.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: demo image)")
    ex.add_argument(
        "--model",
        default="demo",
        help="'demo', 'torchvision:NAME' (e.g. torchvision:resnet50, random weights unless "
        "--weights), 'package.module:callable' returning an nn.Module, or a TorchScript file "
        "(the last two run code: use only ones you trust)",
    )
    ex.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for a 'torchvision:NAME' or 'package.module:callable' model "
        "(repeatable), e.g. num_classes=10",
    )
    ex.add_argument(
        "--weights",
        help="state dict (.pt/.pth, read with weights_only=True) or .safetensors file loaded "
        "into a 'torchvision:NAME' or 'package.module:callable' model (runs no code)",
    )
    ex.add_argument("--target", help="class index or name (default: the predicted class)")
    ex.add_argument("--score", choices=SCORES, default="retain")
    ex.add_argument(
        "--features", choices=mask_space_names(), default="pixel", help="registered mask space"
    )
    ex.add_argument(
        "--baseline", default="blur", help="blur | blur:SIGMA | black | gray | mean | FILE"
    )
    ex.add_argument("--out", default="ablation_output", help="output folder")
    _preprocessing_args(ex)
    ex.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_debug(ex, argparse.SUPPRESS)
    _config_args(ex)
    add_many_arguments(ex)
    ex.set_defaults(func=cmd_explain)

    vw = sub.add_parser("view", help="write the HTML path browser for a saved result")
    vw.add_argument("result", help="a path.npz written by 'explain'")
    vw.add_argument("--out", help="HTML file (default: RESULT with suffix .html)")
    vw.add_argument("--open", action="store_true", help="open it in the web browser")
    _add_debug(vw, argparse.SUPPRESS)
    vw.set_defaults(func=cmd_view)

    add_bench_parser(sub)
    add_audit_parser(sub)
    from ablation_paths import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: the partial path is kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, EXPECTED_ERRORS):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 2
        print(
            f"error: internal error {type(exc).__name__}: {_one_line(exc)} (run with --debug "
            f"for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
