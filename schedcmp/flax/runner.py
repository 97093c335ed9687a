"""Run Flax schedulers the way the diffusers guide's Flax section does, on a diffusers folder's safetensors.

The guide's recipe, step for step: `FlaxStableDiffusionPipeline` with a `Flax*Scheduler.from_pretrained(folder,
subfolder="scheduler")` and its state in `params["scheduler"]`; one prompt per JAX device
(`jax.device_count()`); `replicate(params)`, `shard(prompt_ids)`, one PRNG key per device from
`jax.random.split`; and `pipeline(..., jit=True)`, which `jax.pmap`s the whole sampling loop. On a CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=2` gives two host devices to spread over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from schedcmp.core.errors import ModelError, UsageError
from schedcmp.core.records import Status
from schedcmp.flax import require
from schedcmp.flax.results import FlaxRun
from schedcmp.model.pipeline import DEFAULT_MODEL_DIR, one_line
from schedcmp.model.sample import judge_output, pixel_sha256

DTYPES = ("float32", "bfloat16")
GUIDANCE_SCALE = 7.5  # the pipelines' default, in both frameworks


@dataclass(frozen=True)
class FlaxModel:
    """A loaded Flax Stable Diffusion: its modules, its params (not yet replicated) and the scheduler config."""

    folder: Path
    dtype: str
    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    params: dict[str, Any]  # text_encoder, unet, vae; each run adds its own scheduler state
    scheduler_class: str  # of the folder's scheduler_config.json, e.g. PNDMScheduler


def load(folder: str | Path | None = None, dtype: str = "float32") -> FlaxModel:
    """The Flax pipeline's parts from a Stable Diffusion 1.x/2.x folder (the embedded default model by default)."""
    require()
    import jax.numpy as jnp

    from schedcmp.flax import weights

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} for the Flax backend; choose {' or '.join(DTYPES)}")
    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    pipeline_class = weights.read_config(folder, ".", "model_index.json").get("_class_name")
    if pipeline_class != "StableDiffusionPipeline":
        raise ModelError(f"the Flax backend runs Stable Diffusion pipelines; {folder} holds a {pipeline_class}")
    compute_dtype = getattr(jnp, dtype)
    text_encoder, text_params = weights.load_text_encoder(folder, compute_dtype)
    unet, unet_params = weights.load_unet(folder, compute_dtype)
    vae, vae_params = weights.load_vae(folder, compute_dtype)
    return FlaxModel(
        folder=folder,
        dtype=dtype,
        tokenizer=weights.load_tokenizer(folder),
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        params={"text_encoder": text_params, "unet": unet_params, "vae": vae_params},
        scheduler_class=weights.read_config(folder, "scheduler", "scheduler_config.json")["_class_name"],
    )


def flax_scheduler_class(name: str) -> type:
    """The diffusers Flax scheduler class for a Flax or PyTorch class name (DDIMScheduler -> FlaxDDIMScheduler)."""
    import diffusers

    flax_name = name if name.startswith("Flax") else f"Flax{name}"
    found = getattr(diffusers, flax_name, None)
    if found is None:
        raise UsageError(f"diffusers {diffusers.__version__} has no {flax_name}")
    return found


def flax_classes() -> dict[str, type]:
    """diffusers' Flax scheduler classes by the name of the PyTorch class each ports (DDIMScheduler -> FlaxDDIM...)."""
    import diffusers

    found = {}
    for name in dir(diffusers):
        if name.startswith("Flax") and name.endswith("Scheduler"):
            cls = getattr(diffusers, name, None)
            if isinstance(cls, type):
                found[name.removeprefix("Flax")] = cls
    return found


def compatible_in(folder: str | Path) -> list[str]:
    """The Flax scheduler classes a folder's scheduler lists as compatible, its own first: read from its config,
    before any weights load."""
    from schedcmp.flax.weights import read_config

    pipeline = read_config(Path(folder), ".", "model_index.json").get("_class_name")
    if pipeline != "StableDiffusionPipeline":  # FLUX.1, SD3: no Flax scheduler, pipeline or model exists for them
        raise UsageError(
            f"{folder} is a {pipeline} folder: the Flax backend runs Stable Diffusion folders "
            "(StableDiffusionPipeline), as the guide's Flax section does; diffusers has no Flax version of the others"
        )
    own_name = read_config(Path(folder), "scheduler", "scheduler_config.json")["_class_name"]
    own, _ = flax_scheduler_class(own_name).from_pretrained(folder, subfolder="scheduler")
    others = sorted(cls.__name__ for cls in own.compatibles if not isinstance(own, cls))
    return [type(own).__name__] + others


