"""The comparison engine: plan -> execute -> finish. schedcmp.scale.launch drives it for the CLI and compare().

One direction of flow: a request becomes a plan (cells, references, determinism), the sampler turns the plan
into records (schedcmp.core.records.Run), and the finish stage (schedcmp.sweep.results) turns the records into
files. One ResultsFile owns results.json and rewrites it after every batch, so a killed process leaves a valid
file listing what finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from schedcmp.core.errors import Terminated, UsageError
from schedcmp.core.names import choose, display_label
from schedcmp.core.plan import RunSpec, batches, plan_runs
from schedcmp.core.records import Results, Run, SharedSeconds, SweepPlan, now, versions
from schedcmp.core.request import AXES, DEFAULT_REFERENCE, Request, check, difference, identity, stored
from schedcmp.model import threads, weights
from schedcmp.model.schedulers import (
    accepted_params_of,
    check_override_types,
    effective_overrides,
    schedule_overrides,
    scheduler_classes,
)
from schedcmp.output import console, render, report
from schedcmp.quality import convergence, targets
from schedcmp.quality.stepsearch import Target
from schedcmp.sweep import placement
from schedcmp.sweep.placement import Placement, launched
from schedcmp.sweep.results import (
    Events,
    FolderLock,
    Outcome,
    ResultsFile,
    check_not_in_use,
    check_out_dir,
    claim_out_dir,
    finish,
    out_dir_of,
    read_results,
    remove_parts,
    stored_request,
    take_done,
    verified_runs,
)

if TYPE_CHECKING:
    from schedcmp.model.pipeline import LoadedModel
    from schedcmp.model.sample import Sample


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
class Prepared:
    """What is settled before the model loads: the scheduler classes' parameters, the folder, a resumed run."""

    params: dict[str, set[str]]
    out_dir: Path | None  # None on a torchrun rank other than 0: rank 0 chooses the folder
    previous: Results | None = None
    done: dict[str, Run] | None = None


# -- before the model: everything that can be refused without loading it ----------------------------------


def validate_before_load(request: Request) -> dict[str, set[str]]:
    """Everything that needs no model: the request, scheduler names and override keys and their types."""
    check(request, launched())
    check_model_config(request)
    classes = scheduler_classes()
    params = accepted_params_of(classes)
    chosen = choose_before_load(request.schedulers, params)
    if request.reference_text is not None:
        chosen.append(convergence.reference_choice(request.reference_text, params))
    check_override_types(chosen, classes)
    return params


def choose_before_load(text: str, params: dict[str, set[str]]) -> list:
    """Unknown names, keys and types fail here, before the load. A flow model's own UI names ("DPM++ 2S a", the
    flow sampler's) are known once the model says it is one: a name either table knows passes, and choose()
    resolves it for the model at hand after the load."""
    try:
        return choose(text, [], params, None)
    except UsageError as first:
        try:
            return choose(text, [], params, 1.0)  # any shift: only which names exist matters here
        except UsageError:
            raise first from None


def check_model_config(request: Request) -> None:
    """--model-config gives a single-file checkpoint its configs; with any other model it would be ignored."""
    from schedcmp.model import pipeline

    if request.model_config is None:
        return
    kind, where = pipeline.classify_source(request.model)
    if kind != "file":
        what = "the embedded model" if request.model is None else f"{where} (a {'hub id' if kind == 'hub' else kind})"
        raise UsageError(
            f"--model-config gives a single-file checkpoint (--model FILE.safetensors) its configs; "
            f"{what} has its own: drop --model-config"
        )


def prepare(request: Request, resumed: Results | None = None, lead: bool = True) -> Prepared:
    """The checks before the load, and where the results go; nothing is created. `resumed` is --resume's
    results.json when the caller has read it already; `lead` is False on a torchrun rank other than 0."""
    params = validate_before_load(request)
    if request.resume is None:
        out_dir = out_dir_of(request) if lead else None
        if out_dir is not None:
            check_out_dir(out_dir, request.overwrite)
        return Prepared(params, out_dir)
    if lead:  # rank 0 holds the folder for every rank of a torchrun job
        check_not_in_use(request.resume)
    previous = resumed or read_results(request.resume, "resume from")
    check_resumable(request.resume, previous, request)
    placement.check_shard(request.resume, previous.shard, request.shard)
    done = verified_runs(request.resume, previous) if lead else {}
    return Prepared(params, request.resume, previous, done)


