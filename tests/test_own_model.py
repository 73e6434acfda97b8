"""``--model torchvision:NAME`` and the bundled ImageNet class names.

The project's environment has no working torchvision, so the spec logic runs against a small
fake ``torchvision`` package put into ``sys.modules``; one test uses the real package and is
skipped when it cannot be imported."""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ablation_paths._optional import MissingOptionalDependency
from ablation_paths.labels import imagenet_class_names, load_class_names
from ablation_paths.models import load_model_spec


class FakeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def fake_torchvision(monkeypatch):
    """``torchvision.models`` with three classification builders and a detection model that
    ``list_models(module=torchvision.models)`` leaves out, as the real one does."""
    calls: list[dict] = []

    def builder(**kwargs):
        calls.append(dict(kwargs))
        if kwargs.pop("weights") is not None:
            raise ValueError("this fake downloads nothing")
        return FakeNet(**kwargs)

    models = types.ModuleType("torchvision.models")
    for name in ("resnet18", "resnet50", "alexnet", "fasterrcnn_resnet50_fpn"):
        setattr(models, name, builder)

    def list_models(module=None):
        names = ["alexnet", "resnet18", "resnet50", "fasterrcnn_resnet50_fpn"]
        return names[:3] if module is models else names

    models.list_models = list_models
    models.get_model_builder = lambda name: getattr(models, name)
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    return calls


def test_torchvision_spec_builds_the_model_without_weights(fake_torchvision) -> None:
    torch.manual_seed(0)
    loaded = load_model_spec("torchvision:resnet18", model_args={"width": 6})
    assert isinstance(loaded.model, FakeNet) and not loaded.model.training
    assert loaded.model.conv.out_channels == 6
    assert fake_torchvision == [{"weights": None, "width": 6}]  # never downloads by default
    assert loaded.class_names == imagenet_class_names()  # 1000 outputs: ImageNet names
    assert loaded.description == "torchvision.models.resnet18"
    other = load_model_spec("torchvision:alexnet", model_args={"num_classes": 10})
    assert other.model.fc.out_features == 10 and other.class_names is None


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_spec_loads_a_local_weights_file(tmp_path, fake_torchvision, suffix) -> None:
    import safetensors.torch

    torch.manual_seed(7)
    trained = FakeNet(num_classes=5)
    file = tmp_path / f"trained{suffix}"
    if suffix == ".pth":
        torch.save(trained.state_dict(), file)
    else:
        safetensors.torch.save_file(trained.state_dict(), str(file))
    torch.manual_seed(0)
    loaded = load_model_spec("torchvision:resnet50", model_args={"num_classes": 5}, weights=file)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded.model(x), trained.eval()(x), rtol=0, atol=0)
    assert str(file) in loaded.description
    with pytest.raises(ValueError, match="either --weights FILE or --model-arg weights"):
        load_model_spec(
            "torchvision:resnet50", model_args={"weights": "IMAGENET1K_V2"}, weights=file
        )
    with pytest.raises(ValueError, match="do not fit"):  # 5 classes saved, 1000 built
        load_model_spec("torchvision:resnet50", weights=file)


def test_unknown_torchvision_model_lists_close_names(fake_torchvision) -> None:
    with pytest.raises(ValueError, match=r"no classification model 'resnet5'.*resnet50"):
        load_model_spec("torchvision:resnet5")
    with pytest.raises(ValueError, match="'fasterrcnn_resnet50_fpn'"):  # not a classifier
        load_model_spec("torchvision:fasterrcnn_resnet50_fpn")
    with pytest.raises(ValueError, match=r"known: alexnet, resnet18, resnet50"):
        load_model_spec("torchvision:zzzz")
    with pytest.raises(ValueError, match="failed: TypeError"):
        load_model_spec("torchvision:resnet18", model_args={"depth": 3})


