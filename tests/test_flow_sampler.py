"""schedcmp.flow, the k-diffusion solvers for flow-matching models, checked three ways.

Against diffusers' own loop on tiny SD3 (with T5) and FLUX.1 pipelines: `euler` is FlowMatchEulerDiscreteScheduler,
every method runs inside the real pipelines, seeds reproduce stochastic runs and batches equal single images.
Against theory, on a flow model whose answer is known exactly (Gaussian data, analytic_flow.py): each deterministic
solver converges at the order it should, and each stochastic one ends with the data's mean and variance. Against
diffusers' native flow versions of DPM++ 2M, UniPC and DEIS: both converge; the figures are printed.

Run with -s to see the tables.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from dataclasses import dataclass

import analytic_flow as af
import numpy as np
import pytest
import torch

from schedcmp.flow import METHODS, SCHEDULES, schedules, solvers
from schedcmp.flow.scheduler import FlowSamplerScheduler
from schedcmp.quality.metrics import fit_order

DETERMINISTIC = [name for name, method in METHODS.items() if not method.stochastic]
STOCHASTIC = [name for name, method in METHODS.items() if method.stochastic]


@dataclass
class TinyPipeline:
    pipe: object
    scheduler_config: dict  # the config the pipeline came with


def load(folder) -> TinyPipeline:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return TinyPipeline(pipe, dict(pipe.scheduler.config))


@pytest.fixture(scope="module")
def pipelines(sd3_t5_model, flux_model) -> dict[str, TinyPipeline]:
    return {"sd3": load(sd3_t5_model), "flux": load(flux_model)}


def generate(tiny_pipe: TinyPipeline, scheduler, seeds=(0,), steps: int = 5, **options) -> np.ndarray:
    """One pipeline call, one fresh generator per image, given to the scheduler too (as schedcmp does)."""
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    if isinstance(scheduler, FlowSamplerScheduler):
        scheduler.set_generators(generators)
    tiny_pipe.pipe.scheduler = scheduler
    result = tiny_pipe.pipe(
        "a red cube",
        num_images_per_prompt=len(seeds),
        generator=generators[0] if len(seeds) == 1 else generators,
        num_inference_steps=steps,
        height=32,
        width=32,
        output_type="np",
        **options,
    )
    return result.images


def flow_sampler(tiny_pipe: TinyPipeline, method: str, **options) -> FlowSamplerScheduler:
    return FlowSamplerScheduler.from_config(tiny_pipe.scheduler_config, method=method, **options)


# --- against diffusers' own loop -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_euler_is_flow_match_euler(pipelines, name):
    from diffusers import FlowMatchEulerDiscreteScheduler

    tiny_pipe = pipelines[name]
    reference = generate(tiny_pipe, FlowMatchEulerDiscreteScheduler.from_config(tiny_pipe.scheduler_config), steps=6)
    euler = generate(tiny_pipe, flow_sampler(tiny_pipe, "euler"), steps=6)
    heun = generate(tiny_pipe, flow_sampler(tiny_pipe, "heun"), steps=6)
    assert np.abs(euler - reference).max() <= 1 / 255
    # The tolerance is not vacuous: another solver on the same grid is told apart.
    assert np.abs(heun - reference).max() > 1 / 255


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_every_method_runs_in_the_pipeline(pipelines, name, method):
    scheduler = flow_sampler(pipelines[name], method)
    images = generate(pipelines[name], scheduler, steps=4)
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    evaluations = 4 + (METHODS[method].evaluations_per_step - 1) * 3  # the step to σ = 0 takes one
    assert scheduler.order == METHODS[method].evaluations_per_step
    assert len(scheduler.timesteps) == evaluations
    assert scheduler.step_index == evaluations  # the pipeline stepped once per timestep, to the end


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_from_config_round_trips(pipelines, name):
    from diffusers import FlowMatchEulerDiscreteScheduler

    original = {key: value for key, value in pipelines[name].scheduler_config.items() if not key.startswith("_")}
    for method in METHODS:
        ours = FlowSamplerScheduler.from_config(pipelines[name].scheduler_config, method=method, schedule="beta")
        assert {key: ours.config[key] for key in original} == original
        assert (ours.config.method, ours.config.schedule) == (method, "beta")
        again = FlowSamplerScheduler.from_config(ours.config)
        assert public(again.config) == public(ours.config)
        back = FlowMatchEulerDiscreteScheduler.from_config(ours.config)
        assert {key: back.config[key] for key in original} == original
    assert FlowMatchEulerDiscreteScheduler in ours.compatibles


def public(config) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def test_image_to_image_starts_at_a_step(pipelines):
    """SD3 image-to-image starts part way (set_begin_index, scale_noise): euler still equals FlowMatchEuler, and a
    two-call method starts on the first call of a step."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline

    tiny_pipe = pipelines["sd3"]
    img2img = TinyPipeline(StableDiffusion3Img2ImgPipeline(**tiny_pipe.pipe.components), tiny_pipe.scheduler_config)
    img2img.pipe.set_progress_bar_config(disable=True)
    picture = np.linspace(0, 1, 32 * 32 * 3, dtype=np.float32).reshape(1, 32, 32, 3)
    options = {"image": picture, "strength": 0.6, "steps": 5}
    reference = generate(img2img, FlowMatchEulerDiscreteScheduler.from_config(tiny_pipe.scheduler_config), **options)
    assert np.abs(generate(img2img, flow_sampler(img2img, "euler"), **options) - reference).max() <= 1 / 255
    heun = flow_sampler(img2img, "heun")
    assert np.isfinite(generate(img2img, heun, **options)).all()
    assert heun.begin_index == 2 * 2 and heun.step_index == len(heun.timesteps)  # t_start = 2 of 5 steps


