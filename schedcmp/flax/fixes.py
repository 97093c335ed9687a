"""A fix for the one diffusers 0.39 Flax scheduler that the Flax pipeline breaks without an error.

The Flax pipeline hands the scheduler and the UNet `jnp.array(state.timesteps, dtype=jnp.int32)[step]`, and
FlaxEulerDiscreteScheduler finds its step with `jnp.where(state.timesteps == timestep, size=1)`. Its
"linspace" timesteps are float32 (665.99994 where 666 is meant), so the truncated integer matches none of
them, `where` falls back to index 0, and every step uses the largest sigma: the image is noise (measured on
the default model: max |torch - flax| 0.99, PSNR 12 dB). Rounding the timesteps to integers when they are
set makes the lookup find its step; the sigmas stay those of the unrounded schedule.
"""

from __future__ import annotations

import jax.numpy as jnp
from diffusers import FlaxEulerDiscreteScheduler

NOTES = {
    "FlaxEulerDiscreteScheduler": (
        "timesteps rounded to integers by schedcmp: the Flax pipeline passes them as int32, which diffusers' Euler "
        "would not find (every step would take the largest sigma)"
    ),
}


class FlaxEulerDiscreteSchedulerIntegerTimesteps(FlaxEulerDiscreteScheduler):
    """FlaxEulerDiscreteScheduler whose timesteps are whole numbers, as the Flax pipeline passes them."""

    def set_timesteps(self, state, num_inference_steps: int, shape: tuple = ()):
        state = super().set_timesteps(state, num_inference_steps, shape)
        return state.replace(timesteps=jnp.round(state.timesteps))


FIXED = {"FlaxEulerDiscreteScheduler": FlaxEulerDiscreteSchedulerIntegerTimesteps}
