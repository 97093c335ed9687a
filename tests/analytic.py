"""A denoiser whose answer is known exactly: Gaussian data, wrapped as the UNet of a real pipeline.

For data x0 ~ N(mean, std²), independently per latent element, the noisy latent at noise level σ (in the
variance-exploding form x̃ = x0 + σ·ε, which is x_t / √ᾱ_t) is Gaussian too, and the best ε-prediction is
closed-form:  E[ε | x̃] = σ (x̃ − mean) / (std² + σ²).  The probability-flow ODE it defines is smooth, so the
real diffusers schedulers that drive it must show their textbook orders of convergence; a random-weights
network gives no such guarantee.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput


class GaussianDenoiser(ModelMixin, ConfigMixin):
    """The exact ε-prediction for Gaussian data, with UNet2DConditionModel's call signature."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        sample_size: int = 16,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        time_cond_proj_dim: int | None = None,
    ):
        super().__init__()
        # Stable Diffusion's scaled-linear schedule, the one the pipeline's scheduler config describes.
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.register_buffer("log_sigmas", torch.log(((1 - alphas_cumprod) / alphas_cumprod).sqrt()))
        generator = torch.Generator().manual_seed(0)
        shape = (in_channels, sample_size, sample_size)
        self.register_buffer("mean", torch.randn(shape, generator=generator, dtype=torch.float64) * 0.5)
        self.register_buffer("std", 0.2 + 0.8 * torch.rand(shape, generator=generator, dtype=torch.float64))

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """σ at a (possibly fractional) timestep: log σ interpolated linearly, as the schedulers map σ to t."""
        t = timestep.clamp(0, len(self.log_sigmas) - 1)
        low = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        fraction = t - low
        return torch.exp(self.log_sigmas[low] * (1 - fraction) + self.log_sigmas[low + 1] * fraction)

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict: bool = True, **unused):
        timesteps = torch.as_tensor(timestep, dtype=torch.float64, device=sample.device).reshape(-1)
        sigma = self.sigma(timesteps).expand(sample.shape[0]).reshape(-1, 1, 1, 1)
        noisy = sample.double() * (1 + sigma**2).sqrt()  # the pipeline passes x_t = √ᾱ·x̃: undo the scaling
        epsilon = sigma * (noisy - self.mean) / (self.std**2 + sigma**2)
        epsilon = epsilon.to(sample.dtype)
        return UNet2DConditionOutput(sample=epsilon) if return_dict else (epsilon,)


def swap_in(model):
    """The loaded tiny pipeline with its UNet replaced by the Gaussian denoiser of the same latent shape."""
    from dataclasses import replace

    unet = model.pipe.unet
    analytic = GaussianDenoiser(
        in_channels=unet.config.in_channels, out_channels=unet.config.out_channels, sample_size=unet.config.sample_size
    )
    model.pipe.register_modules(unet=analytic)
    return replace(model, denoiser=analytic, name="Gaussian data (exact ε-prediction)")
