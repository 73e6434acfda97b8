import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """A small differentiable classifier for fast tests (3 x H x W -> 5 classes)."""

    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8 * 4 * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.adaptive_avg_pool2d(self.features(x), 4)
        return self.head(h.flatten(1))


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def tiny_image() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 32, 32, generator=g)


def system_chromium() -> str:
    """Path of a system Chromium usable by Playwright, or skip (fail when CI requires it)."""
    required = os.environ.get("ABLATION_PATHS_REQUIRE_BROWSER", "") not in ("", "0")
    reason = ""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the Python package 'playwright' is not installed (pip install -e '.[dev]')"
    exe = next(
        (
            p
            for p in (
                "/usr/bin/chromium",
                shutil.which("chromium"),
                shutil.which("chromium-browser"),
            )
            if p and os.access(p, os.X_OK)
        ),
        None,
    )
    if not reason and exe is None:
        reason = "no system Chromium found (apt-get install chromium chromium-driver)"
    if reason:
        if required:
            pytest.fail(f"ABLATION_PATHS_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    assert exe is not None
    return exe


@pytest.fixture(scope="module")
def ray_two_workers() -> Iterator[Any]:
    """A local Ray instance with 2 CPU slots, shared by one test module's Ray tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