def test_missing_torchvision_names_the_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision fails
    monkeypatch.delitem(sys.modules, "torchvision.models", raising=False)
    with pytest.raises(MissingOptionalDependency, match="needs the torchvision package") as info:
        load_model_spec("torchvision:resnet50")
    assert "pip install torchvision" in str(info.value)
    assert isinstance(info.value, ImportError)  # the CLI reports it in one line, exit 2


def test_broken_torchvision_says_so(tmp_path, monkeypatch) -> None:
    """A torchvision built for another torch fails at import with a RuntimeError."""
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    (pkg / "models.py").write_text("")
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.delitem(sys.modules, "torchvision.models", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(MissingOptionalDependency, match=r"installed but cannot be imported"):
        load_model_spec("torchvision:resnet50")
    sys.modules.pop("torchvision", None)


def test_cli_with_a_torchvision_model_names_imagenet_classes(tmp_path, fake_torchvision) -> None:
    from ablation_paths.cli import main
    from ablation_paths.result import load

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 60, 3)) * 255).astype(np.uint8)).save(photo)
    fast = ["--n-steps", "3", "--max-iterations", "1", "--mask-size", "4", "--quiet"]
    out = tmp_path / "out"
    args = ["explain", str(photo), "--model", "torchvision:resnet18", "--out", str(out)]
    assert main([*args, "--resize", "36", "--crop", "32", "--target", "goldfish", *fast]) == 0
    result = load(out / "path.npz")
    assert result.target == 1 and result.target_name == "goldfish"
    assert result.info["model"] == "torchvision.models.resnet18"
    assert tuple(result.image.shape[-2:]) == (32, 32)
    # --labels imagenet on a model with another number of classes is a one-line error
    bad = [*args, "--model-arg", "num_classes=3", "--labels", "imagenet", *fast]
    assert main(bad) == 2


def test_bundled_imagenet_names_are_the_imagenet_1k_classes() -> None:
    """Spot checks against the well-known ImageNet-1k index order."""
    names = imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    expected = {
        0: "tench",
        1: "goldfish",
        207: "golden retriever",
        281: "tabby",
        409: "analog clock",
        954: "banana",
        999: "toilet tissue",
    }
    assert {i: names[i] for i in expected} == expected
    assert names[134] == "crane (n02012849)" and names[517] == "crane (n03126707)"
    assert load_class_names("imagenet") == names == load_class_names("ImageNet")


def test_class_names_from_a_file_and_errors(tmp_path) -> None:
    f = tmp_path / "names.txt"
    f.write_text("cat\n\n dog \n# not a comment here\n", encoding="utf-8")
    assert load_class_names(f) == ["cat", "dog", "# not a comment here"]
    with pytest.raises(FileNotFoundError, match="not a bundled set"):
        load_class_names(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="holds no names"):
        load_class_names(tmp_path / "empty.txt")


