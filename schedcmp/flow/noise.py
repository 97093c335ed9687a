"""Where a stochastic solver's noise comes from: the run's generators, one per image.

A noise sampler is called as noise(σ, σ_next) and returns standard-normal noise shaped like the sample. Image i
of a batch draws only from generator i, so an image made in a batch is the image made alone with the same seed.
With one generator for the whole batch, the batch is drawn in one call (as diffusers' `randn_tensor` does); with
none, torch's global RNG is used, which a seed does not reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NoiseSampler = Callable[[float, float], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None


def per_image(generators: Generators, batch_size: int) -> list[torch.Generator] | None:
    """A list of one generator per image, or None when there is a single generator or none."""
    if generators is None or isinstance(generators, torch.Generator):
        return None
    generators = list(generators)
    if len(generators) != batch_size:
        raise ValueError(f"{len(generators)} generators for a batch of {batch_size} images: give one per image")
    return generators


def no_noise(sigma: float, sigma_next: float) -> torch.Tensor:
    """For deterministic solvers and dry runs: a stochastic solver asking for noise here is a bug."""
    raise RuntimeError("this solver was started without a noise sampler")


class GaussianNoise:
    """Fresh N(0, I) noise at every call."""

    def __init__(self, like: torch.Tensor, generators: Generators = None):
        self.shape, self.dtype, self.device = like.shape, like.dtype, like.device
        self.single = generators if isinstance(generators, torch.Generator) else None
        self.generators = per_image(generators, like.shape[0])

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        if self.generators is not None:
            images = [self._draw(self.shape[1:], generator) for generator in self.generators]
            return torch.stack(images)
        return self._draw(self.shape, self.single)

    def _draw(self, shape, generator: torch.Generator | None) -> torch.Tensor:
        # Drawn on the generator's device, as diffusers' randn_tensor does, so a CPU seed gives the same
        # noise whichever device the sample is on.
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device, dtype=self.dtype).to(self.device)


class BrownianNoise:
    """Normalised increments (W(σ_next) − W(σ))/√|σ_next − σ| of a Brownian motion W over σ ∈ [0, 1].

    One torchsde.BrownianTree per image, seeded with an integer drawn from that image's generator. A tree gives
    the same path whatever points it is queried at, so the noise is a property of the seed rather than of
    the step count: SDE solvers then converge to one answer as steps are added. The tree spans all of [0, 1]
    (a flow model's whole σ range), not just one grid's, for the same reason.
    """

    def __init__(self, like: torch.Tensor, generators: Generators = None):
        import torchsde

        self.dtype, self.device = like.dtype, like.device
        seeded = per_image(generators, like.shape[0])
        if seeded is None:
            seeds = [draw_seed(generators if isinstance(generators, torch.Generator) else None)]
            shapes = [like.shape]
        else:
            seeds = [draw_seed(generator) for generator in seeded]
            shapes = [like.shape[1:]] * len(seeds)
        self.batched = seeded is not None
        # The trees live on the CPU in the sample's precision: their numbers then do not depend on the device.
        self.trees = [
            torchsde.BrownianTree(0.0, torch.zeros(shape, dtype=like.dtype), 1.0, entropy=seed)
            for seed, shape in zip(seeds, shapes)
        ]

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        low, high = sorted((min(max(sigma, 0.0), 1.0), min(max(sigma_next, 0.0), 1.0)))
        sign = 1.0 if sigma_next > sigma else -1.0  # W(σ_next) − W(σ)
        increments = [tree(low, high) for tree in self.trees]
        increment = torch.stack(increments) if self.batched else increments[0]
        return (sign * increment / (high - low) ** 0.5).to(device=self.device, dtype=self.dtype)


def draw_seed(generator: torch.Generator | None) -> int:
    """An integer seed for a Brownian tree, drawn from the generator (on its own device) or torch's global RNG."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=device))


def sampler_for(kind: str, like: torch.Tensor, generators: Generators) -> NoiseSampler:
    """The noise sampler a method's catalog entry asks for ("gaussian", "brownian" or "none")."""
    if kind == "gaussian":
        return GaussianNoise(like, generators)
    if kind == "brownian":
        return BrownianNoise(like, generators)
    return no_noise
