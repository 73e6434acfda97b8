"""Hostile input (issue 11): images, models, result files, output paths and signals.

Each case asserts either a clear error that names the problem (one line on stderr and a non-zero
exit for the CLI, never a traceback) or a correct result, and that no earlier result was damaged.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import struct
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths as ap
from ablation_paths import io as apio
from ablation_paths.baselines import blurred_baseline, make_baseline
from ablation_paths.cli import OUTPUT_FILES, main, write_outputs
from ablation_paths.diagnostics import InputWarning
from ablation_paths.inputs import (
    MAX_DECODE_PIXELS,
    ClassifierFn,
    ImageInputError,
    ModelOutputError,
    load_image,
)
from ablation_paths.models import import_model_module, load_model_spec, resolve_device
from ablation_paths.result import ResultFileError, load

FAST = ["--n-steps", "3", "--max-iterations", "2", "--mask-size", "4", "--quiet"]

MODULE = """
import os, signal
import torch
from torch import nn

CALLS = [0]

class Net(nn.Module):
    def __init__(self, channels=3, probs=False, sigterm_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.probs = probs
        self.sigterm_at = sigterm_at
    def forward(self, x):
        CALLS[0] += 1
        if self.sigterm_at is not None and CALLS[0] == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        out = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return torch.softmax(out, dim=1) if self.probs else out

def make():
    return Net()

def make_probs():
    return Net(probs=True)

def make_grey():
    return Net(channels=1)

def make_sigterm():
    CALLS[0] = 0
    return Net(sigterm_at=3)

def make_broken():
    raise RuntimeError("weights file missing")

def make_not_a_module():
    return 42
"""


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def user_model(tmp_path, monkeypatch):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "hostile_user_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(mod_dir))
    yield "hostile_user_mod"
    sys.modules.pop("hostile_user_mod", None)


def _png(path: Path, size=(16, 16), seed=0, mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).convert(mode).save(path)
    return path


@pytest.fixture
def image_file(tmp_path):
    return _png(tmp_path / "cat.png")


class Logits(nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Softmaxed(Logits):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    """A valid saved result (and its bytes, to check it is never damaged)."""
    img = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(1))
    res = ap.explain(
        Logits().eval(), img, 0, baseline="black", n_steps=3, max_iterations=1, mask_size=4
    )
    f = tmp_path_factory.mktemp("res") / "path.npz"
    res.save(f)
    return f


def _cli(capsys, argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def _assert_one_line_error(rc, err, *needles):
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


# ----------------------------------------------------------------------------- images
def _save_16bit(path: Path) -> np.ndarray:
    a = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)
    Image.fromarray(a).save(path)
    return a


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    a = _save_16bit(tmp_path / "deep.png")
    img = load_image(tmp_path / "deep.png")
    assert img.shape == (3, 16, 16)
    np.testing.assert_allclose(img[0].numpy(), a / 65535.0, atol=1e-6)
    assert float((img == 1.0).float().mean()) == 0.0  # was 98.6 % ones before


@pytest.mark.parametrize(
    ("lo", "hi", "warns"), [(0.0, 1.0, False), (0.0, 255.0, True), (-3.0, 3.0, True)]
)
def test_float_tiff_decoded_faithfully(tmp_path, lo, hi, warns):
    f = np.linspace(lo, hi, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(f).save(tmp_path / "f.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load_image(tmp_path / "f.tif")
    assert any(issubclass(w.category, InputWarning) for w in caught) == warns
    expected = (f - lo) / (hi - lo)
    np.testing.assert_allclose(img[1].numpy(), expected, atol=1e-6)
    assert len(torch.unique(img[0])) == 256  # was 2 distinct values


def test_float_tiff_with_nan_is_refused(tmp_path):
    f = np.zeros((8, 8), np.float32)
    f[2, 3] = np.nan
    Image.fromarray(f).save(tmp_path / "nan.tif")
    with pytest.raises(ImageInputError, match="NaN"):
        load_image(tmp_path / "nan.tif")


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1)])
def test_tiny_image_file_says_too_small(tmp_path, size):
    _png(tmp_path / "tiny.png", size=size)
    with pytest.raises(ImageInputError, match="too small"):
        load_image(tmp_path / "tiny.png")


def _bomb_png(path: Path, width: int, height: int) -> None:
    """A valid PNG header declaring a huge image, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [5000, 20000, 60000])
