"""What to run: the settings of a comparison and the list of runs it expands to. Pure, no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from schedcmp.core.errors import UsageError
from schedcmp.model.schedulers import SchedulerChoice, override_tag, parse_value, short_name

# The reference --reference computes: schedcmp/convergence.py says why (a measurement on the default model).
DEFAULT_REFERENCE = "DPMSolverMultistep(use_karras_sigmas=true):400"

# Cells that differ only in seed or prompt share one pipeline call, up to this many images.
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_STEPS = 100  # --max-steps: where an equal-quality search gives up
SEED_MODES = ("same", "index")
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
AXES = ("steps", "seed", "guidance_scale", "prompt")


@dataclass(frozen=True)
class Settings:
    """Everything a comparison was asked for. Axes are tuples; an empty one means the pipeline's default."""

    prompts: tuple[str, ...]
    schedulers: str = "all"
    seeds: tuple[int, ...] = (0,)
    steps: tuple[int, ...] = ()
    guidance_scales: tuple[float, ...] = ()
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    allow_incompatible: bool = False
    allow_unknown_call_args: bool = False  # names the pipeline's __call__ does not list (it may take **kwargs)
    repeat: int = 1
    generator_device: str = "cpu"
    seed_mode: str = "same"  # same: a cell's seed is its seed value; index: seed value + the cell's column
    batch_size: int = DEFAULT_BATCH_SIZE
    # --target-psnr / --target-rmse: search each entry's step count at this distance to the reference.
    target_metric: str | None = None  # psnr or latent_rmse
    target_value: float | None = None
    max_steps: int = DEFAULT_MAX_STEPS


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
)


def settings_to_json(settings: Settings) -> dict[str, Any]:
    """Settings as results.json stores them (for --resume)."""
    return {
        f.name: list(v) if isinstance(v, tuple) else v for f in fields(settings) for v in [getattr(settings, f.name)]
    }


def settings_from_json(stored: dict[str, Any]) -> Settings:
    """Settings back from results.json; lists become the tuples Settings holds."""
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known})


def settings_difference(stored: Settings, asked: Settings) -> list[str]:
    """The settings that differ, in words: `steps 20 there, 10 here`."""
    return [
        f"{f.name} {getattr(stored, f.name)!r} there, {getattr(asked, f.name)!r} here"
        for f in fields(Settings)
        if getattr(stored, f.name) != getattr(asked, f.name)
    ]


def check_settings(settings: Settings) -> None:
    """Reject what can be rejected before a model is loaded."""
    if not settings.prompts:
        raise UsageError("no prompt: give PROMPT, --prompts-file or `prompt` in --config")
    for prompt in settings.prompts:
        if prompt and not prompt.strip():  # "" is unconditional generation; a few spaces look like a slip
            raise UsageError('the prompt is empty but for whitespace; pass "" for unconditional generation')
    if any(steps < 1 for steps in settings.steps):
        raise UsageError(f"--steps must be at least 1, got {min(settings.steps)}")
    if settings.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {settings.repeat}")
    if settings.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {settings.batch_size}")
    if settings.seed_mode not in SEED_MODES:
        raise UsageError(f"unknown --seed-mode {settings.seed_mode!r}; choose from {', '.join(SEED_MODES)}")
    for name, value in (("--width", settings.width), ("--height", settings.height)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive number of pixels, got {value}")
    for seed in settings.seeds:
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise UsageError(f"--seed {seed} is outside the generator's range, -2**63 to 2**64-1")
    if any(g < 0 for g in settings.guidance_scales):
        raise UsageError(f"--guidance-scale must not be negative, got {min(settings.guidance_scales)}")
    check_target(settings)


def check_target(settings: Settings) -> None:
    if settings.target_metric is None:
        return
    flag = "--target-psnr" if settings.target_metric == "psnr" else "--target-rmse"
    if settings.steps:
        raise UsageError(f"{flag} chooses each scheduler's steps itself: drop --steps")
    if settings.target_value is None or not settings.target_value > 0 or settings.target_value == float("inf"):
        raise UsageError(f"{flag} must be a positive number, got {settings.target_value}")
    if settings.max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1, got {settings.max_steps}")


NUMBER = r"-?\d+(?:\.\d+)?"  # a sign is allowed so that a negative value gets its own message


def parse_numbers(text: str, flag: str, integers: bool = True) -> tuple:
    """Number lists, safe in a shell without quotes: `10,20,30`, `10-50` (every integer), `10-50:10` (step 10),
    `10-50/5` (5 evenly spaced values, ends included). Values are kept in order, duplicates dropped."""
    convert = int if integers else float
    values: list = []
    for item in str(text).split(","):
        item = item.strip()
        match = re.fullmatch(rf"({NUMBER})(?:-({NUMBER})(?:([:/])({NUMBER}))?)?", item)
        if match is None:
            raise UsageError(f"{flag}: {item!r} is not a number, A-B, A-B:STEP or A-B/COUNT")
        start, end, separator, amount = match.groups()
        if integers and any(
            part is not None and "." in part for part in (start, end, amount if separator == ":" else None)
        ):
            raise UsageError(f"{flag}: {item!r} must be whole numbers")
        if end is None:
            values.append(convert(start))
            continue
        low, high = convert(start), convert(end)
        if high < low:
            raise UsageError(f"{flag}: range {item!r} runs backwards")
        if separator is None:
            if not integers:
                raise UsageError(f"{flag}: a range of decimals needs :STEP or /COUNT, e.g. {item}:0.5")
            values.extend(range(low, high + 1))
        elif separator == ":":
            step = convert(amount)
            if step <= 0:
                raise UsageError(f"{flag}: step in {item!r} must be positive")
            count = int((high - low) / step + 1e-9) + 1
            values.extend(convert(round(low + i * step, 10)) for i in range(count))
        else:
            count = int(amount) if float(amount).is_integer() else 0
            if count < 1:
                raise UsageError(f"{flag}: count in {item!r} must be a whole number of at least 1")
            spaced = [low] if count == 1 else [low + (high - low) * i / (count - 1) for i in range(count)]
            values.extend(round(v) if integers else round(v, 10) for v in spaced)
    return tuple(dict.fromkeys(values))


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


def run_id(class_name: str, overrides: dict[str, Any], steps: int, seed: int, extra: str = "") -> str:
    """Stable, filename-safe id, e.g. `dpmsolvermultistep-karras-s20-seed8` (`extra` names other axes)."""
    parts = [short_name(class_name).lower()]
    tag = override_tag(overrides)
    if tag:
        parts.append(tag)
    return slug("-".join(parts), limit=80) + f"-s{steps}-seed{seed}" + extra


def plan_runs(
    choices: list[SchedulerChoice], compatible: set[str], settings: Settings, defaults: PipelineDefaults
) -> list[RunSpec]:
    """Expand the chosen schedulers into cells: scheduler × prompt × guidance × steps × seed, with unique ids.

    A scheduler entry's pinned :STEPS wins over --steps: that row does not sweep steps.
    """
    for choice in choices:
        if choice.class_name not in compatible and not (settings.allow_incompatible or choice.known_to_work):
            raise UsageError(
                f"{short_name(choice.class_name)} is not in this pipeline's compatibles "
                f"({', '.join(short_name(c) for c in sorted(compatible))}); pass --allow-incompatible to run it anyway"
            )
    guidance_axis = settings.guidance_scales or (defaults.guidance_scale,)
    runs, seen = [], set()
    for choice in choices:
        steps_axis = (choice.steps,) if choice.steps else (settings.steps or (defaults.steps,))
        cell = 0  # the cell's index in its row (this scheduler), for --seed-mode index
        for prompt_index, prompt in enumerate(settings.prompts):
            for guidance in guidance_axis:
                for steps in steps_axis:
                    for seed_value in settings.seeds:
                        seed = seed_value + cell if settings.seed_mode == "index" else seed_value
                        cell += 1
                        extra = (f"-g{guidance}" if len(guidance_axis) > 1 else "") + (
                            f"-p{prompt_index}" if len(settings.prompts) > 1 else ""
                        )
                        identifier = base = run_id(choice.class_name, choice.overrides, steps, seed, extra)
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
                                prompt=prompt,
                                negative_prompt=settings.negative_prompt,
                                seed=seed,
                                steps=steps,
                                guidance_scale=guidance,
                                width=settings.width or defaults.width,
                                height=settings.height or defaults.height,
                                call_args=dict(settings.call_args),
                            )
                        )
    return runs


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


