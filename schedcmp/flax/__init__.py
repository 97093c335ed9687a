"""The Flax backend: the diffusers scheduler guide's "changing the scheduler in Flax", run by schedcmp.

Runs only in the Flax environment that `make flax` builds (.venv-flax: diffusers 0.39, the last release
with Flax code, transformers 4.x, jax and flax for the CPU). Importing this package costs nothing and needs
none of that: jax, flax and diffusers load when a run starts, so the main CLI stays instant.

    from schedcmp.flax import runner
    model = runner.load()                          # the embedded default model, float32
    names = runner.compatible_schedulers(model)    # FlaxPNDMScheduler, FlaxDDIMScheduler, ...
    runs = runner.run_scheduler(model, "FlaxDDIMScheduler", "astronaut", steps=20, seeds=[8])

Modules: `unet` (the Flax block for addition_embed_type="text"), `weights` (safetensors -> Flax params, in
memory), `runner` (the guide's way: replicated params, sharded prompt ids, split keys, jit), `crosscheck`
(the same scheduler in PyTorch and Flax from the same noise), `fixes` (Euler's timesteps, which the Flax
pipeline breaks), `results` (the plain data they return).
"""

from __future__ import annotations

from schedcmp.core.errors import SchedcmpError

SETUP_HINT = "the Flax backend runs in its own environment: run `make flax`, then use .venv-flax/bin/schedcmp"


class FlaxUnavailable(SchedcmpError):
    """jax, flax or a diffusers with Flax classes cannot be imported here (exit code 2, nothing was run)."""


def missing_dependency() -> str | None:
    """Why the Flax backend cannot run in this environment, in one line; None when it can."""
    import importlib.util

    for module in ("jax", "flax", "diffusers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; {SETUP_HINT}"
    try:
        from diffusers import FlaxStableDiffusionPipeline  # noqa: F401  (removed in diffusers 0.40)
    except (ImportError, AttributeError):
        from importlib import metadata

        return f"diffusers {metadata.version('diffusers')} has no Flax pipelines; {SETUP_HINT}"
    return None


def require() -> None:
    """Raise FlaxUnavailable, whose message names `make flax`, unless the Flax backend can run here."""
    problem = missing_dependency()
    if problem is not None:
        raise FlaxUnavailable(problem)
