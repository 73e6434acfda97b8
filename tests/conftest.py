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
