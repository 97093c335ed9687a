"""The `run` and `list` commands end to end: load -> plan -> sample -> render -> report.

One direction of flow: settings become a plan, the sampler turns the plan into results, and the renderer
and reporter turn results into files. results.json is rewritten after every finished run, so a killed
process leaves a valid file listing what finished.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from schedcmp import output, render, report
from schedcmp.config import Settings, check_settings, plan_runs, slug
from schedcmp.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, OutputError, UsageError
from schedcmp.sample import FAILED, OK, RunResult, Sampler
from schedcmp.schedulers import ALIASES, accepted_params_of, choose, display_label, init_params, ordered, scheduler_classes

if TYPE_CHECKING:
    from schedcmp.pipeline import LoadedModel

FORMATS = ("table", "json", "csv", "markdown")


@dataclass(frozen=True)
class ModelOptions:
    model: str | None = None
    model_config: str | None = None
    allow_pickle: bool = False
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class OutputOptions:
    out: Path | None = None
    overwrite: bool = False
    format: str = "table"
    strict: bool = False


@dataclass
class Outcome:
    document: dict[str, Any]
    out_dir: Path
    sheet: Path | None
    exit_code: int
    model: Any = None  # the LoadedModel the runs used


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    found = {}
    for package in ("schedcmp", "diffusers", "torch", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def default_out_dir(prompt: str) -> Path:
    return Path("schedcmp-runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{slug(prompt)}"


def prepare_out_dir(path: Path, overwrite: bool) -> Path:
    """Create the output folder and prove it writable, before any model is loaded."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"output folder {path} is not empty; pass --overwrite or choose another --out")
    try:
        (path / "images").mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"output folder {path} is not writable: {error.strerror or error}") from None
    return path


def check_size(value: int, multiple: int, flag: str) -> None:
    if value % multiple:
        raise UsageError(f"{flag} {value} is not a multiple of {multiple} (this model's VAE factor)")


def validate_before_load(settings: Settings, options: OutputOptions) -> dict[str, set[str]]:
    """Everything that needs no model: settings, scheduler names and override keys, the format."""
    check_settings(settings)
    if options.format not in FORMATS:
        raise UsageError(f"unknown --format {options.format!r}; choose from {', '.join(FORMATS)}")
    params = accepted_params_of(scheduler_classes())
    choose(settings.schedulers, [], params, None)  # unknown names and keys fail here, before the load
    return params


def run_comparison(
    settings: Settings,
    model_options: ModelOptions,
    options: OutputOptions,
    loaded: "LoadedModel | None" = None,
    keep_output: Callable[[RunResult, Any], None] | None = None,
) -> Outcome:
    """The `run` command.

    `loaded` lets a caller that already holds the pipeline (the benchmark) reuse it; `keep_output` receives
    each run's float output (H×W×C in [0, 1]) for callers that store more than the PNG (baselines).
    """
    from schedcmp import pipeline

    pipeline.quiet_libraries()
    params = validate_before_load(settings, options)
    out_dir = prepare_out_dir(options.out or default_out_dir(settings.prompt), options.overwrite)
    if loaded is None:
        device = pipeline.resolve_device(model_options.device)
        dtype = pipeline.resolve_dtype(model_options.dtype, device)
        output.info(f"loading {model_options.model or pipeline.DEFAULT_MODEL_NAME} on {device} ({dtype}) ...")
        loaded = pipeline.load(model_options.model, device, dtype, model_options.allow_pickle, model_options.model_config)
    model = loaded
    device, dtype = model.device, model.dtype
    generator_device = device if settings.generator_device == "device" else settings.generator_device
    runs = plan_runs(
        choose(settings.schedulers, model.compatible, params, model.flow_shift),
        set(model.compatible),
        settings,
        model.defaults,
    )
    if not runs:
        raise UsageError(f"{type(model.pipe).__name__} lists no compatible schedulers; name some with --schedulers")
    check_size(runs[0].width, model.size_multiple, "--width")
    check_size(runs[0].height, model.size_multiple, "--height")

    header: dict[str, Any] = {
        "model": model.name,
        "model_label": model.label,
        "pipeline": type(model.pipe).__name__,
        "original_scheduler": model.original_scheduler_class,
        "device": device,
        "dtype": dtype,
        "generator_device": generator_device,
        "repeat": settings.repeat,
        "versions": versions(),
        "shared_seconds": {"model_load": model.load_seconds, "prompt_encoding": None, "warmup": None},
        "started": now(),
        "finished": None,
        "interrupted": False,
    }
    results: list[RunResult] = []
    results_path = out_dir / "results.json"

    def save_results() -> dict[str, Any]:
        document = report.results_document(header, results)
        report.write_atomic(results_path, report.to_json(document))
        return document

    save_results()
    progress = output.Progress(len(runs))
    try:
        with Sampler(model, generator_device) as sampler:
            progress.note(f"warming up ({model.original_scheduler_class}, 2 steps) ...")
            warmup = sampler.warm_up(runs[0])
            header["shared_seconds"]["prompt_encoding"] = sampler.encoding_seconds
            header["shared_seconds"]["warmup"] = max(0.0, warmup - sampler.encoding_seconds)
            for index, spec in enumerate(runs, start=1):
                name = display_label(spec.scheduler, spec.alias, spec.overrides)
                progress.started(index, name, spec.steps)
                result, rgb, float_output = sampler.run(spec, settings.repeat, progress.step)
                if rgb is not None:
                    result.image = f"images/{spec.id}.png"
                    report.write_atomic(out_dir / result.image, render.png_bytes(rgb))
                    if keep_output is not None:
                        keep_output(result, float_output)
                results.append(result)
                header["shared_seconds"]["prompt_encoding"] = sampler.encoding_seconds
                save_results()
                progress.finished(index, name, result.status, result.seconds, result.reason)
    except KeyboardInterrupt:
        header["interrupted"] = True
        progress.note(f"interrupted: writing what the {len(results)} finished runs made")
    finally:
        progress.close()

    header["finished"] = now()
    document = save_results()
    sheet = write_sheet(out_dir, document) if document["runs"] else None
    return Outcome(document, out_dir, sheet, exit_code(document, options.strict), model)


