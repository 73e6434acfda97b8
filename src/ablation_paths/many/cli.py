"""Command-line layer for many images and the dataset audit.

* ``ablation-paths explain DIR|GLOB|LIST.txt ... [--engine ray [--address ADDR]]`` runs
  :func:`ablation_paths.many.explain_many` (``cmd_explain`` hands over when
  :func:`wants_many` says so);
* ``ablation-paths audit RESULTS_DIR [--boxes FILE | --masks DIR]`` runs
  :func:`ablation_paths.audit.audit_folder` and writes ``audit.html`` and ``audit.json``.

Printing is this module's job (like :mod:`ablation_paths.cli`); the library underneath logs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["add_audit_parser", "add_many_arguments", "cmd_audit", "run_many", "wants_many"]


# ----------------------------------------------------------------------------- explain
def add_many_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the many-images options to the ``explain`` parser."""
    g = parser.add_argument_group(
        "many images",
        "Give a folder, a quoted glob ('photos/*.jpg') or a LIST.txt (one path per line, "
        "optionally a tab and a target) as IMAGE: one folder per image under --out, a gallery "
        "OUT/index.html, and a rerun skips finished images.",
    )
    g.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where to compute (ray: Ray)"
    )
    g.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    g.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else per CPU)")
    g.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip images already done (--no-resume recomputes them)",
    )
    g.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write each image's PNG figures (--no-figures: report and path.npz only, faster)",
    )
    g.add_argument(
        "--batch-images",
        type=_positive_int,
        default=1,
        metavar="K",
        help="optimise K images' paths together, one classifier pass per iteration over all of "
        "them (default 1: one by one; see docs/performance.md)",
    )
    g.add_argument(
        "--gallery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write OUT/index.html",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def wants_many(args: argparse.Namespace) -> bool:
    """``explain`` goes to many-images mode for a folder, a glob, a ``.txt`` list or the Ray
    engine."""
    if getattr(args, "engine", "local") == "ray":
        return True
    for spec in getattr(args, "images", None) or []:
        p = Path(spec)
        if (
            p.is_dir()
            or p.suffix.lower() == ".txt"
            or (not p.exists() and any(c in spec for c in "*?["))
        ):
            return True
    return False


def _parse_target(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def run_many(args: argparse.Namespace) -> int:
    """``explain`` over many images; exit status 0, 1 (some images failed) or 130
    (interrupted; finished images are kept)."""
    from ablation_paths.cli import model_setup
    from ablation_paths.io import check_output_dir
    from ablation_paths.many import explain_many, read_done
    from ablation_paths.models import resolve_device
    from ablation_paths.optimizer import AblationPathConfig

    if not args.images:
        raise ValueError("give a folder, a glob, a LIST.txt or image files")
    engine = args.engine
    # not checked on a Ray driver: the actors may have GPUs this machine lacks
    device = str(resolve_device(args.device)) if engine == "local" else args.device
    check_output_dir(args.out)
    # the Ray driver keeps the model on the CPU; each actor moves it to its own device
    setup = model_setup(args, "cpu" if engine == "ray" else device)
    options = {
        f.name: getattr(args, f.name)
        for f in fields(AblationPathConfig)
        if getattr(args, f.name, None) is not None
    }
    run = explain_many(
        setup.loaded.model,
        args.images,
        out=args.out,
        target=_parse_target(args.target),
        score=args.score,
        baseline=args.baseline,
        features=args.features,
        transform=setup.transform,
        class_names=setup.class_names,
        image_size=setup.image_size,
        preprocess=setup.preprocess,
        device=device,
        resume=args.resume,
        engine=engine,
        address=args.address,
        workers=args.workers,
        progress=not args.quiet,
        gallery=args.gallery,
        figures=args.figures,
        batch_images=args.batch_images,
        **options,
    )
    for name, error in run.failed.items():
        print(f"  {name}: failed: {error}", file=sys.stderr)
    where = run.gallery if run.gallery is not None else run.out
    print(
        f"{len(run.done)} explained, {len(run.skipped)} already done, {len(run.failed)} failed "
        f"of {len(run.names)} images in {run.seconds:.1f}s ({engine}) -> {where}"
    )
    flagged = sum(1 for f in run.folders() if (read_done(f) or {}).get("warnings"))
    if flagged:
        print(f"  {flagged} image(s) with warnings: see the gallery", file=sys.stderr)
    if run.interrupted:
        print("interrupted: finished images are kept; rerun to continue", file=sys.stderr)
        return 130
    return 1 if run.failed else 0


# ----------------------------------------------------------------------------- audit
def add_audit_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``ablation-paths audit``."""
    from ablation_paths.audit import AuditConfig
    from ablation_paths.reductions import REDUCTIONS

    d = AuditConfig()
    au = sub.add_parser(
        "audit",
        help="audit a folder of results: per-class mean heatmaps, path curves and flags",
        description="Per explained class: the mean heatmap, the mean path curve, the evidence "
        "inside given boxes or masks, and flags for evidence that concentrates on the same "
        "places across images or lies outside the objects. Writes audit.html and audit.json.",
    )
    au.add_argument("results", metavar="RESULTS_DIR", help="folder with path.npz results")
    g = au.add_mutually_exclusive_group()
    g.add_argument("--boxes", metavar="FILE", help="COCO-style JSON with the objects' boxes")
    g.add_argument("--masks", metavar="DIR", help="folder of NAME.png object masks")
    au.add_argument("--out", help="where to write audit.html / audit.json (default: RESULTS_DIR)")
    au.add_argument(
        "--evidence-fraction",
        type=float,
        default=d.evidence_fraction,
        help=f"top fraction of each heatmap taken as evidence (default {d.evidence_fraction})",
    )
    au.add_argument(
        "--colocation-threshold",
        type=float,
        default=d.colocation_threshold,
        help=f"flag 'same place' from this co-location (default {d.colocation_threshold})",
    )
    au.add_argument(
        "--inside-threshold",
        type=float,
        default=d.inside_threshold,
        help=f"flag 'outside the objects' below this fraction (default {d.inside_threshold})",
    )
    au.add_argument(
        "--min-images", type=int, default=d.min_images, help="fewest images of a class to flag"
    )
    au.add_argument("--reduction", choices=REDUCTIONS, help="heatmap (default: the natural one)")
    au.add_argument("--quiet", action="store_true", help="no progress bar")
    au.add_argument(
        "--fail-on-flag", action="store_true", help="exit with status 3 when anything is flagged"
    )
    au.set_defaults(func=cmd_audit)
    return au


def cmd_audit(args: argparse.Namespace) -> int:
    from ablation_paths.audit import AuditConfig, audit_folder, write_audit

    config = AuditConfig(
        evidence_fraction=args.evidence_fraction,
        colocation_threshold=args.colocation_threshold,
        inside_threshold=args.inside_threshold,
        min_images=args.min_images,
        reduction=args.reduction,
    )
    audit = audit_folder(
        args.results, boxes=args.boxes, masks=args.masks, config=config, progress=not args.quiet
    )
    files = write_audit(audit, args.out or args.results)
    for c in [audit.overall, *audit.classes]:
        inside = "" if c.inside is None else f", {100 * c.inside:.0f}% inside objects"
        print(f"{c.name}: {c.n} images, co-location {c.colocation:.2f}{inside}")
        for flag in c.flags:
            print(f"  FLAG {flag}")
    print(f"-> {files['html']} and {files['json']}")
    return 3 if args.fail_on_flag and audit.flagged else 0
