"""Many images: inputs, unique names, atomic per-image folders, resume, interrupts, Ray."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ablation_paths
from ablation_paths.many import (
    DONE_FILE,
    ImageItem,
    collect_images,
    explain_many,
    is_done,
    unique_names,
)

FAST = {"max_iterations": 3, "n_steps": 4}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


def _images(n: int, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(f"img{i}", torch.rand(3, 24, 24, generator=g)) for i in range(n)]


def _png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------- inputs
def test_unique_names_sanitise_and_suffix_in_order() -> None:
    assert unique_names(["a b", "a b", "A_B", "x/../y", ""]) == [
        "a_b",
        "a_b~2",
        "A_B~3",
        "x_.._y",
        "image",
    ]
    # stable: the same inputs give the same names
    assert unique_names(["c", "c", "c"]) == unique_names(["c", "c", "c"]) == ["c", "c~2", "c~3"]


def test_collect_folder_glob_and_list(tmp_path: Path) -> None:
    _png(tmp_path / "pics" / "cat.png", 0)
    _png(tmp_path / "pics" / "sub" / "cat.png", 1)
    _png(tmp_path / "pics" / "dog.jpg", 2)
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    items = collect_images(tmp_path / "pics")
    assert [it.name for it in items] == ["cat", "dog", "cat~2"]  # sorted paths
    assert items[2].source is not None and items[2].source.endswith(str(Path("sub", "cat.png")))

    globbed = collect_images(str(tmp_path / "pics" / "*.png"))
    assert [it.name for it in globbed] == ["cat"]

    lst = tmp_path / "list.txt"
    lst.write_text("# comment\npics/dog.jpg\t2\n\npics/sub/cat.png\tcat\n")
    listed = collect_images(lst)
    assert [(it.name, it.target) for it in listed] == [("dog", 2), ("cat", "cat")]

    mixed = collect_images([str(tmp_path / "pics" / "dog.jpg"), ("x", torch.rand(3, 8, 8), 1)])
    assert [(it.name, it.target) for it in mixed] == [("dog", None), ("x", 1)]


def test_collect_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        collect_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="no image files match"):
        collect_images(str(tmp_path / "*.png"))
    with pytest.raises(FileNotFoundError, match="not an image file"):
        collect_images(tmp_path / "missing")
    (tmp_path / "bad.txt").write_text("nope.png\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt:1"):
        collect_images(tmp_path / "bad.txt")
    with pytest.raises(TypeError, match="cannot use a dict"):
        collect_images([{"image": 1}])
    with pytest.raises(ValueError, match="no images"):
        collect_images([])


# ----------------------------------------------------------------------------- local runs
def test_explain_many_writes_folders_gallery_and_resumes(tmp_path: Path) -> None:
    model = _net()
    images = _images(3)
    seen: list[str] = []
    run = explain_many(
        model,
        images,
        out=tmp_path,
        class_names=["a", "b", "c"],
        progress=False,
        on_result=lambda name, res: seen.append(name),
        **FAST,
    )
    assert run.complete and run.done == ["img0", "img1", "img2"] and seen == run.done
    for name in run.names:
        folder = tmp_path / name
        for f in ("path.npz", "report.html", "summary.json", "thumb.png", DONE_FILE):
            assert (folder / f).is_file(), f
        rec = json.loads((folder / DONE_FILE).read_text())
        res = ablation_paths.load(folder / "path.npz")
        assert rec["path_score"] == pytest.approx(res.path_score)
        assert rec["target"] == res.target and rec["name"] == name
    assert not (tmp_path / ".partial").exists()
    assert run.gallery == tmp_path / "index.html" and run.gallery.is_file()
    mtimes = {n: (tmp_path / n / "path.npz").stat().st_mtime_ns for n in run.names}

    # resume: nothing recomputed, nothing rewritten
    seen.clear()
    again = explain_many(
        model, images, out=tmp_path, class_names=["a", "b", "c"], progress=False,
        on_result=lambda name, res: seen.append(name), **FAST,
    )  # fmt: skip
    assert again.skipped == run.names and again.done == [] and seen == []
    assert mtimes == {n: (tmp_path / n / "path.npz").stat().st_mtime_ns for n in run.names}

    # other settings: refused rather than mixed
    with pytest.raises(ValueError, match="other settings"):
        explain_many(model, images, out=tmp_path, progress=False, max_iterations=2, n_steps=4)
    # unless asked to recompute
    redo = explain_many(
        model, images[:1], out=tmp_path, progress=False, resume=False, max_iterations=2, n_steps=4
    )
    assert redo.done == ["img0"]


def test_unfinished_folder_is_recomputed_and_bad_images_fail_alone(tmp_path: Path) -> None:
    model = _net()
    (tmp_path / "out" / "img0").mkdir(parents=True)
    (tmp_path / "out" / "img0" / "path.npz").write_bytes(b"torn")  # a kill before done.json
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    items = [*_images(2), str(bad)]
    run = explain_many(model, items, out=tmp_path / "out", progress=False, **FAST)
    assert run.done == ["img0", "img1"] and list(run.failed) == ["broken"]
    assert "cannot read" in run.failed["broken"]
    assert is_done(tmp_path / "out" / "img0") and not is_done(tmp_path / "out" / "broken")
    ablation_paths.load(tmp_path / "out" / "img0" / "path.npz")  # the torn file was replaced
    assert not run.complete


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_keeps_finished_images(tmp_path: Path, how: str) -> None:
    model = _net()
    images = _images(4)

    def stop_after_two(name: str, res: object) -> None:
        if name == "img1":
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    run = explain_many(
        model, images, out=tmp_path, progress=False, on_result=stop_after_two, **FAST
    )
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    assert run.interrupted and run.done == ["img0", "img1"]
    assert [is_done(tmp_path / n) for n in run.names] == [True, True, False, False]
    assert (tmp_path / "index.html").is_file()  # gallery of what finished

    seen: list[str] = []
    rest = explain_many(
        model, images, out=tmp_path, progress=False,
        on_result=lambda n, r: seen.append(n), **FAST,
    )  # fmt: skip
    assert rest.skipped == ["img0", "img1"] and seen == ["img2", "img3"] and rest.complete


def test_settings_must_be_valid(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        explain_many(_net(), _images(1), out=tmp_path, progress=False, bogus=1)
    with pytest.raises(ValueError, match="engine"):
        explain_many(_net(), _images(1), out=tmp_path, progress=False, engine="spark")
    with pytest.raises(ValueError, match="training mode"):
        explain_many(_net().train(), _images(1), out=tmp_path, progress=False)


def test_without_figures(tmp_path: Path) -> None:
    run = explain_many(_net(), _images(1), out=tmp_path, progress=False, figures=False, **FAST)
    files = sorted(p.name for p in (tmp_path / run.names[0]).iterdir())
    assert files == [DONE_FILE, "path.npz", "report.html", "summary.json", "thumb.png"]
    assert json.loads((tmp_path / "img0" / "summary.json").read_text())["target"] >= 0


def test_result_warnings_recorded_once_not_printed(tmp_path: Path) -> None:
    import warnings

    from ablation_paths.diagnostics import AblationPathWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explain_many(_net(), _images(2), out=tmp_path, progress=False, max_iterations=1)
    assert not [w for w in caught if issubclass(w.category, AblationPathWarning)]
    for name in ("img0", "img1"):
        rec = json.loads((tmp_path / name / DONE_FILE).read_text())
        assert not rec["converged"]  # one iteration: unsaturated
        assert sum("did not saturate" in w for w in rec["warnings"]) == 1


def test_item_targets_win(tmp_path: Path) -> None:
    items = [ImageItem("a", _images(1)[0][1], target=2), ("b", _images(1, 1)[0][1], 1)]
    run = explain_many(_net(), items, out=tmp_path, target=0, progress=False, **FAST)
    targets = [json.loads((tmp_path / n / DONE_FILE).read_text())["target"] for n in run.names]
    assert targets == [2, 1]


# ----------------------------------------------------------------------------- Ray
def test_ray_engine_same_outputs_as_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    model = _net()
    images = _images(3)
    _png(tmp_path / "file.png", 5)
    inputs = [*images, str(tmp_path / "file.png")]  # a file travels as bytes
    local = explain_many(model, inputs, out=tmp_path / "local", progress=False, **FAST)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = explain_many(
            model, inputs, out=tmp_path / "ray", engine="ray", workers=2, progress=False, **FAST
        )
        again = explain_many(
            model, inputs, out=tmp_path / "ray", engine="ray", workers=2, progress=False, **FAST
        )
    finally:
        ray.shutdown()
    assert remote.complete and sorted(remote.done) == sorted(local.done) == sorted(local.names)
    assert again.skipped == remote.names and again.done == []
    for name in local.names:
        a = ablation_paths.load(tmp_path / "local" / name / "path.npz")
        b = ablation_paths.load(tmp_path / "ray" / name / "path.npz")
        assert torch.equal(a.path, b.path) and torch.equal(a.probs, b.probs)
        assert a.target == b.target and a.path_score == b.path_score
        assert json.loads((tmp_path / "ray" / name / DONE_FILE).read_text())["engine"] == "ray"


# ----------------------------------------------------------------------------- command line
MODULE = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    )
"""
CLI_FAST = ["--n-steps", "4", "--max-iterations", "2", "--mask-size", "8", "--quiet"]