# -- configs/*.toml ------------------------------------------------------------------------------------

NUMBER_LIST = (int, float, str, list)
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "prompt": (str, list),
    "prompts_file": (str,),
    "schedulers": (str, list),
    "model": (str,),
    "model_config": (str,),
    "seed": NUMBER_LIST,
    "steps": NUMBER_LIST,
    "guidance_scale": NUMBER_LIST,
    "width": (int,),
    "height": (int,),
    "negative_prompt": (str,),
    "call_arg": (list, dict),
    "device": (str,),
    "dtype": (str,),
    "generator_device": (str,),
    "repeat": (int,),
    "out": (str,),
    "overwrite": (bool,),
    "format": (str,),
    "strict": (bool,),
    "allow_incompatible": (bool,),
    "allow_unknown_call_args": (bool,),
    "allow_pickle": (bool,),
    "x": (str,),
    "z": (str,),
    "seed_mode": (str,),
    "batch_size": (int,),
    "no_sheet": (bool,),
    "events": (str,),
    "reference": (bool,),
    "reference_spec": (str,),
    "html": (bool,),
    "target_psnr": (int, float),
    "target_rmse": (int, float),
    "max_steps": (int,),
}


def key_line(text: str, key: str) -> int | None:
    """The line a top-level key is set on, for error messages."""
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def load_config_file(path: str) -> dict[str, Any]:
    """A comparison preset: keys are the long flag names with `_` for `-`. -> values in flag form."""
    import tomllib

    try:
        text = open(path, encoding="utf-8").read()
    except OSError as error:
        raise UsageError(f"cannot read --config {path}: {error.strerror or error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}:{key_line(text, key) or '?'}"
        if key not in CONFIG_KEYS:
            import difflib

            close = difflib.get_close_matches(key, list(CONFIG_KEYS), n=1)
            raise UsageError(f"{where}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        types = CONFIG_KEYS[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            expected = " or ".join("list" if t is list else "table" if t is dict else t.__name__ for t in types)
            raise UsageError(f"{where}: {key} must be {expected}, got {type(value).__name__} {value!r}")
        if isinstance(value, list) and not all(
            isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value
        ):
            raise UsageError(f"{where}: {key} must be a list of strings or numbers")
        if key == "prompt":
            value = [value] if isinstance(value, str) else [str(item) for item in value]
        elif key in ("seed", "steps", "guidance_scale", "schedulers"):
            value = ",".join(str(item) for item in value) if isinstance(value, list) else str(value)
        elif key == "call_arg":
            value = (
                [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
                if isinstance(value, dict)
                else [str(v) for v in value]
            )
        values[key] = value
    return values