def test_decompression_bomb_refused_before_decoding(tmp_path, side):
    _bomb_png(tmp_path / "bomb.png", side, side)
    assert side * side > MAX_DECODE_PIXELS
    with pytest.raises(ImageInputError, match="refusing to decode"):
        load_image(tmp_path / "bomb.png", size=32)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"hello, not an image", "cannot read image"), (b"", "cannot read image")],
)
def test_non_image_files(tmp_path, content, needle):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageInputError, match=needle):
        load_image(tmp_path / "x.png")


def test_truncated_png(tmp_path):
    _png(tmp_path / "ok.png", size=(64, 64))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="image file"):
        load_image(tmp_path / "cut.png")


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "CMYK", "1"])
def test_other_modes_become_rgb(tmp_path, mode):
    _png(tmp_path / "m.png", mode="RGB")
    with Image.open(tmp_path / "m.png") as im:
        converted = im.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    converted.save(tmp_path / f"m2{suffix}")
    img = load_image(tmp_path / f"m2{suffix}")
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0


@pytest.mark.parametrize(("alpha", "warns"), [(255, False), (0, True)])
def test_transparency_is_reported(tmp_path, alpha, warns):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = alpha
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load_image(tmp_path / "a.png")
    assert any("alpha" in str(w.message) for w in caught) == warns
    assert float(img[0].min()) == pytest.approx(200 / 255)


@pytest.mark.parametrize(
    ("array", "expected_max"),
    [
        (np.full((6, 6, 3), 65535, np.uint16), 1.0),
        (np.full((6, 6, 3), 255, np.uint8), 1.0),
        (np.full((6, 6), 0.5, np.float32), 0.5),
    ],
)
def test_arrays_scaled_by_dtype(array, expected_max):
    img = load_image(array)
    assert float(img.max()) == pytest.approx(expected_max)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (np.zeros((6, 6, 3), np.int64), "dtype"),
        (torch.rand(16, 16, 3), "permute"),
        (torch.full((3, 8, 8), float("inf")), "NaN or infinite"),
        (torch.rand(3, 1, 8), "too small"),
        (torch.rand(2, 3, 8, 8), "shape"),
    ],
)
def test_bad_arrays_and_tensors(bad, needle):
    with pytest.raises(ValueError, match=needle):
        load_image(bad)


@pytest.mark.parametrize("size", [0, -3, 1, (4,), (0, 4), (True, 4)])
def test_bad_sizes_are_errors(image_file, size):
    with pytest.raises(ImageInputError, match="size"):
        load_image(image_file, size=size)


def test_large_image_is_downscaled_with_a_warning(tmp_path):
    _png(tmp_path / "big.png", size=(300, 200))
    with pytest.warns(InputWarning, match="downscaled"):
        img = load_image(tmp_path / "big.png", max_pixels=100 * 100)
    assert img.shape[1] * img.shape[2] <= 100 * 100
    assert img.shape[2] / img.shape[1] == pytest.approx(1.5, rel=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "big.png", size=40).shape == (3, 40, 40)


def test_explain_accepts_the_demo_image_object():
    from ablation_paths.demo import demo_image

    d = demo_image()
    assert load_image(d).shape == d.image.shape
    res = ap.explain(Logits().eval(), d, 0, baseline="black", n_steps=3, max_iterations=1)
    assert tuple(res.image.shape) == tuple(d.image.shape)


# ----------------------------------------------------------------------------- models
def test_probabilities_detected_not_softmaxed_twice():
    model = Softmaxed().eval()
    x = torch.rand(2, 3, 8, 8)
    fn = ClassifierFn(model)
    with pytest.warns(InputWarning, match="probabilities"):
        p = fn.probabilities(x)
    torch.testing.assert_close(p, model(x), atol=1e-6, rtol=1e-5)


def test_logits_are_not_mistaken_for_probabilities():
    fn = ClassifierFn(Logits().eval())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn.probabilities(torch.rand(2, 3, 8, 8))
    assert not fn.returns_probabilities