@pytest.fixture
def many_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    (tmp_path / "many_model_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "many_model_mod:make"
    sys.modules.pop("many_model_mod", None)


def test_cli_folder_glob_list_and_audit(
    tmp_path: Path, many_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ablation_paths.cli import main

    for i in range(3):
        _png(tmp_path / "pics" / f"p{i}.png", i)
    out = tmp_path / "out"
    args = ["explain", str(tmp_path / "pics"), "--model", many_model, "--out", str(out)]
    assert main([*args, *CLI_FAST]) == 0
    assert "3 explained, 0 already done, 0 failed of 3 images" in capsys.readouterr().out
    assert all(is_done(out / f"p{i}") for i in range(3)) and (out / "index.html").is_file()
    assert main([*args, *CLI_FAST]) == 0
    assert "0 explained, 3 already done" in capsys.readouterr().out

    lst = tmp_path / "list.txt"
    lst.write_text("pics/p0.png\t1\npics/p2.png\n")
    assert main(["explain", str(lst), "--model", many_model, "--out", str(tmp_path / "l"),
                 *CLI_FAST]) == 0  # fmt: skip
    assert json.loads((tmp_path / "l" / "p0" / DONE_FILE).read_text())["target"] == 1
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["index.html", "p0", "p2"]
    pattern = str(tmp_path / "pics" / "p[01].png")
    assert main(["explain", pattern, "--model", many_model, "--out", str(tmp_path / "g"),
                 *CLI_FAST]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["index.html", "p0", "p1"]
    capsys.readouterr()

    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20), 255, np.uint8)).save(masks / f"p{i}.png")
    code = main(["audit", str(out), "--masks", str(masks), "--min-images", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "all classes: 3 images" in printed and "100% inside objects" in printed
    assert (out / "audit.html").is_file() and (out / "audit.json").is_file()
    assert main(["audit", str(tmp_path / "nothing")]) == 2  # a clear error


def test_load_weights_state_dict_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from ablation_paths.weights import load_weights

    src = _net()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}},
               tmp_path / "ckpt.pth")  # fmt: skip
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    for f in ("w.pt", "ckpt.pth", "w.safetensors"):
        dst = load_weights(_net(), tmp_path / f)
        pairs = zip(src.state_dict().values(), dst.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    torch.save(src, tmp_path / "whole.pt")  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="weights_only=True"):
        load_weights(_net(), tmp_path / "whole.pt")
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(_net(), tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(_net(), tmp_path / "missing.pt")


KILL_SCRIPT = """
import sys, torch
from torch import nn
from ablation_paths.many import explain_many
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                      nn.Flatten(), nn.Linear(16, 3)).eval()
g = torch.Generator().manual_seed(0)
images = [(f"img{i}", torch.rand(3, 24, 24, generator=g)) for i in range(int(sys.argv[2]))]
explain_many(model, images, out=sys.argv[1], progress=False, max_iterations=3, n_steps=4)
"""


def test_sigkill_loses_nothing_finished_and_resume_recomputes_nothing(tmp_path: Path) -> None:
    """A run killed with SIGKILL (no handler runs) leaves only complete image folders; the rerun
    computes exactly the missing images."""
    import subprocess
    import sys
    import time

    n = 8
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(n)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.glob(f"*/{DONE_FILE}"))) >= 2:
                break
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
    finished = sorted(p.parent.name for p in out.glob(f"*/{DONE_FILE}"))
    assert 2 <= len(finished) < n, finished
    # every visible image folder is complete; leftovers live only under the hidden .partial
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == finished
    mtimes = {}
    for name in finished:
        ablation_paths.load(out / name / "path.npz")
        mtimes[name] = (out / name / "path.npz").stat().st_mtime_ns

    model = _net_like_script()
    images = _images_like_script(n)
    seen: list[str] = []
    rest = explain_many(
        model, images, out=out, progress=False, max_iterations=3, n_steps=4,
        on_result=lambda name, res: seen.append(name),
    )  # fmt: skip
    assert sorted(rest.skipped) == finished and sorted(seen) == sorted(
        f"img{i}" for i in range(n) if f"img{i}" not in finished
    )
    assert rest.complete and not (out / ".partial").exists()
    assert mtimes == {k: (out / k / "path.npz").stat().st_mtime_ns for k in finished}


