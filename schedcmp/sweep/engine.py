"""The comparison engine: plan -> execute -> finish. The CLI, `schedcmp.compare()` and the benchmarks drive it.

One direction of flow: settings become a plan (cells, references, determinism), the sampler turns the plan
into records (schedcmp.core.records.Run), and the renderers and reporters turn the records into files. One
ResultsFile owns results.json and rewrites it after every batch, so a killed process leaves a valid file
listing what finished.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from schedcmp.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_TERMINATED,
    OutputError,
    Terminated,
    UsageError,
)
from schedcmp.core.plan import (
    AXES,
    DEFAULT_REFERENCE,
    RUN_SETTINGS,
    RunSpec,
    Settings,
    batches,
    check_settings,
    plan_runs,
    settings_difference,
    settings_from_json,
    settings_to_json,
    slug,
)
from schedcmp.core.records import (
    DocumentError,
    Interval,
    Order,
    Pareto,
    Results,
    Run,
    Shard,
    SharedSeconds,
    Status,
    Summary,
    from_json,
    now,
    read_document,
    to_json,
    versions,
)
from schedcmp.model.schedulers import (
    ALIASES,
    accepted_params_of,
    check_override_types,
    choose,
    display_label,
    init_params,
    ordered,
    parse_entries,
    scheduler_classes,
)
from schedcmp.output import console, html_report, render, report
from schedcmp.quality import convergence, summary, targets
from schedcmp.quality.stepsearch import Target
from schedcmp.scale import distributed

if TYPE_CHECKING:
    from schedcmp.model.pipeline import LoadedModel
    from schedcmp.model.sample import Sample

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
    shard: Shard | None = None  # --shard I/N: run only this part of the plan (schedcmp.scale.distributed)


@dataclass
class Plan:
    """What a comparison will run, fixed before the first pipeline call."""

    model: "LoadedModel"
    cells: list[RunSpec]
    references: convergence.ReferencePlan | None
    determinism: dict[str, tuple[str, str]]  # determinism_key -> (label, reason), from the probe
    generator_device: str
    done: dict[str, Run]  # cells a resumed folder already holds, verified
    reference_choice: Any = None  # the reference entry (a SchedulerChoice), for cells a search adds
    rounds: targets.Rounds | None = None  # --target-psnr/--target-rmse: the step search; `cells` is its first round


@dataclass
class Outcome:
    results: Results
    out_dir: Path
    sheets: list[Path]
    exit_code: int
    model: Any = None  # the LoadedModel the runs used
    stopped: BaseException | None = None  # Ctrl-C or SIGTERM ended it early: what finished is written

    @property
    def document(self) -> dict[str, Any]:
        """The results.json document, as written."""
        return to_json(self.results)

    @property
    def sheet(self) -> Path | None:
        return self.sheets[0] if self.sheets else None


class ResultsFile:
    """The one owner of a comparison's results.json: its header and its finished cells, in plan order."""

    def __init__(self, folder: Path, results: Results, order: list[str]):
        self.folder = folder
        self.results = results
        self.order = order
        self.runs: dict[str, Run] = {}

    def add(self, run: Run) -> None:
        self.runs[run.id] = run

    def finished(self) -> list[Run]:
        return [self.runs[cell] for cell in self.order if cell in self.runs]

    def save(self) -> dict[str, Any]:
        """Write results.json atomically; -> the document written."""
        self.results.runs = self.finished()
        document = to_json(self.results)
        report.write_atomic(self.folder / "results.json", report.to_json(document))
        return document


# -- before the model: everything that can be refused without loading it ----------------------------------


