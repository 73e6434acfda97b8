"""Speed and memory of the SIFT feature decomposition (issue 5 and issue 14 targets).

Prints, per image size: decomposition time (wall clock, median over repeats, and process CPU
time, which is the honest figure on a loaded machine), peak memory increase of the process during
the decomposition, number of keypoints, stored non-zeros of the decoder matrices, bytes held by all
sparse matrices, and the time to decode a batch of 16 gain vectors (forward, and forward+backward).
Every size runs in a fresh subprocess so the peak-memory figure is its own.

Targets: 224x224 RGB decomposed in < 5 s using < 1 GB, decoding 16 gain vectors at 224x224 in
< 100 ms (issue 5); a 1000x700 RGB photo decomposed in < 5 s using < 500 MB, decoding 16 gain
vectors in < 200 ms (issue 14). The default sweep (128, 224, 512, 1024 square, then 1000x700)
shows how time and memory grow with the number of pixels.

    python benchmarks/sift_speed.py --threads 1             # the sweep, astronaut photo
    python benchmarks/sift_speed.py --sizes 224 1000x700 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> ``(224, 224)``; ``"1000x700"`` -> ``(700, 1000)`` as ``(H, W)`` (W x H)."""
    if "x" in text:
        w, h = text.lower().split("x")
        return int(h), int(w)
    return int(text), int(text)


def _measure(size: str, repeats: int, threads: int | None, queue: mp.Queue) -> None:
    import torch
    from skimage import data, transform

    from ablation_paths.sift import decompose

    if threads:
        torch.set_num_threads(threads)
    img = transform.resize(data.astronaut(), _parse_size(size), anti_aliasing=True)
    x = torch.from_numpy(img).permute(2, 0, 1).float().contiguous()
    warm = decompose(transform_small(x))  # warm up code paths (imports, kernels) on a tiny image
    del warm
    rss0 = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    dec = decompose(x)
    t_dec, c_dec = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB -> MB on Linux
    rec = dec.decode(torch.ones(dec.num_features))
    err = ((rec - x).norm() / x.norm()).item()
    gains = torch.rand(16, dec.num_features)
    fwd, bwd, fwd_cpu = [], [], []
    with torch.no_grad():
        dec.decode(gains)
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            dec.decode(gains)
            fwd.append(time.perf_counter() - t)
            fwd_cpu.append(time.process_time() - c)
    for _ in range(repeats):
        g = gains.clone().requires_grad_(True)
        t = time.perf_counter()
        dec.decode(g).sum().backward()
        bwd.append(time.perf_counter() - t)
    more = []
    for _ in range(max(0, repeats // 2) if dec.n_voxels < 4_000_000 else 0):
        t = time.perf_counter()
        decompose(x)
        more.append(time.perf_counter() - t)
    queue.put(
        {
            "size": size,
            "threads": torch.get_num_threads(),
            "K": dec.num_features,
            "decompose_s": t_dec,
            "decompose_s_median": statistics.median([t_dec, *more]),
            "decompose_cpu_s": c_dec,
            "peak_mem_increase_mb": max(0.0, peak - rss0),
            "nnz": dec.nnz,
            "sparse_mb": dec.nbytes / 1e6,
            "voxels": dec.n_voxels,
            "rel_err_all_ones": err,
            "decode16_ms_median": 1e3 * statistics.median(fwd),
            "decode16_cpu_ms_median": 1e3 * statistics.median(fwd_cpu),
            "decode16_fwd_bwd_ms_median": 1e3 * statistics.median(bwd),
        }
    )


def transform_small(x):  # a 32x32 crop: same code paths, negligible memory
    return x[:, :32, :32].contiguous()


def _label(size: str) -> str:
    h, w = _parse_size(size)
    return f"{w}x{h}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes",
        nargs="+",
        default=["128", "224", "512", "1024", "1000x700"],
        help="square side or WxH",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON line per size")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    hdr = (
        f"{'size':>9} {'K':>5} {'decomp s':>9} {'(median)':>9} {'cpu s':>6} {'peak MB':>8} "
        f"{'nnz':>10} {'sparse MB':>9} {'rel err':>9} {'dec16 ms':>9} {'cpu ms':>7} {'+bwd ms':>8}"
    )
    if not args.json:
        print(hdr)
    for size in args.sizes:
        q: mp.Queue = ctx.Queue()
        p = ctx.Process(target=_measure, args=(size, args.repeats, args.threads, q))
        p.start()
        r = q.get()
        p.join()
        if args.json:
            print(json.dumps(r))
            continue
        print(
            f"{_label(size):>9} {r['K']:>5} {r['decompose_s']:>9.2f} "
            f"{r['decompose_s_median']:>9.2f} {r['decompose_cpu_s']:>6.2f} "
            f"{r['peak_mem_increase_mb']:>8.0f} {r['nnz']:>10,} "
            f"{r['sparse_mb']:>9.1f} {r['rel_err_all_ones']:>9.1e} "
            f"{r['decode16_ms_median']:>9.1f} {r['decode16_cpu_ms_median']:>7.1f} "
            f"{r['decode16_fwd_bwd_ms_median']:>8.1f}"
        )


if __name__ == "__main__":
    main()
