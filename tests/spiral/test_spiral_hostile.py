"""Hostile input to ``spiral-cnn``: every expected failure is one clear line and exit status 2,
no earlier result is damaged (issue 11, spiral part)."""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from spiral_cnn.cli import main
from spiral_cnn.mrc import MAX_EXTENDED_HEADER, MrcNote, read_stack

RNG = np.random.default_rng(0)


def _mrc(path: Path, data: np.ndarray, volume: bool = False) -> Path:
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(data)
        if volume:
            m.set_volume()
        elif data.ndim == 3:
            m.set_image_stack()
    return path


def _patch_header(path: Path, offset: int, fmt: str, value: int) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    return path


def _stack(tmp: Path) -> Path:
    return _mrc(tmp / "ok.mrcs", RNG.normal(size=(4, 16, 16)).astype(np.float32))


# name -> (maker of a bad file, expected message fragment)
BAD_MRC: dict[str, tuple[Callable[[Path], Path], str]] = {
    "complex64": (
        lambda t: _mrc(t / "c.mrcs", (RNG.normal(size=(2, 8, 8)) * (1 + 1j)).astype(np.complex64)),
        "complex",
    ),
    "volume .mrc": (
        lambda t: _mrc(t / "v.mrc", RNG.normal(size=(16, 16, 16)).astype(np.float32), True),
        "3-D volume",
    ),
    "empty stack": (lambda t: _patch_header(_stack(t), 8, "<i", 0), "no images"),
    "huge extended header": (
        lambda t: _patch_header(_stack(t), 92, "<i", MAX_EXTENDED_HEADER + 1),
        "extended header",
    ),
    "declared size bomb": (lambda t: _patch_header(_stack(t), 8, "<i", 10**7), "bytes of data"),
    "truncated": (
        lambda t: (lambda p: (p.write_bytes(p.read_bytes()[:-100]), p)[1])(_stack(t)),
        "truncated",
    ),
    "not square": (
        lambda t: _mrc(t / "r.mrcs", RNG.normal(size=(2, 8, 10)).astype(np.float32)),
        "square",
    ),
    "mode 101": (lambda t: _patch_header(_stack(t), 12, "<i", 101), "mode"),
    "junk bytes": (
        lambda t: (t / "j.mrcs", (t / "j.mrcs").write_bytes(b"x" * 3000))[0],
        "not a readable MRC",
    ),
    "zero bytes": (lambda t: (t / "z.mrcs", (t / "z.mrcs").write_bytes(b""))[0], "MRC"),
    "NaN pixels": (
        lambda t: _mrc(t / "n.mrcs", np.full((2, 8, 8), np.nan, dtype=np.float32)),
        "NaN",
    ),
    "negative size": (lambda t: _patch_header(_stack(t), 0, "<i", -16), "negative"),
}


@pytest.mark.parametrize("name", sorted(BAD_MRC))
def test_bad_mrc_is_a_clear_error(tmp_path: Path, name: str) -> None:
    make, frag = BAD_MRC[name]
    p = make(tmp_path)
    with pytest.raises(ValueError, match=frag) as info:
        read_stack(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int8, np.float16])
def test_integer_and_half_stacks_are_converted_with_a_note(tmp_path: Path, dtype: type) -> None:
    data = (RNG.normal(size=(3, 8, 8)) * 20).astype(dtype)
    p = _mrc(tmp_path / "i.mrcs", data)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out, _, _ = read_stack(p)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.astype(np.float32))
    assert any(issubclass(x.category, MrcNote) and "converted" in str(x.message) for x in w)


