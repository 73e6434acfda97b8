"""Training that reports the truth: batch-norm recalibration, early stopping, the stored
normalisation, strict JSON and checkpoint validation (issues 11, 12)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spiral_cnn.metrics import disc
from spiral_cnn.models import ModelConfig
from spiral_cnn.train import (
    Denoiser,
    Normalisation,
    TrainConfig,
    evaluate,
    load_model,
    matched_predict,
    predict,
    recalibrate_batchnorm,
    strict_json,
    train,
)


def _data(seed: int, n: int = 48, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random 'particles' (blurred blobs) plus white noise, ``(n, 1, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(size)
    lowpass = torch.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.08**2))
    clean = torch.fft.ifft2(torch.fft.fft2(torch.randn(n, 1, size, size, generator=g)) * lowpass)
    clean = clean.real * 4 + 1.0
    clean = clean * disc(size, clean)
    noisy = clean + 0.5 * torch.randn(n, 1, size, size, generator=g)
    return noisy, clean


def _cfg(**kw: object) -> TrainConfig:
    model = ModelConfig(arch="cartesian", size=16, channels=4, depth=3)
    base: dict[str, object] = dict(model=model, epochs=3, eq_images=4, eq_angles=1, bn_images=48)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_recalibrate_batchnorm_equals_the_batch_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3))
    x = torch.randn(20, 1, 8, 8) * 3 + 2
    with torch.no_grad():  # stale statistics from other data
        net(torch.randn(5, 1, 8, 8))
    assert recalibrate_batchnorm(net.eval(), x, batch_size=20) == 1
    h = net[0](x).detach()
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var, h.var((0, 2, 3), unbiased=True))
    assert bn.momentum == 0.1 and not net.training  # settings restored
    # Equal batches: the cumulative average equals the statistics of all inputs.
    recalibrate_batchnorm(net, x, batch_size=10)
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)))
    assert recalibrate_batchnorm(nn.Linear(2, 2), x) == 0


def test_reported_score_is_the_saved_models_score(tmp_path: Path) -> None:
    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    hist = train(_cfg(epochs=3, patience=0), tn, tc, vn, vc, tmp_path, progress=False)
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    # The last checkpoint holds the last weights: re-scoring it gives the logged number.
    last, _ = load_model(tmp_path / "checkpoint.pt")
    again = evaluate(last, vn, vc, 4, 1)
    assert again["mse"] == pytest.approx(hist[-1]["mse"], rel=1e-5)
    # model.pt holds the best epoch's weights.
    best, _ = load_model(tmp_path)
    b = hist[-1]["best_epoch"]
    assert hist[b]["mse"] == min(h["mse"] for h in hist)
    assert evaluate(best, vn, vc, 4, 1)["mse"] == pytest.approx(hist[b]["mse"], rel=1e-5)
    # history.json is strict JSON (no NaN): epoch 0 has no training loss.
    text = (tmp_path / "history.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert doc["history"][0]["train_loss"] is None
    assert doc["normalisation"]["scale"] > 0


def test_without_recalibration_the_eval_score_lags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the recalibration itself: switched off, the logged val MSE is worse."""
    import spiral_cnn.train as tr

    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    cfg = _cfg(epochs=1, patience=0, lr=1e-2)
    with_cal = train(cfg, tn, tc, vn, vc, tmp_path / "a", progress=False)[-1]["mse"]
    monkeypatch.setattr(tr, "recalibrate_batchnorm", lambda *a, **k: 0)
    without = train(cfg, tn, tc, vn, vc, tmp_path / "b", progress=False)[-1]["mse"]
    assert with_cal < 0.8 * without


def test_early_stopping_stops_on_a_plateau_and_resume_respects_it(tmp_path: Path) -> None:
    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    # A 90 % relative improvement per epoch is impossible: stops after `patience` epochs.
    cfg = _cfg(epochs=20, patience=2, min_delta=0.9)
    hist = train(cfg, tn, tc, vn, vc, tmp_path, progress=False)
    assert hist[-1]["stopped"] == "early" and hist[-1]["epoch"] == 2
    lines: list[str] = []
    again = train(cfg, tn, tc, vn, vc, tmp_path, progress=False, report=lines.append)
    assert again[-1]["epoch"] == 2
    assert any("stopped early" in s for s in lines)


def test_normalisation_makes_training_invariant_to_the_data_scale(tmp_path: Path) -> None:
    """Training on ``a x + b`` gives ``a F(x) + b``: the network sees the same numbers."""
    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    a, b = 250.0, -40.0
    cfg = _cfg(epochs=2, patience=0)
    train(cfg, tn, tc, vn, vc, tmp_path / "u", progress=False)
    train(cfg, a * tn + b, a * tc + b, a * vn + b, a * vc + b, tmp_path / "s", progress=False)
    mu, _ = load_model(tmp_path / "u")
    ms, _ = load_model(tmp_path / "s")
    assert ms.normalisation.scale == pytest.approx(a * mu.normalisation.scale, rel=1e-4)
    want = (a * predict(mu, vn) + b) * disc(16, vn)
    got = predict(ms, a * vn + b)
    assert float((got - want).norm() / want.norm()) < 1e-3


