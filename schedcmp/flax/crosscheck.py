"""The same scheduler in PyTorch and in Flax, in one process, from the same noise, weights, prompt and guidance.

The noise is drawn once, as schedcmp's PyTorch backend draws it for a seed on the CPU
(`torch.randn(shape, generator=torch.Generator().manual_seed(seed))`), and handed to both pipelines as
`latents=` (to Flax on every device). Both read the same safetensors; each framework runs twice, so that its
own run-to-run distance stands next to the distance between the frameworks.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from schedcmp.flax import require
from schedcmp.flax.results import Alignment, CrossRun, FrameworkRun
from schedcmp.flax.runner import GUIDANCE_SCALE, FlaxModel, generate, prepare, run_note
from schedcmp.model.pipeline import DEFAULT_MODEL_DIR
from schedcmp.quality.metrics import max_abs_difference, psnr

# What diffusers 0.39's Flax side computes differently from PyTorch's defaults, and how PyTorch does the same.
ALIGNMENTS = {
    "PNDMScheduler": Alignment(
        reason="PyTorch stopped after `steps` UNet calls, where the Flax loop ends (PNDM sets steps + 1 timesteps)",
        stop_after_steps=True,
    ),
    "DPMSolverMultistepScheduler": Alignment(
        reason="PyTorch with final_sigmas_type='sigma_min', the smallest training sigma, where Flax's DPM-Solver ends",
        overrides={"final_sigmas_type": "sigma_min"},
    ),
}

# The tolerance, and why (docs/flax.md measures it): one UNet call differs between the frameworks by about 2e-4
# (4e-5 of its range), mostly because diffusers' Flax GEGLU takes flax's tanh-approximate GELU where PyTorch
# takes the exact one (7e-6 with the exact GELU patched in), the rest float32 summation order. Deterministic
# samplers carry that through 10-20 steps and the VAE, which measured at 1e-4 on the image: far under one
# 8-bit level. Every real difference of algorithm seen (a skipped last step, another final sigma, a wrong
# sigma lookup) moved the image by 8 levels or more, PSNR 45 dB or less. The tolerance sits between the two.
TOLERANCE_MAX_ABS = 1 / 255  # one 8-bit level, on float images in [0, 1]
TOLERANCE_PSNR = 60.0  # dB


def load_torch_pipeline(folder: str | Path | None = None) -> Any:
    """diffusers' PyTorch StableDiffusionPipeline from the same folder, float32 on the CPU, in the Flax env.

    transformers 4.x would load a transformers 5 text encoder with random weights (the `text_model.` level
    again), and finds no slow-tokenizer files: both are built here and handed to from_pretrained."""
    require()
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from schedcmp.flax.weights import load_tokenizer, read_config, text_encoder_state

    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    scheduler_config = read_config(folder, "scheduler", "scheduler_config.json")
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    text_encoder.load_state_dict(text_encoder_state(folder), strict=True)
    # Built from its parts: from_pretrained would refuse a fast tokenizer where model_index.json says CLIPTokenizer.
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=load_tokenizer(folder),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).eval(),
        scheduler=getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)  # schedcmp reports progress itself
    return pipe


def initial_noise(seed: int, shape: tuple[int, ...]) -> Any:
    """The latents schedcmp's PyTorch backend draws for `seed` on the CPU, as a float32 numpy array."""
    import torch

    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32).numpy()


def torch_scheduler_name(name: str) -> str:
    return name.removeprefix("Flax")


