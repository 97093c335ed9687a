"""What the Flax backend returns: plain data, no jax. Arrays are numpy; the CLI layer turns these into records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schedcmp.core.records import Status


@dataclass(frozen=True)
class FlaxRun:
    """One scheduler × steps × seed, run the guide's way: one image per JAX device from one jitted call.

    Device d's noise comes from `jax.random.split(PRNGKey(seed), devices)[d]` (the guide's keys), or is the
    `latents` given; `image`, `output` and `sha256` are device 0's."""

    scheduler: str  # the Flax class, e.g. FlaxDDIMScheduler
    steps: int
    seed: int
    prompt: str
    status: Status
    devices: int
    dtype: str  # of the params and the computation: float32 or bfloat16
    reason: str | None = None  # why it failed
    error_type: str | None = None
    nfe: int | None = None  # UNet calls (each a batch of 2 for guidance): the pipeline's loop runs `steps` of them
    schedule_length: int | None = None  # timesteps the scheduler set; more than nfe means some were never run
    note: str | None = None  # what in the result the pipeline or the scheduler explains (a skipped last step)
    compile_seconds: float | None = None  # the first jitted call: tracing, XLA compilation and one run
    seconds: float | None = None  # a second call, already compiled: the run alone
    repeat_max_abs: float | None = None  # between the two calls' outputs (0.0: deterministic)
    sha256: str | None = None  # of device 0's RGB pixels, as schedcmp's records hash them
    outputs: Any = field(default=None, repr=False, compare=False)  # (devices, H, W, 3) float32 in [0, 1]

    @property
    def output(self):
        """Device 0's float image, H × W × 3 in [0, 1]."""
        return None if self.outputs is None else self.outputs[0]

    @property
    def images(self):
        """Every device's image as uint8, (devices, H, W, 3), rounded as diffusers' pipelines round."""
        import numpy as np

        return None if self.outputs is None else (np.asarray(self.outputs) * 255).round().astype(np.uint8)

    @property
    def image(self):
        return None if self.outputs is None else self.images[0]


@dataclass(frozen=True)
class FrameworkRun:
    """One side of a cross-framework comparison: the images of two identical calls and what they cost."""

    scheduler: str
    nfe: int
    seconds: float
    output: Any = field(repr=False, compare=False)  # H × W × 3 float32 in [0, 1]
    repeat_max_abs: float = 0.0  # between the two calls
    seconds_all: tuple[float, ...] = ()  # each timed call (--repeat of them); `seconds` is their median


@dataclass(frozen=True)
class Alignment:
    """PyTorch settings under which it computes what the Flax pipeline computes, and why they are needed."""

    reason: str
    overrides: dict[str, Any] = field(default_factory=dict)  # scheduler config values for the PyTorch side
    stop_after_steps: bool = False  # end the PyTorch loop after `steps` UNet calls, as the Flax loop ends


@dataclass(frozen=True)
class CrossRun:
    """The same scheduler in PyTorch and in Flax, from the same initial latents, weights, prompt and guidance.

    `max_abs`/`psnr` compare diffusers' defaults on both sides (what a user of either sees); where the Flax
    scheduler or pipeline is known to compute something else, `aligned_*` compare against PyTorch set to do the
    same (`alignment` says what and why), which isolates the frameworks' arithmetic."""

    scheduler: str  # the PyTorch class, e.g. DDIMScheduler
    steps: int
    seed: int
    max_abs: float  # |torch - flax| over the float images in [0, 1]
    psnr: float  # dB, peak 1
    tolerance_max_abs: float
    tolerance_psnr: float
    torch: FrameworkRun
    flax: FrameworkRun
    note: str | None = None  # the Flax run's note (a fix schedcmp applied, updates never run)
    alignment: Alignment | None = None
    aligned_max_abs: float | None = None
    aligned_psnr: float | None = None
    aligned_torch: FrameworkRun | None = None

    def admits(self, max_abs: float, psnr: float) -> bool:
        return max_abs <= self.tolerance_max_abs and psnr >= self.tolerance_psnr

    @property
    def agrees(self) -> bool:
        """diffusers' defaults on both sides give the same image, within the tolerance."""
        return self.admits(self.max_abs, self.psnr)

    @property
    def within(self) -> bool:
        """The frameworks agree on the same computation: aligned where an alignment is known, else as is."""
        if self.alignment is None:
            return self.agrees
        return self.admits(self.aligned_max_abs, self.aligned_psnr)
