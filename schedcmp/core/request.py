"""Every setting of a comparison, declared once: the `Request`.

Each field of `Request` is one setting. Its name is the `compare()` argument, the --config key and the key
results.json stores it under (where `stored` gives none other); its `Setting` metadata holds the flags, the
help, which commands take it, how any accepted form of a value is read, what is wrong with a value, and
whether it decides the plan's identity. From this one declaration come the CLI's options (schedcmp.cli), the
config keys (`load_config_file`), the stored values (`stored` / `stored_values`) and compare()'s parameters
(`api_signature`); `merge` combines the sources in one documented order, and `check` says what is wrong with a
request in one place, for the CLI and the API alike.

To add a setting: declare a field here (CONTRIBUTING.md says how), then use it where it acts. Nothing else.

Pure: no torch, no typer.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from schedcmp.core.errors import UsageError
from schedcmp.core.names import parse_entries, parse_value
from schedcmp.core.records import Shard

# The reference --reference computes: schedcmp/quality/convergence.py says why (a measurement on the default model).
DEFAULT_REFERENCE = "DPMSolverMultistep(use_karras_sigmas=true):400"
DEFAULT_BATCH_SIZE = 8  # cells that differ only in seed or prompt share one pipeline call, up to this many images
DEFAULT_MAX_STEPS = 100  # --max-steps: where an equal-quality search gives up
SEED_MODES = ("same", "index")
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
AXES = ("steps", "seed", "guidance_scale", "prompt", "schedule")
FORMATS = ("table", "json", "csv", "markdown")
DEVICE_PATTERN = r"(auto|cpu|cuda|mps)(?::(\d+))?"
DTYPES = ("auto", "fp32", "fp16", "bf16")
GENERATOR_DEVICES = ("cpu", "device")
# torch: diffusers' PyTorch pipeline; flax: its Flax pipeline and schedulers (schedcmp.flax, in .venv-flax);
# torch,flax: each scheduler in both, from the same latents, and the distance between them.
BACKENDS = ("torch", "flax", "torch,flax")

# The commands that take settings; API is compare(), which takes every setting not marked CLI-only.
RUN, BASELINE, MERGE, LIST, API = "run", "baseline", "merge", "list", "api"
COMPARISON = frozenset({RUN, BASELINE, API})
RUN_ONLY = frozenset({RUN, API})
OUTPUT = frozenset({RUN, MERGE, API})
CLI_ONLY = frozenset({RUN})

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

# compare()'s names from before every argument took its flag's name: still accepted, with a DeprecationWarning.
DEPRECATED_API_NAMES = {"html_report": "html", "call_args": "call_arg"}


# -- reading a value: any form a source may give -> the value a Request holds ------------------------------------


def text(value: Any, where: str) -> str:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    return value


def texts(value: Any, where: str) -> tuple[str, ...]:
    """One string, or a list of them."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise UsageError(f"{where} must be a string or a list of strings, got {value!r}")


