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


def _rewrite(src, dst, meta=None, arrays=None, drop=()):
    """Copy a saved result with some metadata keys / arrays replaced or dropped."""
    with np.load(src) as data:
        items = {k: data[k] for k in data.files}
    m = json.loads(items.pop("meta").tobytes())
    m.update(meta or {})
    items.update(arrays or {})
    for k in drop:
        items.pop(k, None)
        m.pop(k, None)
    items["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(dst, **items)
    return dst


@pytest.fixture
def saved(tiny_model, tiny_image, tmp_path):
    """A straddling result (T = 4 interior samples, 5 classes, a 3 x 32 x 32 image) saved."""
    r = ap.explain(tiny_model, tiny_image, 1, score="straddle", class_names=NAMES, **FAST)
    return r, r.save(tmp_path / "r.npz")


def _bad_shapes(r):
    t, k, path_shape = r.path.shape[0], r.probs.shape[1], tuple(r.path.shape)
    z = np.zeros
    return [
        ({}, {"times": np.array(["a"] * t)}, "array 'times' has non-numeric dtype <U1"),
        ({}, {"path": z(t)}, f"'path' has shape ({t},)"),
        (
            {},
            {"probs": z((t + 2, 0))},
            f"'probs' has shape ({t + 2}, 0), expected ({t + 2}, classes)",
        ),
        ({}, {"probs": z((t + 2, k, 1))}, f"'probs' has shape ({t + 2}, {k}, 1), expected"),
        ({"target": k}, {}, f"target {k} is out of range for {k} classes"),
        ({"target": -1}, {}, f"target -1 is out of range for {k} classes"),
        ({"class_names": NAMES[:-1]}, {}, f"{k - 1} class names for {k} classes"),
        (
            {},
            {"image": z((2, 32, 32)), "baseline_image": z((2, 32, 32))},
            "'image' has shape (2, 32, 32), expected (C, H, W)",
        ),
        (
            {},
            {"image": z((3, 0, 32)), "baseline_image": z((3, 0, 32))},
            "'image' has shape (3, 0, 32)",
        ),
        (
            {},
            {"image": z((3, 32, 0)), "baseline_image": z((3, 32, 0))},
            "'image' has shape (3, 32, 0)",
        ),
        ({}, {"image": z((32, 32)), "baseline_image": z((32, 32))}, "'image' has shape (32, 32)"),
        (
            {},
            {"baseline_image": z((3, 32, 31))},
            "'baseline_image' has shape (3, 32, 31), the image (3, 32, 32)",
        ),
        (
            {},
            {"masks_image": z((t + 2, 32, 31))},
            f"'masks_image' has shape ({t + 2}, 32, 31), expected ({t + 2}, 32, 32)",
        ),
        (
            {},
            {"frames": z((t + 1, 3, 32, 32), np.uint8)},
            f"'frames' has shape ({t + 1}, 3, 32, 32), expected ({t + 2}, 3, 32, 32)",
        ),
        ({}, {"path_down": z((t + 1, *path_shape[1:]))}, f"'path_down' has shape ({t + 1}, "),
        (
            {},
            {"probs_down": z((t + 2, k + 1))},
            f"'probs_down' has shape ({t + 2}, {k + 1}), expected ({t + 2}, {k})",
        ),
    ]


def test_load_names_each_inconsistent_shape(saved, tmp_path):
    """Every shape check of ``load`` with its full message (the file name, then the problem)."""
    from ablation_paths.result import ResultFileError

    r, f = saved
    for i, (meta, arrays, message) in enumerate(_bad_shapes(r)):
        bad = _rewrite(f, tmp_path / f"bad{i}.npz", meta=meta, arrays=arrays)
        with pytest.raises(ResultFileError) as err:
            load(bad)
        prefix = f"{bad} is not a valid ablation-paths result: "
        assert str(err.value).startswith(prefix + message), (i, str(err.value))


def test_load_accepts_the_edges_of_each_check(saved, tmp_path):
    """Targets 0 and ``K - 1``, no class names, a one-channel image, one path sample."""
    r, f = saved
    k = r.probs.shape[1]
    for target in (0, k - 1):
        assert (
            load(_rewrite(f, tmp_path / f"t{target}.npz", meta={"target": target})).target == target
        )
    assert load(_rewrite(f, tmp_path / "n.npz", meta={"class_names": None})).class_names is None
    t = r.path.shape[0]
    gray = {
        "image": np.zeros((1, 32, 32), np.float32),
        "baseline_image": np.zeros((1, 32, 32), np.float32),
        "frames": np.zeros((t + 2, 1, 32, 32), np.uint8),
    }
    assert load(_rewrite(f, tmp_path / "g.npz", arrays=gray)).image.shape == (1, 32, 32)
    one = {
        "path": r.path[:1].numpy(),
        "path_down": r.path_down[:1].numpy(),
        "times": r.times[:1].numpy(),
        "probs": r.probs[:3].numpy(),
        "probs_down": r.probs_down[:3].numpy(),
        "frames": np.zeros((3, 3, 32, 32), np.uint8),
        "masks_image": np.zeros((3, 32, 32), np.float32),
    }
    assert load(_rewrite(f, tmp_path / "one.npz", arrays=one)).path.shape[0] == 1


def _bad_metadata(r):
    t, k = r.path.shape[0], r.probs.shape[1]
    probs_hi = r.probs.numpy().copy()
    probs_hi[0, 0] = 1.5
    nan_times = r.times.numpy().copy()
    nan_times[0] = np.nan
    return [
        ({"version": "1"}, {}, "metadata 'version' is not an integer"),
        ({"target": "1"}, {}, "'target' is not an integer"),
        ({"score": "best"}, {}, "unknown score 'best'"),
        ({"path_score": "x"}, {}, "'path_score' is not a finite number"),
        ({"iterations": -1}, {}, "'iterations' is not a non-negative integer"),
        ({"converged": "yes"}, {}, "'converged' is not true/false"),
        ({"stopped": "tired"}, {}, "unknown 'stopped' 'tired'"),
        ({"features": 3}, {}, "'features' is not a string"),
        ({"class_names": [1, 2]}, {}, "'class_names' is not a list of strings"),
        ({"target_name": 5}, {}, "'target_name' is not a string"),
        ({"history": [1]}, {}, "'history' is not a list of objects"),
        ({"history": {"a": 1}}, {}, "'history' is not a list of objects"),
        ({"info": [1]}, {}, "'info' is not an object"),
        ({}, {"times": nan_times}, "array 'times' has NaN or infinite values"),
        ({}, {"probs": probs_hi}, "'probs' holds values outside [0, 1]"),
        ({}, {"probs": -r.probs.numpy()}, "'probs' holds values outside [0, 1]"),
        ({}, {"times": np.zeros(t + 1)}, f"'times' has shape ({t + 1},), expected ({t},)"),
        (
            {},
            {"heatmap_average": np.zeros((32, 31))},
            "'heatmap_average' has shape (32, 31), expected (32, 32)",
        ),
        (
            {},
            {"probs_complement": np.zeros((t + 2, k + 1))},
            f"'probs_complement' has shape ({t + 2}, {k + 1}), expected ({t + 2}, {k})",
        ),
    ]


def test_load_names_each_bad_metadata_value(saved, tmp_path):
    from ablation_paths.result import ResultFileError

    r, f = saved
    for i, (meta, arrays, message) in enumerate(_bad_metadata(r)):
        bad = _rewrite(f, tmp_path / f"meta{i}.npz", meta=meta, arrays=arrays)
        with pytest.raises(ResultFileError) as err:
            load(bad)
        assert str(err.value) == f"{bad} is not a valid ablation-paths result: {message}", i


def test_load_rejects_non_object_metadata_and_names_missing_arrays(saved, tmp_path):
    from ablation_paths.result import ResultFileError

    r, f = saved
    with np.load(f) as data:
        items = {k: data[k] for k in data.files}
    items["meta"] = np.frombuffer(b"[1, 2]", np.uint8)
    np.savez(tmp_path / "list.npz", **items)
    with pytest.raises(ResultFileError) as err:
        load(tmp_path / "list.npz")
    prefix = f"{tmp_path / 'list.npz'} is not a valid ablation-paths result: "
    assert str(err.value) == prefix + "metadata is not a JSON object"
    two = _rewrite(f, tmp_path / "two.npz", drop=("times", "image"))
    with pytest.raises(ResultFileError) as err:
        load(two)
    prefix = f"{two} is not a valid ablation-paths result: "
    assert str(err.value) == prefix + "missing arrays: times, image"


def test_load_accepts_zero_iterations_and_probabilities_at_0_and_1(saved, tmp_path):
    r, f = saved
    probs = r.probs.numpy().copy()
    probs[0] = 0.0
    probs[0, 0] = 1.0
    back = load(_rewrite(f, tmp_path / "edge.npz", meta={"iterations": 0}, arrays={"probs": probs}))
    assert back.iterations == 0 and float(back.probs[0, 0]) == 1.0 and float(back.probs[0, 1]) == 0
    assert back.target_name == "b" and back.features == "pixel"


def test_load_size_cap_counts_every_member(saved, tmp_path):
    """The cap is on the *sum* of the declared member sizes, inclusive."""
    import zipfile

    from ablation_paths.result import ResultFileError

    _, f = saved
    with zipfile.ZipFile(f) as zf:
        sizes = [i.file_size for i in zf.infolist()]
    total = sum(sizes)
    assert load(f, max_bytes=total).path is not None
    for cap in (total - 1, max(sizes)):
        with pytest.raises(ResultFileError, match="declares more than"):
            load(f, max_bytes=cap)


def test_load_reads_npy_format_version_2_members(saved, tmp_path):
    import zipfile

    r, f = saved
    with np.load(f) as data:
        items = {k: data[k] for k in data.files}
    v2 = tmp_path / "v2.npz"
    with zipfile.ZipFile(v2, "w") as zf:
        for name, arr in items.items():
            with zf.open(name + ".npy", "w") as fh:
                np.lib.format.write_array(fh, arr, version=(2, 0))
    back = load(v2)
    assert torch.equal(back.path, r.path) and torch.equal(back.probs, r.probs)


def test_load_accepts_one_class_and_one_pixel_high_or_wide_images(saved, tmp_path):
    r, f = saved
    t = r.path.shape[0]
    one_class = {"probs": np.ones((t + 2, 1)), "probs_down": np.ones((t + 2, 1))}
    meta = {"target": 0, "class_names": None, "target_name": None}
    back = load(_rewrite(f, tmp_path / "k1.npz", meta=meta, arrays=one_class))
    assert back.probs.shape == (t + 2, 1)
    for h, w in ((1, 32), (32, 1)):
        arrays = {
            "image": np.zeros((3, h, w), np.float32),
            "baseline_image": np.zeros((3, h, w), np.float32),
            "frames": np.zeros((t + 2, 3, h, w), np.uint8),
            "masks_image": np.zeros((t + 2, h, w), np.float32),
        }
        arrays.update({f"heatmap_{k}": np.zeros((h, w), np.float32) for k in r.heatmaps})
        assert load(_rewrite(f, tmp_path / f"{h}x{w}.npz", arrays=arrays)).image.shape == (3, h, w)