class _Returns(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out(x)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (Logits(channels=1).eval(), "failed on images of shape"),
        (_Returns(lambda x: torch.zeros(x.shape[0])).eval(), "shape"),
        (_Returns(lambda x: torch.full((x.shape[0], 3), float("nan"))).eval(), "NaN"),
        (_Returns(lambda x: (x.sum(), x.sum())).eval(), "tensor of logits"),
    ],
)
def test_bad_models_give_clear_errors(model, needle):
    with pytest.raises(ModelOutputError, match=needle):
        ap.explain(model, torch.rand(3, 8, 8), baseline="black", n_steps=2, max_iterations=1)


@pytest.mark.parametrize(
    "baseline", [float("nan"), float("inf"), "blur:nan", "blur:inf", "blur:-1", "blur:x"]
)
def test_bad_baselines(baseline):
    fn = ClassifierFn(Logits().eval())
    with pytest.raises(ValueError, match="finite|positive|number"):
        make_baseline(baseline, fn, torch.rand(3, 8, 8))


def test_nan_baseline_tensor_named_as_baseline():
    img = torch.rand(3, 8, 8)
    bad = img.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="baseline contains NaN"):
        ap.explain(Logits().eval(), img, baseline=bad, n_steps=2, max_iterations=1)


def test_blur_search_chunks_agree_with_one_shot():
    model = Logits().eval()
    img = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(5))
    fn = ClassifierFn(model)
    whole = blurred_baseline(fn, img)
    one_at_a_time = blurred_baseline(fn, img, memory_budget=1)
    assert whole.sigma == one_at_a_time.sigma
    torch.testing.assert_close(whole.image, one_at_a_time.image)