def check_resumable(folder: Path, previous: Results, request: Request) -> None:
    """--resume continues the same comparison or refuses: other cell settings would leave stale images."""
    if previous.settings is None:
        return  # written before the settings were stored: the cells' own settings are compared instead
    try:
        there = stored_request(previous)
    except UsageError as error:
        raise UsageError(f"cannot resume from {folder}: its stored settings are malformed ({error})") from None
    found = difference(there, request)
    if found:
        raise UsageError(
            f"--resume {folder} was made with other settings ({'; '.join(found)}); "
            "resume with the same ones, or start a new --out"
        )


def check_same_model(folder: Path, previous: Results, model: "LoadedModel") -> None:
    """--resume refuses another model: its configs and weights must be the ones the folder was made with."""
    from schedcmp.model import pipeline

    if previous.model_identity is None:
        return
    found = pipeline.identity_difference(previous.model_identity, pipeline.model_identity(model.pipe), "the folder's")
    recorded = previous.weights_fingerprint
    if found is None and recorded is not None and not weights.same_weights(recorded, model.pipe):
        found = "the same architecture and configs, but other weights"
    if found:
        raise UsageError(
            f"--resume {folder} was made with another model ({previous.model}): {model.name} differs: {found}"
        )


def load_model(request: Request, device: str, progress: console.Progress, where: str = "") -> "LoadedModel":
    """The model the request names, on `device`; `where` adds to the progress line (torchrun: "2 ranks; ")."""
    from schedcmp.model import pipeline

    dtype = pipeline.resolve_dtype(request.dtype, device)
    name = request.model or pipeline.DEFAULT_MODEL_NAME
    progress.note(f"{where}loading {name} on {device} ({dtype}){' in each' if where else ''} ...")
    return pipeline.load(request.model, device, dtype, request.allow_pickle, request.model_config)


# -- the stages ---------------------------------------------------------------------------------------------


def run_comparison(
    request: Request,
    loaded: "LoadedModel | None" = None,
    resumed: Results | None = None,
    keep_output: Callable[["Sample"], None] | None = None,
    progress: console.Progress | None = None,
) -> Outcome:
    """A whole comparison in this process: every cell of the plan, batched where only seed or prompt differ.

    `loaded` lets a caller that already holds the pipeline (the API, the benchmarks) reuse it; `keep_output`
    receives each cell's sample (its float output, H×W×C in [0, 1], for callers that store more than the
    PNG: baselines). The libraries' global state is restored on return, as is the pipeline.
    """
    from schedcmp.model import pipeline

    progress = progress or console.Progress()
    with pipeline.quiet_libraries():
        prepared = prepare(request, resumed)
        with threads.chosen(request.threads, progress.note):  # before the load: torch's pool starts there
            return compare_prepared(request, prepared, loaded, keep_output, progress)


def compare_prepared(
    request: Request,
    prepared: Prepared,
    loaded: "LoadedModel | None",
    keep_output: Callable[["Sample"], None] | None,
    progress: console.Progress,
) -> Outcome:
    """run_comparison once the request is checked: load, plan, execute, finish."""
    from schedcmp.model import pipeline

    events = results = None
    try:
        model = loaded or load_model(request, pipeline.resolve_device(request.device), progress)
        if prepared.previous is not None:
            check_same_model(prepared.out_dir, prepared.previous, model)
        plan = make_plan(request, model, prepared.params, prepared.done or {}, progress.note)
        events = Events(request.events)
        results = open_results(plan, request, prepared.out_dir)
        stopped = execute(plan, request, results, progress, events, keep_output, Placement(shard=request.shard))
    except BaseException:
        if results is not None:
            results.release()
        raise
    finally:
        if events is not None:
            events.close()
        progress.close()
    try:
        return finish_run(results, plan, request, stopped, progress)
    finally:
        results.release()


def open_results(plan: Plan, request: Request, out_dir: Path) -> ResultsFile:
    """The folder claimed (only now that nothing is left to refuse: no folder left behind) and its results file."""
    if request.resume is None:
        out_dir = claim_out_dir(out_dir, request.out is not None, request.overwrite)
    lock = FolderLock(out_dir).acquire()
    results = ResultsFile(out_dir, header(plan, request), [spec.id for spec in plan.cells], lock)
    results.results.plan = sweep_plan(plan, request, batches(plan.cells, request.batch_size))
    results.results.shard, results.results.world_size = request.shard, 1
    return results


