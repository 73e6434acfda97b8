"""Tests of the benchmark metrics against slow, obviously-correct references."""

from __future__ import annotations

import copy
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


# ----------------------------------------------------------------- edge cases and settings


@pytest.mark.parametrize("side", [32, 112, 224, 448])
def test_pointing_tolerance_scales_with_image_size(side: int) -> None:
    """TorchRay's 15 px at 224 px, proportionally at other sizes."""
    assert default_tolerance(side) == pytest.approx(15.0 * side / 224.0)


def test_runner_uses_the_scaled_tolerance(tmp_path, monkeypatch) -> None:
    import ablation_paths.bench.runner as runner

    tolerances = []
    real = runner.pointing_game

    def spy(h, mask, tol=0.0):
        tolerances.append(tol)
        return real(h, mask, tol)

    monkeypatch.setattr(runner, "pointing_game", spy)
    cfg = runner.BenchConfig(dataset="toy", methods=["centre"], n=1, out=tmp_path, sanity_n=0)
    runner.run_benchmark(cfg)
    assert tolerances[0] == pytest.approx(15.0 * 32 / 224) and tolerances[1] == 0.0


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        pointing_game(torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        mass_inside(torch.rand(4, 4), torch.ones(4, 5, dtype=torch.bool))


def test_pointing_game_nan_counts_as_lowest() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    heat = torch.full((4, 4), -1.0)
    heat[3, 3] = -0.5  # the real maximum, outside the mask
    heat[0, 0] = float("nan")
    assert pointing_game(heat, mask) == 0.0
    # all NaN: every pixel ties, the expected hit is the mask's area
    assert pointing_game(torch.full((4, 4), float("nan")), mask) == pytest.approx(1 / 16)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_pointing_game_tie_tolerance_is_relative(scale: float) -> None:
    mask = torch.zeros(1, 4, dtype=torch.bool)
    mask[0, 0] = True
    near = torch.tensor([[1.0, 1.0 - 1e-9, 0.0, 0.0]], dtype=torch.float64) * scale
    assert pointing_game(near, mask) == pytest.approx(0.5)  # relative 1e-9: a tie
    apart = torch.tensor([[1.0, 1.0 - 1e-5, 0.0, 0.0]], dtype=torch.float64) * scale
    assert pointing_game(apart, mask) == 1.0  # relative 1e-5: a unique maximum


def test_mass_inside_small_values() -> None:
    mask = torch.zeros(2, 2, dtype=torch.bool)
    mask[0] = True
    h = torch.tensor([[0.1, 0.0], [0.3, -0.2]])
    assert mass_inside(h, mask) == pytest.approx(0.25)


def test_blurred_baseline_default_sigma() -> None:
    from ablation_paths.bench.metrics import blurred_baseline
    from ablation_paths.filters import gaussian_blur

    img = torch.rand(3, 20, 12, generator=torch.Generator().manual_seed(0))
    expected = gaussian_blur(img.unsqueeze(0), 0.08 * 20)[0]
    torch.testing.assert_close(blurred_baseline(img), expected)


def test_auc_wrappers_and_tie_breaking_seed() -> None:
    from ablation_paths.bench.metrics import _pixel_order, deletion_auc, insertion_auc

    model = load_toy_model()
    s = load_toy_dataset(1, seed=5)[0]
    heat = torch.rand(32, 32, generator=torch.Generator().manual_seed(2))
    base = torch.full_like(s.image, 0.3)
    c = ablation_curves(model, s.image, heat, s.label, baseline=base, steps=4)
    kw = dict(baseline=base, steps=4)
    assert deletion_auc(model, s.image, heat, s.label, **kw) == c.deletion_auc
    assert insertion_auc(model, s.image, heat, s.label, **kw) == c.insertion_auc
    flat = torch.zeros(6, 6)
    assert torch.equal(_pixel_order(flat, 3), _pixel_order(flat, 3))
    assert not torch.equal(_pixel_order(flat, 3), _pixel_order(flat, 4))
    ranked = torch.arange(36.0).reshape(6, 6) - 20  # negative and positive values
    ranked[0, 0] = float("nan")
    order = _pixel_order(ranked, 0)
    assert order[0] == 35 and order[-1] == 0  # descending; NaN last, below negatives
    assert order[-2] == 1


def test_randomise_top_layers_details() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.weight = nn.Parameter(2.0 * torch.randn(60, 60, generator=g))
            self.scale = nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight * self.scale

    model = nn.Sequential(nn.Linear(60, 60), nn.Sequential(nn.Linear(60, 60)), Custom())
    model.append(nn.BatchNorm1d(60))
    rand = randomise_top_layers(model, 1, seed=0)
    # the BatchNorm is skipped; the custom layer (no reset_parameters) is redrawn N(0, std)
    assert torch.equal(rand[3].weight, model[3].weight)
    w = rand[2].weight.detach()
    assert not torch.equal(w, model[2].weight)
    assert float(w.std()) == pytest.approx(2.0, rel=0.1) and abs(float(w.mean())) < 0.1
    assert float(rand[2].scale.detach()) != 0.0  # a scalar is redrawn with std 1
    assert torch.equal(rand[1][0].weight, model[1][0].weight)
    two = randomise_top_layers(model, 2, seed=0)  # nested Linear counts as one layer
    assert not torch.equal(two[1][0].weight, model[1][0].weight)
    assert torch.equal(two[0].weight, model[0].weight)
    default = randomise_top_layers(model)
    assert torch.equal(default[1][0].weight, randomise_top_layers(model, 2, seed=0)[1][0].weight)
    with pytest.raises(ValueError, match="n_layers"):
        randomise_top_layers(model, 0)
    with pytest.raises(ValueError, match="no parametrised layers"):
        randomise_top_layers(nn.ReLU())


def test_rank_correlation_unit_range() -> None:
    a = torch.arange(16.0).reshape(4, 4) / 15  # ptp exactly 1
    assert rank_correlation(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        rank_correlation(a, a[:2])


def test_randomise_top_layers_uses_each_layers_own_initialisation() -> None:
    class Scalars(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scalars = nn.ParameterList([nn.Parameter(torch.zeros(())) for _ in range(400)])
            self.pair = nn.Parameter(torch.tensor([1.0, 1.002]))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(60, 60), nn.Sequential(nn.Linear(60, 60)), Scalars())
    rand = randomise_top_layers(model, 4, seed=1)
    # four layers: both Linear layers (the nested one, not its container), Scalars (the pair)
    # and its ParameterList (the scalars)
    assert not torch.equal(rand[0].weight, model[0].weight)
    for lin in (rand[0], rand[1][0]):
        # reset_parameters draws uniformly within +-1/sqrt(fan_in); N(0, std) would not stay
        assert float(lin.weight.detach().abs().max()) <= 1 / 60**0.5
    draws = torch.stack([p.detach() for p in rand[2].scalars.parameters()])
    assert 0.85 < float(draws.std()) < 1.15  # scalars: N(0, 1)
    assert float((rand[2].pair.detach() - 0).abs().max()) < 0.02  # N(0, std of the pair)


def test_pointing_game_is_computed_in_float64_for_float32_maps() -> None:
    """Float32 ``[1, 1 - 2^-23]``: the second value is 1.19e-7 below the peak, outside the
    1e-7 relative tie tolerance in float64 (in float32 the threshold ``1 - 1e-7`` would round
    down onto it and make it a tie)."""
    h32 = torch.tensor([[1.0, 1.0 - 2.0**-23]], dtype=torch.float32)
    mask = torch.tensor([[False, True]])
    assert pointing_game(h32, mask) == pointing_game(h32.double(), mask) == 0.0


def test_pointing_game_tie_edge_is_inclusive() -> None:
    """A value exactly ``1e-7 * scale`` below the peak is a tie (``>=``)."""
    h = torch.tensor([[1.0, 1.0 - 1e-7 * 1.0]], dtype=torch.float64)
    assert pointing_game(h, torch.tensor([[False, True]])) == 0.5


def test_mass_inside_float32_equals_its_float64_cast() -> None:
    g = torch.Generator().manual_seed(11)
    h = torch.rand(97, 89, generator=g)  # float32
    mask = torch.rand(97, 89, generator=g) > 0.7
    want = float(h.double()[mask].sum() / h.double().sum())
    assert mass_inside(h, mask) == mass_inside(h.double(), mask) == pytest.approx(want, 1e-15)


def test_pixel_order_breaks_ties_in_the_order_of_the_seeded_permutation() -> None:
    """Many ties (three values over 200 000 pixels): within a value the pixels come in the
    order of the seeded permutation (a stable sort of the permuted values); an unstable sort
    would reorder them."""
    from ablation_paths.bench.metrics import _pixel_order

    g = torch.Generator().manual_seed(5)
    heat = torch.randint(0, 3, (400, 500), generator=g).double()
    order = _pixel_order(heat, 9)
    perm = torch.randperm(heat.numel(), generator=torch.Generator().manual_seed(9)).numpy()
    flat = heat.reshape(-1).numpy()
    rank = np.empty_like(perm)
    rank[perm] = np.arange(perm.size)  # position of each pixel in the permutation
    want = np.lexsort((rank, -flat))  # by value descending, then by permutation position
    np.testing.assert_array_equal(order.numpy(), want)


class _Block(nn.Module):
    """A layer without ``reset_parameters`` that owns a parameter and holds a child layer."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 4))
        self.child = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.child(x * self.scale)


def test_randomise_redraws_only_a_layers_own_parameters() -> None:
    """Layers are processed in ``modules()`` order with one seeded generator: the block's own
    ``scale`` is redrawn from ``N(0, std)``, then its child resets itself; the child's
    parameters are not drawn twice."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), _Block())
    rand = randomise_top_layers(model, 2, seed=3)
    ref = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    with torch.no_grad():
        block = ref[1]
        assert isinstance(block, _Block)
        block.scale.normal_(0.0, float(block.scale.std()))
        block.child.reset_parameters()
    torch.random.set_rng_state(state)
    for (name, a), (_, b) in zip(rand.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(rand[0].weight, model[0].weight)  # below the top two: untouched


def test_blurred_baseline_sigma_ignores_the_channel_count() -> None:
    """The side is the larger of H and W, never the channel count (here 3 > 2 = H = W)."""
    from ablation_paths.bench.metrics import blurred_baseline
    from ablation_paths.filters import gaussian_blur

    img = torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = gaussian_blur(img.unsqueeze(0), 0.5 * 2)[0]
    torch.testing.assert_close(blurred_baseline(img, 0.5), expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(blurred_baseline(img, 0.5), gaussian_blur(img[None], 1.5)[0])
