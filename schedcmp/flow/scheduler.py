"""FlowSamplerScheduler: every solver in solvers.py as a diffusers scheduler for flow-matching pipelines.

    pipe.scheduler = FlowSamplerScheduler.from_config(pipe.scheduler.config, method="heun")

It takes a FlowMatchEulerDiscreteScheduler config as it is and follows the pipeline's own σ grid: an internal
FlowMatchEulerDiscreteScheduler built from the same config makes the grid from the pipeline's
num_inference_steps, `sigmas`, `mu` and shift, so `method="euler"` with `schedule="default"` is that scheduler.
A diffusers pipeline calls the model once per entry of `timesteps` and then `step`; a method that needs two
model calls per step lists both (like HeunDiscreteScheduler's 2N − 1 timesteps), and `step` hands each
model output to the solver, which asks for the next evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, logging

from schedcmp.flow import noise, schedules, solvers
from schedcmp.flow.catalog import METHODS, SCHEDULES, MethodName, ScheduleName

logger = logging.get_logger(__name__)

# The config keys FlowMatchEulerDiscreteScheduler takes: they build the internal scheduler that makes the grid.
FLOW_MATCH_KEYS = (
    "num_train_timesteps",
    "shift",
    "use_dynamic_shifting",
    "base_shift",
    "max_shift",
    "base_image_seq_len",
    "max_image_seq_len",
    "invert_sigmas",
    "shift_terminal",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "time_shift_type",
    "stochastic_sampling",
)


@dataclass
class FlowSamplerSchedulerOutput(BaseOutput):
    """prev_sample: where the pipeline evaluates the model next (the final sample after the last step).
    pred_original_sample: the denoised prediction D = x − σ·v at this evaluation."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


@dataclass(frozen=True)
class Evaluation:
    """One model call: at noise level `sigma`, stage `stage` of grid step `step`, the pipeline's `timestep`."""

    sigma: float
    timestep: float
    step: int
    stage: int