def compatible_schedulers(model: FlaxModel) -> list[str]:
    """The Flax scheduler classes the model's own scheduler lists as compatible, its own first."""
    return compatible_in(model.folder)


def native_size(folder: str | Path) -> int:
    """The pixel size the Flax pipeline generates by default: the UNet's sample size times the VAE's factor."""
    from schedcmp.flax.weights import read_config

    unet, vae = read_config(Path(folder), "unet"), read_config(Path(folder), "vae")
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def default_steps() -> int:
    """FlaxStableDiffusionPipeline's own num_inference_steps."""
    import inspect

    from diffusers import FlaxStableDiffusionPipeline

    return int(inspect.signature(FlaxStableDiffusionPipeline.__call__).parameters["num_inference_steps"].default)


def pipeline_for(model: FlaxModel, scheduler: Any) -> Any:
    """A new FlaxStableDiffusionPipeline per scheduler: `jit=True` caches the compiled loop on the pipeline
    object (a static argument of its pmap), so reusing one with another scheduler would rerun the old one."""
    import jax.numpy as jnp
    from diffusers import FlaxStableDiffusionPipeline

    return FlaxStableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        dtype=getattr(jnp, model.dtype),
    )


@dataclass(frozen=True)
class Prepared:
    """One scheduler × steps ready to call on every device: the guide's replicated params and sharded ids."""

    scheduler: str
    steps: int
    prompt: str
    pipeline: Any
    params: Any  # replicated: a leading axis of one copy per device
    prompt_ids: Any  # sharded: (devices, 1, tokens)
    negative_ids: Any  # sharded like prompt_ids, or None for the empty negative prompt
    guidance_scale: float
    schedule_length: int  # timesteps the scheduler sets for `steps`

    @property
    def devices(self) -> int:
        return self.prompt_ids.shape[0]


def prepare(
    model: FlaxModel,
    scheduler: str,
    prompt: str,
    steps: int,
    negative_prompt: str | None = None,
    guidance_scale: float = GUIDANCE_SCALE,
    overrides: dict[str, Any] | None = None,
) -> Prepared:
    """A fresh scheduler from the folder's own config (as the guide loads it; `overrides` change its config), its
    pipeline, and the inputs."""
    import jax
    from flax.jax_utils import replicate
    from flax.training.common_utils import shard

    from schedcmp.flax.fixes import FIXED

    name = flax_scheduler_class(scheduler).__name__
    flax_scheduler, state = FIXED.get(name, flax_scheduler_class(name)).from_pretrained(
        model.folder, subfolder="scheduler", **(overrides or {})
    )
    pipeline = pipeline_for(model, flax_scheduler)
    devices = jax.device_count()
    latent_shape = (1, model.unet.in_channels, model.unet.sample_size, model.unet.sample_size)
    negative_ids = None
    if negative_prompt is not None:
        negative_ids = shard(pipeline.prepare_inputs([negative_prompt] * devices))
    return Prepared(
        scheduler=name,
        steps=steps,
        prompt=prompt,
        pipeline=pipeline,
        params=replicate({**model.params, "scheduler": state}),
        prompt_ids=shard(pipeline.prepare_inputs([prompt] * devices)),
        negative_ids=negative_ids,
        guidance_scale=guidance_scale,
        schedule_length=len(flax_scheduler.set_timesteps(state, steps, latent_shape).timesteps),
    )


def with_inputs(prepared: Prepared, prompt: str, guidance_scale: float) -> Prepared:
    """The same compiled loop for another prompt or guidance scale: both are inputs of the pmapped function, not
    static arguments, so no recompilation (the pipeline object, the steps and the size decide that)."""
    from flax.training.common_utils import shard

    if prompt == prepared.prompt and guidance_scale == prepared.guidance_scale:
        return prepared
    prompt_ids = shard(prepared.pipeline.prepare_inputs([prompt] * prepared.devices))
    return replace(prepared, prompt=prompt, prompt_ids=prompt_ids, guidance_scale=guidance_scale)


def device_keys(seed: int, devices: int) -> Any:
    """The guide's PRNG keys: one per device, split from the seed's key."""
    import jax

    return jax.random.split(jax.random.PRNGKey(seed), devices)