# --- the pieces on their own ---------------------------------------------------------------------------------


def test_importing_the_package_does_not_import_torch():
    code = "import sys, schedcmp.flow as f; f.METHODS; f.SCHEDULES; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_shifts_are_diffusers_shifts():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    ts = [1.0, 0.8, 0.55, 0.3, 0.1]
    cases = [
        ({"shift": 3.0}, {}, lambda t: schedules.sd3_shift(t, 3.0)),
        ({"use_dynamic_shifting": True}, {"mu": 0.8}, lambda t: schedules.exponential_time_shift(t, 0.8)),
        (
            {"use_dynamic_shifting": True, "time_shift_type": "linear"},
            {"mu": 1.3},
            lambda t: schedules.linear_time_shift(t, 1.3),
        ),
    ]
    for config, arguments, warp in cases:
        scheduler = FlowMatchEulerDiscreteScheduler(**config)
        scheduler.set_timesteps(sigmas=ts, **arguments)
        assert scheduler.sigmas[:-1].tolist() == pytest.approx([warp(t) for t in ts], rel=1e-6)
    for tokens in (64, 256, 1024, 4096, 6000):
        assert schedules.calculate_shift(tokens) == pytest.approx(calculate_shift(tokens))


def test_schedule_formulas():
    warp = functools.partial(schedules.sd3_shift, shift=3.0)
    unwarp = functools.partial(schedules.sd3_shift, shift=1 / 3)  # the shift's inverse is the shift by 1/s
    sigma_min = warp(1 / 1000)
    for name in set(SCHEDULES) - {"default"}:
        grid = schedules.named(name, 10, warp)
        assert grid[0] == pytest.approx(1.0) and grid[-1] == 0.0, name
        assert all(a > b for a, b in zip(grid, grid[1:])), name
    karras = schedules.named("karras", 10, warp)[:-1]
    assert len(karras) == 10 and karras[-1] == pytest.approx(sigma_min)
    assert np.diff(np.power(karras, 1 / 7)) == pytest.approx(np.full(9, (sigma_min ** (1 / 7) - 1) / 9))
    exponential = schedules.named("exponential", 10, warp)[:-1]
    assert np.diff(np.log(exponential)) == pytest.approx(np.full(9, math.log(sigma_min) / 9))
    # simple is FLUX's own grid (t = 1 − i/N) when N divides the table, and table entries when it does not
    assert schedules.simple(10, warp)[:-1] == pytest.approx([warp(1 - i / 10) for i in range(10)])
    assert all(abs(unwarp(s) * 1000 - round(unwarp(s) * 1000)) < 1e-6 for s in schedules.simple(7, warp))
    sgm = [unwarp(s) for s in schedules.sgm_uniform(10, warp)[:-1]]
    assert np.diff(sgm) == pytest.approx(np.full(9, -(1 - sigma_min) / 10))
    beta = [unwarp(s) for s in schedules.beta(10, warp)[:-1]]
    gaps = -np.diff(beta)
    assert len(beta) == 10 and gaps[0] < gaps[4] and gaps[-1] < gaps[4]  # U-shaped: dense at both ends
    assert len(schedules.beta(400, warp)) < 401  # quantiles landing on one table entry count once