def run_torch(
    pipe: Any,
    scheduler: str,
    prompt: str,
    steps: int,
    noise: Any,
    guidance_scale: float,
    alignment: Alignment | None = None,
    overrides: dict[str, Any] | None = None,
    negative_prompt: str | None = None,
    repeat: int = 1,
) -> FrameworkRun:
    """Identical calls of the PyTorch pipeline, each with a fresh scheduler from the original config (changed by
    `overrides`, then by the alignment's): a first, then `repeat` timed ones (--repeat; the median counts)."""
    import statistics
    import time

    import diffusers
    import torch

    original_config = dict(pipe.scheduler.config)
    overrides = {**(overrides or {}), **(alignment.overrides if alignment else {})}
    stop_after = steps if alignment and alignment.stop_after_steps else None
    calls: list[int] = []
    counter = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))

    def stop_when_flax_stops(pipeline, step, timestep, tensors):
        pipeline._interrupt = stop_after is not None and len(calls) >= stop_after  # the pipeline's own way out
        return tensors

    try:
        outputs, seconds = [], []
        for _ in range(1 + max(1, repeat)):
            scheduler_class = getattr(diffusers, torch_scheduler_name(scheduler))
            pipe.scheduler = scheduler_class.from_config(original_config, **overrides)
            calls.clear()
            started = time.perf_counter()
            with torch.no_grad():
                image = pipe(
                    prompt,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    latents=torch.from_numpy(noise),
                    negative_prompt=negative_prompt,
                    output_type="np",
                    callback_on_step_end=stop_when_flax_stops,
                ).images[0]
            seconds.append(time.perf_counter() - started)
            outputs.append(image)
    finally:
        counter.remove()
        pipe.scheduler = getattr(diffusers, original_config["_class_name"]).from_config(original_config)
    return FrameworkRun(
        scheduler=torch_scheduler_name(scheduler),
        nfe=len(calls),
        seconds=statistics.median(seconds[1:]),
        output=outputs[1],
        repeat_max_abs=max(max_abs_difference(outputs[0], output) for output in outputs[1:]),
        seconds_all=tuple(seconds[1:]),
    )


def run_flax(model: FlaxModel, scheduler: str, prompt: str, steps: int, noise: Any, guidance_scale: float) -> tuple:
    """Two identical jitted calls of the Flax pipeline from the same latents on every device: (run, note)."""
    prepared = prepare(model, f"Flax{torch_scheduler_name(scheduler)}", prompt, steps, guidance_scale=guidance_scale)
    first, _ = generate(prepared, 0, latents=noise[0])
    second, seconds = generate(prepared, 0, latents=noise[0])
    run = FrameworkRun(
        scheduler=prepared.scheduler,
        nfe=prepared.steps,
        seconds=seconds,
        output=second[0],
        # between the two calls, and between the devices, which were all given the same latents
        repeat_max_abs=max(max_abs_difference(first, second), max_abs_difference(second[0], second[-1])),
    )
    return run, run_note(prepared)


def compare_scheduler(
    pipe: Any,
    model: FlaxModel,
    scheduler: str,
    prompt: str,
    steps: int,
    seed: int,
    guidance_scale: float = GUIDANCE_SCALE,
) -> CrossRun:
    """One scheduler (PyTorch or Flax class name) in both frameworks from the seed's noise, and their distance;
    where ALIGNMENTS knows what the Flax side computes differently, PyTorch runs that way too."""
    noise = initial_noise(seed, latent_shape(model))
    torch_run = run_torch(pipe, scheduler, prompt, steps, noise, guidance_scale)
    flax_run, note = run_flax(model, scheduler, prompt, steps, noise, guidance_scale)
    align = functools.partial(run_torch, pipe, scheduler, prompt, steps, noise, guidance_scale)  # + the alignment
    return measure(torch_run, flax_run, steps, seed, note, align)


def latent_shape(model: FlaxModel) -> tuple[int, ...]:
    """One image's initial latents, as both pipelines take them: (1, C, h, w)."""
    return (1, model.unet.in_channels, model.unet.sample_size, model.unet.sample_size)


def measure(
    torch_run: FrameworkRun,
    flax_run: FrameworkRun,
    steps: int,
    seed: int,
    note: str | None,
    align: Callable[[Alignment], FrameworkRun],
) -> CrossRun:
    """The distance between the frameworks' images; where ALIGNMENTS knows what the Flax side computes
    differently, `align` runs PyTorch that way too and the aligned distance is added."""
    cross = CrossRun(
        scheduler=torch_run.scheduler,
        steps=steps,
        seed=seed,
        max_abs=max_abs_difference(torch_run.output, flax_run.output),
        psnr=psnr(flax_run.output, torch_run.output),
        tolerance_max_abs=TOLERANCE_MAX_ABS,
        tolerance_psnr=TOLERANCE_PSNR,
        torch=torch_run,
        flax=flax_run,
        note=note,
    )
    alignment = ALIGNMENTS.get(torch_run.scheduler)
    if alignment is None:
        return cross
    aligned = align(alignment)
    return replace(
        cross,
        alignment=alignment,
        aligned_torch=aligned,
        aligned_max_abs=max_abs_difference(aligned.output, flax_run.output),
        aligned_psnr=psnr(flax_run.output, aligned.output),
    )
