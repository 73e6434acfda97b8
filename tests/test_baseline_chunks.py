"""The blur search classifies candidates in chunks and stops at the first chunk with a flip."""

import numpy as np
import pytest
import torch

from ablation_paths.baselines import blurred_baseline
from ablation_paths.inputs import ClassifierFn
from test_baseline_search import GRID, StdClassifier, analytic_std, cosine_image


class Counting(ClassifierFn):
    def __init__(self, model):
        super().__init__(model)
        self.images = 0

    def __call__(self, images):
        self.images += images.shape[0]
        return super().__call__(images)


@pytest.mark.parametrize("flip_index", [0, 3, 4, 9, 15])
@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_search_classifies_only_the_chunks_up_to_the_flip(flip_index, chunk):
    # tau between grid points flip_index - 1 and flip_index: the first flip is at flip_index
    lo = GRID[flip_index - 1] if flip_index > 0 else 3.0
    tau = analytic_std(float(np.sqrt(lo * GRID[flip_index])))
    clf = Counting(StdClassifier(tau))
    b = blurred_baseline(clf, cosine_image(), search_chunk=chunk)
    assert b.sigma == pytest.approx(GRID[flip_index])
    chunks_run = flip_index // chunk + 1
    assert clf.images == 1 + min(16, chunks_run * chunk)  # the original, then the chunks


def test_search_chunk_must_be_positive():
    with pytest.raises(ValueError, match="search_chunk must be >= 1"):
        blurred_baseline(ClassifierFn(StdClassifier(0.1)), torch.rand(3, 8, 8), search_chunk=0)