def test_regeneration_script_rule() -> None:
    """``scripts/imagenet_classes.py``: first lemma per synset; duplicates get the synset."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "imagenet_classes.py"
    spec = importlib.util.spec_from_file_location("imagenet_classes_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    synsets = [f"n{i:08d}" for i in range(1000)]
    lemmas = {s: f"class {i}, other name" for i, s in enumerate(synsets)}
    lemmas[synsets[5]] = "crane"
    lemmas[synsets[9]] = "crane, derrick"
    text = "\n".join(f"{s}\t{lemmas[s]}" for s in synsets)
    names = module.class_names("\n".join(synsets), text)
    assert names[0] == "class 0" and names[5] == "crane (n00000005)"
    assert names[9] == "crane (n00000009)" and len(set(names)) == 1000
    bundled = (Path(module.OUT)).read_text("utf-8")
    assert "timm" in bundled and "Apache-2.0" in bundled  # provenance and licence recorded


def real_torchvision_models() -> types.ModuleType:
    """The real ``torchvision.models``; skips the test where torchvision cannot be imported,
    unless ``ABLATION_PATHS_REQUIRE_TORCHVISION=1`` (``make test-torchvision``) makes that a
    failure."""
    try:
        return importlib.import_module("torchvision.models")
    except Exception as exc:  # not installed, or built for another torch
        reason = f"torchvision cannot be imported here ({type(exc).__name__}: {exc})"
        if os.environ.get("ABLATION_PATHS_REQUIRE_TORCHVISION") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def test_real_torchvision_resnet_with_a_local_weights_file(tmp_path) -> None:
    models = real_torchvision_models()
    torch.manual_seed(0)
    trained = models.resnet18(weights=None).eval()
    file = tmp_path / "resnet18.pth"
    torch.save(trained.state_dict(), file)
    loaded = load_model_spec("torchvision:resnet18", weights=file)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded.model(x), trained(x))
    assert loaded.class_names is not None and loaded.class_names[0] == "tench"
    with pytest.raises(ValueError, match="resnet50"):
        load_model_spec("torchvision:resnet5")


@pytest.mark.slow
def test_torchvision_tutorial_commands_run(tmp_path, monkeypatch, fake_torchvision) -> None:
    """Section 7 of docs/own-model.md as a reader runs it, on the stand-in torchvision with
    random weights: its ``ablation-paths`` commands and its Python block (``py``)."""
    torch.manual_seed(1)
    run_tutorial(tmp_path, monkeypatch, FakeNet().state_dict())


@pytest.mark.slow
def test_torchvision_tutorial_with_the_real_resnet50(tmp_path, monkeypatch) -> None:
    """The same section on the real ``torchvision.models.resnet50`` with random weights (run by
    ``make test-torchvision``, which CI runs; skipped where torchvision cannot be imported)."""
    models = real_torchvision_models()
    torch.manual_seed(1)
    run_tutorial(tmp_path, monkeypatch, models.resnet50(weights=None).state_dict())


def run_tutorial(tmp_path: Path, monkeypatch, state_dict: dict) -> None:
    """Run section 7's commands and Python block in ``tmp_path`` with ``state_dict`` saved as
    ``resnet50.pth``, with a fast configuration; check what each writes."""
    import dataclasses
    import re
    import shlex

    import ablation_paths.api as api
    from ablation_paths.cli import main
    from ablation_paths.optimizer import AblationPathConfig
    from ablation_paths.result import load

    doc = (Path(__file__).resolve().parents[1] / "docs" / "own-model.md").read_text("utf-8")
    section = doc[doc.index("## 7. A torchvision") : doc.index("## 8.")]
    commands = re.findall(r"^ablation-paths explain .*$", section, re.M)
    blocks = re.findall(r"```py\n(.*?)```", section, re.S)
    assert len(commands) == 2 and len(blocks) == 1

    @dataclasses.dataclass(frozen=AblationPathConfig.__dataclass_params__.frozen)
    class Fast(AblationPathConfig):  # the defaults, made fast
        n_steps: int = 3
        max_iterations: int = 1
        mask_size: int = 4

    monkeypatch.setattr(api, "AblationPathConfig", Fast)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    pixels = lambda h, w: (rng.random((h, w, 3)) * 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(pixels(300, 451)).save("cat.jpg")
    Path("photos").mkdir()
    for name in ("a", "b"):
        Image.fromarray(pixels(260, 300)).save(f"photos/{name}.png")
    torch.save(state_dict, "resnet50.pth")
    for command in commands:
        assert main(shlex.split(command)[1:] + ["--quiet"]) == 0, command
    cat = load(tmp_path / "runs" / "cat" / "path.npz")
    assert tuple(cat.image.shape[-2:]) == (224, 224) and cat.target_name is not None
    assert (tmp_path / "runs" / "tabby" / "index.html").is_file()
    tabby = load(tmp_path / "runs" / "tabby" / "a" / "path.npz")
    assert tabby.target == 281 and tabby.target_name == "tabby"
    namespace: dict = {"__name__": "tutorial"}
    exec(compile(blocks[0], "own-model.md", "exec"), namespace)
    assert namespace["result"].image.shape[-2:] == (224, 224)
    assert sorted(namespace["run"].done) == ["a", "b"] and not namespace["run"].failed
