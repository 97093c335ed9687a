"""The `run` and `list` commands end to end: load -> plan -> sample -> render -> report.

One direction of flow: settings become a plan, the sampler turns the plan into results, and the renderer
and reporter turn results into files. results.json is rewritten after every finished run, so a killed
process leaves a valid file listing what finished.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from schedcmp import chart, convergence, html_report, output, render, report
from schedcmp.config import (
    AXES,
    DEFAULT_REFERENCE,
    RUN_SETTINGS,
    RunSpec,
    Settings,
    batches,
    check_settings,
    effective_overrides,
    plan_runs,
    slug,
)
from schedcmp.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, OutputError, UsageError
from schedcmp.sample import FAILED, RunResult, Sampler
from schedcmp.schedulers import (
    ALIASES,
    accepted_params_of,
    choose,
    display_label,
    init_params,
    ordered,
    scheduler_classes,
)

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
    x: str | None = None  # the grid's column axis
    z: str | None = None  # stack the sheets of this axis into one grid of grids
    no_sheet: bool = False  # no images and no sheet: a pure timing sweep
    events: str | None = None  # NDJSON, one line per finished cell: a path, or - for stdout
    resume: Path | None = None  # continue the sweep in this folder
    reference: str | None = None  # --reference-spec: measure every run's distance to this converged run
    html: bool = False  # also write report.html and the quality charts


@dataclass
class Outcome:
    document: dict[str, Any]
    out_dir: Path
    sheets: list[Path]
    exit_code: int
    model: Any = None  # the LoadedModel the runs used

    @property
    def sheet(self) -> Path | None:
        return self.sheets[0] if self.sheets else None


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
    """Everything that needs no model: settings, scheduler names and override keys, formats and axes."""
    check_settings(settings)
    if options.format not in FORMATS:
        raise UsageError(f"unknown --format {options.format!r}; choose from {', '.join(FORMATS)}")
    for flag, axis in (("--x", options.x), ("--z", options.z)):
        if axis is not None and axis not in AXES:
            raise UsageError(f"unknown {flag} {axis!r}; choose from {', '.join(AXES)}")
    if options.x is not None and options.x == options.z:
        raise UsageError("--x and --z must be different axes")
    if options.events == "-" and options.format == "json":
        raise UsageError("--events - and --format json both want stdout; send the events to a file")
    params = accepted_params_of(scheduler_classes())
    choose(settings.schedulers, [], params, None)  # unknown names and keys fail here, before the load
    if options.reference is not None:
        convergence.reference_choice(options.reference, params)
    return params


def previous_runs(folder: Path) -> dict[str, dict[str, Any]]:
    """--resume: the cells a folder's results.json lists whose image is there with the recorded pixel hash."""
    import numpy as np
    from PIL import Image

    from schedcmp.sample import pixel_sha256

    path = folder / "results.json"
    try:
        document = json.loads(path.read_text())
        runs = document["runs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OutputError(f"cannot resume from {folder}: {path} is missing or corrupt ({error})") from None
    verified = {}
    for entry in runs:
        image = folder / (entry.get("image") or "")
        if entry.get("status") == FAILED or not entry.get("image") or not image.is_file():
            continue
        try:
            pixels = np.asarray(Image.open(image).convert("RGB"))
        except OSError:
            continue
        if pixel_sha256(pixels) == entry.get("sha256"):
            verified[entry["id"]] = entry
    return verified


def matches(entry: dict[str, Any], spec: RunSpec, reference: str | None) -> bool:
    """A resumed cell counts only if made with exactly this cell's settings and measured against the same reference."""
    return all(entry.get(name) == getattr(spec, name) for name in RUN_SETTINGS) and entry.get("reference") == reference


class Events:
    """--events: one NDJSON line per finished cell, flushed at once so a watcher sees it."""

    def __init__(self, target: str | None):
        self.handle = None
        if target == "-":
            self.handle = sys.stdout
        elif target is not None:
            try:
                self.handle = open(target, "a", encoding="utf-8")
            except OSError as error:
                raise OutputError(f"cannot write --events {target}: {error.strerror or error}") from None

    def cell(self, entry: dict[str, Any]) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps({"event": "cell", **entry}, ensure_ascii=False) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None and self.handle is not sys.stdout:
            self.handle.close()


def run_comparison(
    settings: Settings,
    model_options: ModelOptions,
    options: OutputOptions,
    loaded: "LoadedModel | None" = None,
    keep_output: Callable[[RunResult, Any], None] | None = None,
) -> Outcome:
    """The `run` command: every cell of the plan, batched where only seed or prompt differ.

    `loaded` lets a caller that already holds the pipeline (the benchmark) reuse it; `keep_output` receives
    each cell's float output (H×W×C in [0, 1]) for callers that store more than the PNG (baselines).
    """
    from schedcmp import pipeline

    pipeline.quiet_libraries()
    params = validate_before_load(settings, options)
    if options.resume is not None:
        out_dir, done = options.resume, previous_runs(options.resume)
    else:
        out_dir = prepare_out_dir(options.out or default_out_dir(settings.prompts[0]), options.overwrite)
        done = {}
    events = Events(options.events)
    if loaded is None:
        device = pipeline.resolve_device(model_options.device)
        dtype = pipeline.resolve_dtype(model_options.dtype, device)
        output.info(f"loading {model_options.model or pipeline.DEFAULT_MODEL_NAME} on {device} ({dtype}) ...")
        loaded = pipeline.load(
            model_options.model, device, dtype, model_options.allow_pickle, model_options.model_config
        )
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
    classes = scheduler_classes()
    plan = None
    if options.reference is not None:
        if "callback_on_step_end" not in inspect.signature(model.pipe.__call__).parameters:
            raise UsageError(
                f"--reference needs the final latents, and {type(model.pipe).__name__} offers no callback_on_step_end"
            )
        text = options.reference
        if text == DEFAULT_REFERENCE and model.flow_shift is not None:
            text = convergence.flow_reference(model.flow_shift)
        choice = convergence.reference_choice(text, params)
        convergence.check_reference(
            choice,
            model.compatible,
            settings.allow_incompatible,
            model.flow_shift is not None,
            convergence.probe_determinism(
                classes[choice.class_name],
                model.original_config,
                choice.overrides,
                convergence.step_arguments(settings.call_args),
            ),
        )
        runs, plan = convergence.plan_references(runs, choice, model.original_config, classes)
    determinism: dict[str, tuple[str, str]] = {}
    for spec in runs:
        key = convergence.determinism_key(spec)
        if key not in determinism:
            determinism[key] = convergence.probe_determinism(
                classes[spec.scheduler],
                model.original_config,
                effective_overrides(spec),
                convergence.step_arguments(spec.call_args),
            )

    header: dict[str, Any] = {
        "model": model.name,
        "pipeline": type(model.pipe).__name__,
        "original_scheduler": model.original_scheduler_class,
        "device": device,
        "dtype": dtype,
        "generator_device": generator_device,
        "repeat": settings.repeat,
        "seed_mode": settings.seed_mode,
        "versions": versions(),
        "shared_seconds": {"model_load": model.load_seconds, "prompt_encoding": None, "warmup": None},
        "started": now(),
        "finished": None,
        "interrupted": False,
        "sheets": [],
        "references": [],
        "interval": plan.interval if plan else None,
        "charts": [],
        "report": None,
    }
    entries: dict[str, dict[str, Any]] = {}
    resumed = [
        spec
        for spec in runs
        if spec.id in done and matches(done[spec.id], spec, plan.of_run.get(spec.id) if plan else None)
    ]
    for spec in resumed:
        entries[spec.id] = done[spec.id]
    if resumed:
        output.info(f"resuming: {len(resumed)} of {len(runs)} cells already done and verified")
    todo = [spec for spec in runs if spec.id not in entries]
    results_path = out_dir / "results.json"

    def save_results() -> dict[str, Any]:
        document = report.results_document(header, [entries[spec.id] for spec in runs if spec.id in entries])
        report.write_atomic(results_path, report.to_json(document))
        return document

    save_results()
    progress = output.Progress(len(runs))
    finished = len(resumed)
    references: dict[str, convergence.ReferenceOutput | None] = {}
    try:
        with Sampler(model, generator_device) as sampler:
            if todo:
                progress.note(f"warming up ({model.original_scheduler_class}, 2 steps) ...")
                warmup = sampler.warm_up(todo[0])
                header["shared_seconds"]["prompt_encoding"] = sampler.encoding_seconds
                header["shared_seconds"]["warmup"] = max(0.0, warmup - sampler.encoding_seconds)
            if plan is not None:
                identity = reference_identity(sampler)
                for ref_id in dict.fromkeys(plan.of_run.values()):  # all, also for resumed cells: the cache has them
                    references[ref_id], summary = reference_run(
                        sampler, plan, ref_id, identity, None if options.no_sheet else out_dir, progress
                    )
                    header["references"].append(summary)
                    save_results()
            for number, batch in enumerate(batches(todo, settings.batch_size)):
                name = display_label(batch[0].scheduler, batch[0].alias, batch[0].overrides)
                if len(batch) > 1:
                    name += f" ×{len(batch)}"
                progress.started(finished + 1, name, batch[0].steps)
                batch = [replace(spec, batch=f"b{number}") for spec in batch]
                for result, rgb, float_output, latent in sampler.run_batch(batch, settings.repeat, progress.step):
                    if rgb is not None and not options.no_sheet:
                        result.image = f"images/{result.spec.id}.png"
                        report.write_atomic(out_dir / result.image, render.png_bytes(rgb))
                    if rgb is not None and keep_output is not None:
                        keep_output(result, float_output)
                    entry = entries[result.spec.id] = report.run_entry(result)
                    entry["determinism"], determinism_reason = determinism[convergence.determinism_key(result.spec)]
                    if plan is not None:
                        entry["reference"] = plan.of_run[result.spec.id]
                        entry["distance"], entry["distance_note"] = measure(
                            result.spec,
                            rgb,
                            float_output,
                            latent,
                            entry["determinism"],
                            determinism_reason,
                            references.get(entry["reference"]),
                            plan,
                        )
                    finished += 1
                    events.cell(entries[result.spec.id])
                    progress.finished(
                        finished,
                        display_label(result.spec.scheduler, result.spec.alias, result.spec.overrides),
                        result.status,
                        result.seconds,
                        result.reason,
                    )
                header["shared_seconds"]["prompt_encoding"] = sampler.encoding_seconds
                save_results()
    except KeyboardInterrupt:
        header["interrupted"] = True
        progress.note(f"interrupted: writing what the {len(entries)} finished cells made")
    finally:
        progress.close()
        events.close()

    header["finished"] = now()
    ordered_entries = [entries[spec.id] for spec in runs if spec.id in entries]
    convergence.fit_orders(ordered_entries)
    convergence.mark_pareto(ordered_entries)
    for line in convergence.convergence_warnings(header["references"], ordered_entries):
        output.info(f"warning: {line}")
    document = save_results()  # first without the sheets: drawing them must not put the results at risk
    sheets = [] if options.no_sheet or not document["runs"] else write_sheets(out_dir, document, options)
    header["sheets"] = [str(path.relative_to(out_dir)) for path in sheets]
    if options.html:
        header["charts"], header["report"] = chart.write_charts(out_dir, document), html_report.REPORT_NAME
        html_report.write_report(out_dir, report.results_document(header, document["runs"]))
    document = save_results()  # last: it names the sheets, charts and page only once they exist
    return Outcome(document, out_dir, sheets, exit_code(document, options.strict), model)


REQUIRED_RUN_FIELDS = ("id", "scheduler", "status", "steps", "seed", "prompt")


def rebuild_report(folder: Path) -> Path:
    """`schedcmp report DIR`: the charts and report.html again, from DIR/results.json and its images."""
    path = folder / "results.json"
    try:
        document = json.loads(path.read_text())
        if (
            not isinstance(document, dict)
            or document.get("kind") != "run"
            or not isinstance(document.get("runs"), list)
        ):
            raise ValueError("not the results.json of `schedcmp run`")
        for entry in document["runs"]:
            if not isinstance(entry, dict):
                raise ValueError("a run is not an object")
            missing = [name for name in REQUIRED_RUN_FIELDS if name not in entry]
            if missing:
                raise ValueError(f"run {entry.get('id', '?')} lacks {', '.join(missing)}")
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise OutputError(
            f"cannot build a report from {folder}: {path} is missing or not a run's results ({error})"
        ) from None
    for entry in document["runs"]:  # results written before convergence was measured lack these fields
        for name in (
            "determinism",
            "reference",
            "distance",
            "distance_note",
            "order",
            "pareto",
            "interval",
            "image",
            "nfe",
            "seconds",
        ):
            entry.setdefault(name, None)
    for name, empty in (("references", []), ("interval", None), ("charts", []), ("report", None), ("sheets", [])):
        document.setdefault(name, empty)
    try:
        document["charts"], document["report"] = chart.write_charts(folder, document), html_report.REPORT_NAME
        page = html_report.write_report(folder, document)
        report.write_atomic(
            path, report.to_json(document)
        )  # last: it names the charts and the page only once they exist
    except OSError as error:
        raise OutputError(f"cannot write the report into {folder}: {error.strerror or error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a hand-edited results.json
        raise OutputError(
            f"cannot build a report from {path}: a field has an unexpected value ({type(error).__name__}: {error})"
        ) from None
    return page


def reference_identity(sampler: Sampler) -> dict[str, Any]:
    """What a cached reference must have been made with: the model (configs and weights) and where it ran."""
    from schedcmp import baseline

    model = sampler.model
    return {
        "model": baseline.model_identity(model.pipe),
        "weights": convergence.weights_fingerprint(model.pipe),
        "device": model.device,
        "dtype": model.dtype,
        "generator_device": sampler.generator_device,
        "versions": {k: v for k, v in versions().items() if k != "schedcmp"},
    }


def reference_run(
    sampler: Sampler,
    plan: "convergence.ReferencePlan",
    ref_id: str,
    identity: dict[str, Any],
    out_dir: Path | None,
    progress,
) -> tuple:
    """A reference and its half-steps twin, from the cache or computed (and cached); and its results.json summary.

    Its image goes to `out_dir`/reference/ (None: --no-sheet, no images at all).
    """
    spec, half_spec = plan.specs[ref_id], plan.half_specs[ref_id]
    made = {}
    failure = None
    for which, this in (("reference", spec), ("half", half_spec)):
        key = convergence.cache_key(identity, this)
        found = convergence.load_cached(key)
        if found is None:
            progress.note(
                f"{which} run: {display_label(this.scheduler, this.alias, this.overrides)} at {this.steps} steps "
                f"(cached for the next run) ..."
            )
            result, rgb, float_output, latent = sampler.run(this, 1, progress.step)
            if result.status != "ok" or latent is None:
                failure = result.reason or "the pipeline gave no final latent"
                break
            found = convergence.ReferenceOutput(latent, float_output, rgb, result.nfe, result.seconds)
            convergence.store_cached(key, found)
        made[which] = found
    reference = made.get("reference") if failure is None else None
    summary: dict[str, Any] = {
        "id": ref_id,
        "spec": plan.text,
        "label": display_label(spec.scheduler, spec.alias, spec.overrides),
        "scheduler": spec.scheduler,
        "overrides": spec.overrides,
        "steps": spec.steps,
        "interval": spec.interval,
        **{name: getattr(spec, name) for name in convergence.REFERENCE_FIELDS},
        "status": "ok" if reference is not None else "failed",
        "reason": failure,
        "nfe": reference.nfe if reference else None,
        "seconds": reference.seconds if reference else None,
        "cached": bool(reference and reference.cached),
        "image": None,
        "self_convergence": None,
    }
    if reference is not None:
        if out_dir is not None:
            summary["image"] = f"reference/{ref_id}.png"
            (out_dir / "reference").mkdir(exist_ok=True)
            report.write_atomic(out_dir / summary["image"], render.png_bytes(reference.rgb))
        half = made["half"]
        # The same settings but the steps: the shapes match, so there is always a distance.
        summary["self_convergence"] = {
            "half_steps": half_spec.steps,
            **convergence.distances(half.latent, half.output, half.rgb, reference),
        }
        cost = "from the cache" if reference.cached else f"{reference.seconds:.2f} s, {reference.nfe} NFE"
        progress.note(
            f"reference {plan.text}: {cost}; halving its steps moves its latent by "
            f"{summary['self_convergence']['latent_rmse']:.2g} RMSE"
        )
    else:
        progress.note(f"reference {plan.text} failed: {failure}; no distances for its runs")
    return reference, summary


def measure(
    spec: RunSpec, rgb, float_output, latent, determinism: str, determinism_reason: str, reference, plan
) -> tuple:
    """(distance, note): the run's distance to its reference, or None and why it has none."""
    if rgb is None:
        return None, "no image"
    if determinism == convergence.STOCHASTIC:
        return None, "stochastic: converges to another sample, not ranked against the ODE reference"
    if determinism == convergence.UNKNOWN:
        return None, f"not ranked: {determinism_reason}"
    if spec.id in plan.off_interval:
        return None, plan.off_interval[spec.id]
    if reference is None:
        return None, "the reference failed"
    found = convergence.distances(latent, float_output, rgb, reference)
    return found, None if found is not None else "its latent or image has another shape than the reference's"


def exit_code(document: dict[str, Any], strict: bool) -> int:
    if document.get("interrupted"):
        return EXIT_INTERRUPTED
    bad = {FAILED} if not strict else {status for status in ("failed", "suspect", "filtered")}
    if any(entry["status"] in bad for entry in document["runs"]):
        return EXIT_RUN_FAILED
    if any(reference["status"] == FAILED for reference in document.get("references") or []):
        return EXIT_RUN_FAILED  # --reference was asked for and nothing could be measured against it
    return EXIT_OK


def sheet_header(document: dict[str, Any]) -> list[str]:
    """The legend: what every tile shares (and, for a sweep, the values that vary)."""
    entries = document["runs"]
    first = entries[0]
    varying = set(render.multi_valued_axes(entries))
    model = f"model: {document['model']} ({document['pipeline']})"
    prompts = list(dict.fromkeys(e["prompt"] for e in entries))
    prompt_line = f"prompt: {prompts[0]}" if len(prompts) == 1 else f"prompts: {' | '.join(prompts)}"
    if first["negative_prompt"]:
        prompt_line += f"   negative: {first['negative_prompt']}"
    details = []
    if "seed" not in varying:
        details.append(f"seed {first['seed']}")
    details.append(f"{first['width']}x{first['height']}")
    if "guidance_scale" not in varying and first["guidance_scale"] is not None:
        details.append(f"guidance {first['guidance_scale']}")
    if "steps" not in varying:
        details.append(f"{first['steps']} steps")
    details.append(f"{document['device']} {document['dtype']}")
    lines = [prompt_line, " · ".join(details), model]
    references = document.get("references") or []
    if references:
        line = f"distances (latent RMSE · image PSNR) to the reference {references[0]['spec']}"
        moved = (document.get("interval") or {}).get("moved")
        if moved:
            line += f" · run with trailing spacing to start where it does: {', '.join(moved)}"
        lines.append(line)
    return lines


def write_sheets(out_dir: Path, document: dict[str, Any], options: OutputOptions) -> list[Path]:
    """contact_sheet.png, or for a sweep one grid per sheet (split into pages when too big), from the saved images."""
    entries = document["runs"]
    width, height = entries[0]["width"], entries[0]["height"]
    header = sheet_header(document)
    plans = render.plan_sheets(entries, options.x, options.z)
    if plans is None:
        tiles = [
            render.Tile(
                render.read_png(out_dir / e["image"]) if e.get("image") else None,
                render.tile_lines(e),
                e["status"],
                e.get("reason"),
            )
            for e in entries
        ]
        path = out_dir / "contact_sheet.png"
        report.write_atomic(path, render.render_contact_sheet(header, tiles, width, height))
        return [path]
    if options.z is not None and len(plans) > 1:
        stacked = grid_of_grids(out_dir, header, plans, width, height)
        if stacked is not None:
            return [stacked]
        output.info(f"--z {options.z}: the grid of grids would be too big for one image; writing one sheet per value")
    written = []
    for plan in plans:
        name = "contact_sheet" + (f"-{slug(plan.title, 60)}" if len(plans) > 1 else "")
        page_ranges = render.pages(len(plan.rows), len(plan.columns), width, height, len(header) + 2)
        for page, (rows, columns) in enumerate(page_ranges, start=1):
            cells = [
                render.GridCell(
                    r - rows.start,
                    c - columns.start,
                    render.read_png(out_dir / e["image"]) if e.get("image") else None,
                    render.cell_lines(e),
                    e["status"],
                    e.get("reason"),
                )
                for r, c, e in plan.cells
                if r in rows and c in columns
            ]
            title = [plan.title] if plan.title else []
            if len(page_ranges) > 1:
                title.append(
                    f"page {page} of {len(page_ranges)} (rows {rows.start + 1}-{rows.stop}, "
                    f"columns {columns.start + 1}-{columns.stop}): the grid was too big for one image"
                )
            path = out_dir / (name + (f"-part{page}" if len(page_ranges) > 1 else "") + ".png")
            png = render.render_grid(
                header + title,
                plan.rows[rows.start : rows.stop],
                plan.columns[columns.start : columns.stop],
                cells,
                width,
                height,
            )
            report.write_atomic(path, png)
            written.append(path)
        if len(page_ranges) > 1:
            output.info(f"{name}: the grid was split into {len(page_ranges)} pages")
    return written


def grid_of_grids(out_dir: Path, header: list[str], plans: list, width: int, height: int) -> Path | None:
    """--z: every sheet's grid, titled, one under the other in contact_sheet.png; None when too big for one image."""
    header_lines = len(header) + 1
    if any(len(render.pages(len(p.rows), len(p.columns), width, height, header_lines)) > 1 for p in plans):
        return None
    grids = []
    for number, plan in enumerate(plans):
        cells = [
            render.GridCell(
                r,
                c,
                render.read_png(out_dir / e["image"]) if e.get("image") else None,
                render.cell_lines(e),
                e["status"],
                e.get("reason"),
            )
            for r, c, e in plan.cells
        ]
        grids.append(
            render.render_grid(
                (header if number == 0 else []) + [plan.title], plan.rows, plan.columns, cells, width, height
            )
        )
    stacked = render.stack_vertically(grids)
    if stacked is None:
        return None
    path = out_dir / "contact_sheet.png"
    report.write_atomic(path, stacked)
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
        "aliases": [
            {"name": alias, "class": cls, "overrides": overrides} for alias, (cls, overrides) in ALIASES.items()
        ],
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