def test_the_scheduler_uses_the_named_schedule():
    for name in set(SCHEDULES) - {"default"}:
        scheduler = FlowSamplerScheduler(shift=3.0, schedule=name)
        scheduler.set_timesteps(10)
        expected = schedules.named(name, 10, functools.partial(schedules.sd3_shift, shift=3.0))
        assert scheduler.sigmas.tolist() == pytest.approx(expected, rel=1e-6), name
        assert scheduler.timesteps.tolist() == pytest.approx([s * 1000 for s in expected[:-1]], rel=1e-6)
    dynamic = FlowSamplerScheduler(use_dynamic_shifting=True, schedule="karras")
    dynamic.set_timesteps(sigmas=np.linspace(1, 0.1, 10), mu=0.9)
    assert dynamic.sigmas[-2].item() == pytest.approx(schedules.exponential_time_shift(1 / 1000, 0.9), rel=1e-5)


def test_one_timestep_per_model_call():
    heun = FlowSamplerScheduler(shift=3.0, method="heun")
    heun.set_timesteps(5)
    grid = heun._base.sigmas.tolist()
    assert heun.sigmas.tolist() == pytest.approx([grid[0], *[sigma for sigma in grid[1:5] for _ in (0, 1)], 0])
    assert heun.timesteps.tolist() == pytest.approx([s * 1000 for s in heun.sigmas.tolist()[:-1]])
    assert heun.index_for_timestep(heun.timesteps[1]) == 2  # where σ_1 occurs twice: the call that begins a step
    dpm2 = FlowSamplerScheduler(shift=3.0, method="dpm2")
    dpm2.set_timesteps(5)
    assert dpm2.sigmas[1].item() == pytest.approx(math.sqrt(grid[0] * grid[1]), rel=1e-6)
    sde = FlowSamplerScheduler(shift=3.0, method="dpmpp_sde")
    sde.set_timesteps(5)
    assert sde.timesteps[0].item() == pytest.approx((1 - solvers.SIGMA_ONE_OFFSET) * 1000)
    midpoint = solvers.sigma_at((solvers.half_log_snr(1 - 1e-4) + solvers.half_log_snr(grid[1])) / 2)
    assert sde.sigmas[1].item() == pytest.approx(midpoint, rel=1e-6)


def test_refusals():
    with pytest.raises(ValueError, match="unknown method"):
        FlowSamplerScheduler(method="dpmpp_3m")
    with pytest.raises(ValueError, match="unknown schedule"):
        FlowSamplerScheduler(schedule="normal")
    with pytest.raises(ValueError, match="eta"):
        FlowSamplerScheduler(method="euler_ancestral", eta=1.5)
    with pytest.raises(ValueError, match="invert_sigmas"):
        FlowSamplerScheduler(invert_sigmas=True)
    heun = FlowSamplerScheduler(method="heun")
    heun.set_timesteps(4)
    heun.set_begin_index(1)  # the second call of the first step
    with pytest.raises(ValueError, match="middle of a heun step"):
        heun.step(torch.zeros(1, 4), heun.timesteps[1], torch.zeros(1, 4))
    with pytest.raises(TypeError):
        heun.set_generators([0, 1])


# --- on a flow model whose answer is known: Gaussian data ----------------------------------------------------


