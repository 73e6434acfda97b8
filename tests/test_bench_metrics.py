"""Tests of the benchmark metrics against slow, obviously-correct references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ablation_paths.bench.metrics import (
    ablation_curves,
    default_tolerance,
    disk_dilate,
    mass_inside,
    pointing_game,
    randomise_top_layers,
    rank_correlation,
)
from ablation_paths.bench.toy import load_toy_dataset, load_toy_model


def _reference_pointing(heatmap: torch.Tensor, mask: torch.Tensor, tol: float) -> float:
    """Brute force: argmax (unique) and a loop over ground-truth pixels."""
    h, w = heatmap.shape
    k = int(torch.argmax(heatmap))
    py, px = divmod(k, w)
    for y in range(h):
        for x in range(w):
            if mask[y, x] and (y - py) ** 2 + (x - px) ** 2 < tol**2:
                return 1.0
            if mask[y, x] and tol == 0 and (y, x) == (py, px):
                return 1.0
    return 0.0


@pytest.mark.parametrize("tol", [0.0, 1.0, 3.5, 8.0])
def test_pointing_game_matches_brute_force(tol: float) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        heat = torch.rand(20, 24, generator=g)
        mask = torch.zeros(20, 24, dtype=torch.bool)
        y0, x0 = torch.randint(0, 15, (2,), generator=g).tolist()
        mask[y0 : y0 + 4, x0 : x0 + 5] = True
        assert pointing_game(heat, mask, tol) == _reference_pointing(heat, mask, tol)


def test_pointing_game_ties_give_expected_hit() -> None:
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:, :5] = True
    flat = torch.ones(10, 10)
    assert pointing_game(flat, mask) == pytest.approx(0.5)
    two = torch.zeros(10, 10)
    two[0, 0] = two[0, 9] = 1.0
    assert pointing_game(two, mask) == pytest.approx(0.5)


def test_disk_dilate_radius() -> None:
    m = torch.zeros(11, 11, dtype=torch.bool)
    m[5, 5] = True
    d = disk_dilate(m, 3.0)
    ys, xs = torch.nonzero(d, as_tuple=True)
    assert int(((ys - 5) ** 2 + (xs - 5) ** 2).max()) < 9
    assert d.sum() == sum(
        1 for y in range(11) for x in range(11) if (y - 5) ** 2 + (x - 5) ** 2 < 9
    )
    assert default_tolerance(224) == pytest.approx(15.0)


def test_mass_inside() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    h = torch.zeros(4, 4)
    h[0, 0], h[3, 3], h[2, 2] = 3.0, 1.0, -5.0
    assert mass_inside(h, mask) == pytest.approx(0.75)
    assert mass_inside(torch.zeros(4, 4), mask) == pytest.approx(0.5)


def test_ablation_curves_match_reference_loop() -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=3)[0]
    heat = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
    base = torch.full_like(s.image, 0.4)
    c = ablation_curves(model, s.image, heat, s.label, baseline=base, steps=8, batch_size=3)
    order = torch.argsort(heat.reshape(-1), descending=True)
    for k, frac in enumerate(c.fractions):
        n = round(frac * 1024)
        keep = torch.zeros(1024, dtype=torch.bool)
        keep[order[:n]] = True
        keep = keep.reshape(32, 32)
        x_del = torch.where(keep, base, s.image)
        x_ins = torch.where(keep, s.image, base)
        with torch.no_grad():
            pd = torch.softmax(model(x_del[None]), 1)[0, s.label]
            pi = torch.softmax(model(x_ins[None]), 1)[0, s.label]
        assert c.deletion[k] == pytest.approx(float(pd), abs=1e-6)
        assert c.insertion[k] == pytest.approx(float(pi), abs=1e-6)
    assert c.deletion_auc == pytest.approx(float(np.trapezoid(c.deletion, c.fractions)))
    assert c.fractions[0] == 0 and c.fractions[-1] == 1


def test_good_heatmap_beats_inverted_one_on_deletion() -> None:
    model = load_toy_model()
    s = load_toy_dataset(1, seed=4)[0]
    good = s.mask.float()
    c_good = ablation_curves(model, s.image, good, s.label)
    c_bad = ablation_curves(model, s.image, -good, s.label)
    assert c_good.deletion_auc < c_bad.deletion_auc
    assert c_good.insertion_auc > c_bad.insertion_auc


def test_randomise_top_layers_changes_only_top() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Linear(5, 3))
    rand = randomise_top_layers(model, 2, seed=0)
    assert torch.equal(rand[0].weight, model[0].weight)
    assert not torch.equal(rand[2].weight, model[2].weight)
    assert not torch.equal(rand[3].weight, model[3].weight)
    again = randomise_top_layers(model, 2, seed=0)
    assert torch.equal(again[3].weight, rand[3].weight)


def test_rank_correlation() -> None:
    a = torch.rand(8, 8)
    assert rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, torch.ones(8, 8)) == 0.0
    assert not math.isnan(rank_correlation(a, torch.rand(8, 8)))
