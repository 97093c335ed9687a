"""What to run: the settings of a comparison and the list of runs it expands to. Pure, no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from schedcmp.errors import UsageError
from schedcmp.schedulers import SchedulerChoice, override_tag, parse_value, short_name


@dataclass(frozen=True)
class Settings:
    """Everything `schedcmp run` was asked for. None means: the pipeline's own default."""

    prompt: str
    schedulers: str = "all"
    seed: int = 0
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    allow_incompatible: bool = False
    repeat: int = 1
    generator_device: str = "cpu"


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


def check_settings(settings: Settings) -> None:
    """Reject what can be rejected before a model is loaded."""
    if not settings.prompt.strip():
        raise UsageError("the prompt is empty")
    if settings.steps is not None and settings.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {settings.steps}")
    if settings.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {settings.repeat}")
    for name, value in (("--width", settings.width), ("--height", settings.height)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive number of pixels, got {value}")
    if settings.guidance_scale is not None and settings.guidance_scale < 0:
        raise UsageError(f"--guidance-scale must not be negative, got {settings.guidance_scale}")


RESERVED_CALL_ARGS = {
    "prompt": "the positional PROMPT",
    "negative_prompt": "--negative-prompt",
    "num_inference_steps": "--steps or NAME:STEPS",
    "guidance_scale": "--guidance-scale",
    "width": "--width",
    "height": "--height",
    "generator": "--seed",
    "output_type": "nothing (schedcmp needs the float output)",
    "callback_on_step_end": "nothing (schedcmp reports progress itself)",
}


def parse_call_args(items: list[str]) -> dict[str, Any]:
    """`--call-arg key=value` items -> keyword arguments for the pipeline call."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"malformed --call-arg {item!r}: expected key=value")
        if key in RESERVED_CALL_ARGS:
            raise UsageError(f"--call-arg {key} is set by schedcmp: use {RESERVED_CALL_ARGS[key]}")
        parsed[key] = parse_value(value.strip())
    return parsed


def slug(text: str, limit: int = 40) -> str:
    """Lower-case, filename-safe, dash-separated."""
    cleaned = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return cleaned[:limit].rstrip("-.") or "run"


def run_id(class_name: str, overrides: dict[str, Any], steps: int, seed: int) -> str:
    """Stable, filename-safe id, e.g. `dpmsolvermultistep-karras-s20-seed8`."""
    parts = [short_name(class_name).lower()]
    tag = override_tag(overrides)
    if tag:
        parts.append(tag)
    return slug("-".join(parts), limit=80) + f"-s{steps}-seed{seed}"


def plan_runs(
    choices: list[SchedulerChoice], compatible: set[str], settings: Settings, defaults: PipelineDefaults
) -> list[RunSpec]:
    """Expand the chosen schedulers into runs, one per scheduler, with unique ids."""
    runs, seen = [], set()
    for choice in choices:
        if choice.class_name not in compatible and not (settings.allow_incompatible or choice.known_to_work):
            raise UsageError(
                f"{short_name(choice.class_name)} is not in this pipeline's compatibles "
                f"({', '.join(short_name(c) for c in sorted(compatible))}); pass --allow-incompatible to run it anyway"
            )
        steps = choice.steps or settings.steps or defaults.steps
        identifier = base = run_id(choice.class_name, choice.overrides, steps, settings.seed)
        counter = 2
        while identifier in seen:
            identifier = f"{base}-{counter}"
            counter += 1
        seen.add(identifier)
        runs.append(
            RunSpec(
                id=identifier,
                scheduler=choice.class_name,
                alias=choice.alias,
                overrides=dict(choice.overrides),
                compatible=choice.class_name in compatible,
                prompt=settings.prompt,
                negative_prompt=settings.negative_prompt,
                seed=settings.seed,
                steps=steps,
                guidance_scale=settings.guidance_scale if settings.guidance_scale is not None else defaults.guidance_scale,
                width=settings.width or defaults.width,
                height=settings.height or defaults.height,
                call_args=dict(settings.call_args),
            )
        )
    return runs
