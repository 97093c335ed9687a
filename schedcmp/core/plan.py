"""What to run: the cells a request expands to, and how they share pipeline calls. Pure, no torch."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from schedcmp.core.errors import UsageError
from schedcmp.core.names import SchedulerChoice, override_tag, short_name
from schedcmp.core.request import Request


@dataclass(frozen=True)
class PipelineDefaults:
    """What the pipeline's `__call__` uses when a setting is not given."""

    steps: int
    guidance_scale: float | None
    width: int
    height: int


@dataclass(frozen=True)
class RunSpec:
    """One scheduler run: a fresh scheduler, a fresh generator, one pipeline call."""

    id: str
    scheduler: str
    alias: str | None
    overrides: dict[str, Any]
    compatible: bool
    prompt: str
    negative_prompt: str | None
    seed: int
    steps: int
    guidance_scale: float | None
    width: int
    height: int
    call_args: dict[str, Any] = field(default_factory=dict)
    batch: str | None = None  # cells generated in one pipeline call share this
    schedule: str | None = None  # --schedule: the σ schedule through the scheduler's own flags; None: its own
    unsupported: str | None = None  # why this cell is not run (the scheduler cannot take its schedule)

    def record_settings(self) -> dict[str, Any]:
        """The settings its results.json record (records.Run) repeats, by the record's field names."""
        return {name: getattr(self, name) for name in RECORDED_SETTINGS}


# Everything that decides what a run produces (not its id or batch): a resumed cell and a cached reference
# count only when every one of these is the same.
RUN_SETTINGS = (
    "scheduler",
    "overrides",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "call_args",
    "schedule",
)


# The RunSpec fields a Run record carries over as they are (batch and unsupported become other fields there).
RECORDED_SETTINGS = ("id", "alias", "compatible", *RUN_SETTINGS)


def slug(text: str, limit: int = 40) -> str:
    """Lower-case, filename-safe, dash-separated."""
    cleaned = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return cleaned[:limit].rstrip("-.") or "run"


def run_id(
    class_name: str, overrides: dict[str, Any], steps: int, seed: int, extra: str = "", schedule: str | None = None
) -> str:
    """Stable, filename-safe id, e.g. `dpmsolvermultistep-karras-s20-seed8` (`extra` names other axes); a schedule
    other than the scheduler's own is named like an override (`euler-karras-...` for --schedule karras)."""
    parts = [short_name(class_name).lower()]
    tag = override_tag(overrides)
    if tag:
        parts.append(tag)
    named = slug("-".join(parts), limit=80)  # cut here, so that the schedule below always shows
    if schedule not in (None, "default"):
        named += "-" + slug(schedule)
    return named + f"-s{steps}-seed{seed}" + extra


def plan_runs(
    choices: list[SchedulerChoice], compatible: set[str], request: Request, defaults: PipelineDefaults
) -> list[RunSpec]:
    """Expand the chosen schedulers into cells: scheduler × prompt × guidance × steps × seed, with unique ids.

    A scheduler entry's pinned :STEPS wins over --steps: that row does not sweep steps.
    """
    flow = any(name.startswith("FlowMatch") for name in compatible)
    for choice in choices:
        if choice.class_name not in compatible and not (request.allow_incompatible or choice.known_to_work):
            instead = (
                "; on a flow-matching model a UI name runs it on flow sigmas where diffusers can (`schedcmp list "
                "--model M` says how each name runs); --allow-incompatible runs it as named"
                if flow
                else "; pass --allow-incompatible to run it anyway"
            )
            raise UsageError(
                f"{short_name(choice.class_name)} is not in this pipeline's compatibles "
                f"({', '.join(short_name(c) for c in sorted(compatible))}){instead}"
            )
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for choice in choices:
        runs.extend(row_cells(choice, compatible, request, defaults, seen))
    return runs


def row_cells(
    choice: SchedulerChoice, compatible: set[str], request: Request, defaults: PipelineDefaults, seen: set[str]
) -> list[RunSpec]:
    """One scheduler entry's cells, in order: prompt, then guidance, then steps, then seed."""
    guidance_axis = request.guidance_scale or (defaults.guidance_scale,)
    steps_axis = (choice.steps,) if choice.steps else (request.steps or (defaults.steps,))
    cells = []
    axes = itertools.product(enumerate(request.prompt), guidance_axis, request.schedule, steps_axis, request.seed)
    for cell, ((prompt_index, prompt), guidance, schedule, steps, seed_value) in enumerate(axes):
        # --seed-mode index: the seed moves with the cell's index in its row
        seed = seed_value + cell if request.seed_mode == "index" else seed_value
        extra = (f"-g{guidance}" if len(guidance_axis) > 1 else "") + (
            f"-p{prompt_index}" if len(request.prompt) > 1 else ""
        )
        identifier = run_id(choice.class_name, choice.overrides, steps, seed, extra, schedule)
        cells.append(
            RunSpec(
                id=unique(identifier, seen),
                scheduler=choice.class_name,
                alias=choice.alias,
                overrides=dict(choice.overrides),
                # a flow form schedcmp knows works on this flow model counts as compatible, as its class does
                compatible=choice.class_name in compatible or choice.known_to_work,
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                seed=seed,
                steps=steps,
                guidance_scale=guidance,
                width=request.width or defaults.width,
                height=request.height or defaults.height,
                call_args=dict(request.call_arg),
                schedule=None if schedule == "default" else schedule,  # as records keep an unset field
            )
        )
    return cells


def unique(identifier: str, seen: set[str]) -> str:
    """`identifier`, or `identifier-2`, `-3`, … where an earlier cell took it; remembered in `seen`."""
    candidate, counter = identifier, 2
    while candidate in seen:
        candidate, counter = f"{identifier}-{counter}", counter + 1
    seen.add(candidate)
    return candidate


def batch_key(run: RunSpec) -> tuple:
    """Cells with equal keys differ only in seed or prompt, and may share one pipeline call."""
    return (
        run.scheduler,
        repr(sorted(run.overrides.items())),
        run.steps,
        run.guidance_scale,
        run.width,
        run.height,
        run.negative_prompt,
        repr(sorted(run.call_args.items())),
        run.schedule,
    )


def batches(runs: list[RunSpec], batch_size: int) -> list[list[RunSpec]]:
    """Group cells into pipeline calls of at most `batch_size` images; different schedulers never share one."""
    groups: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(batch_key(run), []).append(run)
    planned = []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            planned.append(group[start : start + batch_size])
    return planned
