"""Thesis Figure 7.5 reproduction: Dirac-like spots convolved by one random spiral kernel.

python scripts/spiral_dirac.py --out docs/spiral_dirac.png
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from spiral_cnn.geometry import SpiralSpec, pixel_centres
from spiral_cnn.layers import ImageToSpiral, SpiralConv, SpiralToImage


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="docs/spiral_dirac.png")
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(3)
    size = a.size
    spec = SpiralSpec.for_image(size, rows=5, cols=5)
    sconv = SpiralConv(1, 1, spec, bias=False)
    cconv = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    with torch.no_grad():
        sconv.weight.copy_(torch.randn(1, 1, 5, 5))
        cconv.weight.copy_(sconv.weight)
    xy = torch.as_tensor(pixel_centres(size), dtype=torch.float32).reshape(size, size, 2)
    img = torch.zeros(size, size)
    s = 1.0 * 2 / size
    for r, n in ((0.25, 4), (0.55, 7), (0.85, 10)):
        for k in range(n):
            ph = 2 * math.pi * k / n
            c = torch.tensor([r * math.cos(ph), r * math.sin(ph)])
            img += torch.exp(-((xy - c) ** 2).sum(-1) / (2 * s**2))
    x = img[None, None]
    with torch.no_grad():
        ys = SpiralToImage(size, spec)(sconv(ImageToSpiral(size, spec)(x)))[0, 0]
        yc = cconv(x)[0, 0]
    fig, ax = plt.subplots(1, 3, figsize=(9, 3.2), dpi=70)
    for axis, im, title in zip(
        ax,
        (img, ys, yc),
        ("spots", "spiral conv (5x5)", "cartesian conv (same kernel)"),
        strict=True,
    ):
        axis.imshow(im.numpy(), cmap="RdBu_r", origin="lower")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