def default_out_dir(prompt: str) -> Path:
    """./schedcmp-runs/<timestamp>-<prompt>: not created here; claim_out_dir makes it unique."""
    return Path("schedcmp-runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{slug(prompt)}"


def check_out_dir(path: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot be used, before any model is loaded and without creating anything."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"output folder {path} is not empty; pass --overwrite or choose another folder")
    existing = next(folder for folder in [path, *path.absolute().parents] if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {path} is not writable: {existing} does not let us write")


def claim_out_dir(path: Path, chosen: bool, overwrite: bool) -> Path:
    """Create the output folder once the plan stands. A folder the user did not choose is made unique, also
    against another schedcmp started in the same second (mkdir is atomic); one the user chose and asked to
    overwrite loses the files its previous results.json lists, and nothing else."""
    try:
        if not chosen:
            path.parent.mkdir(parents=True, exist_ok=True)
            for number in range(1, 1000):
                candidate = path if number == 1 else path.with_name(f"{path.name}-{number}")
                try:
                    candidate.mkdir()
                    return candidate
                except FileExistsError:
                    continue
            raise OutputError(f"no free output folder beside {path}; choose one with --out")
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            remove_previous_files(path)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"output folder {path} is not writable: {error.strerror or error}") from None
    return path


def remove_previous_files(folder: Path) -> None:
    """--overwrite: the images, sheets, charts, page and results.json of the comparison that was there before."""
    try:
        previous = read_document(folder / "results.json", "run")
    except DocumentError:
        return  # not a schedcmp results folder (or none): its files are not ours to delete
    for name in previous.files():
        target = (folder / name).resolve()
        if target.is_relative_to(folder.resolve()) and target.is_file():
            target.unlink()
    for sub in ("images", "reference"):
        if (folder / sub).is_dir() and not any((folder / sub).iterdir()):
            (folder / sub).rmdir()


def check_size(value: int, multiple: int, flag: str) -> None:
    if value % multiple:
        raise UsageError(f"{flag} {value} is not a multiple of {multiple} (this model's VAE factor)")


def check_output_options(options: OutputOptions) -> None:
    """The output flags `run` and `merge` share: the format, the grid's axes, where the events go."""
    if options.format not in FORMATS:
        raise UsageError(f"unknown --format {options.format!r}; choose from {', '.join(FORMATS)}")
    for flag, axis in (("--x", options.x), ("--z", options.z)):
        if axis is not None and axis not in AXES:
            raise UsageError(f"unknown {flag} {axis!r}; choose from {', '.join(AXES)}")
    if options.x is not None and options.x == options.z:
        raise UsageError("--x and --z must be different axes")
    if options.events == "-" and options.format == "json":
        raise UsageError("--events - and --format json both want stdout; send the events to a file")


def validate_before_load(settings: Settings, options: OutputOptions) -> dict[str, set[str]]:
    """Everything that needs no model: settings, scheduler names and override keys, formats and axes."""
    check_settings(settings)
    if settings.target_metric is not None and (options.shard is not None or distributed.launched()):
        # A search plans its cells round by round from what it measured: no fixed plan to split up front.
        raise UsageError("a --target search runs in one process: drop --shard, or run it without torchrun")
    check_output_options(options)
    classes = scheduler_classes()
    params = accepted_params_of(classes)
    chosen = choose(settings.schedulers, [], params, None)  # unknown names, keys and types fail here, before the load
    pinned = [entry.name for entry in parse_entries(settings.schedulers) if entry.steps is not None]
    if settings.target_metric is not None and pinned:
        raise UsageError(
            f"{pinned[0]}:STEPS pins its steps, and a target chooses each scheduler's steps itself: drop the :STEPS"
        )
    if options.reference is not None:
        chosen.append(convergence.reference_choice(options.reference, params))
    check_override_types(chosen, classes)
    return params


def previous_runs(folder: Path) -> tuple[Results, dict[str, Run]]:
    """--resume: the folder's results, and the cells it lists whose image is there with the recorded pixel hash."""
    import numpy as np
    from PIL import Image

    from schedcmp.model.sample import pixel_sha256

    path = folder / "results.json"
    try:
        results = read_document(path, "run")
    except DocumentError as error:
        raise OutputError(f"cannot resume from {folder}: {path} is missing or corrupt ({error})") from None
    verified = {}
    for source, found in [(folder, results), *parts_of(folder)]:  # a torchrun sweep's ranks wrote parts
        for run in found.runs:
            image = source / (run.image_path or "")
            if run.id in verified or run.status == Status.FAILED or not run.image_path or not image.is_file():
                continue
            try:
                pixels = np.asarray(Image.open(image).convert("RGB"))
            except OSError:
                continue
            if pixel_sha256(pixels) == run.sha256:
                verified[run.id] = replace(run, folder=source)
    return results, verified


def parts_of(folder: Path) -> list[tuple[Path, Results]]:
    """The readable rank parts in `folder` (an unreadable one is as if absent: its cells run again)."""
    parts = []
    for part in distributed.part_folders(folder):
        try:
            parts.append((part, read_document(part / "results.json", "run")))
        except DocumentError:
            continue
    return parts


def check_resumable(folder: Path, previous: Results, settings: Settings) -> None:
    """--resume continues the same comparison or refuses: other cell settings would leave stale images."""
    if previous.settings is None:
        return  # written before the settings were stored: the cells' own settings are compared instead
    difference = settings_difference(settings_from_json(previous.settings), settings)
    if difference:
        raise UsageError(
            f"--resume {folder} was made with other settings ({'; '.join(difference)}); "
            "resume with the same ones, or start a new --out"
        )


def check_same_model(folder: Path, previous: Results, model: "LoadedModel") -> None:
    """--resume refuses another model: its configs and weights must be the ones the folder was made with."""
    from schedcmp.model import pipeline

    if previous.model_identity is None:
        return
    difference = pipeline.identity_difference(
        previous.model_identity, pipeline.model_identity(model.pipe), "the folder's"
    )
    if difference is None and previous.weights_fingerprint != convergence.model_fingerprint(model):
        difference = "the same architecture and configs, but other weights"
    if difference:
        raise UsageError(
            f"--resume {folder} was made with another model ({previous.model}): {model.name} differs: {difference}"
        )


def matches(run: Run, spec: RunSpec, reference: str | None) -> bool:
    """A resumed cell counts only if made with exactly this cell's settings and measured against the same reference."""
    return all(getattr(run, name) == getattr(spec, name) for name in RUN_SETTINGS) and run.reference == reference


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

    def cell(self, run: Run) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps({"event": "cell", **to_json(run)}, ensure_ascii=False) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None and self.handle is not sys.stdout:
            self.handle.close()


# -- the stages ---------------------------------------------------------------------------------------------


def run_comparison(
    settings: Settings,
    model_options: ModelOptions,
    options: OutputOptions,
    loaded: "LoadedModel | None" = None,
    keep_output: Callable[["Sample"], None] | None = None,
    progress: console.Progress | None = None,
) -> Outcome:
    """A whole comparison: every cell of the plan, batched where only seed or prompt differ.

    `loaded` lets a caller that already holds the pipeline (the API, the benchmark) reuse it; `keep_output`
    receives each cell's sample (its float output, H×W×C in [0, 1], for callers that store more than the
    PNG: baselines). The libraries' global state is restored on return, as is the pipeline.
    """
    from schedcmp.model import pipeline

    progress = progress or console.Progress()
    if settings.target_metric is not None and options.reference is None:  # a target is a distance to the reference
        options = replace(options, reference=DEFAULT_REFERENCE)
    with pipeline.quiet_libraries():
        params = validate_before_load(settings, options)
        previous, done = None, {}
        if options.resume is not None:
            previous, done = previous_runs(options.resume)
            check_resumable(options.resume, previous, settings)
            distributed.check_shard(options.resume, previous.shard, options.shard)
            out_dir = options.resume
        else:
            out_dir = options.out or default_out_dir(settings.prompts[0] if settings.prompts else "")
            check_out_dir(out_dir, options.overwrite)
        events = None
        try:
            if loaded is None:
                device = pipeline.resolve_device(model_options.device)
                dtype = pipeline.resolve_dtype(model_options.dtype, device)
                progress.note(f"loading {model_options.model or pipeline.DEFAULT_MODEL_NAME} on {device} ({dtype}) ...")
                loaded = pipeline.load(
                    model_options.model, device, dtype, model_options.allow_pickle, model_options.model_config
                )
            if previous is not None:
                check_same_model(out_dir, previous, loaded)
            plan = make_plan(settings, options.reference, loaded, params, done, progress.note)
            events = Events(options.events)
            if options.resume is None:  # only now that nothing is left to refuse: no folder left behind
                out_dir = claim_out_dir(out_dir, options.out is not None, options.overwrite)
            results = ResultsFile(out_dir, header(plan, settings, model_options, options), [s.id for s in plan.cells])
            numbered = batches(plan.cells, settings.batch_size)
            results.results.plan = distributed.sweep_plan(
                plan, settings, numbered, options.reference, not options.no_sheet
            )
            results.results.shard, results.results.world_size = options.shard, 1
            placement = distributed.Placement(shard=options.shard)
            stopped = execute(plan, settings, options, results, progress, events, keep_output, placement)
        finally:
            if events is not None:
                events.close()
            progress.close()
        if options.shard is not None:  # the merge draws the sheets and the report, from every shard
            progress.note(
                f"shard {options.shard.index}/{options.shard.count}: {len(results.runs)} cells in {out_dir}; "
                "join the shards with `schedcmp merge OUT DIR...`"
            )
            return finish(results, plan, replace(options, no_sheet=True, html=False), stopped, progress)
        return finish(results, plan, options, stopped, progress)


def check_call_args(settings: Settings, model: "LoadedModel") -> None:
    """--call-arg names the pipeline does not list would vanish into its **kwargs, silently."""
    unknown = [name for name in settings.call_args if name not in model.call_parameters]
    if unknown and not settings.allow_unknown_call_args:
        raise UsageError(
            f"--call-arg {', '.join(unknown)}: {type(model.pipe).__name__} takes no such argument "
            "(pass --allow-unknown-call-args to send it anyway)"
        )


# A size this far from the model's own (by area) is slow, or poor, or both: say so before the wait.
SIZE_WARNING_FACTOR = 4


def size_warnings(spec: RunSpec, model: "LoadedModel") -> list[str]:
    native = model.defaults.width * model.defaults.height
    ratio = spec.width * spec.height / native
    if 1 / SIZE_WARNING_FACTOR <= ratio <= SIZE_WARNING_FACTOR:
        return []
    return [
        f"{spec.width}x{spec.height} is {ratio:.3g} times the area of this model's native "
        f"{model.defaults.width}x{model.defaults.height}: expect {'slow runs' if ratio > 1 else 'poor images'}"
    ]


def prompt_warnings(settings: Settings, model: "LoadedModel") -> list[str]:
    """One line per tokenizer that cuts a prompt: the text encoders never see what lies past their limit."""
    parameters = model.call_parameters
    lines = []
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = getattr(model.pipe, name, None)
        if tokenizer is None:
            continue
        limit = tokenizer.model_max_length
        if name == "tokenizer_3" and "max_sequence_length" in parameters:  # SD3's T5: the pipeline's own cap
            limit = parameters["max_sequence_length"].default
        texts = [*settings.prompts, *([settings.negative_prompt] if settings.negative_prompt else [])]
        longest = max(len(tokenizer(text).input_ids) for text in texts)
        if longest > limit:
            lines.append(
                f"{name} ({type(tokenizer).__name__}) takes {limit} tokens; a prompt has {longest}, "
                f"so its last {longest - limit} are dropped"
            )
    return lines


def make_plan(
    settings: Settings,
    reference: str | None,
    model: "LoadedModel",
    params: dict[str, set[str]],
    done: dict[str, Run],
    note: Callable[[str], None] = lambda line: None,
) -> Plan:
    """The cells, their references and which of them are stochastic; refusals that need the model happen here."""
    generator_device = model.device if settings.generator_device == "device" else settings.generator_device
    chosen = choose(settings.schedulers, model.compatible, params, model.flow_shift)
    target = None
    if settings.target_metric is not None:
        target = Target(settings.target_metric, settings.target_value, settings.max_steps)
        settings = replace(settings, steps=(1,))  # the search's first probe: every entry at one step
    cells = plan_runs(chosen, set(model.compatible), settings, model.defaults)
    if not cells:
        raise UsageError(f"{type(model.pipe).__name__} lists no compatible schedulers; name some with --schedulers")
    check_call_args(settings, model)
    check_size(cells[0].width, model.size_multiple, "--width")
    check_size(cells[0].height, model.size_multiple, "--height")
    for line in size_warnings(cells[0], model) + prompt_warnings(settings, model):
        note(f"warning: {line}")
    classes = scheduler_classes()
    references, choice = None, None
    if reference is not None:
        if "callback_on_step_end" not in model.call_parameters:
            raise UsageError(
                f"--reference needs the final latents, and {type(model.pipe).__name__} offers no callback_on_step_end"
            )
        if reference == DEFAULT_REFERENCE and model.flow_shift is not None:
            reference = convergence.flow_reference(model.flow_shift)
        choice = convergence.reference_choice(reference, params)
        probed = convergence.probe_determinism(
            classes[choice.class_name],
            model.original_config,
            choice.overrides,
            convergence.step_arguments(settings.call_args),
        )
        convergence.check_reference(
            choice, model.compatible, settings.allow_incompatible, model.flow_shift is not None, probed
        )
        references = convergence.plan_references(cells, choice, model.original_config, classes)
    determinism: dict[str, tuple[str, str]] = {}
    for spec in cells:
        key = convergence.determinism_key(spec)
        if key not in determinism:
            determinism[key] = convergence.probe_determinism(
                classes[spec.scheduler],
                model.original_config,
                spec.overrides,
                convergence.step_arguments(spec.call_args),
            )
    plan = Plan(model, cells, references, determinism, generator_device, done, reference_choice=choice)
    if target is not None:
        plan.rounds = plan_search(plan, target, settings, chosen)
        plan.cells = plan.rounds.first_round()
    return plan


def plan_search(plan: Plan, target: Target, settings: Settings, chosen: list) -> targets.Rounds:
    """The entries the equal-quality search runs: deterministic ones measured against the reference."""
    model = plan.model

    def template(choice) -> RunSpec:
        return plan_runs([choice], set(model.compatible), settings, model.defaults)[0]

    return targets.plan_rounds(
        target,
        settings,
        chosen,
        set(model.compatible),
        model.defaults,
        determinism_of=lambda choice: plan.determinism[convergence.determinism_key(template(choice))],
        outside=lambda choice: plan.references.off_interval.get(template(choice).id),
    )


def add_cells(plan: Plan, cells: list[RunSpec]) -> None:
    """A search round's cells join the plan, with their references (the same ones: a reference does not depend
    on the steps) and what their schedule means for their distance."""
    plan.cells.extend(cells)
    more = convergence.plan_references(cells, plan.reference_choice, plan.model.original_config, scheduler_classes())
    plan.references.of_run.update(more.of_run)
    plan.references.off_interval.update(more.off_interval)
    plan.references.schedule_notes.update(more.schedule_notes)
    plan.references.interval["note"] = convergence.interval_note(
        plan.references.interval["start_timestep"],
        plan.cells,
        plan.references.schedule_notes,
        plan.references.off_interval,
    )


def header(plan: Plan, settings: Settings, model_options: ModelOptions, options: OutputOptions) -> Results:
    from schedcmp.model import pipeline

    model = plan.model
    return Results(
        model=model.name,
        pipeline=type(model.pipe).__name__,
        original_scheduler=model.original_scheduler_class,
        device=model.device,
        dtype=model.dtype,
        generator_device=plan.generator_device,
        repeat=settings.repeat,
        seed_mode=settings.seed_mode,
        versions=versions(),
        shared_seconds=SharedSeconds(model_load=model.load_seconds),
        started=now(),
        interval=from_json(Interval, plan.references.interval) if plan.references else None,
        settings=settings_to_json(settings),
        model_source=model_options.model,
        model_config=model_options.model_config,
        model_identity=pipeline.model_identity(model.pipe),
        weights_fingerprint=convergence.model_fingerprint(model),
        reference_spec=options.reference,
        target=plan.rounds.spec() if plan.rounds else None,
    )


def execute(
    plan: Plan,
    settings: Settings,
    options: OutputOptions,
    results: ResultsFile,
    progress: console.Progress,
    events: Events,
    keep_output: Callable[["Sample"], None] | None,
    placement: distributed.Placement | None = None,
    references: dict[str, convergence.ReferenceOutput | None] | None = None,
) -> BaseException | None:
    """Run the batches with cells still to make, saving results.json after each. -> what stopped it, if anything
    did (Ctrl-C, or SIGTERM as errors.Terminated).

    The batches are the whole plan's, whatever is done already: a batch with a missing cell runs whole, as the
    plan formed it, and only its missing cells are recorded, so every image is the one a single run makes.
    `placement` says which batches are this process's (default: all; schedcmp.scale.distributed); `references`
    are given where another process computed them (torchrun's rank 0), else computed here as needed.
    """
    from schedcmp.model.sample import Sampler

    placement = placement or distributed.Placement()
    numbered = batches(plan.cells, settings.batch_size)
    costs = distributed.batch_costs(numbered)
    mine = placement.batches(costs)
    share = [spec for number, batch in enumerate(numbered) if mine is None or number in mine for spec in batch]
    resumed = take_done(share, plan.done, plan.references, results)
    if resumed:
        progress.note(f"resuming: {resumed} of {len(share)} cells already done and verified")

    def batches_to_make(first: int) -> list[int]:
        """The batch numbers from `first` on that hold a cell not made yet (here or, under torchrun, before)."""
        made = set(results.runs) | placement.skip
        return [number for number in range(first, len(numbered)) if any(s.id not in made for s in numbered[number])]

    todo = batches_to_make(0)
    results.results.workers = [placement.worker(plan.model.device)]
    results.save()
    distributed.remove_parts(results.folder)  # what a torchrun attempt left there is in results.json now
    progress.begin(len(share))
    finished = resumed + len(placement.skip)
    varying = [axis for axis in AXES if len({repr(getattr(spec, axis)) for spec in plan.cells}) > 1]
    if plan.rounds is not None:
        varying = [axis for axis in varying if axis != "steps"] + ["steps"]  # a search varies the steps
    where = distributed.placement_facts(plan.model.device)
    placement.where = where

    def report(run: Run, elsewhere: bool = False) -> None:
        nonlocal finished
        finished += 1
        events.cell(run)
        name = run.label + axes_text(run, varying) + (f" (rank {run.rank})" if elsewhere else "")
        progress.finished(finished, name, run.status, run.seconds, run.reason)

    try:
        with Sampler(plan.model, plan.generator_device) as sampler:
            if todo:
                progress.note(f"warming up ({plan.model.original_scheduler_class}, 2 steps) ...")
                progress.started(0, f"warm-up ({plan.model.original_scheduler_class})", 2)
                warmup = sampler.warm_up(numbered[todo[0]][0], 2, progress.step)
                results.results.shared_seconds = SharedSeconds(
                    plan.model.load_seconds, sampler.encoding_seconds, max(0.0, warmup - sampler.encoding_seconds)
                )
            if plan.references is not None and references is None:
                references = {}
                identity = convergence.reference_identity(sampler)
                image_dir = None if options.no_sheet else results.folder
                needed = [plan.references.of_run[spec.id] for spec in share]  # resumed cells too: the cache has them
                for ref_id in dict.fromkeys(needed):
                    references[ref_id], reference_record = convergence.reference_run(
                        sampler, plan.references, ref_id, identity, image_dir, progress.note, progress.step
                    )
                    results.results.references.append(reference_record)
                    results.save()
            while True:
                for number in placement.work(todo, costs):
                    batch = [replace(spec, batch=f"b{number}") for spec in numbered[number]]
                    missing = [spec.id not in results.runs and spec.id not in placement.skip for spec in batch]
                    name = display_label(batch[0].scheduler, batch[0].alias, batch[0].overrides)
                    progress.started(finished + 1, name + (f" ×{len(batch)}" if len(batch) > 1 else ""), batch[0].steps)
                    started = time.perf_counter()
                    runs = []
                    for sample, wanted in zip(sampler.run_batch(batch, settings.repeat, progress.step), missing):
                        if not wanted:  # made by an earlier run: this batch ran whole only to keep its composition
                            continue
                        run = record(sample, plan, references or {}, None if options.no_sheet else results.folder)
                        run = distributed.stamp(run, placement.rank, where)
                        if keep_output is not None and sample.rgb is not None:
                            keep_output(sample)
                        results.add(run)
                        runs.append(run)
                        report(run)
                    shared = results.results.shared_seconds
                    results.results.shared_seconds = replace(shared, prompt_encoding=sampler.encoding_seconds)
                    placement.busy_seconds += time.perf_counter() - started
                    placement.made += len(runs)
                    results.results.workers = [placement.worker(plan.model.device)]
                    results.save()
                    for run in placement.batch_done(runs):  # saved first: a rank that fails next leaves them on disk
                        report(run, elsewhere=True)
                if plan.rounds is None:
                    break
                following = plan.rounds.next_round(results.runs)  # the search's next step counts
                if not following:
                    break
                add_cells(plan, following)
                results.order.extend(spec.id for spec in following)
                progress.grow(len(plan.cells))
                first = len(numbered)
                numbered += batches(following, settings.batch_size)
                costs = distributed.batch_costs(numbered)
                take_done(following, plan.done, plan.references, results)
                todo = batches_to_make(first)
            for runs in placement.wait():
                for run in runs:
                    report(run, elsewhere=True)
    except (KeyboardInterrupt, Terminated) as stop:
        progress.note(f"interrupted: writing what the {len(results.runs)} finished cells made")
        results.save()
        return stop
    results.save()
    return None


def take_done(
    cells: list[RunSpec], done: dict[str, Run], references: convergence.ReferencePlan | None, results: ResultsFile
) -> int:
    """The cells a resumed folder already holds (`done`), made exactly so, join `results`, their images linked in
    from a torchrun part where that is where they are. -> how many."""
    references_of = references.of_run if references else {}
    taken = [spec for spec in cells if spec.id in done and matches(done[spec.id], spec, references_of.get(spec.id))]
    for spec in taken:
        results.add(distributed.adopt(done[spec.id], results.folder))
    return len(taken)


def axes_text(run: Run, varying: list[str]) -> str:
    """` · seed 2 · 20 steps`: what tells a cell from the others of its row in progress lines."""
    words = {"steps": "{} steps", "seed": "seed {}", "guidance_scale": "guidance {}", "prompt": "{!r}"}
    return "".join(" · " + words[axis].format(getattr(run, axis)) for axis in varying)


def record(sample: "Sample", plan: Plan, references: dict[str, Any], image_dir: Path | None) -> Run:
    """A finished cell as its results.json record; its image is written into `image_dir` (None: --no-sheet)."""
    image = None
    if sample.rgb is not None and image_dir is not None:
        (image_dir / "images").mkdir(exist_ok=True)
        image = f"images/{sample.result.spec.id}.png"
        report.write_atomic(image_dir / image, render.png_bytes(sample.rgb))
    spec = sample.result.spec
    determinism, why = plan.determinism[convergence.determinism_key(spec)]
    run = report.run_record(sample.result, image, determinism)
    if plan.references is None:
        return run
    ref_id = plan.references.of_run[spec.id]
    distance, note = convergence.measure(sample, determinism, why, references.get(ref_id), plan.references)
    schedule_note = plan.references.schedule_notes.get(spec.id)
    return replace(run, reference=ref_id, distance=distance, distance_note=note, schedule_note=schedule_note)


def finish(
    results: ResultsFile, plan: Plan, options: OutputOptions, stopped: BaseException | None, progress
) -> Outcome:
    """Orders, fronts and warnings; then the sheets, charts and page; results.json last, naming them."""
    header_record = results.results
    header_record.finished = now()
    header_record.interrupted = stopped is not None
    entries = [to_json(run) for run in results.finished()]
    orders, fronts = convergence.fit_orders(entries), convergence.pareto_fronts(entries)
    for run in results.finished():
        order, front = orders.get(run.id), fronts.get(run.id)
        results.add(
            replace(
                run,
                order=None if order is None else from_json(Order, order),
                pareto=None if front is None else from_json(Pareto, front),
            )
        )
    references = [to_json(reference) for reference in header_record.references]
    warnings = convergence.convergence_warnings(references, entries)
    header_record.references = [replace(r, warning=warnings.get(r.id, r.warning)) for r in header_record.references]
    for line in convergence.warning_lines(references, warnings):
        progress.note(f"warning: {line}")
    conclude(header_record, plan, results.finished(), entries)
    document = results.save()  # first without the sheets: drawing them must not put the results at risk
    sheets: list[Path] = []
    if not options.no_sheet and document["runs"]:
        sheets, notices = render.write_sheets(results.folder, sheet_document(document), options.x, options.z)
        for notice in notices:
            progress.note(notice)
    header_record.sheets = [str(path.relative_to(results.folder)) for path in sheets]
    if options.html:
        html_report.write_charts_and_page(results.folder, header_record)
    code = EXIT_TERMINATED if isinstance(stopped, Terminated) else exit_code(document, options.strict)
    header_record.exit_code = code
    document = results.save()  # last: it names the sheets, charts and page only once they exist
    return Outcome(header_record, results.folder, sheets, code, plan.model, stopped)


def conclude(header_record: Results, plan: Plan, runs: list[Run], entries: list[dict[str, Any]]) -> None:
    """The answer: each entry's steps at the target, the summary across prompts and seeds, and both in words.

    The summary is worked out from the runs (`entries`, their results.json form), not from the plan: `merge`
    finishes without one."""
    if plan.references is not None:
        header_record.interval = from_json(Interval, plan.references.interval)  # a search's rounds added runs
    if not any(entry.get("reference") for entry in entries):
        return
    metric, target_answer, meets = "latent_rmse", None, None
    if plan.rounds is not None:
        header_record.equal_quality = targets.results(plan.rounds, {run.id: run for run in runs})
        target_answer = targets.answer_line(header_record.target, header_record.equal_quality)
        metric, meets = plan.rounds.target.metric, plan.rounds.target.meets
    found = summary.summarise(entries, metric)
    header_record.summary = from_json(Summary, found)
    header_record.answer = summary.answer_lines(found, target_answer, meets)


def sheet_document(document: dict[str, Any]) -> dict[str, Any]:
    """What the sheets show: every run; after a step search, each entry's runs at its own equal-quality steps."""
    found = document.get("equal_quality") or []
    if not document.get("target") or not any(entry["status"] == "reached" for entry in found):
        return document
    chosen = [cell for entry in found for cell in entry["runs"]]
    by_id = {run["id"]: run for run in document["runs"]}
    return {**document, "runs": [by_id[cell] for cell in chosen if cell in by_id], "steps_per_row": True}


def exit_code(document: dict[str, Any], strict: bool) -> int:
    if document.get("interrupted"):
        return EXIT_INTERRUPTED
    bad = {Status.FAILED} if not strict else {Status.FAILED, Status.SUSPECT, Status.FILTERED}
    if any(entry["status"] in bad for entry in document["runs"]):
        return EXIT_RUN_FAILED
    if any(reference["status"] == Status.FAILED for reference in document.get("references") or []):
        return EXIT_RUN_FAILED  # --reference was asked for and nothing could be measured against it
    return EXIT_OK


# -- `schedcmp list` --------------------------------------------------------------------------------------------


def list_document(model_options: ModelOptions) -> dict[str, Any]:
    """What `schedcmp list` shows: the scheduler, its config, the compatibles, the aliases, the flags."""
    from schedcmp.model import pipeline

    with pipeline.quiet_libraries():
        return list_document_quietly(model_options)


def list_document_quietly(model_options: ModelOptions) -> dict[str, Any]:
    from schedcmp.model import pipeline

    device = pipeline.resolve_device(model_options.device if model_options.device != "auto" else "cpu")
    model = pipeline.load(model_options.model, device, "fp32", model_options.allow_pickle, model_options.model_config)
    classes = scheduler_classes()
    config = {key: value for key, value in dict(model.original_config).items()}
    return {
        "model": model.name,
        "pipeline": type(model.pipe).__name__,
        "scheduler": {"class": model.original_scheduler_class, "config": pipeline.jsonable(config)},
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
