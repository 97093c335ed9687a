"""Run one scheduler: a fresh scheduler and a seeded generator, one pipeline call, measured.

The sampler never prints or draws: progress leaves through the `on_step` callback, results as plain data.
"""

from __future__ import annotations

import hashlib
import inspect
import statistics
import functools
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from schedcmp.core.errors import Terminated
from schedcmp.core.names import flow_sampler_twin
from schedcmp.core.plan import RunSpec
from schedcmp.core.records import Status
from schedcmp.model.pipeline import LoadedModel, device_type, one_line
from schedcmp.model.schedulers import build, effective_overrides, scheduler_classes

# The status vocabulary is declared once, in schedcmp.core.records.
OK, FAILED, SUSPECT, FILTERED = Status.OK, Status.FAILED, Status.SUSPECT, Status.FILTERED
UNSUPPORTED = Status.UNSUPPORTED

# pipeline -> the image sizes it was warmed up at in this process: a warm pipeline needs no second warm-up.
_warmed: "weakref.WeakKeyDictionary[Any, set[tuple[int, int]]]" = weakref.WeakKeyDictionary()

# How far outside the training range a timestep may be before the run is suspect (float rounding).
TIMESTEP_SLACK = 0.5


@dataclass
class RunResult:
    """What one run produced and cost. Plain data: everything after sampling works without torch."""

    spec: RunSpec
    status: str = OK
    reason: str | None = None
    error: dict[str, str] | None = None
    nfe: int | None = None
    seconds: float | None = None
    seconds_all: list[float] = field(default_factory=list)
    denoiser_seconds: float | None = None
    peak_memory_bytes: int | None = None
    timesteps: tuple[float, float] | None = None  # (min, max) of what the denoiser was given
    sha256: str | None = None
    batch_size: int = 1  # images made by the same pipeline call
    batch_seconds: float | None = None  # that call's whole time; `seconds` is its share per image
    sigmas: list[float] | None = None  # the scheduler's noise levels, in order: what its schedule was

    @property
    def ms_per_nfe(self) -> float | None:
        if not self.nfe or self.denoiser_seconds is None:
            return None
        return 1000.0 * self.denoiser_seconds / self.nfe


@dataclass
class Sample:
    """One cell's run and what it made: the RGB image (H×W×3 uint8), the float output (H×W×C in [0, 1]) and
    the final latent (float32), each None where the run made none."""

    result: RunResult
    rgb: Any = None
    output: Any = None
    latent: Any = None


