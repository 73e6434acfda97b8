"""Demonstration of the dataset audit on the two built-in benchmark datasets.

* ``planted_bias``: the label is carried only by a small coloured marker in a random image corner
  (docs/datasets.md). The audit is not told where the marker is; it must flag the classes
  ("same place": the evidence of different images lands on the same few corner spots), and with
  the decoy objects' boxes supplied it must also flag "outside the objects".
* ``localisation``: the label is the object's shape, objects lie anywhere; the audit must flag
  nothing, with or without the objects' boxes.

Writes ``OUT/DATASET/`` (one folder per image, ``index.html``, ``audit.html``, ``audit.json``,
``boxes.json``) and prints one table row per class.

    python scripts/audit_demo.py --n 64 --out /tmp/ap/audit_demo

Result (64 images per data set, seed 0; full table in docs/own-model.md, section 6):
``planted_bias``: every class and the all-classes row flagged "same place" (co-location
5.3-7.8 x chance, p = 0.002, the smallest 499 shifts give), and with the decoy objects' boxes
also "outside the objects" (0-1 % of the evidence inside them). ``localisation``: nothing
flagged (co-location 0.3-3.1; 93-100 % of the evidence inside the objects' boxes).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from ablation_paths.audit import AuditConfig, AuditResult, audit_folder, write_audit
from ablation_paths.bench.datasets import (
    PLANTED_BIAS_CLASSES,
    BenchSample,
    load_bench_model,
    load_dataset,
)
from ablation_paths.bench.runner import object_mask
from ablation_paths.demo import CLASS_NAMES
from ablation_paths.demo.scenes import box_from_mask
from ablation_paths.many import explain_many


def object_boxes(dataset: str, samples: list[BenchSample]) -> dict[str, Any]:
    """COCO-style boxes of the *objects* (for planted_bias: the decoy blob, not the marker)."""
    images, annotations = [], []
    for i, s in enumerate(samples):
        stem = s.name.replace("/", "_")
        if dataset == "planted_bias":
            mask = object_mask(s)
            assert mask is not None
            x0, y0, x1, y1 = box_from_mask(mask.numpy())
        else:
            x0, y0, x1, y1 = s.box
        h, w = s.image.shape[-2:]
        images.append({"id": i, "file_name": f"{stem}.png", "width": int(w), "height": int(h)})
        annotations.append({"id": i, "image_id": i, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return {"images": images, "annotations": annotations}


def rows(dataset: str, audit: AuditResult, boxes: bool) -> list[str]:
    out = []
    for c in [audit.overall, *audit.classes]:
        inside = "-" if c.inside is None else f"{c.inside:.2f}"
        p = "-" if math.isnan(c.colocation_p) else f"{c.colocation_p:.3f}"
        flags = "; ".join(f.split(":")[0] for f in c.flags) or "none"
        out.append(
            f"| `{dataset}` | {'yes' if boxes else 'no'} | {c.name} | {c.n} | "
            f"{c.colocation:.2f} | {p} | {inside} | {flags} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="images per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/ap/audit_demo")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    names = {"planted_bias": list(PLANTED_BIAS_CLASSES), "localisation": list(CLASS_NAMES)}
    table = [
        "| dataset | boxes given | class | images | co-location (x chance) | shift-test p "
        "| evidence inside objects | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in ("planted_bias", "localisation"):
        samples = load_dataset(dataset, args.n, seed=args.seed, split="test")
        out = Path(args.out) / dataset
        start = time.perf_counter()
        run = explain_many(
            load_bench_model(dataset),
            samples,
            out=out,
            class_names=names[dataset],
            progress=True,
        )
        print(
            f"{dataset}: {len(run.done)} computed, {len(run.skipped)} resumed "
            f"in {run.seconds:.0f} s"
        )
        boxes = out / "boxes.json"
        boxes.write_text(json.dumps(object_boxes(dataset, samples)))
        config = AuditConfig()
        plain = audit_folder(out, config=config)
        with_boxes = audit_folder(out, boxes=boxes, config=config)
        write_audit(with_boxes, out)
        table += rows(dataset, plain, False) + rows(dataset, with_boxes, True)
        print(f"{dataset}: audited in {time.perf_counter() - start:.0f} s -> {out / 'audit.html'}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