def generate(prepared: Prepared, seed: int, latents: Any = None) -> tuple[Any, float]:
    """One jitted call on every device: (float images (devices, H, W, 3) in [0, 1], wall seconds).

    `latents` (C × h × w, or devices × C × h × w) replace the noise the keys would draw, on every device."""
    import numpy as np

    if latents is not None:
        latents = np.asarray(latents, np.float32)
        per_device = latents if latents.ndim == 4 else np.broadcast_to(latents, (prepared.devices, *latents.shape))
        latents = np.ascontiguousarray(per_device)[:, None]  # (devices, 1, C, h, w): one image per device
    started = time.perf_counter()
    output = prepared.pipeline(
        prepared.prompt_ids,
        prepared.params,
        device_keys(seed, prepared.devices),
        prepared.steps,
        guidance_scale=prepared.guidance_scale,
        latents=latents,
        neg_prompt_ids=prepared.negative_ids,
        jit=True,
    )
    images = np.asarray(output.images)  # the pipeline blocks until the devices are done
    seconds = time.perf_counter() - started
    return images.reshape(prepared.devices, *images.shape[-3:]), seconds


def run_note(prepared: Prepared) -> str | None:
    """What explains this run beyond the scheduler's maths: a fix schedcmp applied, or updates never run (the
    Flax pipeline's loop runs `steps` iterations whatever number of timesteps the scheduler set)."""
    from schedcmp.flax.fixes import NOTES

    notes = [NOTES[prepared.scheduler]] if prepared.scheduler in NOTES else []
    left_out = prepared.schedule_length - prepared.steps
    if left_out > 0:
        notes.append(
            f"{prepared.schedule_length} timesteps set for {prepared.steps} steps; the Flax pipeline runs "
            f"{prepared.steps}: the last {left_out} update(s) never applied"
        )
    return "; ".join(notes) or None


def failed(run: FlaxRun, error: BaseException) -> FlaxRun:
    return replace(run, status=Status.FAILED, reason=one_line(error), error_type=type(error).__name__)


def finished(run: FlaxRun, prepared: Prepared, outputs: Any, seconds: float, **timing: Any) -> FlaxRun:
    """A run that returned images: judged as schedcmp judges torch runs (non-finite or constant fails)."""
    import numpy as np

    status, reason = judge_output(outputs[0], nsfw=False)
    return replace(
        run,
        status=Status(status),
        reason=reason,
        nfe=prepared.steps,  # one UNet call (a guidance batch of 2) per iteration of the pipeline's fori_loop
        schedule_length=prepared.schedule_length,
        note=run_note(prepared),
        seconds=seconds,
        sha256=pixel_sha256((np.asarray(outputs[0]) * 255).round().astype(np.uint8)),
        outputs=outputs,
        **timing,
    )


def run_scheduler(
    model: FlaxModel,
    scheduler: str,
    prompt: str,
    steps: int,
    seeds: Sequence[int],
    negative_prompt: str | None = None,
    guidance_scale: float = GUIDANCE_SCALE,
) -> list[FlaxRun]:
    """One Flax scheduler × steps over `seeds`, one FlaxRun per seed; failures are runs too, with the reason.

    The first call compiles (its wall time is the first run's compile_seconds); each seed then runs once more,
    compiled (seconds); the first seed's two outputs give repeat_max_abs."""
    import jax
    import numpy as np

    if not seeds:
        raise UsageError("run_scheduler needs at least one seed")
    base = FlaxRun(
        scheduler=flax_scheduler_class(scheduler).__name__,
        steps=steps,
        seed=seeds[0],
        prompt=prompt,
        status=Status.OK,
        devices=jax.device_count(),
        dtype=model.dtype,
    )
    try:
        prepared = prepare(model, scheduler, prompt, steps, negative_prompt, guidance_scale)
        first_outputs, compile_seconds = generate(prepared, seeds[0])
    except Exception as error:  # a scheduler the Flax pipeline cannot run: a failed cell, as in the torch backend
        return [failed(replace(base, seed=seed), error) for seed in seeds]
    runs = []
    for seed in seeds:
        run = replace(base, seed=seed)
        try:
            outputs, seconds = generate(prepared, seed)
        except Exception as error:
            runs.append(failed(run, error))
            continue
        timing = {}
        if seed == seeds[0]:
            repeat = float(np.abs(outputs - first_outputs).max())
            timing = {"compile_seconds": compile_seconds, "repeat_max_abs": repeat}
        runs.append(finished(run, prepared, outputs, seconds, **timing))
    return runs
