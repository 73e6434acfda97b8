"""Forward+backward time of a SpiralConv layer vs a cartesian conv2d (issue: target <= 3x).

The spiral layer on an ``L x L`` image's spiral (``n_wind = L / 2``, ``n_spls = pi (L/2)^2``
samples, i.e. the disc's pixel count) is compared with ``nn.Conv2d`` on the full ``L x L`` grid,
same channels and kernel size. Both are timed interleaved (median of repeats) in one process so
background load affects them alike.

    python benchmarks/spiral_speed.py [--size 64] [--channels 32] [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from spiral_cnn.geometry import SpiralSpec
from spiral_cnn.layers import SpiralConv


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, nargs="+", default=[32, 64])
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    print(f"torch {torch.__version__}, {a.threads} thread(s), device {dev}, batch {a.batch}")
    print("size  points(spiral/cart)  channels  kernel  spiral ms  conv2d ms  ratio")
    for size in a.size:
        spec = SpiralSpec.for_image(size, rows=a.kernel, cols=a.kernel)
        c = a.channels
        sconv = SpiralConv(c, c, spec).to(dev)
        cconv = nn.Conv2d(c, c, a.kernel, padding=a.kernel // 2).to(dev)
        xs = torch.randn(a.batch, c, spec.n, device=dev, requires_grad=True)
        xc = torch.randn(a.batch, c, size, size, device=dev, requires_grad=True)
        times: dict[str, list[float]] = {"spiral": [], "conv2d": []}
        for rep in range(a.repeats + 2):
            for name, layer, x in (("spiral", sconv, xs), ("conv2d", cconv, xc)):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                layer(x).square().sum().backward()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if rep >= 2:  # warm-up
                    times[name].append(time.perf_counter() - t)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(
            f"{size:4d}  {spec.n:6d}/{size * size:<6d}       {c:4d}     {a.kernel}x{a.kernel}   "
            f"{ms['spiral']:8.2f}  {ms['conv2d']:8.2f}  {ms['spiral'] / ms['conv2d']:5.2f}x"
        )


if __name__ == "__main__":
    main()
