"""Command-line interface on a user model (package.module:callable and TorchScript)."""

import importlib
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ablation_paths.cli import main
from ablation_paths.result import load

FAST = ["--n-steps", "4", "--max-iterations", "2", "--mask-size", "8", "--quiet"]

MODULE = """
import torch
from torch import nn

class M(nn.Module):
    class_names = ["a<b>", "b", "c"]
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

def make():
    return M()

class Sized(nn.Module):
    def __init__(self, n, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3, n)
    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))

def make_sized(n=3, seed=0):
    return Sized(n, seed)
"""


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    (tmp_path / "user_model_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_model_mod:make"
    sys.modules.pop("user_model_mod", None)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "cat.png"
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(f)
    return f


def test_explain_with_module_callable(tmp_path, user_model, image_file):
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            str(image_file),
            "--model",
            user_model,
            "--out",
            str(out),
            "--target",
            "b",
            *FAST,
        ]
    )
    assert rc == 0
    for name in ("path.npz", "heatmaps.png", "path.png", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == 1 and summary["target_name"] == "b"
    for key in (
        "path_score",
        "saturation",
        "iterations",
        "converged",
        "class_transition_time",
        "wall_seconds",
        "settings",
    ):
        assert key in summary
    assert summary["settings"]["n_steps"] == 4


def test_explain_with_torchscript_and_several_images(tmp_path, user_model, image_file):
    import importlib

    mod = importlib.import_module("user_model_mod")
    ts = tmp_path / "model.pt"
    torch.jit.script(mod.make().eval()).save(str(ts))
    out = tmp_path / "out2"
    second = tmp_path / "dog.png"
    second.write_bytes(image_file.read_bytes())
    rc = main(
        ["explain", str(image_file), str(second), "--model", str(ts), "--out", str(out), *FAST]
    )
    assert rc == 0
    assert (out / "cat" / "path.npz").is_file() and (out / "dog" / "summary.json").is_file()


def test_unreadable_model_file_is_a_clear_error(tmp_path, image_file, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"garbage")
    rc = main(
        ["explain", str(image_file), "--model", str(bad), "--out", str(tmp_path / "o"), *FAST]
    )
    assert rc == 2
    assert "cannot load" in capsys.readouterr().err


def test_bad_target_is_a_clear_error(tmp_path, user_model, image_file, capsys):
    rc = main(
        [
            "explain",
            str(image_file),
            "--model",
            user_model,
            "--target",
            "9",
            "--out",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert rc == 2
    assert "out of range" in capsys.readouterr().err


def test_view_writes_report_for_saved_result(tmp_path, user_model, image_file):
    out = tmp_path / "o"
    assert main(["explain", str(image_file), "--model", user_model, "--out", str(out), *FAST]) == 0
    html = tmp_path / "view.html"
    assert main(["view", str(out / "path.npz"), "--out", str(html)]) == 0
    text = html.read_text()
    assert "a<b>" not in text  # the class name is escaped wherever it appears
    assert main(["view", str(tmp_path / "missing.npz")]) == 2


def test_warnings_are_printed_once_each(tmp_path, user_model, image_file, capsys):
    """The CLI prints the library's warnings (result_warnings included) once, one line each."""
    out = tmp_path / "o"
    rc = main(
        ["explain", str(image_file), "--model", user_model, "--out", str(out),
         "--max-iterations", "1", "--stop-saturation", "1.0", "--n-steps", "3", "--quiet"]
    )  # fmt: skip
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert any("did not saturate" in ln for ln in lines)
    assert len(lines) == len(set(lines))


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_flag_anywhere_shows_the_traceback(tmp_path, image_file, where):
    argv = ["explain", str(image_file), "--model", "no_such_module_xyz:f", "--out",
            str(tmp_path / "o")]  # fmt: skip
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(ValueError, match="cannot import"):
        main(argv)


def test_rerun_replaces_a_complete_result(tmp_path, user_model, image_file):
    out = tmp_path / "o"
    assert main(["explain", str(image_file), "--model", user_model, "--out", str(out), *FAST]) == 0
    assert (
        main(
            [
                "explain",
                str(image_file),
                "--model",
                user_model,
                "--out",
                str(out),
                "--target",
                "c",
                *FAST,
            ]
        )  # fmt: skip
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["target"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["path.npz", "heatmaps.png", "path.png", "report.html", "summary.json"]
    )


def test_parse_model_args_reads_numbers_booleans_and_text():
    from ablation_paths.models import parse_model_args

    got = parse_model_args(["n=5", "lr=0.5", "pretrained=False", "head=none", "name=res net"])
    assert got == {"n": 5, "lr": 0.5, "pretrained": False, "head": None, "name": "res net"}
    for bad in ("n", "=3", "1x=2"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_model_args([bad])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_model_args_and_weights_reach_the_model(tmp_path, user_model, suffix):
    """``--model-arg`` goes to the callable and ``--weights`` replaces its parameters: the
    loaded model equals the one the weights were saved from, not the one the callable made."""
    import safetensors.torch

    from ablation_paths.models import load_model_spec

    module = user_model.split(":")[0]
    saved = importlib.import_module(module).make_sized(5, 7)
    file = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": saved.state_dict()}, file)
    else:
        safetensors.torch.save_file(saved.state_dict(), str(file))
    spec = f"{module}:make_sized"
    plain = load_model_spec(spec, model_args={"n": 5, "seed": 0}).model
    loaded = load_model_spec(spec, model_args={"n": 5, "seed": 0}, weights=file).model
    assert plain.fc.out_features == 5
    assert not torch.equal(plain.fc.weight, saved.fc.weight)
    assert torch.equal(loaded.fc.weight, saved.fc.weight)
    with pytest.raises(ValueError, match="callable"):
        load_model_spec("demo", weights=file)


def test_cli_model_arg_and_weights(tmp_path, user_model, image_file):
    module = user_model.split(":")[0]
    weights = tmp_path / "w.pt"
    torch.save(importlib.import_module(module).make_sized(4, 3).state_dict(), weights)
    out = tmp_path / "out"
    args = ["explain", str(image_file), "--model", f"{module}:make_sized", "--out", str(out)]
    rc = main([*args, "--model-arg", "n=4", "--weights", str(weights), *FAST])
    assert rc == 0
    assert load(out / "path.npz").probs.shape[1] == 4
