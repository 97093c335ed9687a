"""schedcmp from Python: `schedcmp.compare()` on a pipeline already in memory, and the Comparison it returns.

The same engine as `schedcmp run` (schedcmp.sweep.engine): the same plan, images, results.json and sheets. Bad
input raises a schedcmp.SchedcmpError (never SystemExit); Ctrl-C is re-raised once what finished is written.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from schedcmp.core.errors import OutputError, UsageError
from schedcmp.core.plan import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_STEPS,
    DEFAULT_REFERENCE,
    RESERVED_CALL_ARGS,
    Settings,
    parse_numbers,
)
from schedcmp.core.records import DocumentError, Results, Run, dumps, read_document, to_json


def compare(
    pipe: Any = None,
    prompt: str | Iterable[str] | None = None,
    *,
    seed: int | str | Iterable[int] = 0,
    schedulers: str | Iterable[Any] = "all",
    steps: int | str | Iterable[int] | None = None,
    guidance_scale: float | str | Iterable[float] | None = None,
    width: int | None = None,
    height: int | None = None,
    negative_prompt: str | None = None,
    reference: bool | str = False,
    target_psnr: float | None = None,
    target_rmse: float | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    repeat: int = 1,
    call_args: dict[str, Any] | None = None,
    allow_incompatible: bool = False,
    allow_unknown_call_args: bool = False,
    seed_mode: str = "same",
    x: str | None = None,
    z: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    generator_device: str = "cpu",
    model_config: str | None = None,
    allow_pickle: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    html_report: bool = False,
    shard: str | None = None,
    progress: bool = True,
) -> "Comparison":
    """Run every chosen scheduler on the same prompt and seed, as `schedcmp run` does; -> a Comparison.

    `pipe` is a loaded DiffusionPipeline (used as it is: its device and dtype, nothing moved, and left exactly
    as it was), a model folder, hub id or .safetensors path, or None for the embedded default model.
    `device`, `dtype`, `model_config` and `allow_pickle` apply when schedcmp loads the model itself.
    Number axes take an int, a list, a range or a number-list string ("10-50:10"); `schedulers` takes the
    --schedulers grammar as a string, or a list of entries (strings or scheduler classes); `reference` is True
    for the default reference or a spec string as for --reference-spec; `target_psnr` or `target_rmse` searches
    each scheduler's fewest steps at that distance to it, up to `max_steps` (`.answer`, `.equal_quality`). `out`
    also writes exactly what the
    CLI writes there; without it the files live in a temporary folder as long as the Comparison does.
    `shard="I/N"` runs only that part of the sweep, as `run --shard` does (join the parts with `schedcmp merge`).
    """
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.scale import distributed
    from schedcmp.sweep import engine

    if target_psnr is not None and target_rmse is not None:
        raise UsageError("target_psnr and target_rmse both given: choose one")
    target = ("psnr", target_psnr) if target_psnr is not None else ("latent_rmse", target_rmse)
    settings = Settings(
        prompts=prompts_of(prompt),
        schedulers=schedulers_text(schedulers),
        seeds=numbers(seed, "seed"),
        steps=() if steps is None else numbers(steps, "steps"),
        guidance_scales=() if guidance_scale is None else numbers(guidance_scale, "guidance_scale", integers=False),
        width=whole_number(width, "width"),
        height=whole_number(height, "height"),
        negative_prompt=negative_prompt,
        call_args=checked_call_args(call_args),
        allow_incompatible=bool(allow_incompatible),
        allow_unknown_call_args=bool(allow_unknown_call_args),
        repeat=whole_number(repeat, "repeat"),
        generator_device=generator_device,
        seed_mode=seed_mode,
        batch_size=whole_number(batch_size, "batch_size"),
        target_metric=target[0] if target[1] is not None else None,
        target_value=None if target[1] is None else float(target[1]),
        max_steps=whole_number(max_steps, "max_steps"),
    )
    if generator_device not in ("cpu", "device"):
        raise UsageError(f"unknown generator_device {generator_device!r}; choose cpu or device")
    part = None if shard is None else distributed.parse_shard(shard)
    loaded = None
    model_options = engine.ModelOptions(None, model_config, bool(allow_pickle), device, dtype)
    if isinstance(pipe, (str, Path)):
        model_options = replace(model_options, model=str(pipe))
    elif pipe is not None:
        if not hasattr(pipe, "scheduler") or not callable(pipe):
            raise UsageError(
                f"pipe must be a diffusers pipeline, a model path or hub id, or None; got {type(pipe).__name__}"
            )
        loaded = pipeline.from_pipeline(pipe)
    temporary = None
    if out is None:
        temporary = tempfile.TemporaryDirectory(prefix="schedcmp-")
        folder, overwrite = Path(temporary.name), True
    else:
        folder = Path(out)
    options = engine.OutputOptions(
        out=folder,
        overwrite=bool(overwrite),
        x=x,
        z=z,
        html=bool(html_report),
        reference=reference_text(reference),
        shard=part,
    )
    try:
        outcome = engine.run_comparison(
            settings, model_options, options, loaded, progress=console.Progress(bool(progress))
        )
    except BaseException:
        if temporary is not None:
            temporary.cleanup()
        raise
    comparison = Comparison(outcome.results, outcome.out_dir, temporary)
    if outcome.stopped is not None:
        raise outcome.stopped  # what finished is in `out`
    return comparison


# -- turning Python values into the settings the CLI parses from text ------------------------------------------


def prompts_of(prompt: str | Iterable[str] | None) -> tuple[str, ...]:
    if prompt is None:
        raise UsageError("no prompt: pass a prompt, or a list of prompts")
    if isinstance(prompt, str):
        return (prompt,)
    prompts = tuple(prompt)
    if not all(isinstance(item, str) for item in prompts):
        raise UsageError("prompt must be a string or a list of strings")
    return prompts


def numbers(value: Any, name: str, integers: bool = True) -> tuple:
    """An int (or float), a list or range of them, or a number-list string as the CLI takes."""
    if isinstance(value, str):
        return parse_numbers(value, name)
    values = [value] if isinstance(value, (int, float)) else list(value) if isinstance(value, Iterable) else None
    kinds = (int,) if integers else (int, float)
    if values is None or not values or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        expected = "whole numbers" if integers else "numbers"
        raise UsageError(f"{name} must be {expected}, a list or range of them, or a number-list string; got {value!r}")
    return tuple(dict.fromkeys(values if integers else [float(v) for v in values]))  # as the CLI parses them


def whole_number(value: Any, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise UsageError(f"{name} must be a whole number, got {value!r}")


def schedulers_text(schedulers: str | Iterable[Any]) -> str:
    """The --schedulers grammar: a string as it is, a list of entries (strings or classes) joined."""
    if isinstance(schedulers, str):
        return schedulers
    entries = [item.__name__ if isinstance(item, type) else item for item in schedulers]
    if not entries or not all(isinstance(item, str) for item in entries):
        raise UsageError("schedulers must be a string, or a list of entries (strings or scheduler classes)")
    return ",".join(entries)


def reference_text(reference: bool | str | None) -> str | None:
    if reference is None or reference is False:
        return None
    if reference is True:
        return DEFAULT_REFERENCE
    if isinstance(reference, str):
        return reference
    raise UsageError(f"reference must be True, False or a reference spec string, got {reference!r}")


def checked_call_args(call_args: dict[str, Any] | None) -> dict[str, Any]:
    call_args = dict(call_args or {})
    for key, value in call_args.items():
        if key in RESERVED_CALL_ARGS:
            raise UsageError(f"call_args {key} is set by schedcmp: use {RESERVED_CALL_ARGS[key]}")
        try:  # results.json records them, and the reference cache keys on them
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(
                f"call_args {key}: {type(value).__name__} values cannot be recorded; "
                "pass numbers, strings, booleans, lists or None"
            ) from None
    return call_args


# -- the result --------------------------------------------------------------------------------------------------


class Comparison:
    """A finished comparison: its runs, sheets and results document, and the folder that holds its files."""

    def __init__(self, results: Results, folder: Path, temporary: tempfile.TemporaryDirectory | None = None):
        self.results = results
        self.folder = Path(folder)
        self.temporary = temporary  # the files live as long as this, or a run taken from it, is referenced

    @classmethod
    def load(cls, folder: str | Path) -> "Comparison":
        """A finished run folder (of `schedcmp run` or `compare(out=...)`), back as a Comparison."""
        folder = Path(folder)
        try:
            results = read_document(folder / "results.json", "run")
        except DocumentError as error:
            raise OutputError(f"cannot load {folder}: its results.json is missing or not a run's results ({error})")
        return cls(results, folder)

    @property
    def runs(self) -> list[Run]:
        """Every cell, in plan order; each run's `image` is its PIL.Image (None where it made none)."""
        return [replace(run, folder=self.folder, keep=self.temporary) for run in self.results.runs]

    @property
    def sheet_paths(self) -> list[Path]:
        return [self.folder / name for name in self.results.sheets]

    @property
    def sheets(self) -> list[Any]:
        """The contact sheet, or a sweep's grids, as PIL.Images."""
        from PIL import Image

        images = []
        for path in self.sheet_paths:
            with Image.open(path) as image:
                image.load()
                images.append(image.copy())
        return images

    @property
    def sheet(self) -> Any:
        """The contact sheet (or the first grid) as a PIL.Image; None with no images."""
        sheets = self.sheets
        return sheets[0] if sheets else None

    @property
    def answer(self) -> list[str]:
        """With a reference: what the comparison concludes, in words (as stderr and report.html end)."""
        return list(self.results.answer or [])

    @property
    def equal_quality(self) -> list[Any]:
        """With a target: each scheduler entry's fewest steps at it, fastest first (records.EqualQuality)."""
        return list(self.results.equal_quality or [])

    def to_dict(self) -> dict[str, Any]:
        """The results.json document, in the CLI's schema."""
        return to_json(self.results)

    def files(self) -> list[str]:
        """Every file the results name that is there, relative to the folder."""
        return [name for name in self.results.files() if (self.folder / name).is_file()]

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """The CLI's folder layout in `folder`: results.json, images/, the sheets (and report, charts)."""
        from schedcmp.output.report import write_atomic
        from schedcmp.sweep.engine import remove_previous_files

        target = Path(folder)
        if target.resolve() == self.folder.resolve():
            return target
        if target.exists() and not target.is_dir():
            raise OutputError(f"{target} is a file, not a folder")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise OutputError(f"output folder {target} is not empty; pass overwrite=True or choose another folder")
        try:
            if overwrite:
                remove_previous_files(target)  # as `run --overwrite` does: the previous comparison's, nothing else
            for name in self.files():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.folder / name, target / name)
            write_atomic(target / "results.json", dumps(self.results))  # last: it names the files only once there
        except OSError as error:
            raise OutputError(f"cannot save into {target}: {error.strerror or error}") from None
        return target

    @property
    def exit_code(self) -> int:
        """What `schedcmp run` would exit with for this comparison."""
        from schedcmp.sweep.engine import exit_code

        return exit_code(self.to_dict(), strict=False)

    def table_html(self) -> str:
        from schedcmp.output import report

        return report.to_html(report.table_rows(self.to_dict()["runs"]))

    def _repr_html_(self) -> str:
        """In Jupyter: the sheet, then the table."""
        parts = []
        for path in self.sheet_paths:
            encoded = base64.b64encode(path.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{encoded}">')
        parts.append(self.table_html())
        return "\n".join(parts)

    def __repr__(self) -> str:
        done = len(self.results.runs)
        return (
            f"<schedcmp.Comparison of {done} runs on {self.results.pipeline} ({self.results.device}) in {self.folder}>"
        )