def test_matched_predict_handles_integer_scaled_stacks(tmp_path: Path) -> None:
    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    train(_cfg(epochs=1, patience=0), tn, tc, vn, vc, tmp_path, progress=False)
    model, _ = load_model(tmp_path)
    counts = torch.round(vn * 300 + 1000)  # e.g. an int16 detector stack
    out, own = matched_predict(model, counts)
    assert own.scale == pytest.approx(300 * Normalisation.fit(vn).scale, rel=1e-2)
    want = (predict(model, vn) * 300 + 1000) * disc(16, vn)
    assert float((out - want).norm() / want.norm()) < 0.02
    # Without matching, the net sees numbers 300x too large and the output is far off.
    assert float((predict(model, counts) - want).norm() / want.norm()) > 0.1


def test_denoiser_applies_its_normalisation() -> None:
    net = nn.Identity()
    d = Denoiser(net, Normalisation(offset=2.0, scale=4.0))
    x = torch.full((1, 1, 8, 8), 6.0)
    m = disc(8, x).expand_as(x)
    torch.testing.assert_close(d.normalise(x), m)
    torch.testing.assert_close(d(x), m * 4.0 + 2.0)
    with pytest.raises(ValueError, match="scale"):
        Normalisation(0.0, 0.0)


def test_strict_json_writes_null_for_non_finite() -> None:
    s = strict_json({"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}, "e": 2})
    assert json.loads(s) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2}


def test_config_validation() -> None:
    for bad in (dict(eq_angles=0), dict(eq_images=0), dict(epochs=0), dict(lr=math.nan)):
        with pytest.raises(ValueError, match="invalid training configuration"):
            _cfg(**bad)
    with pytest.raises(ValueError, match="invalid training configuration"):
        TrainConfig.from_dict({"model": {"arch": "spiral"}, "bogus": 1})


def _good_checkpoint(tmp_path: Path) -> Path:
    tn, tc = _data(0, 16)
    train(_cfg(epochs=1, patience=0), tn, tc, tn, tc, tmp_path / "run", progress=False)
    return tmp_path / "run" / "model.pt"


def _hostile_checkpoints(tmp_path: Path) -> dict[str, Path]:
    good = _good_checkpoint(tmp_path)
    raw = good.read_bytes()
    ck = torch.load(good, weights_only=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes | object) -> None:
        p = tmp_path / f"{name}.pt"
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            torch.save(data, p)
        files[name] = p

    put("truncated", raw[: len(raw) // 2])
    put("empty", b"")
    put("junk", np.random.default_rng(0).bytes(5000))
    put("list", [1, 2, 3])
    put("missing_config", {k: v for k, v in ck.items() if k != "config"})
    put("missing_norm", {k: v for k, v in ck.items() if k != "normalisation"})
    put("bad_config_json", {**ck, "config": "{not json"})
    put("config_not_str", {**ck, "config": 5})
    put("unknown_arch", {**ck, "config": ck["config"].replace('"cartesian"', '"bogus"')})
    put("wrong_shapes", {**ck, "config": ck["config"].replace('"channels": 4', '"channels": 5')})
    put("bad_norm", {**ck, "normalisation": {"offset": 0.0, "scale": -1.0}})
    put("state_not_dict", {**ck, "model": [1]})
    return files


def test_hostile_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    files = _hostile_checkpoints(tmp_path)
    assert len(files) == 12
    for name, p in files.items():
        with pytest.raises(ValueError, match="checkpoint|model") as info:
            load_model(p)
        assert str(p) in str(info.value), name
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing_here")


def test_resume_from_a_malformed_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    tn, tc = _data(0, 16)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="not a readable spiral-cnn checkpoint"):
        train(_cfg(epochs=1), tn, tc, tn, tc, tmp_path, progress=False)


def test_wiener_arch_is_fitted_in_closed_form_and_beats_the_noisy_input(tmp_path: Path) -> None:
    tn, tc = _data(0)
    vn, vc = _data(1, 24)
    cfg = TrainConfig(model=ModelConfig(arch="wiener", size=16), eq_images=4, eq_angles=1)
    hist = train(cfg, tn, tc, vn, vc, tmp_path, progress=False)
    assert len(hist) == 1 and hist[0]["stopped"] == "closed-form"
    model, _ = load_model(tmp_path)
    m = disc(16, vn)
    noisy_mse = float((((vn - vc) * m) ** 2).sum() / (m.sum() * vn.shape[0]))
    assert evaluate(model, vn, vc, 4, 1)["mse"] == pytest.approx(hist[0]["mse"], rel=1e-6)
    assert hist[0]["mse"] < 0.5 * noisy_mse
