"""Speed of ablation path optimisation.

Prints, for the demo classifier and for a randomly initialised ResNet-18 at 224x224:
seconds per iteration split into classifier forward+backward and everything else, iterations to
saturation, and the ratio of a whole default ablation path to Captum IntegratedGradients with 50
steps, measured in the same run on the same model and image. Also times the projection of a
[16, 64, 64] path.

Every variant of ``--variants`` (see :data:`VARIANTS`) is run on the same model and image,
interleaved with IG, so all ratios come from one run.

    python benchmarks/path_speed.py [--repeats 3] [--threads 2] [--device cpu] [--variants ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

import ablation_paths as ap
from ablation_paths.paths import affine_path


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18 layout (11.7 M parameters), written here so the benchmark needs no torchvision."""

    def __init__(self, n_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        layers = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))


def natural_image(size: int) -> torch.Tensor:
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ig(
    model: nn.Module, image: torch.Tensor, baseline: torch.Tensor, target: int, batch: int
) -> float:
    from captum.attr import IntegratedGradients

    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x), dim=1)

    ig = IntegratedGradients(probs)
    sync(image.device)
    t0 = time.perf_counter()
    ig.attribute(
        image[None], baselines=baseline[None], target=target, n_steps=50, internal_batch_size=batch
    )
    sync(image.device)
    return time.perf_counter() - t0


#: Settings compared by ``--variants`` (each on top of the engine defaults).
VARIANTS: dict[str, dict[str, object]] = {
    # the defaults before issue 13: T = 16 from the start, saturation ramp over 10 iterations
    "thesis-schedule": {"n_steps_start": None, "sharpen": False},
    "coarse-to-fine": {"n_steps_start": 4, "sharpen": False},
    "default": {},  # coarse-to-fine, sharpened maxima
    "ramp-8": {"saturation_ramp": 8},
    "default+bf16": {"precision": "bfloat16"},
}


def run_variant(
    model: nn.Module, image: torch.Tensor, batch: int, options: dict[str, object], repeats: int
) -> list[ap.AblationPathResult]:
    return [
        ap.explain(model, image, batch_size=batch, keep_frames=False, **options)
        for _ in range(repeats)
    ]


def bench_model(
    name: str,
    model: nn.Module,
    image: torch.Tensor,
    repeats: int,
    batch: int,
    variants: list[str],
) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ap.AblationPathWarning)
        runs = {v: [] for v in variants}
        ig_times = []
        for _ in range(repeats):  # interleaved, so load changes hit every variant alike
            for v in variants:
                runs[v] += run_variant(model, image, batch, VARIANTS[v], 1)
            bl = runs[variants[0]][-1].baseline_image.to(image.device)
            ig_times.append(time_ig(model, image, bl, runs[variants[0]][-1].target, batch))
    ig = min(ig_times)
    r = runs[variants[0]][0]
    print(
        f"\n== {name}: image {tuple(image.shape)}, mask {tuple(r.info['mask_shape'])}, "
        f"T={r.path.shape[0]}; Captum IG, 50 steps: {ig:.2f} s (best of {repeats})"
    )
    print(
        f"{'variant':18s} {'iterations':>10s} {'clf ms/it':>9s} {'other ms/it':>11s} "
        f"{'path s':>7s} {'ratio/IG-50':>11s} {'score':>6s} {'sat':>5s}"
    )
    for v in variants:
        results = runs[v]
        its = sum(x.iterations for x in results)
        clf = sum(x.info["classifier_seconds"] for x in results) / its
        other = sum(x.info["other_seconds"] for x in results) / its
        wall = min(x.info["wall_seconds"] for x in results)
        x = results[0]
        print(
            f"{v:18s} {its / len(results):10.1f} {clf * 1e3:9.1f} {other * 1e3:11.1f} "
            f"{wall:7.2f} {wall / ig:10.2f}x {x.path_score:6.3f} {x.saturation:5.2f}"
        )
    last = min(x.info["wall_seconds"] for x in runs[variants[-1]])
    print(f"ratio path / IG-50 ({variants[-1]}): {last / ig:.2f}x")


def bench_projection(device: torch.device, repeats: int = 50) -> None:
    torch.manual_seed(0)
    from ablation_paths.filters import gaussian_blur

    base = affine_path(16, (64, 64), device=device)
    step = gaussian_blur(torch.randn(16, 1, 64, 64, device=device), 3.0).squeeze(1)
    step = 0.5 * step / step.abs().max()
    path = base + step  # a realistic unconstrained update of the affine path
    print("\n== projection of a [16, 64, 64] path after a step of L-inf norm 0.5")
    for method in ("minimax", "flatten"):
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            ap.project(path, monotonize_method=method)
            sync(device)
            best = min(best, time.perf_counter() - t0)
        print(f"project (monotonize={method:8s}): {best * 1e3:7.2f} ms (best of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument(
        "--variants",
        default="thesis-schedule,default,ramp-8,default+bf16",
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    bench_projection(device)

    from ablation_paths.demo import demo_image, load_model

    demo = demo_image()
    variants = args.variants.split(",")
    bench_model(
        "demo classifier",
        load_model().to(device),
        demo.image.to(device),
        args.repeats,
        32,
        variants,
    )
    if not args.skip_resnet:
        torch.manual_seed(0)
        bench_model(
            "ResNet-18 (random init)",
            ResNet18().to(device),
            natural_image(224).to(device),
            args.repeats,
            16,
            variants,
        )


if __name__ == "__main__":
    main()