def whole(value: Any, where: str) -> int:
    """A whole number: an int, or its digits as text."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UsageError(f"{where} must be a whole number, got {value!r}")


def number(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise UsageError(f"{where} must be a number, got {value!r}")


def switch(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"{where} must be true or false, got {value!r}")


def one_of(choices: Iterable[str], pattern: str | None = None) -> Callable[[Any, str], str]:
    """A reader for a value from `choices` (or matching `pattern`)."""
    choices = tuple(choices)

    def read(value: Any, where: str) -> str:
        value = text(value, where)
        if value in choices or (pattern is not None and re.fullmatch(pattern, value)):
            return value
        raise UsageError(f"unknown {where} {value!r}; choose from {', '.join(choices)}")

    return read


NUMBER = r"-?\d+(?:\.\d+)?"  # a sign is allowed so that a negative value gets its own message


def parse_numbers(text: str, flag: str, integers: bool = True) -> tuple:
    """Number lists, safe in a shell without quotes: `10,20,30`, `10-50` (every integer), `10-50:10` (step 10),
    `10-50/5` (5 evenly spaced values, ends included). Values are kept in order, duplicates dropped."""
    values: list = []
    for item in str(text).split(","):
        values.extend(parse_number_item(item.strip(), flag, integers))
    return tuple(dict.fromkeys(values))


def parse_number_item(item: str, flag: str, integers: bool) -> list:
    """One item of a number list: a number, A-B, A-B:STEP or A-B/COUNT."""
    convert = int if integers else float
    match = re.fullmatch(rf"({NUMBER})(?:-({NUMBER})(?:([:/])({NUMBER}))?)?", item)
    if match is None:
        raise UsageError(f"{flag}: {item!r} is not a number, A-B, A-B:STEP or A-B/COUNT")
    start, end, separator, amount = match.groups()
    if integers and any(
        part is not None and "." in part for part in (start, end, amount if separator == ":" else None)
    ):
        raise UsageError(f"{flag}: {item!r} must be whole numbers")
    if end is None:
        return [convert(start)]
    low, high = convert(start), convert(end)
    if high < low:
        raise UsageError(f"{flag}: range {item!r} runs backwards")
    if separator is None:
        if not integers:
            raise UsageError(f"{flag}: a range of decimals needs :STEP or /COUNT, e.g. {item}:0.5")
        return list(range(low, high + 1))
    if separator == ":":
        step = convert(amount)
        if step <= 0:
            raise UsageError(f"{flag}: step in {item!r} must be positive")
        count = int((high - low) / step + 1e-9) + 1
        return [convert(round(low + i * step, 10)) for i in range(count)]
    count = int(amount) if float(amount).is_integer() else 0
    if count < 1:
        raise UsageError(f"{flag}: count in {item!r} must be a whole number of at least 1")
    spaced = [low] if count == 1 else [low + (high - low) * i / (count - 1) for i in range(count)]
    return [round(v) if integers else round(v, 10) for v in spaced]


def numbers(integers: bool) -> Callable[[Any, str], tuple]:
    """A reader for a number axis: an int (or float), a list or range of them, or a number-list string."""

    def read(value: Any, where: str) -> tuple:
        if isinstance(value, str):
            return parse_numbers(value, where, integers)
        kinds = (int,) if integers else (int, float)
        values = [value] if isinstance(value, (int, float)) else list(value) if isinstance(value, Iterable) else None
        if not values or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
            expected = "whole numbers" if integers else "numbers"
            raise UsageError(
                f"{where} must be {expected}, a list or range of them, or a number-list string; got {value!r}"
            )
        return tuple(dict.fromkeys(values if integers else [float(v) for v in values]))  # as a string parses

    return read


def schedule_names(value: Any, where: str) -> tuple[str, ...]:
    """--schedule: names from SCHEDULES, comma-separated (or a list); duplicates dropped, order kept."""
    from schedcmp.flow.catalog import SCHEDULES

    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
        raise UsageError(f"{where} must be schedule names, e.g. default,karras; got {value!r}")
    for name in names:
        if name not in SCHEDULES:
            raise UsageError(f"unknown {where} {name!r}; choose from {', '.join(SCHEDULES)}")
    return tuple(dict.fromkeys(names))


def thread_count(value: Any, where: str) -> int | str:
    """`auto`, or a whole number of threads."""
    if value == "auto":
        return value
    try:
        return whole(value, where)
    except UsageError:
        raise UsageError(f"{where} must be a whole number or auto, got {value!r}") from None


def scheduler_list(value: Any, where: str) -> str:
    """The --schedulers grammar: a string as it is; a list of entries (strings or scheduler classes) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        entries = [item.__name__ if isinstance(item, type) else item for item in value]
        if entries and all(isinstance(item, str) for item in entries):
            return ",".join(entries)
    raise UsageError(f"{where} must be a string, or a list of entries (strings or scheduler classes); got {value!r}")


def call_args(value: Any, where: str) -> dict[str, Any]:
    """`key=value` items (flags, a config list) or a dict (the API, a config table) -> pipeline keyword arguments."""
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        value = dict(call_arg_item(item, where) for item in value)
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a dict or a list of key=value strings, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"malformed {where} {key!r}: expected a keyword argument's name")
        if key in RESERVED_CALL_ARGS:
            raise UsageError(f"{where} {key} is set by schedcmp: use {RESERVED_CALL_ARGS[key]}")
        try:  # results.json records them, and the reference cache keys on them
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(
                f"{where} {key}: {type(item).__name__} values cannot be recorded; "
                "pass numbers, strings, booleans, lists or None"
            ) from None
    return dict(value)


def call_arg_item(item: str, where: str) -> tuple[str, Any]:
    key, separator, value = item.partition("=")
    if not separator or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
        raise UsageError(f"malformed {where} {item!r}: expected key=value")
    return key.strip(), parse_value(value.strip())


def parse_call_args(items: list[str]) -> dict[str, Any]:
    """`--call-arg key=value` items -> keyword arguments for the pipeline call."""
    return call_args(list(items), "--call-arg")