def check_options(method: str, schedule: str, eta: float, s_noise: float, invert_sigmas: bool) -> None:
    """Refuse settings the scheduler cannot honour, when it is built rather than half way through a run."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not 0 <= eta <= 1:
        # Above 1 the rectified-flow ancestral step would aim below σ = 0.
        raise ValueError(f"eta must lie in [0, 1], not {eta}")
    if s_noise < 0:
        raise ValueError(f"s_noise must not be negative, not {s_noise}")
    if invert_sigmas:
        raise ValueError("invert_sigmas (Mochi's inverted schedule, ending at σ = 1) is not supported")


class FlowSamplerScheduler(SchedulerMixin, ConfigMixin):
    """k-diffusion's solvers (Euler, Heun, DPM++, LMS, DEIS, …) for flow-matching models such as SD3 and FLUX.1.

    Args:
        num_train_timesteps … stochastic_sampling: FlowMatchEulerDiscreteScheduler's config, taken as it is, so
            `from_config(pipe.scheduler.config)` works and the pipeline's grid is followed. `invert_sigmas` must
            be false. `stochastic_sampling` is kept for the round trip but has no effect: the method decides
            whether noise is added (a warning says so when it is true).
        method: the solver (see `schedcmp.flow.METHODS`).
        schedule: "default" keeps the pipeline's grid; the others (see `schedcmp.flow.SCHEDULES`) replace it by
            ComfyUI's schedule of that name for the same number of steps and the same shift.
        eta: how much of each stochastic step's noise is refreshed, 0 (deterministic) to 1 (ancestral).
        s_noise: a factor on the added noise (1: the amount that keeps the marginals right).

    Noise comes from `set_generators` (one generator per image; schedcmp calls it with the run's generators),
    or from a `generator` given to `step`; with neither, from torch's global RNG, as diffusers' schedulers do.
    """

    _compatibles = ["FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"]
    order = 1  # per instance: the method's model calls per step

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: Literal["exponential", "linear"] = "exponential",
        stochastic_sampling: bool = False,
        method: MethodName = "euler",
        schedule: ScheduleName = "default",
        eta: float = 1.0,
        s_noise: float = 1.0,
    ):
        check_options(method, schedule, eta, s_noise, invert_sigmas)
        if stochastic_sampling:
            logger.warning("stochastic_sampling has no effect on FlowSamplerScheduler: the method decides the noise")
        self._base = FlowMatchEulerDiscreteScheduler(**{key: self.config[key] for key in FLOW_MATCH_KEYS})
        self.order = METHODS[method].evaluations_per_step
        self.init_noise_sigma = 1.0
        self.timesteps = self._base.timesteps
        self.sigmas = self._base.sigmas
        self.num_inference_steps = None
        self._grid: list[float] = []
        self._evaluations: list[Evaluation] = []
        self._generators: noise.Generators = None
        self._reset()

    def _reset(self) -> None:
        self._step_index = None
        self._begin_index = None
        self._solver = None

    @property
    def step_index(self) -> int | None:
        """The index in `timesteps` of the next model evaluation `step` expects."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first index the pipeline runs (set by `set_begin_index`; image-to-image starts part way)."""
        return self._begin_index

    @property
    def shift(self) -> float:
        return self._base.shift

    def set_shift(self, shift: float) -> None:
        self._base.set_shift(shift)

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index

    def set_generators(self, generators: noise.Generators) -> None:
        """The generators a stochastic method draws its noise from: one torch.Generator, or one per image.

        Call it before each pipeline call with the generators that call is given: the pipeline draws the initial
        noise from them, and the steps' noise continues from the same streams, so a seed reproduces the run
        and an image made in a batch is the image made alone. set_timesteps keeps them.
        """
        if generators is not None and not isinstance(generators, torch.Generator):
            generators = list(generators)
            if not all(isinstance(generator, torch.Generator) for generator in generators):
                raise TypeError("set_generators takes a torch.Generator, a list of them, or None")
        self._generators = generators

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """Flow models take the sample as it is."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        """Lay out the run: the σ grid, then one timestep per model evaluation.

        The arguments mean what they mean to FlowMatchEulerDiscreteScheduler.set_timesteps, which makes the
        grid. A step's first evaluation is at its grid σ, with that scheduler's timestep there (the pipeline's
        own `timesteps` if it gave some); a second one, between grid points, at σ·num_train_timesteps.
        """
        self._base.set_timesteps(num_inference_steps, device="cpu", sigmas=sigmas, mu=mu, timesteps=timesteps)
        grid, grid_timesteps = self._grid_and_timesteps(mu)
        self._grid = grid
        self._evaluations = self._lay_out(grid, grid_timesteps)
        evaluation_sigmas = [evaluation.sigma for evaluation in self._evaluations]
        self.sigmas = torch.tensor(evaluation_sigmas + [0.0], dtype=torch.float32, device=device)
        self.timesteps = torch.tensor(
            [evaluation.timestep for evaluation in self._evaluations], dtype=torch.float32, device=device
        )
        self.num_inference_steps = len(grid) - 1
        self._reset()

    def _grid_and_timesteps(self, mu: float | None) -> tuple[list[float], list[float]]:
        """The N + 1 grid σ (the last 0) and the timesteps of its first N points."""
        base_sigmas = [float(sigma) for sigma in self._base.sigmas]
        if self.config.schedule == "default":
            grid, grid_timesteps = base_sigmas, [float(t) for t in self._base.timesteps]
        else:
            steps = len(base_sigmas) - 1
            grid = schedules.named(self.config.schedule, steps, self._warp(mu), self.config.num_train_timesteps)
            grid_timesteps = [sigma * self.config.num_train_timesteps for sigma in grid[:-1]]
        moved = solvers.grid_for(self.config.method, grid)
        if moved[0] != grid[0]:
            grid_timesteps = [moved[0] * self.config.num_train_timesteps, *grid_timesteps[1:]]
        return moved, grid_timesteps

    def _warp(self, mu: float | None):
        """The model's t -> σ: the time shift with μ under dynamic shifting, else the fixed shift."""
        if self.config.use_dynamic_shifting:
            shift_in_time = (
                schedules.exponential_time_shift
                if self.config.time_shift_type == "exponential"
                else schedules.linear_time_shift
            )
            return lambda t: shift_in_time(t, mu)
        return lambda t: schedules.sd3_shift(t, self._base.shift)

    def _lay_out(self, grid: list[float], grid_timesteps: list[float]) -> list[Evaluation]:
        """Every model evaluation of the run, from a dry run of the solver on this grid."""
        method = METHODS[self.config.method]
        layout = [
            (step, stage)
            for step, sigma_next in enumerate(grid[1:])
            for stage in range(method.evaluations_per_step if sigma_next > 0 else 1)
        ]
        asked = solvers.evaluation_sigmas(self.config.method, grid, self.config.eta)
        first_stages_on_grid = all(sigma == grid[step] for sigma, (step, stage) in zip(asked, layout) if stage == 0)
        if len(asked) != len(layout) or not first_stages_on_grid:
            raise RuntimeError(f"{self.config.method} asked for evaluations its catalog entry does not describe")
        scale = self.config.num_train_timesteps
        return [
            Evaluation(sigma, grid_timesteps[step] if stage == 0 else sigma * scale, step, stage)
            for sigma, (step, stage) in zip(asked, layout)
        ]

    def index_for_timestep(self, timestep: float | torch.Tensor, schedule_timesteps: torch.Tensor | None = None) -> int:
        """The index of `timestep` in `timesteps`; where it occurs twice (Heun's σ_next is the next step's σ), the
        one that begins a step, so that a run starting there does not begin half way through a step."""
        schedule_timesteps = self.timesteps if schedule_timesteps is None else schedule_timesteps
        matches = (schedule_timesteps == timestep).nonzero().flatten().tolist()
        if not matches:
            raise ValueError(f"timestep {float(timestep)} is not one of this run's timesteps")
        starting = [index for index in matches if self._evaluations[index].stage == 0]
        return (starting or matches)[0]

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self.begin_index is None:
            if isinstance(timestep, torch.Tensor):
                timestep = timestep.to(self.timesteps.device)
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def scale_noise(
        self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The forward process x_σ = σ·noise + (1 − σ)·sample at `timestep` (image-to-image's starting point)."""
        sigmas = self.sigmas.to(device=sample.device, dtype=sample.dtype)
        timestep = torch.as_tensor(timestep, device=self.timesteps.device).reshape(-1)
        if self.begin_index is None:
            indices = [self.index_for_timestep(t) for t in timestep]
        elif self.step_index is not None:
            indices = [self.step_index] * timestep.shape[0]  # inpainting, after the first step
        else:
            indices = [self.begin_index] * timestep.shape[0]
        sigma = sigmas[indices].flatten()
        while sigma.ndim < sample.ndim:
            sigma = sigma.unsqueeze(-1)
        return sigma * noise + (1.0 - sigma) * sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> FlowSamplerSchedulerOutput | tuple:
        """Hand the model's velocity at `sample` to the solver; return where it wants the model next.

        Computed in float32 (float64 for a float64 sample) and returned in the model output's dtype, as
        FlowMatchEulerDiscreteScheduler does. `generator` (one, or one per image) replaces the generators of
        `set_generators` for this run; it is read at the run's first step.
        """
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()):
            raise ValueError("pass one of scheduler.timesteps to step(), not an index")
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.step_index >= len(self._evaluations):
            raise IndexError(f"step() called more often than there are timesteps ({len(self._evaluations)})")
        evaluation = self._evaluations[self.step_index]
        working = torch.float64 if sample.dtype == torch.float64 else torch.float32
        x = sample.to(working)
        denoised = x - evaluation.sigma * model_output.to(working)
        if self._solver is None:
            self._start_solver(x, generator)
        prev_sample = self._advance(x, denoised).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return FlowSamplerSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised.to(model_output.dtype))

    def _start_solver(self, x: torch.Tensor, generator: noise.Generators) -> None:
        evaluation = self._evaluations[self.step_index]
        if evaluation.stage != 0:
            raise ValueError(
                f"the run begins at timestep index {self.step_index}, the middle of a {self.config.method} step"
            )
        method = METHODS[self.config.method]
        generators = generator if generator is not None else self._generators
        noise_sampler = noise.sampler_for(method.noise, x, generators) if method.stochastic else noise.no_noise
        self._solver = solvers.start(
            self.config.method, x, self._grid[evaluation.step :], noise_sampler, self.config.eta, self.config.s_noise
        )
        next(self._solver)  # its first request is this very evaluation, which the pipeline has made

    def _advance(self, x: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
        try:
            x_next, sigma_next = self._solver.send((x, denoised))
        except StopIteration as done:
            self._solver = None
            return done.value
        expected = self._evaluations[self.step_index + 1].sigma
        if not math.isclose(sigma_next, expected, rel_tol=1e-12, abs_tol=1e-15):
            raise RuntimeError(f"the solver asked for σ = {sigma_next}, the timesteps say {expected}")
        return x_next
