"""What `--backend flax` (and torch,flax) takes of a request, decided before anything loads: each setting it
refuses, with why, and the dtype it computes in. Pure: no jax, no torch.

It takes: the prompt(s), --schedulers (the grammar; names resolve to the Flax classes), --seed and --seed-mode
(one call per seed, one image per JAX device), --steps (a sweep compiles once per scheduler and step count),
--guidance-scale (a list too: an input of the compiled loop, so no recompilation), --negative-prompt, --repeat
(timed calls after the first, compiling one), --dtype auto/fp32/bf16, --model FOLDER, --allow-incompatible, and
every output setting: --out, --overwrite, --no-sheet, --x, --z, --html, --format, --strict, --events.
"""

from __future__ import annotations

from pathlib import Path

from schedcmp.core.errors import UsageError
from schedcmp.core.request import Request, declared, default_of, flag_of

SAME_SIZE = "the Flax backend generates at the model's native size (its UNet's sample size)"
NO_REFERENCE = "references and equal-quality searches are computed by the PyTorch engine"

# Setting -> why the Flax path refuses any value but its default.
REFUSED = {
    "model_config": "the Flax backend converts a diffusers folder's safetensors; single-file checkpoints are PyTorch's",
    "width": SAME_SIZE,
    "height": SAME_SIZE,
    "schedule": "diffusers' Flax schedulers have no flags for the karras, exponential or beta sigmas",
    "call_arg": "FlaxStableDiffusionPipeline's call takes no other arguments",
    "allow_unknown_call_args": "FlaxStableDiffusionPipeline's call takes no other arguments",
    "device": "JAX chooses the devices (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)",
    "generator_device": "the Flax runs draw their noise from JAX PRNG keys (torch,flax: the seed's CPU generator)",
    "batch_size": "the Flax backend makes one image per JAX device in each call",
    "allow_pickle": "the Flax backend reads safetensors only",
    "reference": NO_REFERENCE,
    "reference_spec": NO_REFERENCE,
    "target_psnr": NO_REFERENCE,
    "target_rmse": NO_REFERENCE,
    "max_steps": NO_REFERENCE,
    "shard": "the Flax backend runs in one process; its images spread over JAX's devices instead",
    "resume": "a Flax comparison cannot be resumed; run it again",
}
DTYPES = {"auto": "float32", "fp32": "float32", "bf16": "bfloat16"}  # --dtype -> the Flax params' and computation's


def refuse(request: Request, launched: bool, pipeline_given: bool) -> None:
    """One line naming the first setting the Flax path does not take; `launched`: under torchrun; `pipeline_given`:
    compare() was handed a PyTorch pipeline object."""
    backend = request.backend
    if launched:
        raise UsageError(f"--backend {backend} runs in one process: run it without torchrun")
    if pipeline_given:
        raise UsageError(
            f"backend={backend!r} loads the model itself: pass compare() a model folder or None, not a pipeline object"
        )
    defaults = {f.name: default_of(f) for f in declared()}
    for name, why in REFUSED.items():
        value = getattr(request, name)
        if value is not None and value != defaults[name]:
            raise UsageError(f"{flag_of(name)} is not supported with --backend {backend}: {why}")
    if request.model is not None and not Path(request.model).is_dir():
        raise UsageError(f"--model {request.model}: --backend {backend} reads a local diffusers folder's safetensors")
    if request.dtype not in DTYPES:
        raise UsageError(f"--dtype {request.dtype} is not supported with --backend {backend}: choose fp32 or bf16")
    if backend == "torch,flax" and flax_dtype(request) != "float32":
        raise UsageError("--backend torch,flax compares the frameworks in float32: drop --dtype bf16")


def flax_dtype(request: Request) -> str:
    """The dtype of the Flax params and computation (float32 unless --dtype bf16, the guide's)."""
    return DTYPES[request.dtype]


def cross(request: Request) -> bool:
    """Each scheduler in both frameworks, and the distance between them."""
    return request.backend == "torch,flax"