def _net_like_script() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()  # fmt: skip


def _images_like_script(n: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(f"img{i}", torch.rand(3, 24, 24, generator=g)) for i in range(n)]


def test_ray_actor_crash_is_restarted_and_task_retried(tmp_path: Path) -> None:
    """A worker process dying mid-image (os._exit) is restarted and its image retried."""
    ray = pytest.importorskip("ray")
    flag = tmp_path / "crashed-once"

    class CrashOnce(nn.Module):  # defined here: pickled by value for the Ray workers
        def __init__(self, inner: nn.Module, flag: str) -> None:
            super().__init__()
            self.inner = inner
            self.flag = flag

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not os.path.exists(self.flag):
                Path(self.flag).touch()
                os._exit(1)  # the actor's process dies without a Python exception
            return self.inner(x)

    model = CrashOnce(_net(), str(flag)).eval()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = explain_many(
            model, _images(3), out=tmp_path / "out", engine="ray", workers=1, progress=False,
            max_restarts=1, max_task_retries=1, **FAST,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert flag.exists()  # it did crash
    assert run.complete and sorted(run.done) == ["img0", "img1", "img2"] and not run.failed


def test_output_folder_inside_the_image_folder_is_not_read_back(tmp_path: Path) -> None:
    for i in range(2):
        _png(tmp_path / "pics" / f"p{i}.png", i)
    _png(tmp_path / "pics" / ".hidden" / "x.png", 9)
    out = tmp_path / "pics" / "runs"
    first = explain_many(_net(), tmp_path / "pics", out=out, progress=False, **FAST)
    assert first.names == ["p0", "p1"]
    again = explain_many(_net(), tmp_path / "pics", out=out, progress=False, **FAST)
    assert again.names == ["p0", "p1"] and again.skipped == ["p0", "p1"]  # no thumb.png inputs