def test_volume_named_mrcs_and_single_image_are_read(tmp_path: Path) -> None:
    vol = RNG.normal(size=(5, 8, 8)).astype(np.float32)
    out, _, _ = read_stack(_mrc(tmp_path / "v.mrcs", vol, volume=True))
    assert out.shape == (5, 8, 8)
    one, _, _ = read_stack(_mrc(tmp_path / "one.mrc", vol[0]))
    assert one.shape == (1, 8, 8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated data set and a 1-epoch model, shared by the CLI cases."""
    d = tmp_path_factory.mktemp("cli")
    assert main(["simulate", "--out", str(d / "tr"), "--n", "48", "--size", "16"]) == 0
    args = ["train", "--data", str(d / "tr"), "--out", str(d / "run"), "--channels", "4"]
    args += ["--depth", "3", "--epochs", "1", "--quiet", "--eq-images", "4"]
    assert main(args) == 0
    return d


CLI_CASES: dict[str, tuple[list[str], str]] = {
    "val fraction 1": (
        ["train", "--data", "{d}/tr", "--out", "{d}/x", "--val-fraction", "1"],
        "val-fraction",
    ),
    "val fraction 0.999": (
        ["train", "--data", "{d}/tr", "--out", "{d}/x", "--val-fraction", "0.999"],
        "no training images",
    ),
    "missing data dir": (["train", "--data", "{d}/nope", "--out", "{d}/x"], "no data directory"),
    "cuda without cuda": (
        ["train", "--data", "{d}/tr", "--out", "{d}/x", "--device", "cuda:7"],
        "not available",
    ),
    "bad device": (
        [
            "evaluate",
            "--model",
            "{d}/run",
            "--noisy",
            "{d}/tr/noisy.mrcs",
            "--clean",
            "{d}/tr/clean.mrcs",
            "--device",
            "warp9",
        ],
        "device",
    ),
    "denoise onto its input": (
        ["denoise", "{d}/tr/noisy.mrcs", "{d}/tr/noisy.mrcs", "--model", "{d}/run"],
        "overwrite the input",
    ),
    "denoise into missing folder": (
        ["denoise", "{d}/tr/noisy.mrcs", "{d}/no/such/out.mrcs", "--model", "{d}/run"],
        "does not exist",
    ),
    "denoise with junk model": (
        ["denoise", "{d}/tr/noisy.mrcs", "{d}/o.mrcs", "--model", "{d}/tr/meta.json"],
        "checkpoint",
    ),
    "simulate out is a file": (["simulate", "--out", "{d}/tr/meta.json", "--n", "2"], "directory"),
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_failures_are_one_line(
    run_dir: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, frag = CLI_CASES[name]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([a.replace("{d}", str(run_dir)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spiral-cnn: error:") and frag in err[0], err
    for p, data in before.items():  # nothing that existed was changed
        assert p.read_bytes() == data, p


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "x", "--out", "y", "--eq-angles", "0"],
        ["train", "--data", "x", "--out", "y", "--eq-images", "-1"],
        ["simulate", "--out", "y", "--atoms", "0"],
        ["simulate", "--out", "y", "--pixel-size", "0"],
        ["simulate", "--out", "y", "--snr", "nan"],
        ["simulate", "--out", "y", "--n", "0"],
    ],
)
def test_invalid_numbers_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_train_prints_a_start_line_and_strict_json(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--data", str(run_dir / "tr"), "--out", str(run_dir / "run2")]
    args += ["--channels", "4", "--depth", "3", "--epochs", "1", "--quiet", "--eq-images", "4"]
    capsys.readouterr()
    assert main(args) == 0
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert "evaluating epoch 0" in lines[0]  # before any epoch finishes
    assert any("epoch 1:" in s for s in lines)  # --quiet keeps the per-epoch line
    rec = json.loads(cap.out, parse_constant=lambda c: pytest.fail(c))
    assert rec["epoch"] == 1 and rec["stopped"] == "max"


def test_denoise_normalises_an_int16_stack(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    noisy, _, _ = read_stack(run_dir / "tr" / "noisy.mrcs")
    _mrc(run_dir / "counts.mrcs", np.round(noisy * 200 + 3000).astype(np.int16))
    out_f, out_i = run_dir / "den_f.mrcs", run_dir / "den_i.mrcs"
    model = ["--model", str(run_dir / "run")]
    stack = ["--normalise", "stack"]
    assert main(["denoise", str(run_dir / "tr" / "noisy.mrcs"), str(out_f), *model, *stack]) == 0
    capsys.readouterr()
    assert main(["denoise", str(run_dir / "counts.mrcs"), str(out_i), *model]) == 0  # auto
    err = capsys.readouterr().err
    assert "converted to float32" in err and "matching the stack" in err
    den_f, _, _ = read_stack(out_f)
    den_i, _, _ = read_stack(out_i)
    # The int16 result, mapped back to the float units, is the float result (both matched to
    # the training statistics; the int16 rounding is the only difference).
    back = (den_i - 3000 * (den_i != 0)) / 200
    assert np.linalg.norm(back - den_f) / np.linalg.norm(den_f) < 0.01