def pixel_sha256(rgb) -> str:
    """sha256 of decoded RGB pixels (H×W×3 uint8), not of PNG bytes, which differ between encoders."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest()


def judge_output(image, nsfw: bool) -> tuple[str, str | None]:
    """ok, or failed/filtered with the reason, from the float output (H×W×C in [0, 1])."""
    import numpy as np

    if not np.isfinite(image).all():
        return FAILED, "output has NaN or inf values"
    if nsfw:
        return FILTERED, "the safety checker blacked out this image"
    if float(np.ptp(image)) == 0.0:
        return FAILED, f"constant image (every pixel {float(image.flat[0]):.3f})"
    return OK, None


def timestep_problem(low: float, high: float, train_steps: int) -> str | None:
    """A reason to distrust a run whose denoiser was fed timesteps it was never trained on."""
    if low < -TIMESTEP_SLACK or high > train_steps + TIMESTEP_SLACK:
        return f"denoiser got timesteps {low:.2f}..{high:.2f}, outside its training range 0..{train_steps - 1}"
    return None


def peak_rss_reset() -> bool:
    """Reset the kernel's high-water mark of this process's resident memory (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """The resident-memory high-water mark since the last reset (VmHWM), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Sampler:
    """Runs schedulers on one loaded pipeline, counting and timing the denoiser's calls.

    On entry it hooks the denoiser (to count calls, time them and see their timesteps) and memoises the
    text encoders: the pipeline still encodes the prompt on every call, but the encoders compute each
    distinct input once, so the prompt costs once per process while every image stays exactly what the
    pipeline alone would give.
    """

    def __init__(self, model: LoadedModel, generator_device: str = "cpu"):
        self.model = model
        self.generator_device = generator_device
        self.classes = scheduler_classes()
        self.call_parameters = model.call_parameters
        self.calls = 0
        self.denoiser_seconds = 0.0
        self.timestep_low = float("inf")
        self.timestep_high = float("-inf")
        self.encoding_seconds = 0.0
        self.call_started = 0.0
        self.final_latents: Any = None  # what the last step of the latest call handed the decoder
        self.last_sigmas: list[float] | None = None  # the latest call's noise levels (noise_levels)
        self.last_scheduler: Any = None  # the latest call's scheduler, to tell why it failed (repeated_timestep)
        self.handles: list[Any] = []
        self.encoders: list[tuple[Any, Any]] = []  # (encoder, its own instance forward or None)
        self.had_progress_bar_config = False
        self.progress_bar_config: dict[str, Any] | None = None
        self.original_scheduler = model.pipe.scheduler

    # -- hooks ---------------------------------------------------------------------------------------

    def __enter__(self) -> "Sampler":
        """Hook the denoiser, memoise the text encoders and silence the pipeline's own progress bar."""
        pipe = self.model.pipe
        denoiser = self.model.denoiser
        self.had_progress_bar_config = "_progress_bar_config" in vars(pipe)
        self.progress_bar_config = dict(vars(pipe).get("_progress_bar_config", {}))
        try:
            self.handles.append(denoiser.register_forward_pre_hook(self.before_denoiser, with_kwargs=True))
            self.handles.append(denoiser.register_forward_hook(self.after_denoiser))
            for encoder in self.model.text_encoders:
                # An instance `forward` (someone's own wrapper) is kept to be put back; else none is left behind.
                self.encoders.append((encoder, vars(encoder).get("forward")))
                encoder.forward = self.memoised(encoder.forward)
            pipe.set_progress_bar_config(disable=True)
        except BaseException:  # half set up (even by Ctrl-C): undo what was done
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Leave the pipeline exactly as it was: scheduler, hooks, encoders and progress-bar setting."""
        pipe = self.model.pipe
        pipe.scheduler = self.original_scheduler
        if self.had_progress_bar_config:
            pipe._progress_bar_config = self.progress_bar_config
        else:
            vars(pipe).pop("_progress_bar_config", None)
        while self.handles:
            self.handles.pop().remove()
        while self.encoders:
            encoder, own_forward = self.encoders.pop()
            if own_forward is None:
                vars(encoder).pop("forward", None)  # the class's forward shows through again
            else:
                encoder.forward = own_forward

    def synchronise(self) -> None:
        import torch

        if device_type(self.model.device) == "cuda":
            torch.cuda.synchronize(self.model.device)
        elif device_type(self.model.device) == "mps":
            torch.mps.synchronize()

    def before_denoiser(self, module, args, kwargs):
        self.calls += 1
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if timestep is not None:
            import torch

            values = torch.as_tensor(timestep).detach().float().flatten()
            if values.numel():
                self.timestep_low = min(self.timestep_low, float(values.min()))
                self.timestep_high = max(self.timestep_high, float(values.max()))
        self.synchronise()
        self.call_started = time.perf_counter()

    def after_denoiser(self, module, args, output):
        self.synchronise()
        self.denoiser_seconds += time.perf_counter() - self.call_started

    def memoised(self, forward: Callable) -> Callable:
        cache: dict[Any, Any] = {}

        def forward_once(*args, **kwargs):
            key = cache_key((args, kwargs))
            if key not in cache:
                started = time.perf_counter()
                cache[key] = forward(*args, **kwargs)
                self.synchronise()
                self.encoding_seconds += time.perf_counter() - started
            return clone(cache[key])  # a copy, so that no pipeline can change the cached tensors in place

        return forward_once

    # -- runs ----------------------------------------------------------------------------------------

    def call_kwargs(self, specs: list[RunSpec], on_step: Callable[[int, int], None] | None) -> dict[str, Any]:
        """The pipeline call for one or more cells that differ only in seed or prompt.

        One cell is called exactly as the guide's loop does (a prompt string, one generator); a batch gets a
        list of prompts and a list of generators, one per image, so each image starts from its own noise.
        """
        import torch

        first = specs[0]
        settings = {
            "num_inference_steps": first.steps,
            "width": first.width,
            "height": first.height,
            "guidance_scale": first.guidance_scale,
            "negative_prompt": first.negative_prompt,
        }
        generators = [torch.Generator(device=self.generator_device).manual_seed(spec.seed) for spec in specs]
        kwargs: dict[str, Any] = {
            "prompt": first.prompt if len(specs) == 1 else [spec.prompt for spec in specs],
            "generator": generators[0] if len(specs) == 1 else generators,
            "output_type": "np",
        }
        # Only what this pipeline's __call__ takes: not every family has a size or a guidance scale.
        kwargs.update({k: v for k, v in settings.items() if v is not None and k in self.call_parameters})
        if "callback_on_step_end" in self.call_parameters:

            def step_done(pipe, index, timestep, callback_kwargs):
                # The latents after the last step are what the distance to a reference is measured on.
                self.final_latents = callback_kwargs.get("latents")
                if on_step is not None:
                    # Heun-like schedulers walk 2N-1 timesteps for N steps: count what the loop really does.
                    on_step(index + 1, len(pipe.scheduler.timesteps))
                return callback_kwargs

            kwargs["callback_on_step_end"] = step_done
        kwargs.update(first.call_args)
        return kwargs

    def scheduler_overrides(self, specs: list[RunSpec]) -> dict[str, Any]:
        cls = self.classes[specs[0].scheduler]
        # A copy, with the cell's --schedule: the seed below belongs to this call, not to the cell.
        overrides = effective_overrides(cls, specs[0].overrides, specs[0].schedule)
        if "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
            # DPMSolverSDE draws its Brownian noise from its own seed: tie it to --seed so runs repeat; a batch
            # gets one seed per image, so each image's noise is the one its unbatched run would get.
            seeds = [spec.seed for spec in specs]
            overrides.setdefault("noise_sampler_seed", seeds[0] if len(seeds) == 1 else seeds)
        return overrides

    def warm_up(self, spec: RunSpec, steps: int = 2, on_step: Callable[[int, int], None] | None = None) -> float | None:
        """One short call with the pipeline's own scheduler, so one-time costs land on no scheduler. -> its
        seconds; None when this pipeline was warmed at this size before (a second compare() on it) and needs none."""
        if self.is_warm(spec):
            return None
        self.model.pipe.scheduler = build(type(self.original_scheduler), self.model.original_config, {})
        started = time.perf_counter()
        try:
            self.model.pipe(**self.call_kwargs([replace_steps(spec, steps)], on_step))
        except Exception:  # the scheduler runs will report whatever this is, each on its own tile
            pass
        finally:
            self.model.pipe.scheduler = self.original_scheduler
        self.synchronise()
        _warmed.setdefault(self.model.pipe, set()).add((spec.width, spec.height))
        return time.perf_counter() - started

    def is_warm(self, spec: RunSpec) -> bool:
        """Was this pipeline warmed up at this cell's size in this process already?"""
        return (spec.width, spec.height) in _warmed.get(self.model.pipe, set())

    def run(self, spec: RunSpec, repeat: int = 1, on_step: Callable[[int, int], None] | None = None) -> Sample:
        """One cell, in one pipeline call."""
        return self.run_batch([spec], repeat, on_step)[0]

    def run_batch(
        self, specs: list[RunSpec], repeat: int = 1, on_step: Callable[[int, int], None] | None = None
    ) -> list[Sample]:
        """Cells that differ only in seed or prompt, in one pipeline call -> one Sample each, in order.

        Seconds are the call's time shared equally among its images; NFE is the call's denoiser calls. The
        latent is the image's final latent as a float32 array, None where the pipeline offers no step callback.
        """
        made = [Sample(RunResult(spec=spec, batch_size=len(specs))) for spec in specs]
        if specs[0].unsupported:  # planned not to run: a labelled cell, never a silent default
            for sample in made:
                sample.result.status, sample.result.reason = UNSUPPORTED, specs[0].unsupported
            return made
        for _ in range(repeat):
            try:
                produced, elapsed = self.call(specs, on_step)
            except (KeyboardInterrupt, SystemExit, Terminated):
                raise
            except Exception as error:  # one scheduler failing must not sink the others
                status, reason = self.failure(specs[0], error)
                for sample in made:
                    sample.result.status, sample.result.reason = status, reason
                    sample.result.error = {"type": type(error).__name__, "message": one_line(error)}
                    sample.result.nfe = self.calls
                return [Sample(sample.result) for sample in made]
            images = produced.images if hasattr(produced, "images") else produced[0]
            nsfw_flags = getattr(produced, "nsfw_content_detected", None) or [False] * len(specs)
            peak = self.peak_memory()
            for index, sample in enumerate(made):
                if sample.result.status != FAILED:
                    self.take(sample, index, images[index], bool(nsfw_flags[index]), elapsed, peak)
        for sample in made:
            if sample.rgb is not None:
                self.conclude(sample.result, sample.rgb)
        return made

    def call(self, specs: list[RunSpec], on_step: Callable[[int, int], None] | None) -> tuple[Any, float]:
        """One pipeline call with a fresh scheduler, measured. -> (what the pipeline returned, seconds)."""
        self.final_latents = None
        self.calls, self.denoiser_seconds = 0, 0.0
        self.timestep_low, self.timestep_high = float("inf"), float("-inf")
        self.reset_peak_memory()
        self.last_sigmas = self.last_scheduler = None
        try:
            scheduler = build(
                self.classes[specs[0].scheduler], self.model.original_config, self.scheduler_overrides(specs)
            )
            self.model.pipe.scheduler = self.last_scheduler = scheduler
            kwargs = self.call_kwargs(specs, on_step)
            hand_generators(scheduler, kwargs["generator"])
            self.synchronise()
            started = time.perf_counter()
            produced = self.model.pipe(**kwargs)
            self.synchronise()
            elapsed = time.perf_counter() - started
            self.last_sigmas = noise_levels(scheduler)
            return produced, elapsed
        finally:
            self.model.pipe.scheduler = self.original_scheduler

    def failure(self, spec: RunSpec, error: Exception) -> tuple[str, str]:
        """Failed, or unsupported where the scheduler refused the pipeline's timesteps before any denoiser call
        (FlowMatchHeun takes neither the sigmas nor the mu FluxPipeline passes; SASolver takes no mu)."""
        message = f"{type(error).__name__}: {one_line(error)}"
        if self.calls == 0 and refused_timesteps(error):  # the whole message stays in the run's `error`
            pipeline = type(self.model.pipe).__name__
            what = next((word for word in ("sigmas", "mu", "timesteps") if word in str(error)), "arguments")
            name = spec.scheduler.removesuffix("Scheduler")
            twin = flow_sampler_twin(spec.scheduler, spec.overrides)
            instead = f"; {twin} takes them" if twin else ""
            return UNSUPPORTED, f"{name} takes no {what}, which {pipeline} passes to set_timesteps{instead}"
        repeated = repeated_timestep(self.last_scheduler)
        if repeated is not None:  # the whole message stays in the run's `error`
            schedule = f"{spec.schedule} schedule" if spec.schedule else "schedule"
            return UNSUPPORTED, (
                f"{spec.scheduler.removesuffix('Scheduler')}: its {schedule} at {spec.steps} steps repeats timestep "
                f"{repeated} (diffusers rounds the sigmas to whole timesteps), and its step lookup cannot take that"
            )
        return FAILED, message

    def take(self, sample: Sample, index: int, image: Any, nsfw: bool, elapsed: float, peak: int | None) -> None:
        """One image of a call (which took `elapsed` seconds), into its Sample: the costs, then the output
        judged; a repeat that differs is suspect."""
        import numpy as np

        result = sample.result
        result.seconds_all.append(elapsed / result.batch_size)
        result.batch_seconds = elapsed
        result.nfe = self.calls
        result.sigmas = self.last_sigmas
        result.denoiser_seconds = self.denoiser_seconds / result.batch_size
        result.peak_memory_bytes = max(result.peak_memory_bytes or 0, peak or 0) or None
        if self.calls:
            result.timesteps = (self.timestep_low, self.timestep_high)
        output = np.asarray(image)
        status, reason = judge_output(output, nsfw)
        if status == FAILED:
            result.status, result.reason = status, reason
            result.error = {"type": "BadOutput", "message": reason}
            sample.rgb = sample.output = None
            return
        rgb = to_rgb(output)
        if sample.rgb is not None and not np.array_equal(sample.rgb, rgb):
            status, reason = SUSPECT, "repeats gave different images (nondeterministic)"
        elif result.status == SUSPECT:
            status, reason = result.status, result.reason
        sample.rgb, sample.output = rgb, output
        if self.final_latents is not None:
            sample.latent = self.final_latents[index].detach().float().cpu().numpy()
        result.status, result.reason = status, reason

    def conclude(self, result: RunResult, rgb: Any) -> None:
        """After the repeats: the median time, the pixels' hash, and timesteps outside the training range."""
        result.seconds = statistics.median(result.seconds_all)
        result.sha256 = pixel_sha256(rgb)
        if result.status == OK and result.timesteps is not None:
            problem = timestep_problem(*result.timesteps, self.model.num_train_timesteps)
            if problem:
                result.status, result.reason = SUSPECT, problem

    # -- memory --------------------------------------------------------------------------------------

    def reset_peak_memory(self) -> None:
        import torch

        if device_type(self.model.device) == "cuda":
            torch.cuda.reset_peak_memory_stats(self.model.device)
        elif device_type(self.model.device) == "cpu":
            peak_rss_reset()

    def peak_memory(self) -> int | None:
        """CUDA: the allocator's peak. CPU: the process's resident-memory high-water mark (Linux)."""
        import torch

        if device_type(self.model.device) == "cuda":
            return int(torch.cuda.max_memory_allocated(self.model.device))
        if device_type(self.model.device) == "cpu":
            return peak_rss_bytes()
        return None


def hand_generators(scheduler: Any, generators: Any) -> None:
    """A stochastic scheduler draws from the run's generators (one per image), also where the pipeline calls `step`
    without one (SD3, FLUX.1): a seed then reproduces a run, and an image made in a batch is the image made alone.
    A pipeline that passes its own generator (Stable Diffusion) is left as it is."""
    if hasattr(scheduler, "set_generators"):  # schedcmp.flow's sampler
        scheduler.set_generators(generators)
        return
    step = scheduler.step
    if "generator" not in inspect.signature(step).parameters:
        return

    @functools.wraps(step)  # the pipeline reads step's signature to decide what to pass: it must stay the same
    def step_with_generator(*args, generator=None, **kwargs):
        return step(*args, generator=generators if generator is None else generator, **kwargs)

    scheduler.step = step_with_generator


def repeated_timestep(scheduler: Any) -> int | None:
    """A timestep the scheduler's grid holds twice, or None. Multistep schedulers find their place by timestep, so a
    repeat sends them past the end of their sigmas (diffusers issue 12771): the beta schedule at 40 steps on a
    Stable Diffusion config gives one. Schedulers of two model calls a step (Heun, KDPM2) hold each timestep twice
    by design: theirs are not repeats."""
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or getattr(scheduler, "order", 1) != 1:
        return None
    seen: set[float] = set()
    for value in timesteps.tolist():
        if value in seen:
            return int(value) if float(value).is_integer() else value
        seen.add(value)
    return None


def refused_timesteps(error: BaseException) -> bool:
    """Did `error` come from setting the timesteps up (diffusers' retrieve_timesteps or a set_timesteps)?"""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name in ("retrieve_timesteps", "set_timesteps"):
            return True
        frame = frame.tb_next
    return False


def noise_levels(scheduler: Any) -> list[float] | None:
    """The scheduler's noise levels after a run, in order: its own sigmas, or for schedulers on ᾱ (DDIM, PNDM, DDPM)
    σ = √((1 − ᾱ)/ᾱ) at each of its timesteps, then 0."""
    import torch

    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None:
        alphas = getattr(scheduler, "alphas_cumprod", None)
        timesteps = getattr(scheduler, "timesteps", None)
        if alphas is None or timesteps is None:
            return None
        chosen = torch.as_tensor(alphas)[torch.as_tensor(timesteps).long().clamp(0, len(alphas) - 1)].double()
        sigmas = torch.cat([((1 - chosen) / chosen).sqrt(), torch.zeros(1, dtype=torch.float64)])
    values = torch.as_tensor(sigmas).detach().double().cpu().flatten().tolist()
    return [float(f"{value:.6g}") for value in values]


def replace_steps(spec: RunSpec, steps: int) -> RunSpec:
    from dataclasses import replace

    return replace(spec, steps=steps)


def to_rgb(output):
    """Float output (H×W×C in [0, 1]) -> uint8 RGB, rounded exactly as the pipeline's own PIL output."""
    import numpy as np

    pixels = (output * 255).round().astype("uint8")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels


def cache_key(value: Any) -> Any:
    """A hashable key for text-encoder inputs: tensors by content, everything else by repr."""
    import torch

    if torch.is_tensor(value):
        return ("tensor", str(value.dtype), tuple(value.shape), value.detach().cpu().numpy().tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(cache_key(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), cache_key(v)) for k, v in value.items()))
    return repr(value)


def clone(value: Any) -> Any:
    """A copy of a model output whose tensors can be changed without touching the original."""
    import torch

    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, dict):  # transformers' ModelOutput is an OrderedDict
        return type(value)(**{key: clone(item) for key, item in value.items()})
    if isinstance(value, tuple):
        return tuple(clone(item) for item in value)
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value