def exit_code(document: dict[str, Any], strict: bool) -> int:
    if document.get("interrupted"):
        return EXIT_INTERRUPTED
    bad = {FAILED} if not strict else {status for status in ("failed", "suspect", "filtered")}
    if any(entry["status"] in bad for entry in document["runs"]):
        return EXIT_RUN_FAILED
    return EXIT_OK


def sheet_header(document: dict[str, Any]) -> list[str]:
    first = document["runs"][0]
    model = f"model: {document['model']} ({document['pipeline']})"
    if document.get("model_label"):
        model += f" - {document['model_label']}"
    guidance = "" if first["guidance_scale"] is None else f" · guidance {first['guidance_scale']}"
    return [
        f"prompt: {first['prompt']}" + (f"   negative: {first['negative_prompt']}" if first["negative_prompt"] else ""),
        f"seed {first['seed']} · {first['width']}×{first['height']}{guidance} · {document['device']} {document['dtype']}",
        model,
    ]


def write_sheet(out_dir: Path, document: dict[str, Any]) -> Path:
    """contact_sheet.png from results.json and the saved images."""
    entries = document["runs"]
    tiles = [
        render.Tile(render.read_png(out_dir / e["image"]) if e.get("image") else None, render.tile_lines(e), e["status"])
        for e in entries
    ]
    path = out_dir / "contact_sheet.png"
    png = render.render_contact_sheet(sheet_header(document), tiles, entries[0]["width"], entries[0]["height"])
    report.write_atomic(path, png)
    return path


def list_document(model_options: ModelOptions) -> dict[str, Any]:
    """What `schedcmp list` shows: the scheduler, its config, the compatibles, the aliases, the flags."""
    from schedcmp import pipeline

    pipeline.quiet_libraries()
    device = pipeline.resolve_device(model_options.device if model_options.device != "auto" else "cpu")
    model = pipeline.load(model_options.model, device, "fp32", model_options.allow_pickle, model_options.model_config)
    classes = scheduler_classes()
    config = {key: value for key, value in dict(model.original_config).items()}
    return {
        "model": model.name,
        "model_label": model.label,
        "pipeline": type(model.pipe).__name__,
        "scheduler": {"class": model.original_scheduler_class, "config": jsonable(config)},
        "compatible": [
            {
                "class": name,
                "aliases": [alias for alias, (cls, _) in ALIASES.items() if cls == name],
                "accepts": sorted(init_params(classes[name])) if name in classes else [],
            }
            for name in ordered(model.compatible)
        ],
        "aliases": [{"name": alias, "class": cls, "overrides": overrides} for alias, (cls, overrides) in ALIASES.items()],
    }


def jsonable(value: Any) -> Any:
    """Configs hold tuples, numpy arrays and the like: turn them into JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
