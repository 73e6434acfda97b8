"""The dataset audit: statistics, annotations, outputs, and the planted-bias demonstration."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths
from ablation_paths.audit import (
    AuditConfig,
    audit_folder,
    audit_results,
    boxes_region,
    colocation,
    evidence_map,
    load_coco_boxes,
    mass_inside,
    render_audit,
    shift_test,
    write_audit,
)
from ablation_paths.result import AblationPathResult

EVIL = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'


# ----------------------------------------------------------------------------- statistics
def test_evidence_map_top_fraction_ties_and_nan() -> None:
    h = torch.arange(100, dtype=torch.float32).reshape(10, 10)
    ev = evidence_map(h, 0.05)
    assert ev.sum().item() == pytest.approx(1.0)
    assert (ev > 0).sum() == 5 and bool((ev.flatten()[-5:] == 0.2).all())
    flat = evidence_map(torch.ones(4, 4), 0.1)  # ties: a flat map is all evidence
    assert torch.allclose(flat, torch.full((4, 4), 1 / 16, dtype=torch.float64))
    h[0, 0] = math.nan
    assert evidence_map(h, 0.05)[0, 0] == 0


def test_colocation_formula_and_chance_level() -> None:
    g = torch.rand(5, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = g / g.sum(dim=(1, 2), keepdim=True)
    value, each = colocation(g)
    brute = [64 * sum(float((g[i] * g[j]).sum()) for j in range(5) if j != i) / 4 for i in range(5)]
    assert each == pytest.approx(brute) and value == pytest.approx(np.mean(brute))
    uniform = torch.full((3, 8, 8), 1 / 64, dtype=torch.float64)
    assert colocation(uniform)[0] == pytest.approx(1.0)  # independent of where: chance
    spot = torch.zeros(4, 8, 8, dtype=torch.float64)
    spot[:, 1, 2] = 1.0  # all at the same pixel: A x chance
    assert colocation(spot)[0] == pytest.approx(64.0)
    assert math.isnan(colocation(spot[:1])[0])


def test_shift_test_separates_shared_from_scattered_places() -> None:
    same = torch.zeros(6, 16, 16, dtype=torch.float64)
    same[:, 2:4, 2:4] = 0.25
    assert shift_test(same, colocation(same)[0], 199) == pytest.approx(1 / 200)
    scattered = torch.zeros(6, 16, 16, dtype=torch.float64)
    for i in range(6):
        scattered[i, 2 * i : 2 * i + 2, 13 - 2 * i : 15 - 2 * i] = 0.25
    obs = colocation(scattered)[0]
    assert obs == 0.0 and shift_test(scattered, obs, 99) == 1.0


def test_boxes_masses_and_coco(tmp_path: Path) -> None:
    region = boxes_region([(10, 0, 10, 20, 40, 20)], 10, 20)  # image 40x20 shown at 20x10
    assert region.shape == (10, 20) and int(region.sum()) == 5 * 10
    assert bool(region[:, 5:10].all()) and not bool(region[:, :5].any())
    ev = torch.zeros(10, 20, dtype=torch.float64)
    ev[0, 0] = ev[0, 6] = 0.5
    assert mass_inside(ev, region) == pytest.approx(0.5)
    coco = {
        "images": [{"id": 7, "file_name": "dir/cat.jpg", "width": 40, "height": 20}],
        "annotations": [{"image_id": 7, "bbox": [1, 2, 3, 4]}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert load_coco_boxes(tmp_path / "c.json") == {"cat": [(1.0, 2.0, 3.0, 4.0, 40, 20)]}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="COCO"):
        load_coco_boxes(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- synthetic results
def _result(heat: torch.Tensor, target: int, name: str) -> AblationPathResult:
    t = 4
    probs = torch.full((t + 2, 2), 0.5)
    return AblationPathResult(
        path=torch.zeros(t, 8, 8),
        times=torch.arange(1, t + 1) / (t + 1),
        target=target,
        score="retain",
        probs=probs,
        path_score=0.5,
        saturation=0.9,
        iterations=3,
        converged=True,
        stopped="saturated",
        heatmaps={"class_transition": heat},
        image=torch.zeros(3, *heat.shape),
        baseline_image=torch.zeros(3, *heat.shape),
        class_names=["cue", EVIL],
        target_name=["cue", EVIL][target],
    )


def _spot(y: int, x: int, size: int = 32) -> torch.Tensor:
    h = torch.zeros(size, size)
    h[y : y + 3, x : x + 3] = 1.0
    return h + 0.01 * torch.rand(size, size, generator=torch.Generator().manual_seed(y * 99 + x))


def test_audit_flags_a_shared_place_not_scattered_evidence() -> None:
    rng = np.random.default_rng(0)
    corners = [(1, 1), (1, 28), (28, 1), (28, 28)]
    results = []
    regions = {}
    for i in range(12):  # class 0: a cue in one of four corners; class 1: anywhere
        results.append((f"a{i}", _result(_spot(*corners[i % 4]), 0, f"a{i}")))
        y, x = (int(v) for v in rng.integers(0, 29, 2))
        results.append((f"b{i}", _result(_spot(y, x), 1, f"b{i}")))
        regions[f"a{i}"] = torch.zeros(32, 32, dtype=torch.bool)
        regions[f"a{i}"][10:20, 10:20] = True  # the "object" is elsewhere
        regions[f"b{i}"] = torch.zeros(32, 32, dtype=torch.bool)
        regions[f"b{i}"][y : y + 3, x : x + 3] = True
    cfg = AuditConfig(grid=32, evidence_fraction=9 / 1024, location_sigma=0.03)
    audit = audit_results(results, regions=regions, config=cfg)
    cue, anywhere = audit.classes
    assert cue.n == anywhere.n == 12
    assert cue.colocation > 6 and cue.colocation_p < 0.01
    assert [f.split(":")[0] for f in cue.flags] == ["same place", "outside the objects"]
    assert cue.inside == pytest.approx(0.0) and anywhere.inside == pytest.approx(1.0)
    assert anywhere.colocation < 2 and anywhere.flags == []
    assert cue.mean_heatmap.shape == (32, 32) and cue.mean_evidence.sum() == pytest.approx(1.0)
    # the mean evidence sits in the four corners
    peak = np.unravel_index(np.argmax(cue.mean_evidence), (32, 32))
    assert min(peak[0], 31 - peak[0]) <= 4 and min(peak[1], 31 - peak[1]) <= 4
    assert audit.overall.n == 24 and audit.overall.label == -1
    assert cue.curve_mean.shape == (cfg.curve_points,)

    # too few images: no flag, however concentrated
    few = audit_results(results[:4:2], config=cfg)
    assert few.classes[0].n == 2 and few.classes[0].flags == []

    page = render_audit(audit)
    assert "<script" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page and page.count('class="card flagged"') >= 1
    data = audit.to_json()
    json.dumps(data, allow_nan=False)
    assert data["classes"][0]["flags"] and len(data["classes"][0]["mean_heatmap"]) == 32


def test_region_shape_must_match() -> None:
    res = _result(_spot(1, 1), 0, "x")
    with pytest.raises(ValueError, match="does not match"):
        audit_results([("x", res)], regions={"x": torch.zeros(4, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no results"):
        audit_results([])
    with pytest.raises(ValueError, match="evidence_fraction"):
        AuditConfig(evidence_fraction=0)


# ----------------------------------------------------------------------------- folders
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 2),
    ).eval()  # fmt: skip


def test_audit_folder_with_boxes_and_masks(tmp_path: Path) -> None:
    from ablation_paths.many import explain_many

    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        arr = (torch.rand(20, 24, 3, generator=g) * 255).byte().numpy()
        Image.fromarray(arr).save(folder / f"p{i}.png")
        mask = np.zeros((20, 24), np.uint8)
        mask[:, :12] = 255
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "masks" / f"p{i}.png")
    out = tmp_path / "run"
    explain_many(
        _net(), folder, out=out, class_names=["x", EVIL], progress=False, max_iterations=3,
        n_steps=4,
    )  # fmt: skip
    coco = {
        "images": [
            {"id": i, "file_name": f"p{i}.png", "width": 24, "height": 20} for i in range(4)
        ],
        "annotations": [{"image_id": i, "bbox": [0, 0, 12, 20]} for i in range(4)],
    }
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    a_boxes = audit_folder(out, boxes=tmp_path / "boxes.json")
    a_masks = audit_folder(out, masks=tmp_path / "masks")
    plain = audit_folder(out)
    assert a_boxes.overall.n == 4 and a_boxes.overall.inside_images == 4
    assert a_boxes.overall.object_area == pytest.approx(0.5)
    assert a_boxes.overall.inside == pytest.approx(a_masks.overall.inside)
    assert plain.overall.inside is None
    # each image's inside fraction equals the direct computation on its saved heatmap
    expect = []
    for i in range(4):
        h = ablation_paths.load(out / f"p{i}" / "path.npz").heatmap()
        region = torch.zeros(20, 24, dtype=torch.bool)
        region[:, :12] = True
        expect.append(mass_inside(evidence_map(h, 0.02), region))
    assert a_boxes.overall.inside == pytest.approx(float(np.mean(expect)))

    files = write_audit(a_boxes, out)
    page = files["html"].read_text(encoding="utf-8")
    assert "<script" not in page and re.search(r"Content-Security-Policy", page)
    data = json.loads(files["json"].read_text())
    assert data["all"]["n"] == 4 and data["annotations"] == str(tmp_path / "boxes.json")
    with pytest.raises(ValueError, match="not both"):
        audit_folder(out, boxes=tmp_path / "boxes.json", masks=tmp_path / "masks")
    with pytest.raises(ValueError, match="no results"):
        audit_folder(folder)


# ----------------------------------------------------------------------------- the demonstration
def _explain_dataset(name: str, n: int) -> tuple[list, dict]:
    from ablation_paths.bench.datasets import load_bench_model, load_dataset
    from ablation_paths.bench.runner import object_mask

    model = load_bench_model(name)
    results, regions = [], {}
    for s in load_dataset(name, n, seed=3):
        res = ablation_paths.explain(model, s.image, None, keep_frames=False)
        results.append((s.name, res))
        obj = object_mask(s) if name == "planted_bias" else s.mask
        assert obj is not None
        regions[s.name] = obj.bool()
    return results, regions


@pytest.mark.slow
def test_planted_bias_flagged_localisation_not() -> None:
    """The audit finds the planted marker without being told where it is (and, given the
    decoy objects, that the evidence lies outside them); the localisation data set, whose
    evidence is its objects, is not flagged."""
    torch.set_num_threads(1)
    biased, biased_objects = _explain_dataset("planted_bias", 16)
    fair, fair_objects = _explain_dataset("localisation", 16)
    a = audit_results(biased, regions=biased_objects)
    b = audit_results(fair, regions=fair_objects)
    assert [f.split(":")[0] for f in a.overall.flags] == ["same place", "outside the objects"]
    assert a.overall.colocation > 4 and a.overall.inside is not None and a.overall.inside < 0.2
    assert b.overall.flags == [] and all(c.flags == [] for c in b.classes)
    assert b.overall.colocation < 3 and b.overall.inside is not None and b.overall.inside > 0.6


@pytest.mark.slow
def test_own_model_tutorial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the Python blocks of docs/own-model.md in order, as a reader would."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)
    assert (tmp_path / "runs" / "photos" / "index.html").is_file()
    assert (tmp_path / "runs" / "photos" / "audit.html").is_file()
    assert (tmp_path / "one" / "report.html").is_file()
