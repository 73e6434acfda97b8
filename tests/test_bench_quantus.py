"""Cross-check our pointing game and deletion curve against Quantus (skipped without Quantus)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ablation_paths.bench.methods import compute
from ablation_paths.bench.metrics import ablation_curves, pointing_game
from ablation_paths.bench.toy import load_toy_dataset, load_toy_model

quantus = pytest.importorskip("quantus")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.nn.Module, list, np.ndarray]:
    model = load_toy_model()
    samples = load_toy_dataset(6, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = np.stack(
            [compute("occlusion", model, s.image, s.label).heatmap.numpy() for s in samples]
        )
    # break exact ties so that both libraries see one unique ranking
    a = a + 1e-3 * np.ptp(a) * np.random.default_rng(0).random(a.shape)
    return model, samples, a[:, None].astype(np.float32)


def test_pointing_game_agrees_with_quantus(batch) -> None:
    model, samples, a = batch
    x = np.stack([s.image.numpy() for s in samples])
    y = np.array([s.label for s in samples])
    s_batch = np.stack([s.mask.numpy()[None] for s in samples]).astype(np.float32)
    # move some maxima outside the object so that misses are compared too
    a = a.copy()
    for i in (1, 4):
        a[i, 0, 0, 0] = a[i].max() + 1.0
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=model, x_batch=x, y_batch=y, a_batch=a, s_batch=s_batch, device="cpu"
    )
    ours = [pointing_game(torch.from_numpy(a[i, 0]), samples[i].mask) for i in range(len(y))]
    assert [float(t) for t in theirs] == ours
    assert 0 < sum(ours) < len(ours)


def test_deletion_curve_agrees_with_quantus_pixel_flipping(batch) -> None:
    model, samples, a = batch
    x = np.stack([s.image.numpy() for s in samples])
    y = np.array([s.label for s in samples])
    steps, hw = 32, 32 * 32
    metric = quantus.PixelFlipping(
        features_in_step=hw // steps,  # Quantus counts channels as features: 3 steps a pixel block
        perturb_baseline="black",
        disable_warnings=True,
    )
    theirs = np.asarray(
        metric(model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu", softmax=True)
    )
    for i, s in enumerate(samples):
        ours = ablation_curves(
            model, s.image, torch.from_numpy(a[i, 0]), s.label, baseline=torch.zeros(3, 32, 32),
            steps=steps,
        )  # fmt: skip
        # Quantus records the curve after each of its steps; every third one completes a block of
        # hw / steps whole pixels. Ours also has the unperturbed start.
        np.testing.assert_allclose(ours.deletion[1:], theirs[i][2::3], atol=1e-5)
