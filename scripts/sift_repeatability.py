"""Repeatability of our SIFT keypoints against OpenCV's SIFT detector (issue 5).

For each test photo (scikit-image's astronaut, coffee, chelsea, rocket, camera), resized to each
requested size, detect keypoints with ``ablation_paths.sift`` (default parameters, on the RGB image;
detection runs on its luma) and with ``cv2.SIFT_create()`` (default parameters, on the uint8 luma of
the same image; OpenCV's scale is ``size / 2``). OpenCV lists a keypoint once per dominant
orientation; those copies (same position and size) are merged, so both sides count *distinct*
keypoints (the raw OpenCV count is printed too). A keypoint is *repeated* when the other set has a
keypoint within ``--radius`` pixels whose scale differs by at most the factor ``--scale``. Prints a
Markdown table: counts, ours->OpenCV and OpenCV->ours repeatability, and the median scale ratio of
repeated pairs.

    python scripts/sift_repeatability.py                 # sizes 128 and 224
    python scripts/sift_repeatability.py --sizes 224 --radius 1.5 --scale 1.5
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from skimage import data, transform

from ablation_paths.sift import find_keypoints

IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def load(name: str, size: int) -> np.ndarray:
    """RGB float image ``[size, size, 3]`` in [0, 1] (greyscale photos are replicated)."""
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return transform.resize(img[..., :3], (size, size), anti_aliasing=True)


def repeated(a: np.ndarray, b: np.ndarray, radius: float, scale: float) -> np.ndarray:
    """For each row ``(x, y, sigma)`` of ``a``: index of a matching keypoint in ``b`` or -1."""
    out = np.full(len(a), -1)
    if len(a) == 0 or len(b) == 0:
        return out
    tree = cKDTree(b[:, :2])
    for i, nb in enumerate(tree.query_ball_point(a[:, :2], radius)):
        if nb:
            ratio = np.maximum(a[i, 2] / b[nb, 2], b[nb, 2] / a[i, 2])
            j = int(np.argmin(ratio))
            if ratio[j] <= scale:
                out[i] = nb[j]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    ap.add_argument("--radius", type=float, default=1.5, help="position tolerance in pixels")
    ap.add_argument("--scale", type=float, default=1.5, help="scale tolerance (factor)")
    args = ap.parse_args()
    print(f"OpenCV {cv2.__version__}; tolerance {args.radius} px and scale factor {args.scale}\n")
    print(
        "| image | size | K ours | K OpenCV (distinct) | OpenCV raw | ours in OpenCV "
        "| OpenCV in ours | scale ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sift = cv2.SIFT_create()
    totals = {s: [0, 0, 0, 0] for s in args.sizes}
    for size in args.sizes:
        for name in IMAGES:
            img = load(name, size)
            x = torch.from_numpy(img).permute(2, 0, 1).float().contiguous()
            ours = find_keypoints(x).as_array()
            grey = cv2.cvtColor((img * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            kps = sift.detect(grey, None)
            raw = np.array([[k.pt[0], k.pt[1], k.size / 2] for k in kps]).reshape(-1, 3)
            theirs = np.unique(raw, axis=0)  # one row per distinct keypoint
            m_ot = repeated(ours, theirs, args.radius, args.scale)
            m_to = repeated(theirs, ours, args.radius, args.scale)
            hit = m_ot >= 0
            ratio = np.median(ours[hit, 2] / theirs[m_ot[hit], 2]) if hit.any() else float("nan")
            print(
                f"| {name} | {size} | {len(ours)} | {len(theirs)} | {len(raw)} | "
                f"{hit.mean():.0%} | {(m_to >= 0).mean():.0%} | {ratio:.2f} |"
            )
            t = totals[size]
            t[0] += int(hit.sum())
            t[1] += len(ours)
            t[2] += int((m_to >= 0).sum())
            t[3] += len(theirs)
    for size, (a, na, b, nb) in totals.items():
        print(f"| **all** | {size} | {na} | {nb} | | **{a / na:.0%}** | **{b / nb:.0%}** | |")


if __name__ == "__main__":
    main()
