"""What each flow-sampler method and σ schedule is: plain data, importable without torch.

`schedcmp --help` and the scheduler registry read these tables; the solvers and the scheduler read them too,
so a method's number of model calls per step and whether it draws noise are written down once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MethodName = Literal[
    "euler",
    "euler_ancestral",
    "heun",
    "dpm2",
    "dpm2_ancestral",
    "lms",
    "dpmpp_2m",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m_sde",
    "ipndm",
    "deis",
]
ScheduleName = Literal["default", "karras", "exponential", "beta", "simple", "sgm_uniform"]


@dataclass(frozen=True)
class Method:
    """One solver: what it does, how fast it converges, what one step costs, and where the formula comes from."""

    description: str
    convergence_order: int  # global order of the ODE solver (for ancestral/SDE methods: of their drift part)
    evaluations_per_step: int  # model calls in a step whose σ_next > 0; a step to σ = 0 always takes one
    noise: Literal["none", "gaussian", "brownian"]  # where a stochastic method's noise comes from
    uses_log_snr: bool  # steps in λ = log((1 − σ)/σ), so a first σ of 1 is moved inward (λ(1) = −∞)
    source: str

    @property
    def stochastic(self) -> bool:
        return self.noise != "none"


METHODS: dict[str, Method] = {
    "euler": Method(
        description="Euler steps on dx/dσ = (x − D)/σ, the flow's own velocity",
        convergence_order=1,
        evaluations_per_step=1,
        noise="none",
        uses_log_snr=False,
        source="Karras et al. 2022, Algorithm 2 without churn (k-diffusion sample_euler)",
    ),
    "euler_ancestral": Method(
        description="Euler down to σ_down, then rescale by α_next/α_down and add noise back up to σ_next",
        convergence_order=1,
        evaluations_per_step=1,
        noise="gaussian",
        uses_log_snr=False,
        source="Ho et al. 2020 ancestral sampling in the rectified-flow form of ComfyUI's sample_euler_ancestral_RF",
    ),
    "heun": Method(
        description="Heun's second-order method (Euler predictor, trapezoidal corrector); Euler on the step to σ = 0",
        convergence_order=2,
        evaluations_per_step=2,
        noise="none",
        uses_log_snr=False,
        source="Karras et al. 2022, Algorithm 2 without churn (k-diffusion sample_heun)",
    ),
    "dpm2": Method(
        description="Midpoint method with the midpoint taken in log σ; Euler on the step to σ = 0",
        convergence_order=2,
        evaluations_per_step=2,
        noise="none",
        uses_log_snr=False,
        source="Karras et al. 2022's k-diffusion sample_dpm_2, after DPM-Solver-2 (Lu et al. 2022, Algorithm 1)",
    ),
    "dpm2_ancestral": Method(
        description="dpm2 down to σ_down, then the rectified-flow ancestral noise step up to σ_next",
        convergence_order=2,
        evaluations_per_step=2,
        noise="gaussian",
        uses_log_snr=False,
        source="k-diffusion sample_dpm_2_ancestral in ComfyUI's rectified-flow form (sample_dpm_2_ancestral_RF)",
    ),
    "lms": Method(
        description="Linear multistep (variable-step Adams–Bashforth, up to 4 past derivatives, interpolated in σ)",
        convergence_order=4,
        evaluations_per_step=1,
        noise="none",
        uses_log_snr=False,
        source="k-diffusion sample_lms (Karras et al. 2022 codebase); Adams–Bashforth, Hairer et al. 1993 §III.1",
    ),
    "dpmpp_2m": Method(
        description="DPM-Solver++(2M): exponential integrator in t = −log σ, denoised extrapolated from the last step",
        convergence_order=2,
        evaluations_per_step=1,
        noise="none",
        uses_log_snr=False,
        source="Lu et al. 2022, DPM-Solver++, Algorithm 2 (k-diffusion/ComfyUI sample_dpmpp_2m)",
    ),
    "dpmpp_2s_ancestral": Method(
        description="DPM-Solver++(2S) to σ_down (midpoint in λ), then the rectified-flow ancestral noise step",
        convergence_order=2,
        evaluations_per_step=2,
        noise="gaussian",
        uses_log_snr=True,
        source="Lu et al. 2022, DPM-Solver++, Algorithm 1; ComfyUI sample_dpmpp_2s_ancestral_RF",
    ),
    "dpmpp_sde": Method(
        description="Stochastic DPM-Solver++ with a midpoint stage (r = 1/2) in λ; Brownian-tree noise",
        convergence_order=2,
        evaluations_per_step=2,
        noise="brownian",
        uses_log_snr=True,
        source="Lu et al. 2022, DPM-Solver++ (SDE form); k-diffusion/ComfyUI sample_dpmpp_sde",
    ),
    "dpmpp_2m_sde": Method(
        description="SDE-DPM-Solver++(2M), midpoint correction, in λ; Brownian-tree noise",
        convergence_order=2,
        evaluations_per_step=1,
        noise="brownian",
        uses_log_snr=True,
        source="Lu et al. 2022, DPM-Solver++ (SDE-DPM-Solver++(2M)); k-diffusion/ComfyUI sample_dpmpp_2m_sde",
    ),
    "ipndm": Method(
        description="Improved PNDM: fixed Adams–Bashforth weights of order 1 to 4, warmed up by the lower orders",
        convergence_order=4,
        evaluations_per_step=1,
        noise="none",
        uses_log_snr=False,
        source="Zhang & Chen 2022, DEIS, §4 (iPNDM) (ComfyUI sample_ipndm)",
    ),
    "deis": Method(
        description="tAB-DEIS: third-order Adams–Bashforth with derivatives interpolated in DEIS's VP time t(σ)",
        convergence_order=3,
        evaluations_per_step=1,
        noise="none",
        uses_log_snr=False,
        source="Zhang & Chen 2022, DEIS, eq. 15 (tAB); σ read as an EDM noise level, as ComfyUI's sample_deis does",
    ),
}

SCHEDULES: dict[str, str] = {
    "default": "the grid FlowMatchEulerDiscreteScheduler makes from the same config, sigmas and mu",
    "karras": "σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7 (Karras et al. 2022, eq. 5)",
    "exponential": "σ_i evenly spaced in log σ from σ_max to σ_min",
    "beta": "σ at the Beta(0.6, 0.6) quantiles of the model's σ table (Lee et al. 2024, arXiv:2407.12173)",
    "simple": "every (T/N)-th entry of the model's σ table, from the top (ComfyUI's simple)",
    "sgm_uniform": "σ(u_i), u evenly spaced from 1 towards σ_min read as a time, without the end point",
}