def test_the_exact_velocity_moves_along_the_exact_solution():
    """x(σ) = (1 − σ)·m + √V(σ)·z solves dx/dσ = v(x, σ): standardised coordinates stay constant on the ODE."""
    from scipy.integrate import solve_ivp

    mean, std = af.gaussian_data((64,))
    z = torch.randn(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sigma in np.linspace(0.02, 0.98, 13):
        step = 1e-5
        slope = (af.solution(z, sigma + step, mean, std) - af.solution(z, sigma - step, mean, std)) / (2 * step)
        assert torch.allclose(slope, af.velocity(af.solution(z, sigma, mean, std), sigma, mean, std), atol=1e-7)

    def field(sigma, x):
        return af.velocity(torch.from_numpy(x), sigma, mean, std).numpy()

    ode = solve_ivp(field, (1.0, 0.0), z.numpy(), method="DOP853", rtol=1e-12, atol=1e-12)
    assert np.abs(ode.y[:, -1] - (mean + std * z).numpy()).max() < 1e-8


SHAPE = (4, 8, 8)
MEAN, STD = af.gaussian_data(SHAPE)
NOISE = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def run_exact(scheduler: FlowSamplerScheduler, x: torch.Tensor, mean=MEAN, std=STD) -> list[torch.Tensor]:
    """Drive the scheduler's own loop with the exact velocity; the samples it was evaluated at, and the last.

    The model is evaluated at the scheduler's σ rather than at timestep/1000, whose float32 rounding would
    put a floor near 1e-8 under the errors of the high-order methods.
    """
    evaluated = []
    for index, timestep in enumerate(scheduler.timesteps):
        evaluated.append(x)
        sigma = float(scheduler.sigmas[index])
        x = scheduler.step(af.velocity(x, sigma, mean, std), timestep, x).prev_sample
    return [*evaluated, x]


def rms(difference: torch.Tensor) -> float:
    return float(difference.pow(2).mean().sqrt())


# σ_i = 1 − 0.98·(i/(N−1))², i < N, then 0: the first steps are O(1/N²), so a multistep method's warm-up (an Euler
# step, whose O(h²) error would stay in the result and cap every method at order 2) is negligible; and the error
# is read at σ_N−1 = 0.02, before the last step to σ = 0 (x = D, an error of order σ_N−1² whatever the method).
ORDER_STEPS = (16, 32, 64, 128, 256)
# The band each fitted order must lie in, from theory.
ORDER_BANDS = {
    "euler": (0.9, 1.1),
    "heun": (1.85, 2.2),
    "dpm2": (1.85, 2.2),
    "lms": (3.4, 4.4),  # Adams–Bashforth with 4 slopes: 4 (the fit mixes in the warm-up at small N)
    "dpmpp_2m": (1.85, 2.3),
    "ipndm": (1.8, 2.5),  # 4 on even steps; its fixed weights make it 2 on an uneven grid such as this one
    "deis": (2.6, 3.3),  # 3 slopes: 3
}


def error_before_last_step(method: str, steps: int) -> tuple[int, float]:
    scheduler = FlowSamplerScheduler(shift=1.0, method=method)  # shift 1: the grid is the one given
    scheduler.set_timesteps(sigmas=[1 - 0.98 * (i / (steps - 1)) ** 2 for i in range(steps)])
    before_last_step = run_exact(scheduler, NOISE)[-2]
    sigma = float(scheduler.sigmas[-2])
    return len(scheduler.timesteps), rms(before_last_step - af.solution(NOISE, sigma, MEAN, STD))


@functools.cache
def measured_orders() -> dict:
    orders = {}
    for method in DETERMINISTIC:
        points = [error_before_last_step(method, steps) for steps in ORDER_STEPS]
        orders[method] = (fit_order([nfe for nfe, _ in points], [error for _, error in points]), points)
    return orders


def test_deterministic_methods_converge_at_their_order():
    print("\nmethod      fitted order (vs NFE)  band        errors at N =", ORDER_STEPS)
    outside = []
    for method, (fit, points) in measured_orders().items():
        low, high = ORDER_BANDS[method]
        errors = " ".join(f"{error:.1e}" for _, error in points)
        order = f"{fit.order or float('nan'):5.2f} (R² {fit.r_squared or 0:.4f})"
        print(f"{method:10s}  {order}  [{low}, {high}]  {errors}")
        if fit.order is None or not low <= fit.order <= high:
            outside.append((method, fit))
    assert not outside


def test_orders_through_a_real_pipeline(pipelines):
    """The SD3 pipeline with the exact velocity as its transformer, on its own (shift 3) grid, in float32."""
    tiny_pipe = pipelines["sd3"]
    exact = af.GaussianFlow(in_channels=4, sample_size=16)
    components = {**tiny_pipe.pipe.components, "transformer": exact}
    pipe = type(tiny_pipe.pipe)(**components)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    for method, (low, high) in {"euler": (0.9, 1.1), "heun": (1.8, 2.3)}.items():
        points = []
        for steps in (6, 12, 24, 48):
            pipe.scheduler = FlowSamplerScheduler.from_config(tiny_pipe.scheduler_config, method=method)
            seen = []

            def keep(pipe, index, timestep, tensors):
                seen.append(tensors["latents"])
                return tensors

            pipe(
                "x",
                num_inference_steps=steps,
                height=32,
                width=32,
                guidance_scale=1.0,
                latents=noise.clone(),
                output_type="latent",
                callback_on_step_end=keep,
            )
            expected = af.solution(noise.double(), float(pipe.scheduler.sigmas[-2]), exact.mean, exact.std)
            points.append((len(pipe.scheduler.timesteps), rms(seen[-2].double() - expected)))
        fit = fit_order([nfe for nfe, _ in points], [error for _, error in points])
        print(f"\n{method} through StableDiffusion3Pipeline: order {fit.order:.2f}", points)
        assert low <= fit.order <= high


# Enough steps that the solvers' own bias on the variance (Euler ancestral's is about 10/N here) is below the
# sampling error, and data no sharper than s = 0.5: this checks the size of the noise, not the solver's accuracy.
MOMENT_STEPS = {"gaussian": 1000, "brownian": 200}
MOMENT_IMAGES = {"gaussian": 256, "brownian": 128}
MOMENT_SHAPE = (4, 4, 4)


def standardised_samples(method: str, s_noise: float = 1.0) -> torch.Tensor:
    """(x − m)/s of the method's final samples: standard normal when the output has the data's distribution.

    Gaussian-noise methods get one generator per image (schedcmp's path); Brownian ones one generator for the
    batch, so one Brownian tree covers it (a tree per image costs a query each, which this many would not afford).
    """
    kind = METHODS[method].noise
    mean, std = af.gaussian_data(MOMENT_SHAPE, seed=1, lowest_std=0.5)
    scheduler = FlowSamplerScheduler(shift=3.0, method=method, s_noise=s_noise)
    scheduler.set_timesteps(MOMENT_STEPS[kind])
    images = MOMENT_IMAGES[kind]
    if kind == "gaussian":
        generators = [torch.Generator().manual_seed(seed) for seed in range(images)]
        noise = torch.stack([torch.randn(MOMENT_SHAPE, generator=g, dtype=torch.float64) for g in generators])
    else:
        generators = torch.Generator().manual_seed(0)
        noise = torch.randn((images, *MOMENT_SHAPE), generator=generators, dtype=torch.float64)
    scheduler.set_generators(generators)
    return ((run_exact(scheduler, noise, mean, std)[-1] - mean) / std).flatten()


def moments_within_sampling_error(samples: torch.Tensor) -> tuple[bool, str]:
    count = samples.numel()
    mean_error, variance_error = 1 / count**0.5, (2 / (count - 1)) ** 0.5
    mean, variance = float(samples.mean()), float(samples.var())
    text = f"mean {mean:+.4f} (±{4 * mean_error:.4f})  variance {variance:.4f} (1 ± {4 * variance_error:.4f})"
    return abs(mean) < 4 * mean_error and abs(variance - 1) < 4 * variance_error, text


@pytest.mark.parametrize("method", STOCHASTIC)
def test_stochastic_methods_end_with_the_data_distribution(method):
    within, text = moments_within_sampling_error(standardised_samples(method))
    print(f"\n{method}: {text}")
    assert within, text
    # The check can fail: 15% too little noise is caught.
    assert not moments_within_sampling_error(standardised_samples(method, s_noise=0.85))[0]


def exact_run(method: str, generators=None, step_generator=None) -> torch.Tensor:
    scheduler = FlowSamplerScheduler(shift=3.0, method=method)
    scheduler.set_timesteps(8)
    scheduler.set_generators(generators)
    x = NOISE.expand(2, *SHAPE).clone()
    for index, timestep in enumerate(scheduler.timesteps):
        velocity = af.velocity(x, float(scheduler.sigmas[index]), MEAN, STD)
        x = scheduler.step(velocity, timestep, x, generator=step_generator).prev_sample
    return x


@pytest.mark.parametrize("method", ["euler_ancestral", "dpmpp_2m_sde"])
def test_noise_without_set_generators(method):
    """A generator given to step() is used; with none at all, torch's global RNG is (as diffusers does)."""
    from_step = exact_run(method, step_generator=torch.Generator().manual_seed(5))
    assert torch.equal(from_step, exact_run(method, generators=torch.Generator().manual_seed(5)))
    torch.manual_seed(7)
    first = exact_run(method)
    torch.manual_seed(7)
    assert torch.equal(first, exact_run(method))
    assert not torch.equal(first, from_step)


@pytest.mark.parametrize("method", STOCHASTIC)
@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_seeds_reproduce_and_batches_equal_single_images(pipelines, name, method):
    tiny_pipe = pipelines[name]
    alone = generate(tiny_pipe, flow_sampler(tiny_pipe, method), seeds=(3,))
    torch.manual_seed(12345)  # the global RNG plays no part
    assert np.array_equal(generate(tiny_pipe, flow_sampler(tiny_pipe, method), seeds=(3,)), alone)
    other = generate(tiny_pipe, flow_sampler(tiny_pipe, method), seeds=(4,))
    batch = generate(tiny_pipe, flow_sampler(tiny_pipe, method), seeds=(3, 4))
    # Batched matrix products may round differently from single ones; misplaced noise would differ by far more.
    assert np.abs(batch[0] - alone[0]).max() < 1e-4 and np.abs(batch[1] - other[0]).max() < 1e-4
    # Same starting latents, other seed: what differs is the noise the steps added, drawn from the generator.
    latents = torch.randn(latent_shape(name), generator=torch.Generator().manual_seed(3))
    same_start = [
        generate(tiny_pipe, flow_sampler(tiny_pipe, method), seeds=(seed,), latents=latents) for seed in (3, 5)
    ]
    assert np.abs(same_start[0] - same_start[1]).max() > 1e-3


def latent_shape(name: str) -> tuple[int, ...]:
    """The initial latents of one 32×32 image: SD3's 4×16×16; FLUX's 16×16×16 packed 2×2 into 64 tokens of 64."""
    return (1, 4, 16, 16) if name == "sd3" else (1, 64, 64)


# --- against diffusers' native flow solvers ------------------------------------------------------------------

NATIVE_STEPS = (5, 10, 20, 40, 80)


def native_errors(scheduler_class) -> list[float]:
    errors = []
    for steps in NATIVE_STEPS:
        scheduler = scheduler_class(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
        scheduler.set_timesteps(steps)
        x = NOISE.clone()
        for timestep in scheduler.timesteps:
            x = scheduler.step(af.velocity(x, float(timestep) / 1000, MEAN, STD), timestep, x).prev_sample
        errors.append(rms(x - af.solution(NOISE, 0.0, MEAN, STD)))
    return errors


def flow_sampler_errors(method: str, grid_of=None) -> list[float]:
    """Errors of the flow sampler on SD3's own grid (shift 3), or on the grid of another scheduler class."""
    errors = []
    for steps in NATIVE_STEPS:
        if grid_of is None:
            scheduler = FlowSamplerScheduler(shift=3.0, method=method)
            scheduler.set_timesteps(steps)
            x = run_exact(scheduler, NOISE)[-1]
        else:
            native = grid_of(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
            native.set_timesteps(steps)
            denoiser = functools.partial(af.denoised, mean=MEAN, std=STD)
            x = solvers.solve(method, denoiser, NOISE, native.sigmas.double().tolist())
        errors.append(rms(x - af.solution(NOISE, 0.0, MEAN, STD)))
    return errors


def test_native_flow_solvers_and_ours_both_converge():
    from diffusers import DEISMultistepScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    rows = {
        "DPMSolverMultistep (flow, λ)": native_errors(DPMSolverMultistepScheduler),
        "dpmpp_2m on SD3's grid": flow_sampler_errors("dpmpp_2m"),
        "dpmpp_2m on DPMSolver's grid": flow_sampler_errors("dpmpp_2m", DPMSolverMultistepScheduler),
        "UniPCMultistep (flow)": native_errors(UniPCMultistepScheduler),
        "DEISMultistep (flow)": native_errors(DEISMultistepScheduler),
        "deis on SD3's grid": flow_sampler_errors("deis"),
    }
    print("\nRMS error against the exact x(0), N =", NATIVE_STEPS)
    for label, errors in rows.items():
        fit = fit_order(list(NATIVE_STEPS), errors)
        print(f"{label:30s}", " ".join(f"{error:.2e}" for error in errors), f" order {fit.order or float('nan'):.2f}")
        assert all(a > b for a, b in zip(errors, errors[1:])), label
        assert fit.order is not None and fit.order > 0.75, label
