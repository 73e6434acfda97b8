"""Command-line interface: ``ablation-paths explain | view | bench``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ablation_paths.api import explain
from ablation_paths.bench.cli import add_bench_parser
from ablation_paths.many.cli import add_audit_parser, add_many_arguments, run_many, wants_many
from ablation_paths.mask_spaces import mask_space_names
from ablation_paths.models import imagenet_normalize, load_model_spec
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.plotting import plot_heatmaps, plot_path_strip
from ablation_paths.report import write_report
from ablation_paths.result import AblationPathResult, load
from ablation_paths.scores import SCORES

__all__ = ["main", "write_outputs"]


def write_outputs(result: AblationPathResult, out_dir: Path) -> dict[str, Path]:
    """Write ``path.npz``, ``heatmaps.png``, ``path.png``, ``summary.json`` and ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "result": result.save(out_dir / "path.npz"),
        "heatmaps": plot_heatmaps(result, out_dir / "heatmaps.png"),
        "strip": plot_path_strip(result, out_dir / "path.png"),
        "report": write_report(result, out_dir / "report.html"),
    }
    summary_file = out_dir / "summary.json"
    summary_file.write_text(json.dumps(result.summary(), indent=2, default=str))
    files["summary"] = summary_file
    return files


def _config_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimiser options (AblationPathConfig)")
    defaults = AblationPathConfig()
    for f in fields(AblationPathConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("mask_size", "batch_size"):
            g.add_argument(flag, type=int, default=None, help=f"default: {default}")
        else:
            g.add_argument(flag, type=type(default), default=None, help=f"default: {default}")


def _parse_target(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _demo_inputs() -> list[tuple[str, Any, int | None]]:
    from ablation_paths.demo import load_demo_images

    return [(d.name, d.image, d.label) for d in load_demo_images()[:1]]


def cmd_explain(args: argparse.Namespace) -> int:
    if wants_many(args):  # a folder, glob, LIST.txt or --engine ray
        return run_many(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model_spec(args.model, device=device)
    class_names = loaded.class_names
    if args.class_names:
        class_names = [
            line.strip() for line in Path(args.class_names).read_text().splitlines() if line.strip()
        ]
    transform = imagenet_normalize if args.normalize == "imagenet" else loaded.transform
    size = args.size or loaded.image_size
    if args.images:
        inputs: list[tuple[str, Any, int | None]] = [(Path(p).stem, p, None) for p in args.images]
    elif args.model == "demo":
        inputs = _demo_inputs()
    else:
        print("error: give at least one IMAGE for a model other than the demo", file=sys.stderr)
        return 2
    options = {
        f.name: getattr(args, f.name)
        for f in fields(AblationPathConfig)
        if getattr(args, f.name) is not None
    }
    out_root = Path(args.out)
    several = len(inputs) > 1
    for name, image, label in inputs:
        out_dir = out_root / name if several else out_root
        target = _parse_target(args.target)
        start = time.perf_counter()
        result = explain(
            loaded.model,
            image,
            target,
            score=args.score,
            baseline=args.baseline,
            features=args.features,
            transform=transform,
            class_names=class_names,
            image_size=size,
            device=device,
            progress=not args.quiet,
            **options,
        )
        result.info["wall_seconds"] = time.perf_counter() - start
        result.info["input"] = str(name)
        result.info["model"] = loaded.description
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
        if result.pinned:
            print(
                "  note: path score near its maximum: either the evidence is very small or the "
                "masks are adversarial (thesis 2.8.3); compare with a larger --regularization",
                file=sys.stderr,
            )
        if result.stopped == "interrupted":
            print("interrupted: wrote the partial path; stopping", file=sys.stderr)
            return 130
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    result = load(args.result)
    out = Path(args.out) if args.out else Path(args.result).with_suffix(".html")
    write_report(result, out)
    print(f"wrote {out}")
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablation-paths",
        description="Explain image classifiers with optimised ablation paths.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain images (default: the built-in demo)")
    ex.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: demo image)")
    ex.add_argument(
        "--model",
        default="demo",
        help="'demo', 'package.module:callable' returning an nn.Module, or a TorchScript file",
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
    ex.add_argument("--size", type=int, help="resize images to SIZE x SIZE")
    ex.add_argument(
        "--normalize",
        choices=("none", "imagenet"),
        default="none",
        help="preprocessing before the model",
    )
    ex.add_argument("--class-names", help="text file with one class name per line")
    ex.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    _config_args(ex)
    add_many_arguments(ex)
    ex.set_defaults(func=cmd_explain)

    vw = sub.add_parser("view", help="write the HTML path browser for a saved result")
    vw.add_argument("result", help="a path.npz written by 'explain'")
    vw.add_argument("--out", help="HTML file (default: RESULT with suffix .html)")
    vw.add_argument("--open", action="store_true", help="open it in the web browser")
    vw.set_defaults(func=cmd_view)

    add_bench_parser(sub)
    add_audit_parser(sub)
    from ablation_paths import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
