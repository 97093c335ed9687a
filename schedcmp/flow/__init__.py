"""Every k-diffusion-style solver on flow-matching models (FLUX.1, SD3), as one diffusers scheduler.

    from schedcmp.flow import FlowSamplerScheduler
    pipe.scheduler = FlowSamplerScheduler.from_config(pipe.scheduler.config, method="dpmpp_2m", schedule="beta")

`METHODS` and `SCHEDULES` describe the choices and import nothing heavy; the scheduler class brings torch and
diffusers with it, so it is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedcmp.flow.catalog import METHODS, SCHEDULES, Method

if TYPE_CHECKING:
    from schedcmp.flow.scheduler import FlowSamplerScheduler

__all__ = ["FlowSamplerScheduler", "METHODS", "SCHEDULES", "Method"]


def __getattr__(name: str):
    if name == "FlowSamplerScheduler":
        from schedcmp.flow.scheduler import FlowSamplerScheduler

        return FlowSamplerScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
