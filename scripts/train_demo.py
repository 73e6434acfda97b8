#!/usr/bin/env python
"""Train the shipped demo classifier and regenerate the shipped demo images.

Usage (CPU, about 8 minutes on 2 cores)::

    python scripts/train_demo.py

Generates a seeded train split and an independent seeded test split of synthetic scenes
(:mod:`ablation_paths.demo.scenes`), trains :class:`ablation_paths.demo.DemoCNN` with
blur/ablation augmentation, prints the test accuracy, writes
``src/ablation_paths/demo/weights/demo.safetensors`` (with metadata) and regenerates
``src/ablation_paths/demo/images/`` (demo scenes the trained model classifies correctly).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ablation_paths.demo import CLASS_NAMES, IMAGES_DIR
from ablation_paths.demo.model import WEIGHTS_DIR, DemoCNN, save_model
from ablation_paths.demo.scenes import load_backgrounds, make_scene, split_seed
from ablation_paths.demo.training import TrainConfig, evaluate, predict, train_classifier


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def generate(
    n: int, seed: int, size: int, split: str, cache: Path | None = None, chunk: int = 1000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dataset as uint8 images/backgrounds (2 x 49 KB per 128 px scene), bool masks, labels.

    With ``cache``, the tensors are stored there as safetensors and reused on the next run.
    """
    path = None if cache is None else cache / f"scenes_{split}_n{n}_s{seed}_{size}px.safetensors"
    if path is not None and path.is_file():
        d = load_file(str(path))
        return d["images"], d["backgrounds"], d["masks"], d["labels"]
    imgs, bgs, masks, labels = [], [], [], []
    children = split_seed(seed, split).spawn(n)  # scene i depends only on (seed, split, i)
    backgrounds = load_backgrounds()
    for start in range(0, n, chunk):
        scenes = [
            make_scene(np.random.default_rng(c), size=size, backgrounds=backgrounds)
            for c in children[start : start + chunk]
        ]
        imgs.append(to_uint8(torch.from_numpy(np.stack([s.image for s in scenes]))))
        bgs.append(to_uint8(torch.from_numpy(np.stack([s.background for s in scenes]))))
        masks.append(torch.from_numpy(np.stack([s.mask for s in scenes])))
        labels.append(torch.tensor([s.label for s in scenes], dtype=torch.int64))
    out = torch.cat(imgs), torch.cat(bgs), torch.cat(masks), torch.cat(labels)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = ("images", "backgrounds", "masks", "labels")
        save_file(dict(zip(keys, out, strict=True)), str(path))
    return out


def write_demo_images(
    model: DemoCNN, seed: int, size: int, n_images: int, out_dir: Path
) -> list[dict]:
    """Pick confidently and correctly classified demo scenes, one per class first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.json")):
        old.unlink()
    children = split_seed(seed, "demo").spawn(2000)
    chosen: list[tuple[int, object, float]] = []
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        label = len(chosen) % len(CLASS_NAMES)
        sc = make_scene(rng, size=size, label=label)
        # the stored PNG is uint8: classify exactly what will be shipped
        img8 = to_uint8(torch.from_numpy(sc.image)).float() / 255.0
        p = predict(model, img8[None])[0]
        if (
            int(p.argmax()) == sc.label
            and float(p[sc.label]) > 0.9
            and sc.mask.sum() > 0.03 * size * size
        ):
            chosen.append((i, sc, float(p[sc.label])))
            if len(chosen) == n_images:
                break
    if len(chosen) < n_images:
        raise RuntimeError(f"only {len(chosen)} demo images were classified confidently")
    entries = []
    for k, (i, sc, prob) in enumerate(chosen):
        name = f"{k:02d}_{sc.class_name}"
        rgb = to_uint8(torch.from_numpy(sc.image)).permute(1, 2, 0).numpy()
        Image.fromarray(rgb, mode="RGB").save(out_dir / f"{name}.png", optimize=True)
        Image.fromarray(sc.mask.astype(np.uint8) * 255, mode="L").save(
            out_dir / f"{name}_mask.png", optimize=True
        )
        entries.append(
            {
                "name": name,
                "file": f"{name}.png",
                "mask_file": f"{name}_mask.png",
                "label": sc.label,
                "class_name": sc.class_name,
                "box": list(sc.box),
                "probability": round(prob, 4),
                "scene_index": i,
            }
        )
    index = {
        "format": 1,
        "model": "demo",
        "image_size": size,
        "seed": seed,
        "generator": "ablation_paths.demo.scenes.make_scene(split='demo')",
        "images": entries,
    }
    (out_dir / "demo_images.json").write_text(json.dumps(index, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--name", default="demo", help="weights name (file stem)")
    ap.add_argument("--no-images", action="store_true", help="do not regenerate demo images")
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache generated scenes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    command = (
        f"python scripts/train_demo.py {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    )
    t0 = time.time()
    x_tr, bg_tr, m_tr, y_tr = generate(args.n_train, args.seed, args.size, "train", args.cache)
    x_te, _, _, y_te = generate(args.n_test, args.seed, args.size, "test", args.cache)
    x_te = x_te.float() / 255.0
    print(
        f"generated {len(y_tr)} train / {len(y_te)} test scenes in {time.time() - t0:.0f} s",
        flush=True,
    )

    model = DemoCNN(num_classes=len(CLASS_NAMES), width=args.width)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    val = (x_te[:500], y_te[:500])
    train_classifier(
        model,
        x_tr,
        bg_tr,
        m_tr,
        y_tr,
        len(CLASS_NAMES),
        cfg,
        log=lambda s: print(s, flush=True),
        val=val,
    )
    acc = evaluate(model, x_te, y_te)
    print(
        f"test accuracy: {acc:.4f} on {len(y_te)} held-out scenes (seed {args.seed}, split 'test')"
    )

    meta = {
        "class_names": json.dumps(list(CLASS_NAMES)),
        "image_size": str(args.size),
        "test_accuracy": f"{acc:.4f}",
        "n_test": str(len(y_te)),
        "train_command": command,
        "n_train": str(args.n_train),
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "torch_version": torch.__version__,
    }
    path = WEIGHTS_DIR / f"{args.name}.safetensors"
    save_model(model, path, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if not args.no_images:
        entries = write_demo_images(model, args.seed, args.size, args.n_images, IMAGES_DIR)
        print(f"wrote {len(entries)} demo images to {IMAGES_DIR}: {[e['name'] for e in entries]}")
    print(f"total time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
