"""The k-diffusion family of solvers, for flow-matching (rectified-flow) models.

The parameterisation is the one ComfyUI calls CONST: for σ ∈ [0, 1],

    x_σ = (1 − σ)·x0 + σ·ε,      α = 1 − σ,      λ = log(α/σ) = log((1 − σ)/σ)  (half log-SNR).

The model predicts the velocity v = ε − x0, so the denoised prediction is D = x − σ·v, and the probability-flow
ODE is

    dx/dσ = (x − D)/σ   (= v).

That is Karras et al.'s ODE (2022, eq. 3 with s = 1) on σ ∈ [0, 1] instead of [0, ∞): the deterministic
k-diffusion solvers apply unchanged. Stochastic steps differ: noise added at σ must come with the signal
shrinking to α = 1 − σ, hence the rectified-flow ancestral step and the λ-based SDE solvers below.

How a solver is driven. A diffusers pipeline owns the loop (it calls the model, then `scheduler.step`);
a k-diffusion sampler owns it too (it calls the model). Each solver here is therefore k-diffusion's loop with
the model call turned inside out: a generator that asks for an evaluation with

    x, denoised = yield x_eval, sigma

and receives the sample as the caller evaluated it (an inpainting pipeline may have edited it) and D there.
When the grid is done it returns the final sample. `solve` drives one with a denoiser callable; the scheduler
drives one from `step`. A step to σ_next = 0 always costs one evaluation: every method ends with x = D there.

Noise: a stochastic solver calls noise(σ, σ_next) for standard-normal noise shaped like x (see noise.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from schedcmp.flow.catalog import METHODS
from schedcmp.flow.noise import NoiseSampler, no_noise

Solver = Generator[tuple[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]

# ∫ ℓ_j is taken with Gauss–Legendre quadrature: exact for LMS's cubic Lagrange basis, and accurate to rounding
# for DEIS's basis, a polynomial in the smooth time t(σ).
QUADRATURE_POINTS = 16


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dσ = (x − D)/σ, Karras et al. 2022 eq. 3; for a flow model this is its velocity v."""
    return (x - denoised) / sigma


def steps(sigmas: Sequence[float]):
    """(σ_i, σ_i+1) for each step of the grid."""
    return zip(sigmas[:-1], sigmas[1:])


def half_log_snr(sigma: float) -> float:
    """λ = log(α/σ) = log((1 − σ)/σ); −∞ at σ = 1, which is why λ-based methods start just below it."""
    return math.log((1 - sigma) / sigma)


def sigma_at(half_log_snr_value: float) -> float:
    """The σ whose λ is given: σ = 1/(1 + e^λ)."""
    return 1 / (1 + math.exp(half_log_snr_value))


def rf_ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float, float]:
    """(σ_down, α_next/α_down, σ_up) of the rectified-flow ancestral step, as ComfyUI describes it.

    Step deterministically down to σ_down = σ_next·(1 + (σ_next/σ − 1)·η) (σ_next²/σ at η = 1), where the sample
    is α_down·x0 + σ_down·ε; scaling by α_next/α_down gives α_next·x0 + σ_down·(α_next/α_down)·ε, and fresh
    noise of standard deviation σ_up = √(σ_next² − (σ_down·α_next/α_down)²) brings the noise back to σ_next.
    η = 0 is the deterministic step (σ_down = σ_next, σ_up = 0); σ_next = 0 gives σ_down = σ_up = 0.
    """
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_ratio = (1 - sigma_next) / (1 - sigma_down)
    sigma_up = math.sqrt(max(sigma_next**2 - (sigma_down * alpha_ratio) ** 2, 0.0))
    return sigma_down, alpha_ratio, sigma_up


