"""Peak memory and time of hostile-sized inputs (issue 11), each run in a fresh subprocess.

Cases (``--cases``, comma-separated; default all):

* ``demo2048``   ``ablation-paths explain`` on a 2048x2048 PNG with the demo model, defaults;
* ``user2048``   the same image with a size-less user model (``module:callable``): the pixel
  guard downscales it to at most 512x512 pixels (``inputs.MAX_PIXELS``); run with
  ``--max-iterations 5`` to bound the time, which does not change the peak (every iteration
  holds the same tensors);
* ``blur2048``   the blur-sigma search alone on a 2048x2048 tensor (no size guard for tensors),
  where the old float64 all-sigmas-at-once FFT needed ~22 GB;
* ``huge6000``   ``explain`` on a 6000x6000 PNG: refused before decoding (exit 2);
* ``zipbomb``    ``view`` on a 5 KB ``.npz`` declaring a 3 GB array: refused before inflating.

Each child reports its peak resident set size (``VmHWM``); the parent also polls RSS and kills
a child that passes ``--cap-gb`` (default 4), so the benchmark itself can never exhaust the
machine. Prints one table row per case.

    python benchmarks/memory.py            # all cases
    python benchmarks/memory.py --cases demo2048,huge6000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

USER_MODULE = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

def make():
    return Tiny()
"""

CHILD = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
kind = sys.argv[1]
if kind == "cli":
    from ablation_paths.cli import main
    rc = main(sys.argv[2:])
elif kind == "blur":
    import torch
    from ablation_paths.baselines import blurred_baseline
    from ablation_paths.inputs import ClassifierFn
    sys.path.insert(0, sys.argv[2])
    import bench_memory_model
    img = torch.rand(3, 2048, 2048, generator=torch.Generator().manual_seed(0))
    b = blurred_baseline(ClassifierFn(bench_memory_model.make().eval()), img, batch_size=4)
    print(f"sigma {b.sigma:.1f} flips {b.flips_class}", file=sys.stderr)
    rc = 0
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent's, kept across exec)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
peak = int(hwm.split()[1]) / 1024**2
print("RESULT " + json.dumps({"rc": rc, "peak_gb": peak, "seconds": time.perf_counter() - start}))
"""


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def run_child(args: list[str], cap_gb: float, env: dict[str, str]) -> dict[str, object]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed = False
    while proc.poll() is None:
        if _rss_gb(proc.pid) > cap_gb:
            proc.kill()
            killed = True
        time.sleep(0.02)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    res: dict[str, object] = json.loads(line[7:]) if line else {"rc": proc.returncode}
    res["wall_s"] = wall
    res["killed_at_cap"] = killed
    res["stderr_tail"] = " | ".join(ln for ln in err.strip().splitlines()[-2:])
    return res


def _bomb_npz(path: Path) -> None:
    """A small, valid-looking .npz whose 'probs' member declares 3 GB uncompressed."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (375_000_000,)}
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", _npy(np.zeros(4, np.uint8)))
        zf.writestr("probs.npy", header.getvalue() + b"\x00" * 4096)
    data = bytearray(path.read_bytes())
    name = b"probs.npy"
    for sig, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        i = -1
        while (i := data.find(sig, i + 1)) >= 0:
            if data[i + name_at : i + name_at + len(name)] == name:
                data[i + size_at : i + size_at + 4] = struct.pack("<I", 3_000_000_128)
    path.write_bytes(bytes(data))


def _npy(arr: np.ndarray) -> bytes:
    import io

    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _gradient_png(path: Path, side: int) -> None:
    y = np.linspace(0, 255, side, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, side, dtype=np.float32)[None, :]
    rgb = np.stack([np.broadcast_to(y, (side, side)), np.broadcast_to(x, (side, side)),
                    (y + x) / 2 * np.ones((side, side), np.float32)], axis=-1)  # fmt: skip
    Image.fromarray(rgb.astype(np.uint8)).save(path, compress_level=1)


def _photo_png(path: Path, side: int) -> None:
    """The demo image upscaled (a real object, so the demo model has something to explain)."""
    from ablation_paths.demo import demo_image

    img = (demo_image().image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(img).resize((side, side), Image.Resampling.BICUBIC).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default="demo2048,user2048,blur2048,huge6000,zipbomb")
    p.add_argument("--cap-gb", type=float, default=4.0, help="kill a child above this RSS")
    args = p.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bench_memory_model.py").write_text(USER_MODULE)
        env["PYTHONPATH"] = str(tmp) + os.pathsep + env["PYTHONPATH"]
        if {"demo2048", "user2048"} & set(cases):
            _photo_png(tmp / "big2048.png", 2048)
        if "huge6000" in cases:
            _gradient_png(tmp / "huge6000.png", 6000)
        if "zipbomb" in cases:
            _bomb_npz(tmp / "bomb.npz")
        commands = {
            "demo2048": ["cli", "explain", str(tmp / "big2048.png"), "--out", str(tmp / "o1"),
                         "--quiet", "--device", "cpu"],
            "user2048": ["cli", "explain", str(tmp / "big2048.png"), "--model",
                         "bench_memory_model:make", "--out", str(tmp / "o2"), "--quiet",
                         "--device", "cpu", "--max-iterations", "5"],
            "blur2048": ["blur", str(tmp)],
            "huge6000": ["cli", "explain", str(tmp / "huge6000.png"), "--model",
                         "bench_memory_model:make", "--out", str(tmp / "o3"), "--quiet"],
            "zipbomb": ["cli", "view", str(tmp / "bomb.npz"), "--out", str(tmp / "b.html")],
        }  # fmt: skip
        print(f"cap {args.cap_gb:g} GB per case; peak = VmHWM (peak RSS) of the child process")
        print(f"{'case':10s} {'exit':>4s} {'peak GB':>8s} {'wall s':>7s}  killed  last message")
        for case in cases:
            res = run_child(commands[case], args.cap_gb, env)
            peak = res.get("peak_gb")
            peak_s = f"{peak:8.2f}" if isinstance(peak, float) else f"{'?':>8s}"
            print(
                f"{case:10s} {res['rc']!s:>4s} {peak_s} {res['wall_s']:7.1f}  "
                f"{'yes' if res['killed_at_cap'] else 'no':6s}  {res['stderr_tail'][:110]}",
                flush=True,
            )
    print(f"(parent peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB)")


if __name__ == "__main__":
    main()
