"""σ schedules for flow-matching models, as pure functions of the step count and the model's time warp.

A flow model is trained on a time t ∈ (0, 1]; the noise level it sees is σ = warp(t), where warp is the model's
shift (SD3: a fixed `shift`; FLUX: an exponential time shift whose μ grows with the image's token count). Every
schedule here returns N + 1 values from the top down, ending with the terminal σ = 0 (except `beta`, which may
return fewer when two quantiles land on the same table entry, as ComfyUI's does).

The named schedules follow ComfyUI's meanings. ComfyUI describes a flow model by a table of T = 1000 noise
levels, table[k] = warp((k + 1)/T), so σ_min = warp(1/T) and σ_max = warp(1) = 1; here T is the config's
`num_train_timesteps`. (ComfyUI's FLUX table has 10 000 entries: its σ_min is warp(1/10 000).)
"""

from __future__ import annotations

import math
from collections.abc import Callable

Warp = Callable[[float], float]  # the model's t -> σ


def sd3_shift(t: float, shift: float) -> float:
    """SD3's shift (Esser et al. 2024, §5.3.2): σ = s·t / (1 + (s − 1)·t); s = 3 for SD3."""
    return shift * t / (1 + (shift - 1) * t)


def exponential_time_shift(t: float, mu: float, exponent: float = 1.0) -> float:
    """FLUX's resolution-dependent shift: σ = e^μ / (e^μ + (1/t − 1)^exponent); t = 0 gives σ = 0."""
    if t <= 0:
        return 0.0
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** exponent)


def linear_time_shift(t: float, mu: float, exponent: float = 1.0) -> float:
    """diffusers' `time_shift_type="linear"`: σ = μ / (μ + (1/t − 1)^exponent)."""
    if t <= 0:
        return 0.0
    return mu / (mu + (1 / t - 1) ** exponent)


def calculate_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """FLUX's μ: linear in the number of image tokens, base_shift at base_seq_len, max_shift at max_seq_len.

    The same line diffusers' FLUX pipeline draws (`calculate_shift`); it extrapolates outside the two points.
    """
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return base_shift + slope * (image_seq_len - base_seq_len)


def karras(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """Karras et al. 2022, eq. 5: σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then 0."""
    if steps == 1:
        return [sigma_max, 0.0]
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(top + i / (steps - 1) * (bottom - top)) ** rho for i in range(steps)] + [0.0]


def exponential(steps: int, sigma_min: float, sigma_max: float) -> list[float]:
    """σ_i = exp(log σ_max + i/(N−1)·(log σ_min − log σ_max)): even steps in log σ, then 0."""
    if steps == 1:
        return [sigma_max, 0.0]
    top, bottom = math.log(sigma_max), math.log(sigma_min)
    return [math.exp(top + i / (steps - 1) * (bottom - top)) for i in range(steps)] + [0.0]


def simple(steps: int, warp: Warp, num_train_timesteps: int = 1000) -> list[float]:
    """ComfyUI's simple: σ_i = table[T − 1 − ⌊i·T/N⌋] = warp(1 − ⌊i·T/N⌋/T), then 0.

    Even steps in t, snapped down to the model's table of T entries (so identical to the FlowMatchEuler grid
    whenever N divides T).
    """
    table_size = num_train_timesteps
    return [warp(1 - (i * table_size // steps) / table_size) for i in range(steps)] + [0.0]


def sgm_uniform(steps: int, warp: Warp, num_train_timesteps: int = 1000) -> list[float]:
    """ComfyUI's sgm_uniform: σ_i = warp(u_i), u_i = 1 − i·(1 − σ_min)/N for i < N, then 0.

    ComfyUI spaces the model's timesteps evenly from timestep(σ_max) to timestep(σ_min) over N + 1 points and
    drops the last; a flow model's timestep is σ·T (unshifted), so the far end is σ_min = warp(1/T) read as a
    time.
    """
    sigma_min = warp(1 / num_train_timesteps)
    return [warp(1 - i * (1 - sigma_min) / steps) for i in range(steps)] + [0.0]


def beta(
    steps: int, warp: Warp, num_train_timesteps: int = 1000, alpha: float = 0.6, beta_: float = 0.6
) -> list[float]:
    """ComfyUI's beta (Lee et al. 2024, arXiv:2407.12173): the table entries at the Beta(α, β) quantiles.

    k_i = round(F⁻¹(1 − i/N)·(T − 1)) for i < N, where F is the Beta(0.6, 0.6) CDF; repeats dropped;
    σ_i = table[k_i] = warp((k_i + 1)/T); then 0. The U-shaped density puts steps near both ends.
    """
    import scipy.stats

    indices = []
    for i in range(steps):
        index = int(round(float(scipy.stats.beta.ppf(1 - i / steps, alpha, beta_)) * (num_train_timesteps - 1)))
        if not indices or index != indices[-1]:
            indices.append(index)
    return [warp((index + 1) / num_train_timesteps) for index in indices] + [0.0]


def named(name: str, steps: int, warp: Warp, num_train_timesteps: int = 1000) -> list[float]:
    """The schedule called `name` (any in SCHEDULES but "default", which only the pipeline's scheduler knows)."""
    sigma_min, sigma_max = warp(1 / num_train_timesteps), warp(1.0)
    if name == "karras":
        return karras(steps, sigma_min, sigma_max)
    if name == "exponential":
        return exponential(steps, sigma_min, sigma_max)
    if name == "simple":
        return simple(steps, warp, num_train_timesteps)
    if name == "sgm_uniform":
        return sgm_uniform(steps, warp, num_train_timesteps)
    if name == "beta":
        return beta(steps, warp, num_train_timesteps)
    raise ValueError(f"no schedule called {name!r} here")