def test_module_in_cwd_never_shadows_installed(tmp_path, monkeypatch):
    (tmp_path / "colorsys.py").write_text("raise SystemExit('shadowed module ran')\n")
    (tmp_path / "only_here_mod.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    module = import_model_module("colorsys")
    assert Path(module.__file__).parent != tmp_path
    assert import_model_module("only_here_mod").VALUE == 7  # found last, in the cwd
    sys.modules.pop("only_here_mod", None)
    assert "" in sys.path  # sys.path restored


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module_xyz:make", "cannot import"),
        ("hostile_user_mod:nothing", "no callable"),
        ("hostile_user_mod:make_broken", "weights file missing"),
        ("hostile_user_mod:make_not_a_module", "not a torch.nn.Module"),
        (":make", "expected package.module:callable"),
    ],
)
def test_bad_model_specs(user_model, spec, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        load_model_spec(spec)


def test_garbage_torchscript_file(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"\x80\x04 not torchscript")
    with pytest.raises(ValueError, match="TorchScript"):
        load_model_spec(str(tmp_path / "m.pt"))


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu"])
def test_unknown_devices(spec):
    with pytest.raises(ValueError, match="device"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys, image_file, user_model, tmp_path):
    rc, err = _cli(
        capsys,
        ["explain", image_file, "--model", f"{user_model}:make", "--device", "cuda",
         "--out", tmp_path / "o", *FAST],
    )  # fmt: skip
    _assert_one_line_error(rc, err, "CUDA is not available")


# ----------------------------------------------------------------------------- result files
def _rewrite(src: Path, dst: Path, meta=None, arrays=None, drop=()) -> Path:
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


def test_valid_result_loads(result_file):
    res = load(result_file)
    assert res.path.shape[0] == 3 and res.probs.shape == (5, 3)


BAD_META = [
    ({"target": -1}, "out of range"),
    ({"target": 3}, "out of range"),
    ({"target": "0"}, "'target'"),
    ({"target": True}, "'target'"),
    ({"score": "bogus"}, "unknown score"),
    ({"path_score": None}, "path_score"),
    ({"saturation": "high"}, "saturation"),
    ({"iterations": -1}, "iterations"),
    ({"converged": "yes"}, "converged"),
    ({"stopped": "exploded"}, "stopped"),
    ({"class_names": ["a", "b"]}, "class names"),
    ({"class_names": "abc"}, "class_names"),
    ({"history": {"a": 1}}, "history"),
    ({"info": [1, 2]}, "info"),
    ({"format": "something-else"}, "not an ablation-paths result"),
    ({"version": 99}, "newer version"),
    ({"version": "1"}, "version"),
]


@pytest.mark.parametrize(("meta", "needle"), BAD_META)
def test_bad_metadata(tmp_path, result_file, meta, needle):
    bad = _rewrite(result_file, tmp_path / "bad.npz", meta=meta)
    with pytest.raises(ResultFileError, match=needle):
        load(bad)


BAD_ARRAYS = [
    ({"times": np.zeros(2)}, "'times' has shape"),
    ({"probs": np.full((4, 3), 1 / 3)}, "'probs' has shape"),
    ({"probs": np.full((5, 3), 2.0)}, "outside"),
    ({"probs": np.full((5, 3), np.nan)}, "NaN"),
    ({"image": np.zeros((12, 12))}, "'image' has shape"),
    ({"baseline_image": np.zeros((3, 6, 6))}, "baseline_image"),
    ({"heatmap_average": np.zeros((5, 5))}, "heatmap_average"),
    ({"frames": np.zeros((2, 3, 12, 12), np.uint8)}, "frames"),
    ({"path": np.zeros((0, 4, 4))}, "'path' has shape"),
    ({"path": np.array(["a", "b"])}, "non-numeric"),
]


@pytest.mark.parametrize(("arrays", "needle"), BAD_ARRAYS)
def test_bad_arrays(tmp_path, result_file, arrays, needle):
    bad = _rewrite(result_file, tmp_path / "bad.npz", arrays=arrays)
    with pytest.raises(ResultFileError, match=needle):
        load(bad)


@pytest.mark.parametrize("name", ["path", "probs", "image", "meta"])
def test_missing_arrays(tmp_path, result_file, name):
    with np.load(result_file) as data:
        items = {k: data[k] for k in data.files if k != name}
    np.savez(tmp_path / "bad.npz", **items)
    with pytest.raises(ResultFileError, match="missing arrays|no metadata"):
        load(tmp_path / "bad.npz")


def test_corrupt_metadata_json(tmp_path, result_file):
    with np.load(result_file) as data:
        items = {k: data[k] for k in data.files}
    items["meta"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(tmp_path / "bad.npz", **items)
    with pytest.raises(ResultFileError, match="corrupt metadata"):
        load(tmp_path / "bad.npz")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_raw_pickle_named_npz_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ResultFileError) as info:
        load(tmp_path / "evil.npz")
    assert "not an ablation-paths result" in str(info.value)
    assert "allow_pickle" not in str(info.value)
    assert not marker.exists()


def test_object_array_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    np.savez(tmp_path / "evil.npz", meta=arr)
    with pytest.raises(ResultFileError, match="objects"):
        load(tmp_path / "evil.npz")
    assert not marker.exists()


def _zip_with_declared_size(src: Path, dst: Path, member: str, size: int) -> None:
    """Copy a stored (uncompressed) zip, patching ``member``'s declared uncompressed size."""
    data = bytearray(src.read_bytes())
    name = member.encode()
    for sig, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            if data[i + name_at : i + name_at + len(name)] == name:
                data[i + size_at : i + size_at + 4] = struct.pack("<I", size)
            start = i + 4
    dst.write_bytes(bytes(data))


def test_zip_bomb_declared_size_refused(tmp_path, result_file):
    plain = _rewrite(result_file, tmp_path / "plain.npz")
    _zip_with_declared_size(plain, tmp_path / "bomb.npz", "frames.npy", 3_000_000_000)
    with pytest.raises(ResultFileError, match="refusing to inflate"):
        load(tmp_path / "bomb.npz")


def test_npy_header_lying_about_its_size_refused(tmp_path, result_file):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (400_000_000,)}
    )
    buf.write(b"\x00" * 64)
    with np.load(result_file) as data:
        items = {k: data[k] for k in data.files}
    with zipfile.ZipFile(tmp_path / "lie.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in items.items():
            b = io.BytesIO()
            np.save(b, v)
            zf.writestr(f"{k}.npy", buf.getvalue() if k == "probs" else b.getvalue())
    with pytest.raises(ResultFileError, match="declares 3200000000 bytes"):
        load(tmp_path / "lie.npz")


def test_size_cap_applies_to_honest_files(result_file):
    with pytest.raises(ResultFileError, match="refusing to inflate"):
        load(result_file, max_bytes=1000)


def test_unexpected_member(tmp_path, result_file):
    data = result_file.read_bytes()
    (tmp_path / "extra.npz").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "extra.npz", "a") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ResultFileError, match="unexpected member"):
        load(tmp_path / "extra.npz")