def finish_run(
    results: ResultsFile, plan: Plan, request: Request, stopped: BaseException | None, progress: console.Progress
) -> Outcome:
    """The finish stage for this process's results; a shard leaves the sheets and the report to the merge."""
    if request.shard is not None:
        progress.note(
            f"shard {request.shard.index}/{request.shard.count}: {len(results.runs)} cells in {results.folder}; "
            "join the shards with `schedcmp merge OUT DIR...`"
        )
        request = replace(request, no_sheet=True, html=False)
    return finish(results, request, stopped, progress, plan.references, plan.rounds, plan.model)


def check_call_args(request: Request, model: "LoadedModel") -> None:
    """--call-arg names the pipeline does not list would vanish into its **kwargs, silently."""
    unknown = [name for name in request.call_arg if name not in model.call_parameters]
    if unknown and not request.allow_unknown_call_args:
        raise UsageError(
            f"--call-arg {', '.join(unknown)}: {type(model.pipe).__name__} takes no such argument "
            "(pass --allow-unknown-call-args to send it anyway)"
        )


def check_size(value: int, multiple: int, flag: str) -> None:
    if value % multiple:
        raise UsageError(f"{flag} {value} is not a multiple of {multiple} (this model's VAE factor)")


def check_memory(request: Request, cells: list[RunSpec], model: "LoadedModel") -> None:
    """Refuse, before the warm-up, a size whose activations cannot fit in the device's free memory: a lower
    bound (schedcmp.model.pipeline.memory_needed), so that only what surely fails is refused."""
    from schedcmp.model import pipeline

    spec = max(cells, key=lambda cell: cell.width * cell.height)
    images = max(len(batch) for batch in batches(cells, request.batch_size))  # the most images one call makes
    needed = pipeline.memory_needed(model, spec.width, spec.height, images, spec.guidance_scale)
    free = pipeline.free_memory(model.device)
    if free is not None and needed > free:
        raise UsageError(
            f"{spec.width}x{spec.height} ({images} image{'s' if images > 1 else ''} a call) needs at least "
            f"{needed / 2**30:.1f} GiB on {model.device} for its activations, and {free / 2**30:.1f} GiB are free: "
            "choose a smaller --width/--height or --batch-size"
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


def prompt_warnings(request: Request, model: "LoadedModel") -> list[str]:
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
        texts = [*request.prompt, *([request.negative_prompt] if request.negative_prompt else [])]
        longest = max(len(tokenizer(text).input_ids) for text in texts)
        if longest > limit:
            lines.append(
                f"{name} ({type(tokenizer).__name__}) takes {limit} tokens; a prompt has {longest}, "
                f"so its last {longest - limit} are dropped"
            )
    return lines


def make_plan(
    request: Request,
    model: "LoadedModel",
    params: dict[str, set[str]],
    done: dict[str, Run],
    note: Callable[[str], None] = lambda line: None,
) -> Plan:
    """The cells, their references and which of them are stochastic; refusals that need the model happen here."""
    generator_device = model.device if request.generator_device == "device" else request.generator_device
    chosen = choose(request.schedulers, model.compatible, params, model.flow_shift)
    searched = request
    if request.target is not None:
        searched = replace(request, steps=(1,))  # the search's first probe: every entry at one step
    cells = [unsupported_schedule(cell) for cell in plan_runs(chosen, set(model.compatible), searched, model.defaults)]
    if not cells:
        raise UsageError(f"{type(model.pipe).__name__} lists no compatible schedulers; name some with --schedulers")
    check_call_args(request, model)
    check_size(cells[0].width, model.size_multiple, "--width")
    check_size(cells[0].height, model.size_multiple, "--height")
    check_memory(request, cells, model)
    for line in size_warnings(cells[0], model) + prompt_warnings(request, model):
        note(f"warning: {line}")
    references, choice = plan_references(request, model, params, cells)
    determinism = probe_cells(cells, model)
    plan = Plan(model, cells, references, determinism, generator_device, done, reference_choice=choice)
    if request.target is not None:
        plan.rounds = plan_search(plan, Target(*request.target, request.steps_limit), searched, chosen)
        plan.cells = plan.rounds.first_round()
    return plan


def plan_references(request: Request, model: "LoadedModel", params: dict[str, set[str]], cells: list[RunSpec]):
    """-> (the references the cells are measured against, the reference entry), or (None, None)."""
    reference = request.reference_text
    if reference is None:
        return None, None
    if "callback_on_step_end" not in model.call_parameters:
        raise UsageError(
            f"--reference needs the final latents, and {type(model.pipe).__name__} offers no callback_on_step_end"
        )
    if reference == DEFAULT_REFERENCE and model.flow_shift is not None:
        reference = convergence.flow_reference(model.flow_shift)
    classes = scheduler_classes()
    choice = convergence.reference_choice(reference, params)
    probed = convergence.probe_determinism(
        classes[choice.class_name],
        model.original_config,
        choice.overrides,
        convergence.step_arguments(request.call_arg),
    )
    convergence.check_reference(
        choice, model.compatible, request.allow_incompatible, model.flow_shift is not None, probed
    )
    return convergence.plan_references(cells, choice, model.original_config, classes), choice


def unsupported_schedule(spec: RunSpec) -> RunSpec:
    """The cell, marked not to run (with the reason) where its scheduler cannot take its --schedule."""
    found = schedule_overrides(scheduler_classes()[spec.scheduler], spec.schedule, spec.overrides)
    return spec if isinstance(found, dict) else replace(spec, unsupported=found)


def probe_cells(cells: list[RunSpec], model: "LoadedModel") -> dict[str, tuple[str, str]]:
    """Which cells are stochastic: the empirical probe, once per scheduler set-up."""
    classes = scheduler_classes()
    determinism: dict[str, tuple[str, str]] = {}
    for spec in cells:
        key = convergence.determinism_key(spec)
        if key not in determinism:
            cls = classes[spec.scheduler]
            determinism[key] = convergence.probe_determinism(
                cls,
                model.original_config,
                effective_overrides(cls, spec.overrides, spec.schedule),
                convergence.step_arguments(spec.call_args),
            )
    return determinism


def plan_search(plan: Plan, target: Target, request: Request, chosen: list) -> targets.Rounds:
    """The entries the equal-quality search runs: deterministic ones measured against the reference."""
    model = plan.model

    def template(choice) -> RunSpec:
        return plan_runs([choice], set(model.compatible), request, model.defaults)[0]

    return targets.plan_rounds(
        target,
        request,
        chosen,
        set(model.compatible),
        model.defaults,
        determinism_of=lambda choice: plan.determinism[convergence.determinism_key(template(choice))],
        outside=lambda choice: plan.references.off_interval.get(template(choice).id),
        unsupported=lambda choice: unsupported_schedule(template(choice)).unsupported,
    )


def add_cells(plan: Plan, cells: list[RunSpec]) -> None:
    """A search round's cells join the plan, with their references (the same ones: a reference does not depend
    on the steps) and what their schedule means for their distance."""
    plan.cells.extend(cells)
    more = convergence.plan_references(cells, plan.reference_choice, plan.model.original_config, scheduler_classes())
    references = plan.references
    references.of_run.update(more.of_run)
    references.off_interval.update(more.off_interval)
    references.schedule_notes.update(more.schedule_notes)
    start_at = references.interval.start_timestep
    note = convergence.interval_note(start_at, plan.cells, references.schedule_notes, references.off_interval)
    plan.references = replace(references, interval=replace(references.interval, note=note))


def header(plan: Plan, request: Request) -> Results:
    from schedcmp.model import pipeline

    model = plan.model
    return Results(
        model=model.name,
        pipeline=type(model.pipe).__name__,
        original_scheduler=model.original_scheduler_class,
        device=model.device,
        dtype=model.dtype,
        generator_device=plan.generator_device,
        repeat=request.repeat,
        seed_mode=request.seed_mode,
        versions=versions(),
        shared_seconds=SharedSeconds(model_load=model.load_seconds),
        started=now(),
        interval=plan.references.interval if plan.references else None,
        settings=stored(request),
        model_source=request.model,
        model_config=request.model_config,
        model_identity=pipeline.model_identity(model.pipe),
        weights_fingerprint=weights.weights_digest(model.pipe),
        reference_spec=request.reference_text,
        target=plan.rounds.spec() if plan.rounds else None,
    )


def sweep_plan(plan: Plan, request: Request, numbered: list[list[RunSpec]]) -> SweepPlan:
    """The plan record every part carries; the fingerprint covers the model (configs, weights, device type, dtype)."""
    from schedcmp.model import pipeline

    model = plan.model
    model_identity = {
        "identity": pipeline.model_identity(model.pipe),
        "weights": weights.weights_digest(model.pipe),
        "device_type": pipeline.device_type(model.device),
        "dtype": model.dtype,
        "generator_device": plan.generator_device,
    }
    reference_text = plan.references.text if plan.references else request.reference_text
    ids = [[spec.id for spec in batch] for batch in numbered]
    images = not request.no_sheet
    digest = placement.fingerprint(identity(request), model_identity, reference_text, ids, images)
    return SweepPlan(digest, [spec.id for spec in plan.cells], images)


class Execution:
    """The execute stage's state: the whole plan's batches, which of them this process makes, what is done."""

    def __init__(self, plan: Plan, request: Request, results: ResultsFile, progress, events, keep_output, where):
        self.plan, self.request, self.results = plan, request, results
        self.progress, self.events, self.keep_output, self.where = progress, events, keep_output, where
        self.numbered = batches(plan.cells, request.batch_size)
        self.costs = placement.batch_costs(self.numbered)
        self.references: dict[str, convergence.ReferenceOutput | None] = {}
        self.finished = 0
        self.varying = [axis for axis in AXES if len({repr(getattr(spec, axis)) for spec in plan.cells}) > 1]
        if plan.rounds is not None:
            self.varying = [axis for axis in self.varying if axis != "steps"] + ["steps"]  # a search varies them

    def share(self) -> list[RunSpec]:
        """The cells of the batches this process answers for."""
        mine = self.where.batches(self.costs)
        return [spec for number, batch in enumerate(self.numbered) if mine is None or number in mine for spec in batch]

    def to_make(self, first: int) -> list[int]:
        """The batch numbers from `first` on that hold a cell not made yet (here or, under torchrun, before)."""
        made = set(self.results.runs) | self.where.skip
        return [n for n in range(first, len(self.numbered)) if any(s.id not in made for s in self.numbered[n])]

    def report(self, run: Run, elsewhere: bool = False) -> None:
        self.finished += 1
        self.events.cell(run)
        name = run.label + axes_text(run, self.varying) + (f" (rank {run.rank})" if elsewhere else "")
        self.progress.finished(self.finished, name, run.status, run.seconds, run.reason)

    def warm_up(self, sampler, first: RunSpec) -> None:
        """One short call with the pipeline's own scheduler, so one-time costs land on no scheduler."""
        model = self.plan.model
        if sampler.is_warm(first):
            self.progress.note("no warm-up: this pipeline ran at this size already")
        else:
            self.progress.note(f"warming up ({model.original_scheduler_class}, 2 steps) ...")
            self.progress.started(0, f"warm-up ({model.original_scheduler_class})", 2)
        seconds = sampler.warm_up(first, 2, self.progress.step)
        warmup = None if seconds is None else max(0.0, seconds - sampler.encoding_seconds)
        self.results.results.shared_seconds = SharedSeconds(model.load_seconds, sampler.encoding_seconds, warmup)

    def compute_references(self, sampler, share: list[RunSpec]) -> None:
        """Each reference the cells here need, once (from the cache where it can)."""
        references = self.plan.references
        identity = convergence.reference_identity(sampler)
        image_dir = None if self.request.no_sheet else self.results.folder
        needed = [references.of_run[spec.id] for spec in share]  # resumed cells too: the cache has them
        for ref_id in dict.fromkeys(needed):
            self.references[ref_id], reference_record = convergence.reference_run(
                sampler, references, ref_id, identity, image_dir, self.progress.note, self.progress.step
            )
            self.results.results.references.append(reference_record)
            self.results.save()

    def make_batch(self, sampler, number: int) -> None:
        """One batch in one pipeline call; only its cells not made before are recorded. results.json after it."""
        batch = [replace(spec, batch=f"b{number}") for spec in self.numbered[number]]
        wanted = [spec.id not in self.results.runs and spec.id not in self.where.skip for spec in batch]
        name = display_label(batch[0].scheduler, batch[0].alias, batch[0].overrides)
        self.progress.started(self.finished + 1, name + (f" ×{len(batch)}" if len(batch) > 1 else ""), batch[0].steps)
        started = time.perf_counter()
        runs = []
        for sample, keep in zip(sampler.run_batch(batch, self.request.repeat, self.progress.step), wanted):
            if keep:  # else made by an earlier run: the batch ran whole only to keep its composition
                runs.append(self.record(sample))
        shared = self.results.results.shared_seconds
        self.results.results.shared_seconds = replace(shared, prompt_encoding=sampler.encoding_seconds)
        self.where.busy_seconds += time.perf_counter() - started
        self.where.made += len(runs)
        self.results.results.workers = [self.where.worker(self.plan.model.device)]
        self.results.save()
        for run in self.where.batch_done(runs):  # saved first: a rank that fails next leaves them on disk
            self.report(run, elsewhere=True)

    def record(self, sample: "Sample") -> Run:
        image_dir = None if self.request.no_sheet else self.results.folder
        run = record(sample, self.plan, self.references, image_dir)
        run = placement.stamp(run, self.where.rank, self.where.shard, self.where.where)
        if self.keep_output is not None and sample.rgb is not None:
            self.keep_output(sample)
        self.results.add(run)
        self.report(run)
        return run

    def next_round(self) -> list[int] | None:
        """A step search's next round joins the plan: -> its batches still to make; None when the search is over."""
        following = self.plan.rounds.next_round(self.results.runs) if self.plan.rounds is not None else None
        if not following:
            return None
        add_cells(self.plan, following)
        self.results.order.extend(spec.id for spec in following)
        self.progress.grow(len(self.plan.cells))
        first = len(self.numbered)
        self.numbered += batches(following, self.request.batch_size)
        self.costs = placement.batch_costs(self.numbered)
        take_done(following, self.plan.done, self.plan.references, self.results)
        return self.to_make(first)


def execute(
    plan: Plan,
    request: Request,
    results: ResultsFile,
    progress: console.Progress,
    events: Events,
    keep_output: Callable[["Sample"], None] | None,
    where: Placement | None = None,
    references: dict[str, convergence.ReferenceOutput | None] | None = None,
) -> BaseException | None:
    """Run the batches with cells still to make, saving results.json after each. -> what stopped it, if anything
    did (Ctrl-C, or SIGTERM as errors.Terminated).

    The batches are the whole plan's, whatever is done already: a batch with a missing cell runs whole, as the
    plan formed it, and only its missing cells are recorded, so every image is the one a single run makes.
    `where` says which batches are this process's (default: all; schedcmp.sweep.placement); `references`
    are given where another process computed them (torchrun's rank 0), else computed here as needed.
    """
    from schedcmp.model.sample import Sampler

    where = where or Placement()
    run = Execution(plan, request, results, progress, events, keep_output, where)
    share = run.share()
    resumed = take_done(share, plan.done, plan.references, results)
    if resumed:
        progress.note(f"resuming: {resumed} of {len(share)} cells already done and verified")
    todo = run.to_make(0)
    results.results.workers = [where.worker(plan.model.device)]
    results.save()
    remove_parts(results.folder)  # what a torchrun attempt left there is in results.json now
    progress.begin(len(share))
    run.finished = resumed + len(where.skip)
    where.where = placement.placement_facts(plan.model.device)
    try:
        with Sampler(plan.model, plan.generator_device) as sampler:
            if todo:
                run.warm_up(sampler, run.numbered[todo[0]][0])
            if references is not None:
                run.references = references
            elif plan.references is not None:
                run.compute_references(sampler, share)
            while todo is not None:
                for number in where.work(todo, run.costs):
                    run.make_batch(sampler, number)
                todo = run.next_round()
            for runs in where.wait():
                for made in runs:
                    run.report(made, elsewhere=True)
    except (KeyboardInterrupt, Terminated) as stop:
        progress.note(f"interrupted: writing what the {len(results.runs)} finished cells made")
        results.save()
        return stop
    results.save()
    return None


def axes_text(run: Run, varying: list[str]) -> str:
    """` · seed 2 · 20 steps`: what tells a cell from the others of its row in progress lines."""
    words = {
        "steps": "{} steps",
        "seed": "seed {}",
        "guidance_scale": "guidance {}",
        "prompt": "{!r}",
        "schedule": "{} schedule",
    }
    values = {axis: getattr(run, axis) for axis in varying}
    if "schedule" in values and values["schedule"] is None:
        values["schedule"] = "default"  # the scheduler's own
    return "".join(" · " + words[axis].format(values[axis]) for axis in varying)


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
