"""save -> load keeps every field of a result, for every score and for SIFT features.

The reference is the result object itself: every dataclass field is compared, so a field that
``save`` drops (e.g. ``probs_complement``) or ``load`` misreads fails here.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import ablation_paths as ap
from ablation_paths.result import AblationPathResult, load
from ablation_paths.scores import SCORES

FAST = dict(n_steps=4, max_iterations=3, batch_size=8)
NAMES = ["a", "b", "c", "d", "e"]


def assert_same(a: AblationPathResult, b: AblationPathResult) -> None:
    for f in dataclasses.fields(AblationPathResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor), f.name
            assert x.dtype == y.dtype and torch.equal(x, y), f.name
        elif f.name == "heatmaps":
            assert list(x) == list(y), f.name
            for k in x:
                assert torch.equal(x[k], y[k]), (f.name, k)
        elif f.name == "info":
            # JSON keeps the values; tuples come back as lists
            assert json.loads(json.dumps(x)) == y, f.name
        else:
            assert x == y, f.name
    # derived quantities follow
    assert a.pinned == b.pinned and a.class_transition_time == b.class_transition_time
    assert a.summary() == b.summary()


@pytest.mark.parametrize("score", SCORES)
def test_every_field_survives_save_and_load(tiny_model, tiny_image, tmp_path, score):
    r = ap.explain(tiny_model, tiny_image, 1, score=score, class_names=NAMES, **FAST)
    # the optional fields of this score are present, the others absent
    assert (r.probs_complement is not None) == (score == "contrastive")
    assert (r.path_down is not None) == (score == "straddle")
    assert (r.probs_down is not None) == (score == "straddle")
    assert r.frames is not None and r.masks_image is not None
    back = load(r.save(tmp_path / f"{score}.npz"))
    assert_same(r, back)


def test_optional_fields_absent_stay_absent(tiny_model, tiny_image, tmp_path):
    r = ap.explain(tiny_model, tiny_image, 0, keep_frames=False, **FAST)
    assert r.frames is None and r.class_names is None and r.target_name is None
    back = load(r.save(tmp_path / "plain.npz"))
    assert_same(r, back)


def test_sift_result_roundtrip(tiny_model, tmp_path):
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    r = ap.explain(tiny_model, img, 2, features="sift", **FAST)
    assert r.features == "sift"
    back = load(r.save(tmp_path / "sift.npz"))
    assert_same(r, back)


def test_converged_result_and_nested_folder(tiny_model, tiny_image, tmp_path):
    r = ap.explain(tiny_model, tiny_image, 1, n_steps=4, max_iterations=5, stop_saturation=0.05)
    assert r.converged
    back = load(r.save(tmp_path / "a" / "b" / "r.npz"))
    assert_same(r, back)


def test_file_without_version_is_rejected(tiny_model, tiny_image, tmp_path):
    from ablation_paths.result import ResultFileError

    r = ap.explain(tiny_model, tiny_image, 1, **FAST)
    f = r.save(tmp_path / "r.npz")
    with np.load(f) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["version"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ResultFileError, match="version"):
        load(tmp_path / "old.npz")


def test_summary_and_windowed_heatmap(tiny_model, tiny_image):
    img = tiny_image[:, :, :24]  # not square
    r = ap.explain(tiny_model, img, 1, class_names=NAMES, **FAST)
    s = r.summary()
    assert s["converged"] is r.converged and s["settings"] == r.info["config"]
    assert s["target_prob_image"] == float(r.probs[0, 1])
    assert s["target_prob_baseline"] == float(r.probs[-1, 1])
    assert s["pinned"] is r.pinned and s["target_name"] == "b"
    # eq. 2.37 on a 32 x 24 heatmap in double precision (NumPy reference)
    h = r.heatmap("average").double()
    r.heatmaps["average"] = h
    y = (np.arange(32) + 0.5) / 32
    x = (np.arange(24) + 0.5) / 24
    window = np.sqrt(np.outer(np.sin(np.pi * y), np.sin(np.pi * x)))
    got = r.heatmap("average", window=True)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, h * torch.from_numpy(window), rtol=1e-12, atol=0)


def test_summary_keys_and_values(tiny_model, tiny_image):
    """Every key of the summary, and ``settings`` = the config (``{}`` when there is none)."""
    r = ap.explain(tiny_model, tiny_image, 1, class_names=NAMES, **FAST)
    r.info["extra"] = 7
    want = {
        "target": 1,
        "target_name": "b",
        "score": r.score,
        "features": "pixel",
        "path_score": r.path_score,
        "saturation": r.saturation,
        "iterations": r.iterations,
        "converged": r.converged,
        "stopped": r.stopped,
        "pinned": r.pinned,
        "class_transition_time": r.class_transition_time,
        "target_prob_image": float(r.probs[0, 1]),
        "target_prob_baseline": float(r.probs[-1, 1]),
        "settings": r.info["config"],
    }
    want.update({k: v for k, v in r.info.items() if k != "config"})
    s = r.summary()
    assert s == want and "config" not in s and s["extra"] == 7
    bare = dataclasses.replace(r, info={"extra": 1})
    assert bare.summary()["settings"] == {} and bare.summary()["extra"] == 1


def test_heatmap_default_is_unwindowed_and_the_window_follows_the_device(tiny_model, tiny_image):
    r = ap.explain(tiny_model, tiny_image, 1, **FAST)
    assert torch.equal(r.heatmap(), r.heatmaps[r.default_reduction])
    r.heatmaps["average"] = torch.zeros(8, 6, device="meta")
    assert r.heatmap("average", window=True).device == torch.device("meta")


def test_optional_metadata_keys_take_their_defaults(tiny_model, tiny_image, tmp_path):
    """A file without ``features``, ``history`` or ``info`` (older writers) loads as pixel
    features with an empty history and info."""
    r = ap.explain(tiny_model, tiny_image, 1, **FAST)
    f = r.save(tmp_path / "r.npz")
    with np.load(f) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    for key in ("features", "history", "info"):
        del meta[key]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    back = load(tmp_path / "old.npz")
    assert back.features == "pixel" and back.history == [] and back.info == {}
    assert torch.equal(back.path, r.path)
