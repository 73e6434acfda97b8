"""Ablation paths on the shipped demo classifier: the optimiser really optimises, and the
class-transition heatmap points at the object."""

import pytest
import torch

import ablation_paths as ap
from ablation_paths.inputs import ClassifierFn
from ablation_paths.optimizer import evaluate_masks
from ablation_paths.paths import affine_path
from ablation_paths.scores import score_value

demo = pytest.importorskip("ablation_paths.demo")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return demo.load_model()


@pytest.fixture(scope="module")
def images():
    return demo.load_demo_images()


def _affine_score(model, result, score):
    """Score of the affine start path with the same baseline and mask space."""
    space = ap.PixelMaskSpace(result.image, result.baseline_image, tuple(result.path.shape[1:]))
    probs, _ = evaluate_masks(
        ClassifierFn(model),
        space,
        affine_path(*result.path.shape[:1], tuple(result.path.shape[1:])),
        result.target,
    )
    return score_value(score, [probs[:, result.target]])


@pytest.mark.parametrize("score", ["retain", "dissipate"])
def test_optimised_path_beats_affine_start(model, images, score):
    r = ap.explain(model, images[0].image, score=score)
    assert ap.check_axioms(r.path) == []
    assert r.path_score > _affine_score(model, r, score) + 0.01
    assert r.converged, f"default path did not saturate ({r.iterations} iterations)"


@pytest.mark.slow
def test_class_transition_points_into_object(model, images):
    hits = []
    for d in images:
        r = ap.explain(model, d.image, target=d.label)
        h = r.heatmap("class_transition")
        idx = int(h.flatten().argmax())
        y, x = divmod(idx, h.shape[1])
        hits.append(bool(d.mask[y, x]))
    fraction = sum(hits) / len(hits)
    print(f"class-transition max inside the object mask: {sum(hits)}/{len(hits)} = {fraction:.2f}")
    assert fraction > 0.5


@pytest.mark.slow
def test_cli_demo_end_to_end(tmp_path):
    """What `make demo` runs: no arguments explain the shipped demo image."""
    import json

    from ablation_paths.cli import main

    out = tmp_path / "demo"
    assert main(["explain", "--out", str(out), "--quiet"]) == 0
    for name in ("path.npz", "heatmaps.png", "path.png", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] and summary["target"] == summary["true_label"]
    loaded = ap.load(out / "path.npz")
    assert ap.check_axioms(loaded.path) == []