def ve_ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of Ho et al.'s ancestral step in variance-exploding form (k-diffusion get_ancestral_step).

    σ_up = min(σ_next, η·√(σ_next²·(σ² − σ_next²)/σ²)), σ_down = √(σ_next² − σ_up²).
    """
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def ancestral_first_order_step(
    x: torch.Tensor,
    denoised: torch.Tensor,
    sigma: float,
    sigma_next: float,
    eta: float,
    s_noise: float,
    noise: NoiseSampler,
) -> torch.Tensor:
    """One first-order DPM-Solver++ step with ancestral noise, taken in variance-exploding coordinates.

    x/α is a variance-exploding sample at noise level σ/α = e^(−λ) with the same D; there the step is
    x̃_next = D + (σ̃_down/σ̃)·(x̃ − D) + σ̃_up·z (Lu et al. 2022's DPM-Solver++(1) = DDIM, plus ancestral noise),
    and x_next = α_next·x̃_next. Used by dpmpp_sde for both of its stages.
    """
    alpha, alpha_next = 1 - sigma, 1 - sigma_next
    ve_sigma, ve_sigma_next = sigma / alpha, sigma_next / alpha_next
    ve_down, ve_up = ve_ancestral_step(ve_sigma, ve_sigma_next, eta)
    # Coefficients first, in double precision: near σ = 1, x/α alone would be large.
    keep = ve_down / ve_sigma
    x_next = (alpha_next * keep / alpha) * x + (alpha_next * (1 - keep)) * denoised
    if ve_up > 0 and s_noise > 0:
        x_next = x_next + noise(sigma, sigma_next) * (alpha_next * ve_up * s_noise)
    return x_next


def euler(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """Euler steps on dx/dσ = (x − D)/σ: Karras et al. 2022, Algorithm 2 without churn. Order 1."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        x = x + to_d(x, sigma, denoised) * (sigma_next - sigma)
    return x


def euler_ancestral(
    x: torch.Tensor, sigmas: Sequence[float], noise: NoiseSampler, eta: float = 1.0, s_noise: float = 1.0
) -> Solver:
    """Euler down to σ_down, then the rectified-flow ancestral noise step up to σ_next (`rf_ancestral_step`)."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        sigma_down, alpha_ratio, sigma_up = rf_ancestral_step(sigma, sigma_next, eta)
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        if sigma_up > 0 and s_noise > 0:
            x = alpha_ratio * x + noise(sigma, sigma_next) * (sigma_up * s_noise)
    return x


def heun(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """Heun's method, Karras et al. 2022, Algorithm 2 without churn: Euler predictor, then the mean of the two
    slopes. The step to σ = 0 is an Euler step (the slope there, (x − D)/0, is undefined). Order 2."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        d = to_d(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
            continue
        x_2, denoised_2 = yield x + d * (sigma_next - sigma), sigma_next
        d_2 = to_d(x_2, sigma_next, denoised_2)
        x = x + (d + d_2) / 2 * (sigma_next - sigma)
    return x


def dpm2(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """The midpoint method with the midpoint in log σ (σ_mid = √(σ·σ_next)): k-diffusion's sample_dpm_2, after
    DPM-Solver-2 (Lu et al. 2022, Algorithm 1 with r = 1/2). Euler on the step to σ = 0. Order 2."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        d = to_d(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
            continue
        sigma_mid = math.sqrt(sigma * sigma_next)
        x_2, denoised_2 = yield x + d * (sigma_mid - sigma), sigma_mid
        x = x + to_d(x_2, sigma_mid, denoised_2) * (sigma_next - sigma)
    return x


def dpm2_ancestral(
    x: torch.Tensor, sigmas: Sequence[float], noise: NoiseSampler, eta: float = 1.0, s_noise: float = 1.0
) -> Solver:
    """dpm2 down to σ_down, then the rectified-flow ancestral noise step (ComfyUI's sample_dpm_2_ancestral_RF)."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        d = to_d(x, sigma, denoised)
        sigma_down, alpha_ratio, sigma_up = rf_ancestral_step(sigma, sigma_next, eta)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigma)
            continue
        sigma_mid = math.sqrt(sigma * sigma_down)
        x_2, denoised_2 = yield x + d * (sigma_mid - sigma), sigma_mid
        x = x + to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigma)
        if sigma_up > 0 and s_noise > 0:
            x = alpha_ratio * x + noise(sigma, sigma_next) * (sigma_up * s_noise)
    return x


def identity_time(sigma):
    """Interpolate in σ itself (LMS)."""
    return sigma


# DEIS's time for an EDM noise level: the VP diffusion σ(t) = √(exp(β_d·t²/2 + β_min·t) − 1) fitted so that
# σ(ε_s) = 0.002 and σ(1) = 80 (Karras et al. 2022's VP settings, as ComfyUI's sample_deis assumes for any model).
DEIS_SIGMA_MIN, DEIS_SIGMA_MAX, DEIS_EPSILON = 0.002, 80.0, 1e-3
_LOG_TOP, _LOG_BOTTOM = math.log1p(DEIS_SIGMA_MAX**2), math.log1p(DEIS_SIGMA_MIN**2)
DEIS_BETA_D = 2 * (_LOG_BOTTOM / DEIS_EPSILON - _LOG_TOP) / (DEIS_EPSILON - 1)
DEIS_BETA_MIN = _LOG_TOP - DEIS_BETA_D / 2


def deis_time(sigma):
    """t(σ) = (√(β_min² + 2·β_d·log(1 + σ²)) − β_min)/β_d, the inverse of the VP σ(t) above."""
    return (np.sqrt(DEIS_BETA_MIN**2 + 2 * DEIS_BETA_D * np.log1p(np.square(sigma))) - DEIS_BETA_MIN) / DEIS_BETA_D


def adams_bashforth_weights(past_sigmas: Sequence[float], sigma_next: float, time=identity_time) -> list[float]:
    """w_j = ∫ from σ_i to σ_next of ℓ_j(t(s)) ds, for the past noise levels σ_i, σ_i−1, … (newest first).

    ℓ_j is the Lagrange basis polynomial on the times t(σ_i), t(σ_i−1), …, so that x_next = x_i + Σ_j w_j·d_i−j
    integrates the polynomial through the past slopes: variable-step Adams–Bashforth (Hairer et al. 1993,
    §III.1) when t is σ itself, DEIS's tAB (Zhang & Chen 2022, eq. 15) when t is its diffusion time.
    """
    nodes, node_weights = np.polynomial.legendre.leggauss(QUADRATURE_POINTS)
    sigma = past_sigmas[0]
    half_width = (sigma_next - sigma) / 2
    times_between = time(sigma + half_width * (nodes + 1))
    past_times = [float(time(past)) for past in past_sigmas]
    weights = []
    for j, time_j in enumerate(past_times):
        basis = np.ones_like(times_between)
        for k, time_k in enumerate(past_times):
            if k != j:
                basis = basis * (times_between - time_k) / (time_j - time_k)
        weights.append(float(half_width * np.sum(node_weights * basis)))
    return weights


def adams_bashforth(x: torch.Tensor, sigmas: Sequence[float], max_order: int, time=identity_time) -> Solver:
    """Multistep steps x_next = x + Σ_j w_j·d_i−j over the last `max_order` slopes (fewer at the start)."""
    past_sigmas, past_slopes = [], []  # newest first
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        past_sigmas = [sigma, *past_sigmas][:max_order]
        past_slopes = [to_d(x, sigma, denoised), *past_slopes][:max_order]
        if sigma_next == 0:
            x = denoised
            continue
        weights = adams_bashforth_weights(past_sigmas, sigma_next, time)
        x = x + sum(weight * slope for weight, slope in zip(weights, past_slopes))
    return x


def lms(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """Linear multistep (k-diffusion sample_lms): Adams–Bashforth in σ over up to 4 past slopes. Order 4 on the
    steps it takes, but it starts with one Euler step, whose O(h²) error stays in the result."""
    return (yield from adams_bashforth(x, sigmas, 4))


def deis(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """tAB-DEIS of order 3 (Zhang & Chen 2022, eq. 15) as ComfyUI runs it on any model: σ read as an EDM noise
    level, slopes interpolated by a polynomial in its VP time t(σ). For a velocity model the exponential
    integrator has no linear part left to solve exactly, so this is Adams–Bashforth whose interpolation
    variable is t(σ) rather than σ: what sets it apart from lms is that variable and the order."""
    return (yield from adams_bashforth(x, sigmas, 3, deis_time))


# iPNDM's fixed Adams–Bashforth weights for 1 to 4 slopes, newest first (Zhang & Chen 2022, §4 and App. B).
IPNDM_WEIGHTS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def ipndm(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """Improved PNDM (Zhang & Chen 2022, §4): Adams–Bashforth with the constant-step weights of order 1 to 4,
    warming up with the lower orders instead of PNDM's Runge–Kutta steps. The weights assume equal steps in σ:
    on an uneven grid (a shifted flow schedule) its order falls below 4."""
    past_slopes = []  # newest first
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        past_slopes = [to_d(x, sigma, denoised), *past_slopes][:4]
        if sigma_next == 0:
            x = denoised
            continue
        slope = sum(weight * d for weight, d in zip(IPNDM_WEIGHTS[len(past_slopes)], past_slopes))
        x = x + slope * (sigma_next - sigma)
    return x


def dpmpp_2m(x: torch.Tensor, sigmas: Sequence[float]) -> Solver:
    """DPM-Solver++(2M), Lu et al. 2022, Algorithm 2, in t = −log σ as k-diffusion and ComfyUI run it.

    With h = log(σ/σ_next) and r = h_last/h: D' = (1 + 1/(2r))·D − 1/(2r)·D_last (D alone on the first step),
    x_next = (σ_next/σ)·x + (1 − σ_next/σ)·D', exact when D is constant. The step to σ = 0 is x = D. Order 2.
    """
    denoised_last, h_last = None, None
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma / sigma_next)
        extrapolated = denoised
        if denoised_last is not None:
            r = h_last / h
            extrapolated = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_last
        x = (sigma_next / sigma) * x + (1 - sigma_next / sigma) * extrapolated
        denoised_last, h_last = denoised, h
    return x


def dpmpp_2s_ancestral(
    x: torch.Tensor, sigmas: Sequence[float], noise: NoiseSampler, eta: float = 1.0, s_noise: float = 1.0
) -> Solver:
    """DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1) to σ_down, then the rectified-flow ancestral noise step,
    as ComfyUI's sample_dpmpp_2s_ancestral_RF: the intermediate point is the midpoint in λ between σ and
    σ_down, and both sub-steps use the first-order form x' = (σ'/σ)·x + (1 − σ'/σ)·D."""
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        sigma_down, alpha_ratio, sigma_up = rf_ancestral_step(sigma, sigma_next, eta)
        if sigma_down == 0:
            x = denoised
            continue
        sigma_s = sigma_at((half_log_snr(sigma) + half_log_snr(sigma_down)) / 2)
        _, denoised_s = yield (sigma_s / sigma) * x + (1 - sigma_s / sigma) * denoised, sigma_s
        x = (sigma_down / sigma) * x + (1 - sigma_down / sigma) * denoised_s
        if sigma_up > 0 and s_noise > 0:
            x = alpha_ratio * x + noise(sigma, sigma_next) * (sigma_up * s_noise)
    return x


def dpmpp_sde(
    x: torch.Tensor,
    sigmas: Sequence[float],
    noise: NoiseSampler,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 1 / 2,
) -> Solver:
    """Stochastic DPM-Solver++ with one intermediate stage (k-diffusion/ComfyUI sample_dpmpp_sde), in λ.

    Stage 1: an ancestral first-order step from σ to σ_s, where λ_s = λ + r·h and h = λ_next − λ. Stage 2: from
    σ to σ_next with D' = (1 − 1/(2r))·D + 1/(2r)·D_s (Lu et al. 2022's 2S combination). Both stages add
    ancestral noise (`ancestral_first_order_step`); with a Brownian-tree sampler the two draws are increments
    of one Brownian path. The step to σ = 0 is x = D.
    """
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        if sigma_next == 0:
            x = denoised
            continue
        lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
        sigma_s = sigma_at(lam + r * (lam_next - lam))
        x_s = ancestral_first_order_step(x, denoised, sigma, sigma_s, eta, s_noise, noise)
        _, denoised_s = yield x_s, sigma_s
        combined = (1 - 1 / (2 * r)) * denoised + 1 / (2 * r) * denoised_s
        x = ancestral_first_order_step(x, combined, sigma, sigma_next, eta, s_noise, noise)
    return x


def dpmpp_2m_sde(
    x: torch.Tensor, sigmas: Sequence[float], noise: NoiseSampler, eta: float = 1.0, s_noise: float = 1.0
) -> Solver:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022), midpoint variant, as k-diffusion/ComfyUI sample_dpmpp_2m_sde.

    With h = λ_next − λ and α_next = 1 − σ_next:
        x_next = (σ_next/σ)·e^(−ηh)·x + α_next·(1 − e^(−(1+η)h))·D
                 + ½·α_next·(1 − e^(−(1+η)h))·(D − D_last)/r            (from the second step, r = h_last/h)
                 + σ_next·√(1 − e^(−2ηh))·z.
    At η = 0 this is DPM-Solver++(2M) in λ. The step to σ = 0 is x = D.
    """
    denoised_last, h_last = None, None
    for sigma, sigma_next in steps(sigmas):
        x, denoised = yield x, sigma
        if sigma_next == 0:
            x = denoised
            continue
        h = half_log_snr(sigma_next) - half_log_snr(sigma)
        signal = (1 - sigma_next) * -math.expm1(-h * (eta + 1))
        x = (sigma_next / sigma * math.exp(-eta * h)) * x + signal * denoised
        if denoised_last is not None:
            x = x + (signal / 2 * h / h_last) * (denoised - denoised_last)
        if eta > 0 and s_noise > 0:
            x = x + noise(sigma, sigma_next) * (sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise)
        denoised_last, h_last = denoised, h
    return x


SOLVERS = {
    "euler": euler,
    "euler_ancestral": euler_ancestral,
    "heun": heun,
    "dpm2": dpm2,
    "dpm2_ancestral": dpm2_ancestral,
    "lms": lms,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2s_ancestral": dpmpp_2s_ancestral,
    "dpmpp_sde": dpmpp_sde,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "ipndm": ipndm,
    "deis": deis,
}


# λ-based methods cannot start at σ = 1 (λ = −∞). As ComfyUI does (offset_first_sigma_for_snr, percent 1e-4), the
# first σ becomes 1 − 1e-4 (λ ≈ −9.2): the model is evaluated there and the pure-noise sample is taken to be
# at that level, an error of order 1e-4 that no step count removes.
SIGMA_ONE_OFFSET = 1e-4


def grid_for(method: str, sigmas: Sequence[float]) -> list[float]:
    """The grid the method runs on: `sigmas`, with a first σ of 1 moved inward for the λ-based methods."""
    grid = [float(sigma) for sigma in sigmas]
    if METHODS[method].uses_log_snr and grid and grid[0] >= 1:
        grid[0] = 1 - SIGMA_ONE_OFFSET
    return grid


def start(
    method: str,
    x: torch.Tensor,
    sigmas: Sequence[float],
    noise: NoiseSampler = no_noise,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Solver:
    """The solver `method` set up on the grid `sigmas` (N + 1 values, the last 0), not yet started."""
    if METHODS[method].stochastic:
        return SOLVERS[method](x, list(sigmas), noise, eta=eta, s_noise=s_noise)
    return SOLVERS[method](x, list(sigmas))


def solve(
    method: str,
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: Sequence[float],
    noise: NoiseSampler = no_noise,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Run a solver k-diffusion style, the loop in our hands: denoiser(x, σ) gives D at every evaluation.

    The grid goes through `grid_for` first, as the scheduler's does.
    """
    solver = start(method, x, grid_for(method, sigmas), noise, eta, s_noise)
    try:
        x_eval, sigma = next(solver)
        while True:
            x_eval, sigma = solver.send((x_eval, denoiser(x_eval, sigma)))
    except StopIteration as done:
        return done.value


def zero_noise(sigma: float, sigma_next: float) -> float:
    """For the dry run: a zero that every stochastic solver can add to its sample."""
    return 0.0


def evaluation_sigmas(method: str, sigmas: Sequence[float], eta: float = 1.0) -> list[float]:
    """The σ of every model evaluation the method makes on this grid, in order.

    A dry run on a one-element zero sample: which σ a solver asks for depends on the grid and η only, never
    on the sample, so the scheduler can list its timesteps before the pipeline's first model call.
    """
    asked = []

    def record(x_eval: torch.Tensor, sigma: float) -> torch.Tensor:
        asked.append(sigma)
        return torch.zeros_like(x_eval)

    solve(method, record, torch.zeros(1, dtype=torch.float64), sigmas, zero_noise, eta)
    return asked