def shard_of(value: Any, where: str) -> Shard:
    """`I/N`: part I (counted from 0) of N."""
    if isinstance(value, Shard):
        return value
    if isinstance(value, dict) and set(value) == {"index", "count"}:  # as results.json stores it
        value = f"{value['index']}/{value['count']}"
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
    if match is None:
        raise UsageError(f"{where} {value!r} is not INDEX/COUNT, e.g. 0/4 (indexes count from 0)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise UsageError(f"{where} {value}: the index must be 0 to {max(count - 1, 0)} of a count of at least 1")
    return Shard(index, count)


def path(value: Any, where: str) -> Path:
    return Path(text(value, where))


# -- what is wrong with a value (messages name the flag, from the CLI and the API alike) -------------------------


def at_least_one(flag: str) -> Callable[[Any], str | None]:
    def problem(value: Any) -> str | None:
        values = value if isinstance(value, tuple) else (value,)
        low = min(values, default=1)
        return f"{flag} must be at least 1, got {low}" if low < 1 else None

    return problem


def pixels(flag: str) -> Callable[[Any], str | None]:
    return lambda value: f"{flag} must be a positive number of pixels, got {value}" if value < 1 else None


def seeds_in_range(seeds: tuple[int, ...]) -> str | None:
    for seed in seeds:
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            return f"--seed {seed} is outside the generator's range, -2**63 to 2**64-1"
    return None


def prompts_problem(prompts: tuple[str, ...]) -> str | None:
    for prompt in prompts:
        if prompt and not prompt.strip():  # "" is unconditional generation; a few spaces look like a slip
            return 'the prompt is empty but for whitespace; pass "" for unconditional generation'
    return None


def positive_target(flag: str) -> Callable[[Any], str | None]:
    return lambda value: (
        None if value > 0 and math.isfinite(value) else f"{flag} must be a positive number, got {value}"
    )


def guidance_problem(scales: tuple[float, ...]) -> str | None:
    low = min(scales, default=0.0)
    return f"--guidance-scale must not be negative, got {low}" if low < 0 else None


# -- the declaration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """How one field of `Request` is given, read, checked and kept."""

    help: str
    flags: tuple[str, ...] = ()  # ("--schedulers", "-s"); a switch pair ("--html/--no-html",); () is PROMPT
    commands: frozenset[str] = RUN_ONLY  # the CLI commands that take it, and API for compare()
    read: Callable[[Any, str], Any] = text  # any form a flag, config, stored folder or caller gives -> the value
    problem: Callable[[Any], str | None] | None = None  # what is wrong with a value, in words
    config: bool = True  # a key of a --config file
    stored: str | None = None  # stored in results.json's settings (and restored by --resume) under this key
    identity: bool = False  # decides the cells and their images: compared on --resume, in the plan fingerprint
    toml: tuple[type, ...] = (str,)  # what a --config file may give
    cli_type: Any = str  # what the flag holds before `read`
    repeatable: bool = False  # the flag may be given several times
    metavar: str | None = None
    default_text: str | None = None  # `[default: ...]` in --help

    @property
    def flag(self) -> str:
        """The long flag, as messages name the setting: `--steps`."""
        return self.flags[0].split("/")[0] if self.flags else "PROMPT"


def setting(default: Any = None, *, factory: Callable[[], Any] | None = None, **declared: Any) -> Any:
    """A field of Request, its Setting in the metadata."""
    metadata = {"setting": Setting(**declared)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


NUMBER_LIST = (int, float, str, list)  # what a config file may give for a number axis


@dataclass(frozen=True)
class Request:
    """A comparison as asked for: every setting, read and merged; axes are tuples (empty: the pipeline's own)."""

    prompt: tuple[str, ...] = setting(
        (),
        help="The prompt every scheduler gets (or use --prompts-file / --config).",
        commands=COMPARISON,
        read=texts,
        problem=prompts_problem,
        stored="prompts",
        identity=True,
        toml=(str, list),
    )
    schedulers: str = setting(
        "all",
        help="Which schedulers: all, all+ or a list (grammar above).",
        flags=("--schedulers", "-s"),
        commands=COMPARISON,
        read=scheduler_list,
        stored="schedulers",
        identity=True,
        toml=(str, list),
        default_text="all",
    )
    model: str | None = setting(
        help="Diffusers folder, hub id or .safetensors file. Default: the embedded model. (compare(): `pipe`)",
        flags=("--model", "-m"),
        commands=COMPARISON | {LIST},
        stored="model",
    )
    model_config: str | None = setting(
        help="For a single-file checkpoint: a diffusers folder or hub id holding its configs.",
        flags=("--model-config",),
        commands=COMPARISON | {LIST},
        stored="model_config",
    )
    seed: tuple[int, ...] = setting(
        (0,),
        help="Seed(s) of the fresh generator each cell gets: 8, 1-4, 1,5,9.",
        flags=("--seed",),
        commands=COMPARISON,
        read=numbers(integers=True),
        problem=seeds_in_range,
        stored="seeds",
        identity=True,
        toml=NUMBER_LIST,
        default_text="0",
    )
    steps: tuple[int, ...] = setting(
        (),
        help="Denoising steps: 20, 10,20,30, 10-50:10 or 10-50/5 (default: the pipeline's own).",
        flags=("--steps",),
        commands=COMPARISON,
        read=numbers(integers=True),
        problem=at_least_one("--steps"),
        stored="steps",
        identity=True,
        toml=NUMBER_LIST,
    )
    guidance_scale: tuple[float, ...] = setting(
        (),
        help="Classifier-free guidance scale(s): 7.5 or 5,7.5 or 3-9:1.5 (default: the pipeline's own).",
        flags=("--guidance-scale",),
        commands=COMPARISON,
        read=numbers(integers=False),
        problem=guidance_problem,
        stored="guidance_scales",
        identity=True,
        toml=NUMBER_LIST,
    )
    schedule: tuple[str, ...] = setting(
        ("default",),
        help="σ schedule(s): default (each scheduler's own), karras, exponential, beta (every family); simple, "
        "sgm_uniform (ComfyUI's, flow models). Several make an axis of the grid, e.g. --x schedule.",
        flags=("--schedule",),
        commands=COMPARISON,
        read=schedule_names,
        stored="schedules",
        identity=True,
        toml=(str, list),
        default_text="default",
    )
    width: int | None = setting(
        help="Image width in pixels (default: the model's native size).",
        flags=("--width",),
        commands=COMPARISON,
        read=whole,
        problem=pixels("--width"),
        stored="width",
        identity=True,
        toml=(int,),
        cli_type=int,
    )
    height: int | None = setting(
        help="Image height in pixels (default: the model's native size).",
        flags=("--height",),
        commands=COMPARISON,
        read=whole,
        problem=pixels("--height"),
        stored="height",
        identity=True,
        toml=(int,),
        cli_type=int,
    )
    negative_prompt: str | None = setting(
        help="Negative prompt.",
        flags=("--negative-prompt",),
        commands=COMPARISON,
        stored="negative_prompt",
        identity=True,
    )
    call_arg: dict[str, Any] = setting(
        factory=dict,
        help="KEY=VALUE passed to the pipeline call, e.g. eta=0.3 (repeatable; compare(): a dict).",
        flags=("--call-arg",),
        commands=COMPARISON,
        read=call_args,
        stored="call_args",
        identity=True,
        toml=(list, dict),
        repeatable=True,
    )
    device: str = setting(
        "auto",
        help="auto|cpu|cuda|cuda:N|mps (auto: cuda, then mps, then cpu).",
        flags=("--device",),
        commands=COMPARISON,
        read=one_of(("auto", "cpu", "cuda", "mps"), DEVICE_PATTERN),
        default_text="auto",
    )
    dtype: str = setting(
        "auto",
        help="auto|fp32|fp16|bf16 (auto: fp16 on cuda, fp32 otherwise).",
        flags=("--dtype",),
        commands=COMPARISON,
        read=one_of(DTYPES),
        default_text="auto",
    )
    generator_device: str = setting(
        "cpu",
        help="cpu (default, same images on every machine) or device (the run device's RNG, as the guide does on cuda).",
        flags=("--generator-device",),
        commands=COMPARISON,
        read=one_of(GENERATOR_DEVICES),
        stored="generator_device",
        identity=True,
    )
    backend: str = setting(
        "torch",
        help="torch, flax (diffusers' Flax pipeline and schedulers, in .venv-flax: docs/flax.md) or torch,flax "
        "(each scheduler in both frameworks from the same latents, and the distance between them).",
        flags=("--backend",),
        read=one_of(BACKENDS),
        stored="backend",
        identity=True,
        default_text="torch",
    )
    repeat: int = setting(
        1,
        help="Time each cell N times (same image); report median, min and max.",
        flags=("--repeat",),
        read=whole,
        problem=at_least_one("--repeat"),
        stored="repeat",
        identity=True,
        toml=(int,),
        cli_type=int,
        default_text="1",
    )
    threads: int | str = setting(
        "auto",
        help="Torch's CPU threads: N, or auto (torch's own count; fewer while other processes keep the cores busy, "
        "measured when a comparison starts; as OMP_NUM_THREADS where set).",
        flags=("--threads",),
        commands=COMPARISON,
        read=thread_count,
        problem=at_least_one("--threads"),  # checked only off the default, so on a number
        stored="threads",
        toml=(int, str),
        metavar="N|auto",
        default_text="auto",
    )
    prompts_file: str | None = setting(
        help="Prompts, one per line (- for stdin); the PROMPT argument is then optional.",
        flags=("--prompts-file",),
        commands=frozenset({RUN, BASELINE}),
    )
    config: str | None = setting(
        help="A preset (configs/*.toml); flags on the command line override it.",
        flags=("--config",),
        commands=frozenset({RUN, BASELINE}),
        config=False,
    )
    x: str | None = setting(
        help="The grid's columns: steps|seed|guidance_scale|prompt|schedule (default: the first that varies).",
        flags=("--x",),
        commands=OUTPUT,
        read=one_of(AXES),
    )
    z: str | None = setting(
        help="A grid of grids in one image: one grid per value of this axis, one under the other.",
        flags=("--z",),
        commands=OUTPUT,
        read=one_of(AXES),
    )
    seed_mode: str = setting(
        "same",
        help="same: every cell of a row gets the same seed; index: seed + the cell's index in its row.",
        flags=("--seed-mode",),
        commands=COMPARISON,
        read=one_of(SEED_MODES),
        stored="seed_mode",
        identity=True,
        default_text="same",
    )
    batch_size: int = setting(
        DEFAULT_BATCH_SIZE,
        help="Cells that differ only in seed or prompt share one pipeline call, up to N images (1: no batching).",
        flags=("--batch-size",),
        commands=COMPARISON,
        read=whole,
        problem=at_least_one("--batch-size"),
        stored="batch_size",
        identity=True,
        toml=(int,),
        cli_type=int,
        default_text=str(DEFAULT_BATCH_SIZE),
    )
    no_sheet: bool = setting(
        False,
        help="No images and no sheet: a pure timing sweep.",
        flags=("--no-sheet/--sheet",),
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    events: str | None = setting(
        help="Write one NDJSON line per finished cell to this file (- for stdout).",
        flags=("--events",),
        commands=CLI_ONLY,
    )
    resume: Path | None = setting(
        help="Continue an interrupted sweep in this folder: verified cells are skipped.",
        flags=("--resume",),
        commands=CLI_ONLY,
        read=path,
        config=False,
    )
    out: Path | None = setting(
        help="Output folder (default: ./schedcmp-runs/<timestamp>-<prompt>/).",
        flags=("--out", "-o"),
        read=path,
    )
    overwrite: bool = setting(
        False,
        help="Write into a non-empty output folder.",
        flags=("--overwrite/--no-overwrite",),
        commands=COMPARISON | {MERGE},
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    format: str = setting(
        "table",
        help="table|json|csv|markdown: json/csv/markdown go to stdout alone.",
        flags=("--format", "-f"),
        commands=frozenset({RUN, MERGE}),
        read=one_of(FORMATS),
        default_text="table",
    )
    strict: bool = setting(
        False,
        help="Exit 1 on suspect or filtered runs too.",
        flags=("--strict/--no-strict",),
        commands=frozenset({RUN, MERGE}),
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    allow_incompatible: bool = setting(
        False,
        help="Run schedulers outside the pipeline's compatibles.",
        flags=("--allow-incompatible/--no-allow-incompatible",),
        commands=COMPARISON,
        read=switch,
        stored="allow_incompatible",
        identity=True,
        toml=(bool,),
        cli_type=bool,
    )
    allow_pickle: bool = setting(
        False,
        help="Load pickle weights (.bin/.ckpt): only for models you trust.",
        flags=("--allow-pickle/--no-allow-pickle",),
        commands=COMPARISON | {LIST},
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    allow_unknown_call_args: bool = setting(
        False,
        help="Send --call-arg names the pipeline's __call__ does not list (it may take **kwargs).",
        flags=("--allow-unknown-call-args/--no-allow-unknown-call-args",),
        commands=COMPARISON,
        read=switch,
        stored="allow_unknown_call_args",
        identity=True,
        toml=(bool,),
        cli_type=bool,
    )
    reference: bool = setting(
        False,
        help="Measure each run's distance to a converged reference run (cached).",
        flags=("--reference/--no-reference",),
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    reference_spec: str | None = setting(
        help="The reference: one entry with :STEPS, e.g. DPMSolverMultistep:200 (implies --reference).",
        flags=("--reference-spec",),
        stored="reference_spec",
    )
    html: bool = setting(
        False,
        help="Also write report.html (self-contained); with --reference, the quality-vs-cost charts too.",
        flags=("--html/--no-html",),
        commands=OUTPUT,
        read=switch,
        toml=(bool,),
        cli_type=bool,
    )
    target_psnr: float | None = setting(
        help="Equal quality: find each scheduler's fewest steps whose image is within DB dB PSNR of the reference "
        "(implies --reference; the median over prompts and seeds).",
        flags=("--target-psnr",),
        read=number,
        problem=positive_target("--target-psnr"),
        stored="target_psnr",
        identity=True,
        toml=(int, float),
        cli_type=float,
        metavar="DB",
    )
    target_rmse: float | None = setting(
        help="Equal quality, in latent RMSE to the reference: the fewest steps at most X away.",
        flags=("--target-rmse",),
        read=number,
        problem=positive_target("--target-rmse"),
        stored="target_rmse",
        identity=True,
        toml=(int, float),
        cli_type=float,
        metavar="X",
    )
    max_steps: int | None = setting(
        help="Where a --target search gives up.",
        flags=("--max-steps",),
        read=whole,
        problem=at_least_one("--max-steps"),
        stored="max_steps",
        identity=True,
        toml=(int,),
        cli_type=int,
        default_text=str(DEFAULT_MAX_STEPS),
    )
    shard: Shard | None = setting(
        help="I/N: run only part I (from 0) of N of the sweep; join the parts with `schedcmp merge`. "
        "Under torchrun (WORLD_SIZE > 1) the ranks share the work without it.",
        flags=("--shard",),
        read=shard_of,  # kept in results.json's header (`shard`), which a merge clears, not in its settings
    )
    progress: bool = setting(
        True,
        help="Show progress on stderr (the CLI always does).",
        commands=frozenset({API}),
        read=switch,
        config=False,
    )

    # -- what the settings mean together --------------------------------------------------------------------

    @property
    def target(self) -> tuple[str, float] | None:
        """--target-psnr or --target-rmse, as (metric, value)."""
        if self.target_psnr is not None:
            return "psnr", self.target_psnr
        if self.target_rmse is not None:
            return "latent_rmse", self.target_rmse
        return None

    @property
    def steps_limit(self) -> int:
        """Where a target search gives up: --max-steps, or its default (0 is a value, refused by `check`)."""
        return DEFAULT_MAX_STEPS if self.max_steps is None else self.max_steps

    @property
    def reference_text(self) -> str | None:
        """The reference every run is measured against: --reference-spec, the default one for --reference or a
        target (a target is a distance to the reference), or None."""
        if self.reference_spec is not None:
            return self.reference_spec
        return DEFAULT_REFERENCE if self.reference or self.target is not None else None


def declared() -> list[dataclasses.Field]:
    return list(fields(Request))


def setting_of(declaration: dataclasses.Field) -> Setting:
    return declaration.metadata["setting"]


def for_command(command: str) -> list[dataclasses.Field]:
    """The settings a command (or API) takes, in declaration order."""
    return [f for f in fields(Request) if command in setting_of(f).commands]


def default_of(declaration: dataclasses.Field) -> Any:
    if declaration.default is not dataclasses.MISSING:
        return declaration.default
    return declaration.default_factory()


def flag_of(name: str) -> str:
    return setting_of(next(f for f in fields(Request) if f.name == name)).flag


# -- merging the sources --------------------------------------------------------------------------------------


def given(value: Any) -> bool:
    """None is "not given"; 0, False and "" are values. An empty repeatable flag is not given."""
    return value is not None and not (isinstance(value, (list, tuple)) and not value and not isinstance(value, str))


def merge(*sources: dict[str, Any], names: Callable[[str], str] | None = None) -> Request:
    """One Request from the sources, each a dict of setting name -> value in any form `read` accepts; earlier
    sources win: flags (or compare()'s arguments), then the config file, then the resumed folder, then the
    declared defaults. Each value is read once; a message names it by its flag, or by `names` (compare()'s)."""
    values = {}
    for declaration in fields(Request):
        found = next((source[declaration.name] for source in sources if given(source.get(declaration.name))), None)
        if found is None:
            continue
        where = names(declaration.name) if names else setting_of(declaration).flag
        values[declaration.name] = setting_of(declaration).read(found, where)
    return Request(**values)


def read_prompts(path: str) -> list[str]:
    """--prompts-file: one prompt per line (- for stdin)."""
    import sys

    try:
        content = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read --prompts-file {path}: {getattr(error, 'strerror', None) or error}") from None
    prompts = [line.strip() for line in content.splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts-file {path} has no prompts")
    return prompts


def with_prompts_file(source: dict[str, Any]) -> dict[str, Any]:
    """A source's --prompts-file joins its own prompts (so that a resumed folder's prompts are replaced, not
    added to, when the command line gives a file)."""
    if not source.get("prompts_file"):
        return source
    prompts = list(texts(source["prompt"], "prompt")) if given(source.get("prompt")) else []
    return {**source, "prompt": prompts + read_prompts(source["prompts_file"])}


# -- everything wrong with a request, in one place ------------------------------------------------------------


def check(request: Request, launched: bool = False) -> None:
    """Refuse what can be refused without a model: each value's own problem, then the settings together.
    `launched`: this process is one rank of several (torchrun)."""
    if not request.prompt:
        raise UsageError("no prompt: give PROMPT (compare()'s prompt), --prompts-file or `prompt` in --config")
    for declaration in fields(Request):
        value, declared = getattr(request, declaration.name), setting_of(declaration)
        if value is None or value == default_of(declaration):
            continue
        declared.read(value, declared.flag)  # a Request made in code, not read from a source, is read here
        if declared.problem is not None and (message := declared.problem(value)):
            raise UsageError(message)
    check_target(request, launched)
    check_output(request)


def check_output(request: Request) -> None:
    """The output settings together (`run` and `merge` share them)."""
    if request.x is not None and request.x == request.z:
        raise UsageError("--x and --z must be different axes")
    if request.events == "-" and request.format == "json":
        raise UsageError("--events - and --format json both want stdout; send the events to a file")


def check_target(request: Request, launched: bool) -> None:
    if request.target_psnr is not None and request.target_rmse is not None:
        raise UsageError("--target-psnr and --target-rmse both given: choose one")
    if request.target is None:
        if request.max_steps is not None:
            raise UsageError("--max-steps bounds a --target-psnr or --target-rmse search: give one of those")
        return
    flag = "--target-psnr" if request.target_psnr is not None else "--target-rmse"
    if request.steps:
        raise UsageError(f"{flag} chooses each scheduler's steps itself: drop --steps")
    if len(request.schedule) > 1:
        raise UsageError(f"{flag} searches one schedule at a time: give one --schedule")
    pinned = [entry.name for entry in parse_entries(request.schedulers) if entry.steps is not None]
    if pinned:
        raise UsageError(
            f"{pinned[0]}:STEPS pins its steps, and a target chooses each scheduler's steps itself: drop the :STEPS"
        )
    if request.shard is not None or launched:
        # A search plans its cells round by round from what it measured: no fixed plan to split up front.
        raise UsageError("a --target search runs in one process: drop --shard, or run it without torchrun")


# -- what a results folder keeps ---------------------------------------------------------------------------------


def stored(request: Request) -> dict[str, Any]:
    """The settings results.json keeps, so that `run --resume DIR` is the whole command."""
    from schedcmp.core.records import to_json

    return {setting_of(f).stored: to_json(getattr(request, f.name)) for f in fields(Request) if setting_of(f).stored}


def identity(request: Request) -> dict[str, Any]:
    """The settings that decide the cells and what each makes, as JSON: parts of one sweep share them."""
    from schedcmp.core.records import to_json

    return {f.name: to_json(getattr(request, f.name)) for f in fields(Request) if setting_of(f).identity}


def stored_values(settings: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """A results.json's stored settings as a merge source (setting name -> value). Files written before every
    setting was stored there keep the model, reference and shard in the header, and the target as a metric and
    a value: `header` gives those."""
    keys = {setting_of(f).stored: f.name for f in fields(Request) if setting_of(f).stored}
    values = {keys[key]: value for key, value in settings.items() if key in keys}
    for name in ("model", "model_config", "reference_spec", "shard"):
        if name not in values:
            values[name] = header.get(name)
    if "target_metric" in settings:  # written before a target was stored as target_psnr or target_rmse
        metric = settings["target_metric"]
        if metric is None:
            values.pop("max_steps", None)  # such a file stored the default even without a target
        else:
            values["target_psnr" if metric == "psnr" else "target_rmse"] = settings.get("target_value")
    return values


def difference(stored_request: Request, asked: Request) -> list[str]:
    """The identity settings that differ, in words: `steps (20,) there, (10,) here`."""
    return [
        f"{setting_of(f).stored or f.name} {getattr(stored_request, f.name)!r} there, {getattr(asked, f.name)!r} here"
        for f in fields(Request)
        if setting_of(f).identity and getattr(stored_request, f.name) != getattr(asked, f.name)
    ]


# -- configs/*.toml ----------------------------------------------------------------------------------------------


def config_keys() -> dict[str, tuple[type, ...]]:
    """Every key a --config file may set, and the TOML types it takes."""
    return {
        f.name: setting_of(f).toml for f in fields(Request) if setting_of(f).config and setting_of(f).commands - {API}
    }


def key_line(content: str, key: str) -> int | None:
    """The line a top-level key is set on, for error messages."""
    for number_, line in enumerate(content.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number_
    return None


def load_config_file(path_text: str) -> dict[str, Any]:
    """A comparison preset: keys are the long flag names with `_` for `-`. -> values in flag form."""
    import tomllib

    try:
        content = open(path_text, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read --config {path_text}: {getattr(error, 'strerror', None) or error}") from None
    try:
        raw = tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path_text}: not valid TOML: {error}") from None
    keys = config_keys()
    return {
        key: config_value(key, value, keys, f"{path_text}:{key_line(content, key) or '?'}")
        for key, value in raw.items()
    }


def config_value(key: str, value: Any, keys: dict[str, tuple[type, ...]], where: str) -> Any:
    """One config value, checked against its key's TOML types, in flag form."""
    if key not in keys:
        close = difflib.get_close_matches(key, list(keys), n=1)
        raise UsageError(f"{where}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    types = keys[key]
    if isinstance(value, list) and not value:  # merge() would take it for "not given" and use the default
        raise UsageError(f"{where}: {key} is an empty list: give at least one value, or leave the key out")
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join("list" if t is list else "table" if t is dict else t.__name__ for t in types)
        raise UsageError(f"{where}: {key} must be {expected}, got {type(value).__name__} {value!r}")
    if (
        key in ("prompt", "schedulers", "schedule")
        and isinstance(value, list)
        and not all(isinstance(v, str) for v in value)
    ):
        raise UsageError(f"{where}: {key} must be a list of strings")
    if isinstance(value, list) and not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise UsageError(f"{where}: {key} must be a list of strings or numbers")
    if key == "prompt":
        return [value] if isinstance(value, str) else list(value)
    if key in ("seed", "steps", "guidance_scale", "schedulers"):
        return ",".join(str(item) for item in value) if isinstance(value, list) else str(value)
    if key == "call_arg" and isinstance(value, dict):
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
    if key == "call_arg":
        return [str(v) for v in value]
    return value


# -- compare()'s parameters ----------------------------------------------------------------------------------------


def api_names() -> list[str]:
    """compare()'s keyword arguments (after `pipe` and `prompt`), in declaration order."""
    return [f.name for f in for_command(API) if f.name not in ("model", "prompt")]


def api_values(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """compare()'s keyword arguments by setting name, and the name each was given under (for messages). An old
    name is accepted with a DeprecationWarning; an unknown one is refused with the closest names."""
    import warnings

    names = api_names()
    values, called = {}, {}
    for name, value in arguments.items():
        if isinstance(value, (list, tuple)) and not value:  # merge() takes an empty list for "not given"
            raise UsageError(f"compare({name}={value!r}) is empty: give at least one value, or leave {name} out")
        if name in DEPRECATED_API_NAMES:
            new = DEPRECATED_API_NAMES[name]
            warnings.warn(f"compare({name}=...) is now compare({new}=...)", DeprecationWarning, stacklevel=3)
            values[new], called[new] = value, name
        elif name in names:
            values[name] = value
        else:
            close = difflib.get_close_matches(name, names, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UsageError(f"compare() takes no argument {name!r}{hint}")
    return values, called


def api_signature() -> inspect.Signature:
    """compare(pipe=None, prompt=None, *, <every API setting with its default>)."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("pipe", positional, default=None),
        inspect.Parameter("prompt", positional, default=None),
    ]
    for declaration in for_command(API):
        if declaration.name in ("model", "prompt"):
            continue
        parameters.append(
            inspect.Parameter(declaration.name, inspect.Parameter.KEYWORD_ONLY, default=default_of(declaration))
        )
    return inspect.Signature(parameters)


def api_help() -> str:
    """One line per compare() argument, from the declaration: for compare()'s docstring and docs/python-api.md."""
    lines = []
    for declaration in for_command(API):
        if declaration.name not in ("model", "prompt"):
            lines.append(f"    {declaration.name}: {setting_of(declaration).help}")
    return "\n".join(lines)
