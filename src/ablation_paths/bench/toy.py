"""A tiny dataset and hand-wired classifier whose evidence is known exactly (for tests and demos).

Images ``[3, S, S]``: grey noise background with one saturated coloured square; the label is the
square's colour (0 red, 1 green, 2 blue) and the ground-truth mask is the square. :class:`ToyNet`
is a small CNN (two convolutions, global average pooling, a linear layer) whose weights are set
by hand so that class ``c``'s logit measures how much pure colour ``c`` the image contains -- so
the square *is* the evidence, and a faithful saliency method must point at it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ToyNet", "ToySample", "load_toy_dataset", "load_toy_model"]


@dataclass
class ToySample:
    """Same fields as the benchmark datasets' samples."""

    image: Tensor  # [3, S, S] in [0, 1]
    mask: Tensor  # [S, S] bool
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends
    label: int
    name: str


class ToyNet(nn.Module):
    """Hand-wired colour detector: logit_c ~ area of saturated colour ``c`` (see module doc)."""

    def __init__(self, n_classes: int = 3, gain: float = 300.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)
        with torch.no_grad():
            c1, c2 = self.features[0], self.features[2]
            assert isinstance(c1, nn.Conv2d) and isinstance(c2, nn.Conv2d)
            assert c1.bias is not None and c2.bias is not None
            c1.weight.zero_()
            c1.bias.fill_(-0.5)
            c2.weight.zero_()
            c2.bias.zero_()
            for c in range(3):
                c1.weight[c, :, 1, 1] = -1.0
                c1.weight[c, c, 1, 1] = 1.0
                c1.bias[c] = -0.2  # pure colour c: 1 - 0 - 0 - 0.2 > 0; grey: < 0
                c2.weight[c, c] = 1.0 / 9.0
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for c in range(min(3, n_classes)):
                self.fc.weight[c, c] = gain
                self.fc.bias[c] = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def load_toy_model(name: str = "toy") -> nn.Module:
    """The hand-wired :class:`ToyNet` in eval mode (``name`` is accepted for API symmetry)."""
    return ToyNet().eval()


def load_toy_dataset(n: int, seed: int = 0, split: str = "test", size: int = 32) -> list[ToySample]:
    """``n`` seeded toy samples of side ``size`` (``split`` changes the seed stream)."""
    g = torch.Generator().manual_seed(seed * 7919 + {"train": 1, "test": 2}.get(split, 3))
    out = []
    for i in range(n):
        img = 0.35 + 0.15 * torch.rand(3, size, size, generator=g)
        img = img.mean(0, keepdim=True).expand(3, -1, -1).clone()  # grey noise
        side = max(3, size // 5)
        y0 = int(torch.randint(0, size - side + 1, (1,), generator=g))
        x0 = int(torch.randint(0, size - side + 1, (1,), generator=g))
        label = int(torch.randint(0, 3, (1,), generator=g))
        colour = torch.zeros(3)
        colour[label] = 1.0
        img[:, y0 : y0 + side, x0 : x0 + side] = colour[:, None, None]
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[y0 : y0 + side, x0 : x0 + side] = True
        out.append(
            ToySample(img, mask, (x0, y0, x0 + side, y0 + side), label, f"toy-{split}-{seed}-{i}")
        )
    return out
