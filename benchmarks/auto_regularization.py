"""What ``regularization="auto"`` chooses on the shipped demo images, and whether the
class-transition heatmap's maximum lands on the object, against the fixed default blur.

    python benchmarks/auto_regularization.py [--threads 1]

Prints one row per demo image (chosen blur, whether the pinned test could decide, hit or miss)
and the totals. A "hit" is the heatmap's arg-max inside the image's object mask.
"""

from __future__ import annotations

import argparse
import warnings

import torch

import ablation_paths as ap
from ablation_paths.demo import load_demo_images, load_model


def hit(result: ap.AblationPathResult, mask: torch.Tensor) -> bool:
    """Whether the class-transition heatmap's maximum lies inside ``mask [H, W]``."""
    heat = result.heatmap("class_transition")
    idx = int(torch.argmax(heat))
    return bool(mask.reshape(-1)[idx] > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model()
    hits = {"auto": 0, "default": 0}
    print(f"{'image':<12} {'chosen':>7} {'decidable':>9} {'auto hit':>8} {'0.03 hit':>8}")
    images = load_demo_images()
    for d in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ap.AblationPathWarning)
            auto = ap.explain(model, d.image, d.label, regularization="auto")
            fixed = ap.explain(model, d.image, d.label)
        info = auto.info["regularization_auto"]
        mask = torch.as_tensor(d.mask)
        h_auto, h_fixed = hit(auto, mask), hit(fixed, mask)
        hits["auto"] += h_auto
        hits["default"] += h_fixed
        print(
            f"{d.name:<12} {info['chosen']:>7} {info['decidable']!s:>9} "
            f"{h_auto!s:>8} {h_fixed!s:>8}"
        )
    n = len(images)
    print(f"hits: auto {hits['auto']}/{n}, default 0.03 {hits['default']}/{n}")


if __name__ == "__main__":
    main()
