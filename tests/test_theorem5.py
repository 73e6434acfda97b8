"""Theorem 5 (thesis eq. 2.23): the time-integral of the first retaining-score gradient on the
affine path is Integrated Gradients. Checked against Captum."""

import pytest
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from ablation_paths.inputs import ClassifierFn
from ablation_paths.mask_spaces import PixelMaskSpace
from ablation_paths.optimizer import evaluate_masks


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(6, 6, 3, padding=1, stride=2),
            nn.Softplus(),
            nn.Flatten(),
            nn.Linear(6 * 4 * 4, 4),
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize(
    "method",
    ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"],
)
def test_integrated_gradients_equals_time_integral_of_retaining_gradient(method):
    model = small_model()
    torch.manual_seed(1)
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    x_bl = torch.rand(3, 8, 8, dtype=torch.float64) * 0.2
    target = 2
    n_steps = 16

    def probs(inp):
        return torch.softmax(model(inp), dim=1)

    ig = IntegratedGradients(probs)
    attr = ig.attribute(
        x.unsqueeze(0), baselines=x_bl.unsqueeze(0), target=target, n_steps=n_steps, method=method
    )[0]

    step_sizes, alphas = approximation_parameters(method)
    w = torch.tensor(step_sizes(n_steps), dtype=torch.float64)
    a = torch.tensor(alphas(n_steps), dtype=torch.float64)
    # IG uses x_bl + alpha (x - x_bl); our masked image is x + phi (x_bl - x): phi = 1 - alpha
    phi = (1.0 - a).view(-1, 1, 1).expand(n_steps, 8, 8).contiguous()
    space = PixelMaskSpace(x, x_bl, (8, 8))
    _, grad = evaluate_masks(ClassifierFn(model), space, phi, target, coefficients=w, batch_size=5)
    time_integral = grad.sum(dim=0)  # sum_k w_k dP_up/dphi(t_k)
    expected = -attr.sum(dim=0)  # masks act on all channels; phi and alpha run opposite ways
    torch.testing.assert_close(time_integral, expected, rtol=1e-4, atol=1e-10)
