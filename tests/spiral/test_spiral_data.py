"""Data simulation (ASPIRE), SNR convention, MRC round trip, models and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spiral_cnn.data import SimConfig, measured_snr, simulate
from spiral_cnn.geometry import disc_mask
from spiral_cnn.models import ModelConfig, WienerFilter, build_model, count_parameters
from spiral_cnn.mrc import read_stack, write_stack


def test_mrc_round_trip_with_label(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).normal(size=(5, 16, 16)).astype(np.float32)
    write_stack(tmp_path / "a.mrcs", imgs, "unit test", pixel_size=1.5)
    back, px, labels = read_stack(tmp_path / "a.mrcs")
    np.testing.assert_array_equal(back, imgs)
    assert px == pytest.approx(1.5)
    assert any(lab.startswith("spiral-cnn: unit test") for lab in labels)


def test_mrc_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_stack(tmp_path / "missing.mrcs")
    (tmp_path / "junk.mrcs").write_bytes(b"not an mrc file" * 100)
    with pytest.raises(ValueError, match="not a readable MRC"):
        read_stack(tmp_path / "junk.mrcs")
    with pytest.raises(ValueError, match="NaN"):
        write_stack(tmp_path / "n.mrcs", np.full((1, 4, 4), np.nan), "x")
    with pytest.raises(ValueError, match="shape"):
        write_stack(tmp_path / "s.mrcs", np.zeros((4, 4)), "x")


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_simulation_meets_snr_convention(noise: str) -> None:
    st = simulate(SimConfig(n=96, size=24, snr=0.25, noise=noise, seed=3))
    assert st.clean.shape == st.noisy.shape == (96, 24, 24)
    m = disc_mask(24)
    assert float(np.mean(st.clean[:, m].astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert measured_snr(st.clean, st.noisy) == pytest.approx(0.25, rel=0.1)
    resid = (st.noisy - st.clean)[:, m]
    assert abs(float(resid.mean())) < 0.05  # unbiased noise
    if noise == "poisson":  # shot noise is signal dependent: variance falls where s is large
        s = st.clean[:, m]
        hi, lo = s > np.quantile(s, 0.9), s < np.quantile(s, 0.1)
        assert resid[hi].var() < resid[lo].var()
    # Projections are of one molecule in random orientations: distinct, same power.
    assert np.abs(st.clean[0] - st.clean[1]).max() > 0.1


def test_models_share_size_and_are_trainable() -> None:
    x = torch.randn(4, 1, 16, 16)
    n = {}
    for arch in ("spiral", "cartesian"):
        m = build_model(ModelConfig(arch=arch, size=16, channels=4, depth=3))
        y = m(x)
        assert y.shape == x.shape
        y.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        n[arch] = count_parameters(m)
    assert n["spiral"] == n["cartesian"]
    with pytest.raises(ValueError, match="expects"):
        build_model(ModelConfig(arch="spiral", size=16, channels=4, depth=3))(x[:, :, :8])


def test_wiener_fit_recovers_shrinkage() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(64, 1, 16, 16, generator=g)
    noisy = clean + torch.randn(64, 1, 16, 16, generator=g)
    wf = WienerFilter(ModelConfig(arch="wiener", size=16)).fit(noisy, clean)
    # White signal, white noise of equal power: optimal gain 1/2 on every ring.
    assert float((wf.gain[1:9] - 0.5).abs().max()) < 0.1


@pytest.mark.slow
def test_cli_quickstart_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README quickstart (smaller n, size and network), in order, in an empty directory."""
    from spiral_cnn.cli import main

    d = tmp_path
    sim = ["--size", "16", "--snr", "0.25"]
    assert (
        main(
            ["simulate", "--out", f"{d}/tr", "--n", "64", "--volumes", "3"]
            + sim
            + ["--volume-seed", "100"]
        )
        == 0
    )
    assert (
        main(
            ["simulate", "--out", f"{d}/te", "--n", "32", "--volumes", "2", "--seed", "1"]
            + sim
            + ["--volume-seed", "300"]
        )
        == 0
    )
    meta = json.loads((d / "tr" / "meta.json").read_text())
    assert sorted(set(meta["molecule"])) == [0, 1, 2]
    args = ["train", "--data", f"{d}/tr", "--val", f"{d}/te", "--out", f"{d}/run"]
    small = ["--channels", "4", "--depth", "3", "--quiet", "--eq-images", "8"]
    assert main([*args, "--epochs", "1", *small]) == 0
    ck = torch.load(d / "run" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1
    # Resume: a second call with more epochs continues from epoch 1.
    assert main([*args, "--epochs", "2", *small]) == 0
    hist = json.loads((d / "run" / "history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    out = d / "den.mrcs"
    capsys.readouterr()
    assert main(["denoise", f"{d}/te/noisy.mrcs", str(out), "--model", f"{d}/run"]) == 0
    den, _, labels = read_stack(out)
    assert den.shape == (32, 16, 16) and any("denoise" in lab for lab in labels)
    assert (
        main(
            [
                "evaluate",
                "--model",
                f"{d}/run",
                "--noisy",
                f"{d}/te/noisy.mrcs",
                "--clean",
                f"{d}/te/clean.mrcs",
                "--eq-images",
                "8",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res) == {"mse", "psnr", "frc05", "equivariance"}
    # The evaluation of the best model equals the history's record of the best epoch.
    best = min(hist, key=lambda h: h["mse"])
    assert res["mse"] == pytest.approx(best["mse"], rel=1e-5)
    assert main(["denoise", f"{d}/nope.mrcs", str(out), "--model", f"{d}/run"]) == 2
