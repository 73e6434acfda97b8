"""Which SIFT heatmap points? Field weightings and the contrast heatmap measured (issue 14).

For the first ``--n`` scenes of the benchmark's localisation dataset (same seed as
``ablation-paths bench``, same trained model), compute once per scene (cached in ``--cache``)
the per-feature values of

* ``ap-sift``: the retaining ablation path over SIFT features, class-transition reduction (as the
  bench method), and
* ``sift-rise``: RISE over SIFT features (1000 samples, p = 0.5, seed 0, as the bench method),

then draw them with every Voronoi-field weighting (``SiftParams.field_weights``) and, for the
path, the eq. 4.48 contrast heatmap (``SiftMaskSpace.extra_heatmaps``). Prints the pointing game
(TorchRay tolerance) and the positive heatmap mass inside the object per variant, and the share
of the uniform field owned by the 3 largest-sigma features. With ``--mass-weighted`` the path is
also optimised with the eq. 4.45 mass-weighted metric and its saturation reported.
``--demo-saturation`` instead optimises the retaining path on every demo image three ways
(unweighted; mass-weighted with the thesis's plain masses; mass-weighted without the low-pass
residual, the default) and prints saturation and iterations.

    python scripts/sift_heatmaps.py --n 20 --cache sift-heat.pt
    python scripts/sift_heatmaps.py --demo-saturation
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

from ablation_paths import explain
from ablation_paths.bench.datasets import load_bench_model, load_dataset
from ablation_paths.bench.metrics import default_tolerance, mass_inside, pointing_game
from ablation_paths.reductions import class_transition
from ablation_paths.sift import SiftMaskSpace, decompose, sift_rise, sift_rise_heatmap
from ablation_paths.sift.heatmaps import FIELD_WEIGHTS


def _values(model, x, label, rise_samples, mass_weighted):  # noqa: ANN001, ANN202
    res = explain(model, x, label, features="sift", keep_frames=False)
    out = {
        "ap": class_transition(res.path, res.probs[1:-1], label, "retain"),
        "path": res.path,
        "probs": res.probs,
        "saturation": res.saturation,
    }
    g = torch.Generator().manual_seed(0)
    out["rise"] = sift_rise(model, decompose(x), label, rise_samples, 0.5, 100, g)
    if mass_weighted:
        rm = explain(
            model,
            x,
            label,
            features="sift",
            keep_frames=False,
            feature_options={"mass_weighted": True},
        )
        out["ap_mw"] = class_transition(rm.path, rm.probs[1:-1], label, "retain")
        out["saturation_mw"] = rm.saturation
    return out


def demo_saturation() -> None:
    from ablation_paths.demo import load_demo_images
    from ablation_paths.demo.model import load_model
    from ablation_paths.optimizer import AblationPathConfig, optimize_paths
    from ablation_paths.paths import saturation

    model = load_model().eval()
    print(
        "| image | K | unweighted | mass-weighted (plain eq. 4.45) | mass-weighted (no residual) |"
    )
    print("|---|---|---|---|---|")
    for d in load_demo_images():
        dec = decompose(d.image)
        row = [d.name, str(dec.num_features)]
        for mw, res in ((False, False), (True, True), (True, False)):
            space = SiftMaskSpace(dec, mass_weighted=mw, mass_residual=res)
            opt = optimize_paths(model, space, d.label, "retain", AblationPathConfig())
            sat = saturation(opt.paths[0], space.weights())
            row.append(f"{sat:.2f} ({opt.iterations} it.)")
        print("| " + " | ".join(row) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rise-samples", type=int, default=1000)
    ap.add_argument("--mass-weighted", action="store_true")
    ap.add_argument("--cache", default=None, help="file for the per-scene values (reused)")
    ap.add_argument("--demo-saturation", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if args.demo_saturation:
        demo_saturation()
        return
    samples = load_dataset("localisation", args.n, seed=args.seed)
    model = load_bench_model("localisation")
    cache = torch.load(args.cache) if args.cache and os.path.exists(args.cache) else {}
    scores: dict[str, list[tuple[float, float]]] = {}
    top3 = []
    t0 = time.perf_counter()

    def add(name: str, heat: torch.Tensor, mask: torch.Tensor) -> None:
        h = heat.float().cpu()
        tol = default_tolerance(h.shape[-1])
        scores.setdefault(name, []).append((pointing_game(h, mask, tol), mass_inside(h, mask)))

    for i, s in enumerate(samples):
        x, label, mask = s.image.float(), int(s.label), s.mask.bool()
        if s.name not in cache or (args.mass_weighted and "ap_mw" not in cache[s.name]):
            cache[s.name] = _values(model, x, label, args.rise_samples, args.mass_weighted)
            if args.cache:
                torch.save(cache, args.cache)
        v = cache[s.name]
        decs = {kind: decompose(x, field_weights=kind) for kind in FIELD_WEIGHTS}
        for kind, dec in decs.items():
            add(f"ap-sift / field {kind}", dec.voronoi_heatmap(v["ap"]), mask)
            add(f"sift-rise / field {kind}", sift_rise_heatmap(dec, v["rise"]), mask)
            if "ap_mw" in v:
                add(f"ap-sift mass-weighted / field {kind}", dec.voronoi_heatmap(v["ap_mw"]), mask)
        contrast = SiftMaskSpace(decs["uniform"]).extra_heatmaps(v["path"], v["probs"], label)
        add("ap-sift / contrast (eq. 4.48)", contrast["sift_contrast"], mask)
        dec = decs["uniform"]
        e = torch.zeros(dec.num_features, dtype=dec.dtype)
        e[torch.as_tensor(np.argsort(-dec.keypoints.sigma)[:3].copy())] = 1
        top3.append(float(dec.voronoi_heatmap(e).mean()))
        print(
            f"[{i + 1}/{len(samples)}] K={dec.num_features} {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    print(f"\nlocalisation, n = {len(samples)}, seed {args.seed}\n")
    print("| heatmap | pointing | mass inside |")
    print("|---|---|---|")
    for name, val in sorted(scores.items()):
        a = np.array(val)
        print(f"| {name} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} |")
    print(
        f"\nshare of the uniform field owned by the 3 largest-sigma features: "
        f"{np.mean(top3):.2f} (mean over scenes)"
    )
    sat = [cache[s.name]["saturation"] for s in samples]
    sat_mw = [cache[s.name]["saturation_mw"] for s in samples if "saturation_mw" in cache[s.name]]
    print(
        f"path saturation: {np.mean(sat):.2f}"
        + (f"; mass-weighted: {np.mean(sat_mw):.2f}" if sat_mw else "")
    )


if __name__ == "__main__":
    main()
