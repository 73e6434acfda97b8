"""RISE over SIFT features (beyond the thesis; its 4.3.2 and 4.4 name it as future work).

Random binary gain vectors ``g ~ Bernoulli(p_keep)^K`` switch whole SIFT features on or off, the
decoded images ``D(g)`` are classified, and each feature's saliency is the expected target
probability given that the feature is kept, ``S_i = E[F_l(D(g)) | g_i = 1]``, estimated as
``sum_m F_m g_mi / sum_m g_mi``. Unlike pixel RISE, no mask resolution or upsampling is chosen.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ablation_paths.sift.decomposition import SiftDecomposition

__all__ = ["sift_rise", "sift_rise_heatmap"]


def sift_rise(
    model: nn.Module,
    decomposition: SiftDecomposition,
    target: int,
    n_samples: int = 2000,
    p_keep: float = 0.5,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-feature RISE saliency ``[K]`` (dtype and device of the decomposition).

    Args:
        model: classifier taking ``[B, C, H, W]`` images and returning logits ``[B, n_classes]``.
        decomposition: SIFT decomposition of the image.
        target: class index ``l``.
        n_samples: number of random gain vectors.
        p_keep: probability that a feature is kept (gain 1) in a sample.
        batch_size: images per model call.
        generator: optional random generator (its device is used for sampling).

    Returns:
        ``S[K]``: the mean softmax probability of ``target`` over the samples that kept feature
        ``i``; features never kept get the mean over all samples.
    """
    if not 0.0 < p_keep < 1.0:
        raise ValueError(f"p_keep must be in (0, 1), got {p_keep}")
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be >= 1, got {n_samples}, {batch_size}")
    k = decomposition.num_features
    dev, dt = decomposition.device, decomposition.dtype
    gen_dev = generator.device if generator is not None else dev
    acc = torch.zeros(k, dtype=torch.float64, device=dev)
    count = torch.zeros(k, dtype=torch.float64, device=dev)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    done = 0
    with torch.no_grad():
        while done < n_samples:
            b = min(batch_size, n_samples - done)
            keep = torch.rand(b, k, generator=generator, device=gen_dev) < p_keep
            gains = keep.to(device=dev, dtype=dt)
            logits = model(decomposition.decode(gains))
            if logits.dim() != 2 or not 0 <= target < logits.shape[1]:
                raise ValueError(
                    f"model must return logits [B, n_classes] containing class {target}, "
                    f"got shape {tuple(logits.shape)}"
                )
            prob = torch.softmax(logits.to(torch.float64), dim=1)[:, target]
            g64 = gains.to(torch.float64)
            acc += g64.T @ prob
            count += g64.sum(0)
            total += prob.sum()
            done += b
    mean = total / n_samples
    sal = torch.where(count > 0, acc / count.clamp_min(1), mean)
    return sal.to(dt)


def sift_rise_heatmap(decomposition: SiftDecomposition, saliency: Tensor) -> Tensor:
    """Spatial ``[H, W]`` map of per-feature RISE saliency via the Voronoi field (eq. 4.46).

    The saliency is centred first (``S_i - mean_i S_i``): RISE values all lie near the mean target
    probability, and only their differences say which feature matters. Positive values mark
    features whose presence raises the target probability. The centring shifts a weighted-mean
    field by a constant (same ranking) and makes the energy-density field
    (``field_weights="local_energy"``) signed."""
    return decomposition.voronoi_heatmap(saliency - saliency.mean())