def test_failed_save_keeps_the_previous_file(tmp_path, result_file, monkeypatch):
    target = tmp_path / "path.npz"
    target.write_bytes(result_file.read_bytes())
    before = target.read_bytes()
    res = load(result_file)

    def full_disk(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(OSError, match="No space"):
        res.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["path.npz"]  # no temp left


# ----------------------------------------------------------------------------- CLI: files and paths
def test_cli_view_of_non_result_is_one_line(capsys, tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    rc, err = _cli(capsys, ["view", tmp_path / "x.npz"])
    _assert_one_line_error(rc, err, "not an ablation-paths result")
    assert "allow_pickle" not in err


def test_cli_view_never_overwrites_its_input(capsys, tmp_path, result_file):
    f = tmp_path / "X.npz"
    f.write_bytes(result_file.read_bytes())
    rc, err = _cli(capsys, ["view", f, "--out", f])
    _assert_one_line_error(rc, err, "refusing to write")
    assert f.read_bytes() == result_file.read_bytes()
    load(f)


def test_cli_view_out_is_a_folder(capsys, tmp_path, result_file):
    rc, err = _cli(capsys, ["view", result_file, "--out", tmp_path])
    _assert_one_line_error(rc, err, "is a folder")


def test_cli_view_writes_html(capsys, tmp_path, result_file):
    rc = main(["view", str(result_file), "--out", str(tmp_path / "a" / "b.html")])
    assert rc == 0 and (tmp_path / "a" / "b.html").read_text().startswith("<!")


def test_cli_out_is_a_file(capsys, tmp_path, image_file, user_model):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    rc, err = _cli(
        capsys, ["explain", image_file, "--model", f"{user_model}:make", "--out", afile, *FAST]
    )
    _assert_one_line_error(rc, err, "is a file")
    assert afile.read_text() == "keep me"


def test_cli_out_below_a_file(capsys, tmp_path, image_file, user_model):
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(
        capsys,
        ["explain", image_file, "--model", f"{user_model}:make", "--out",
         tmp_path / "afile" / "sub", *FAST],
    )  # fmt: skip
    _assert_one_line_error(rc, err, "is a file")


@pytest.mark.parametrize("where", ["/proc/ablation-out", "/sys/ablation-out"])
def test_cli_out_not_writable(capsys, image_file, user_model, where):
    rc, err = _cli(
        capsys, ["explain", image_file, "--model", f"{user_model}:make", "--out", where, *FAST]
    )
    _assert_one_line_error(rc, err, "output folder")


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(apio.tempfile, "mkstemp", denied)
    with pytest.raises(apio.OutputPathError, match="not writable"):
        apio.check_output_dir(tmp_path)


def test_cli_missing_parents_are_created(capsys, tmp_path, image_file, user_model):
    out = tmp_path / "a" / "b" / "c"
    rc = main(
        ["explain", str(image_file), "--model", f"{user_model}:make", "--out", str(out),
         "--baseline", "black", *FAST]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


def test_cli_never_overwrites_the_input_image(capsys, tmp_path, user_model):
    folder = tmp_path / "dir"
    folder.mkdir()
    img = _png(folder / "heatmaps.png")
    before = img.read_bytes()
    rc, err = _cli(
        capsys, ["explain", img, "--model", f"{user_model}:make", "--out", folder, *FAST]
    )
    _assert_one_line_error(rc, err, "refusing to write", "heatmaps.png")
    assert img.read_bytes() == before


def test_cli_never_overwrites_a_baseline_file(capsys, tmp_path, image_file, user_model):
    folder = tmp_path / "dir"
    folder.mkdir()
    base = _png(folder / "path.png", seed=3)
    rc, err = _cli(
        capsys,
        ["explain", image_file, "--model", f"{user_model}:make", "--baseline", base,
         "--out", folder, *FAST],
    )  # fmt: skip
    _assert_one_line_error(rc, err, "refusing to write")


def test_cli_same_stems_get_their_own_folders(capsys, tmp_path, user_model):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _png(tmp_path / "a" / "cat.png", seed=1)
    b = _png(tmp_path / "b" / "cat.png", seed=2)
    out = tmp_path / "out"
    rc = main(
        ["explain", str(a), str(b), "--model", f"{user_model}:make", "--out", str(out),
         "--baseline", "black", *FAST]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat", "cat-2"]
    ra, rb = load(out / "cat" / "path.npz"), load(out / "cat-2" / "path.npz")
    assert ra.info["input"] == str(a) and rb.info["input"] == str(b)
    assert not torch.equal(ra.image, rb.image)


@pytest.mark.parametrize(
    "argv",
    [
        ["--size", "0"],
        ["--size", "-2"],
        ["--size", "x"],
        ["--regularization", "inf"],
        ["--regularization", "nan"],
        ["--regularization", "-1"],
        ["--step-size", "inf"],
        ["--batch-size", "0"],
        ["--n-steps", "-1"],
    ],
)
def test_cli_bad_options_exit_2(capsys, image_file, argv):
    with pytest.raises(SystemExit) as info:
        main(["explain", str(image_file), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_regularization_auto_is_accepted():
    from ablation_paths.cli import build_parser

    args = build_parser().parse_args(["explain", "--regularization", "auto"])
    assert args.regularization == "auto"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "hostile_user_mod:make_grey"], "failed on images of shape"),
        (["--model", "hostile_user_mod:make_broken"], "weights file missing"),
        (["--model", "no_such_module_xyz:f"], "cannot import"),
        (["--device", "tpu"], "device"),
        (["--class-names", "/nonexistent/names.txt"], "no such file"),
        (["--target", "99"], "out of range"),
        (["--target", "-1"], "out of range"),
        (["--baseline", "nope"], "unknown baseline"),
    ],
)
def test_cli_expected_failures_are_one_line(
    capsys, tmp_path, image_file, user_model, extra, needle
):
    argv = ["explain", image_file, "--model", f"{user_model}:make", "--out", tmp_path / "o"]
    rc, err = _cli(capsys, [*argv, *extra, *FAST])
    _assert_one_line_error(rc, err, needle)


def test_cli_tiny_and_bomb_images(capsys, tmp_path, user_model):
    _png(tmp_path / "one.png", size=(1, 1))
    _bomb_png(tmp_path / "bomb.png", 30000, 30000)
    for f, needle in ((tmp_path / "one.png", "too small"), (tmp_path / "bomb.png", "refusing")):
        rc, err = _cli(
            capsys, ["explain", f, "--model", f"{user_model}:make", "--out", tmp_path / "o", *FAST]
        )
        _assert_one_line_error(rc, err, needle)


def test_cli_probability_model_warns(capsys, tmp_path, image_file, user_model):
    rc = main(
        ["explain", str(image_file), "--model", f"{user_model}:make_probs", "--out",
         str(tmp_path / "o"), "--baseline", "black", *FAST]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0 and "warning: the model seems to return probabilities" in err


def test_cli_internal_error_is_one_line_and_debug_shows_it(
    capsys, tmp_path, image_file, user_model, monkeypatch
):
    import ablation_paths.cli as cli

    def boom(*args, **kwargs):
        raise RuntimeError("unexpected\nsecond line")

    monkeypatch.setattr(cli, "explain", boom)
    argv = ["explain", image_file, "--model", f"{user_model}:make", "--out", tmp_path / "o"]
    rc, err = _cli(capsys, argv)
    assert rc == 1
    _assert_one_line_error(rc, err, "internal error", "--debug")
    with pytest.raises(RuntimeError, match="unexpected"):
        main([str(a) for a in argv] + ["--debug"])


def test_bench_out_is_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(
        capsys,
        ["bench", "--dataset", "toy", "--n", "1", "--methods", "centre", "--out",
         tmp_path / "afile"],
    )  # fmt: skip
    _assert_one_line_error(rc, err, "is a file")


def test_bench_unreachable_ray_address(capsys, tmp_path):
    pytest.importorskip("ray")
    rc, err = _cli(
        capsys,
        ["bench", "--dataset", "toy", "--n", "1", "--methods", "centre", "--engine", "ray",
         "--address", "127.0.0.1:1", "--out", tmp_path / "b"],
    )  # fmt: skip
    _assert_one_line_error(rc, err, "cannot reach the Ray cluster")


def test_bench_failure_exits_nonzero_and_resume_retries(capsys, tmp_path, monkeypatch):
    from ablation_paths.bench import methods
    from ablation_paths.bench.runner import load_results

    state = {"fail": True}

    def flaky(model, image, target, *options):
        if state["fail"]:
            raise ValueError("transient failure")
        return image.mean(0)

    spec = methods.MethodSpec("flaky", flaky, "test", "fails on the first run")
    monkeypatch.setitem(methods._REGISTRY, "flaky", spec)
    argv = ["bench", "--dataset", "toy", "--n", "2", "--methods", "flaky", "--out",
            tmp_path / "b", "--sanity-n", "0", "--no-summary", "--quiet"]  # fmt: skip
    rc, err = _cli(capsys, argv)
    assert rc == 1 and "2 (image, method) pair(s) failed" in err and "transient failure" in err
    state["fail"] = False
    rc, err = _cli(capsys, argv)
    assert rc == 0, err
    recs = load_results(tmp_path / "b")
    assert len(recs) == 2 and all("error" not in r for r in recs)


# ----------------------------------------------------------------------------- signals
def test_sigterm_keeps_the_partial_result(capsys, tmp_path, image_file, user_model):
    out = tmp_path / "o"
    rc = main(
        ["explain", str(image_file), "--model", f"{user_model}:make_sigterm", "--out",
         str(out), "--baseline", "black", "--n-steps", "3", "--max-iterations", "50",
         "--stop-saturation", "1.0", "--quiet"]
    )  # fmt: skip
    assert rc == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "interrupted"
    assert load(out / "path.npz").stopped == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_writing_leaves_a_consistent_set(tmp_path, result_file, monkeypatch, signum):
    import ablation_paths.cli as cli

    out = tmp_path / "o"
    old = load(result_file)
    write_outputs(old, out)  # an earlier, complete result
    new = load(result_file)
    new.target = 1
    real = cli.plot_heatmaps

    def interrupted_plot(result, file):
        os.kill(os.getpid(), signum)  # arrives in the middle of writing the set
        return real(result, file)

    monkeypatch.setattr(cli, "plot_heatmaps", interrupted_plot)
    previous = signal.signal(signal.SIGTERM, cli._terminate)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_outputs(new, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == 1 and load(out / "path.npz").target == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries


def test_failed_write_leaves_no_summary_beside_mixed_files(tmp_path, result_file, monkeypatch):
    import ablation_paths.cli as cli

    out = tmp_path / "o"
    write_outputs(load(result_file), out)
    before = (out / "path.npz").read_bytes()

    def broken(result, file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "plot_path_strip", broken)
    new = load(result_file)
    new.target = 2
    with pytest.raises(OSError):
        write_outputs(new, out)
    assert not (out / "summary.json").exists()  # the set is marked incomplete
    assert (out / "path.npz").read_bytes() != before  # path.npz is the new, complete file
    assert load(out / "path.npz").target == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unique_names():
    assert apio.unique_names(["cat", "dog", "cat", "cat-2", "cat"]) == [
        "cat",
        "dog",
        "cat-3",
        "cat-2",
        "cat-4",
    ]


@pytest.mark.slow
def test_sigterm_to_a_real_process_keeps_the_partial_result(tmp_path):
    """End to end: SIGTERM a running ``ablation-paths explain``; it writes the partial path."""
    import subprocess
    import time

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "ablation_paths.cli", "explain", "--out", str(out),
           "--max-iterations", "100000", "--stop-saturation", "1.0", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    seen = ""
    deadline = time.time() + 120
    while "ablation path" not in seen and time.time() < deadline:
        seen += proc.stderr.read(1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "interrupted"
    assert load(out / "path.npz").stopped == "interrupted"
