"""A flow-matching model whose answer is known exactly: Gaussian data, wrapped as a pipeline's transformer.

For data x0 ~ N(m, s²), independently per latent element, the rectified-flow sample x_σ = (1 − σ)·x0 + σ·ε is
Gaussian with mean (1 − σ)·m and variance V(σ) = (1 − σ)²·s² + σ². The best velocity is the conditional mean

    v(x, σ) = E[ε − x0 | x_σ = x] = (σ − (1 − σ)·s²)/V · (x − (1 − σ)·m) − m,

and the probability-flow ODE dx/dσ = v keeps the standardised coordinate z = (x − (1 − σ)·m)/√V constant: a
monotone map between 1-D Gaussians is the quantile map. So the exact solution from pure noise x(1) = z is
x(σ) = (1 − σ)·m + √V(σ)·z, and x(0) = m + s·z. The ODE is smooth on all of [0, 1] (V ≥ s²/(1 + s²) > 0), so
solvers must show their textbook orders on it.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput


def variance(sigma, std):
    """V(σ) = (1 − σ)²·s² + σ², the variance of x_σ."""
    return (1 - sigma) ** 2 * std**2 + sigma**2


def velocity(x, sigma, mean, std):
    """The exact v(x, σ) = E[ε − x0 | x_σ = x]."""
    return (sigma - (1 - sigma) * std**2) / variance(sigma, std) * (x - (1 - sigma) * mean) - mean


def denoised(x, sigma, mean, std):
    """The exact D(x, σ) = E[x0 | x_σ = x] = x − σ·v."""
    return x - sigma * velocity(x, sigma, mean, std)


def solution(noise, sigma, mean, std):
    """The exact ODE solution at σ from x(1) = noise: (1 − σ)·m + √V(σ)·noise."""
    return (1 - sigma) * mean + variance(sigma, std) ** 0.5 * noise


def gaussian_data(shape, seed: int = 0, lowest_std: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element means around 0 and standard deviations in [lowest_std, 1], in float64."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=generator, dtype=torch.float64) * 0.5
    std = lowest_std + (1 - lowest_std) * torch.rand(shape, generator=generator, dtype=torch.float64)
    return mean, std


class GaussianFlow(ModelMixin, ConfigMixin):
    """The exact velocity for Gaussian data, with SD3Transformer2DModel's call signature (timestep = σ·1000)."""

    @register_to_config
    def __init__(self, in_channels: int = 4, sample_size: int = 16, patch_size: int = 1, out_channels: int = 4):
        super().__init__()
        mean, std = gaussian_data((in_channels, sample_size, sample_size))
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(
        self,
        hidden_states,
        timestep,
        encoder_hidden_states=None,
        pooled_projections=None,
        return_dict: bool = True,
        **unused,
    ):
        sigma = torch.as_tensor(timestep, dtype=torch.float64, device=hidden_states.device).reshape(-1, 1, 1, 1)
        v = velocity(hidden_states.double(), sigma / 1000, self.mean, self.std).to(hidden_states.dtype)
        return Transformer2DModelOutput(sample=v) if return_dict else (v,)
