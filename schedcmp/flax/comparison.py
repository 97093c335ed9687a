"""`schedcmp run --backend flax` and `--backend torch,flax`: a comparison made by diffusers' Flax pipeline, into the
same results folder, records and Outcome as the PyTorch engine's (schedcmp.sweep.engine). schedcmp.scale.launch
calls it; nothing below that imports it.

The engine's stages: before anything loads, refuse what the Flax path does not take (schedcmp.flax.supported)
and resolve the scheduler names to Flax classes; load the Flax model (and with torch,flax the PyTorch pipeline
from the same folder); plan the cells as the engine does (schedcmp.core.plan); make them a scheduler × step count
at a time, the first call of each compiling (its time is the first cell's `compile_seconds`, the calls after it
are `seconds`); finish (schedcmp.sweep.results.finish: the sheets and the page, results.json last).

Each call is the guide's: one image per JAX device, replicated params, sharded prompt ids, one PRNG key per
device split from the seed's, `jit=True`; a cell's image is device 0's. With torch,flax each cell runs in both
frameworks from the seed's latents as the PyTorch backend draws them on the CPU (schedcmp.flax.crosscheck), and
the Flax run carries the distance between the two images (`Run.cross`).
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from schedcmp.core.errors import Terminated, UsageError
from schedcmp.core.names import SchedulerChoice, choose, lookup_table, normalise, parse_entries, short_name, ui_label
from schedcmp.core.plan import PipelineDefaults, RunSpec, plan_runs
from schedcmp.core.records import (
    Backend,
    CrossFramework,
    Results,
    Run,
    RunError,
    SharedSeconds,
    Status,
    now,
    versions,
)
from schedcmp.core.request import Request, check, stored
from schedcmp.flax import crosscheck, require, runner, supported
from schedcmp.flax.results import CrossRun, FrameworkRun
from schedcmp.model.pipeline import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME, one_line, quiet_libraries
from schedcmp.model.sample import judge_output, pixel_sha256
from schedcmp.output import console, render, report
from schedcmp.quality.metrics import max_abs_difference
from schedcmp.sweep.placement import launched
from schedcmp.sweep.results import (
    Events,
    FolderLock,
    Outcome,
    ResultsFile,
    check_out_dir,
    claim_out_dir,
    finish,
    out_dir_of,
)


@dataclass(frozen=True)
class Cell:
    """One cell of the plan: its Flax run and, with torch,flax, the PyTorch run from the same latents."""

    flax: RunSpec
    torch: RunSpec | None = None

    @property
    def ids(self) -> list[str]:
        return ([self.torch.id] if self.torch else []) + [self.flax.id]


@dataclass(frozen=True)
class FlaxPlan:
    """What a Flax comparison will run, fixed before anything loads."""

    folder: Path
    own_scheduler: str  # the folder's scheduler class, e.g. PNDMScheduler
    groups: list[list[Cell]]  # cells sharing one compiled loop: one scheduler, its overrides, one step count
    order: list[str]  # every run id, in plan order

    @property
    def size(self) -> int:
        return sum(len(cell.ids) for group in self.groups for cell in group)


@dataclass(frozen=True)
class Models:
    flax: Any  # schedcmp.flax.runner.FlaxModel
    torch: Any  # diffusers' StableDiffusionPipeline from the same folder (torch,flax), or None
    load_seconds: float
    devices: int
    platform: str  # JAX's: cpu, gpu, tpu


def run(
    request: Request,
    loaded: Any = None,
    resumed: Results | None = None,
    keep_output: Callable[[Any], None] | None = None,
    progress: console.Progress | None = None,
) -> Outcome:
    """A whole comparison by the Flax backend in this process; the arguments are scale.launch.run's, and a
    pipeline object (`loaded`), a resumed folder or kept outputs (baselines) are refused, as --resume is."""
    progress = progress or console.Progress()
    check(request)
    supported.refuse(request, launched(), loaded is not None or keep_output is not None)
    with quiet_libraries():  # diffusers 0.39 warns that Flax is deprecated as its Flax modules import
        require()
        plan = make_plan(request)
        out_dir = out_dir_of(request)
        check_out_dir(out_dir, request.overwrite)
        events = Events(request.events)
        results = None
        try:
            models = load(request, plan.folder, progress)
            results = open_results(request, plan, models, out_dir)
            stopped = Execution(request, models, results, progress, events).run(plan)
            progress.close()
            results.results.answer = cross_answer(results.finished()) or None
            return finish(results, request, stopped, progress)
        finally:
            events.close()
            progress.close()
            if results is not None:
                results.release()


# -- before anything loads: the names and the cells --------------------------------------------------------------


def make_plan(request: Request) -> FlaxPlan:
    """The cells, from the --schedulers entries resolved to Flax classes; it reads the folder's configs only."""
    folder = Path(request.model) if request.model is not None else DEFAULT_MODEL_DIR
    compatible = [name.removeprefix("Flax") for name in runner.compatible_in(folder)]
    chosen = flax_choices(request.schedulers, compatible)
    size = runner.native_size(folder)
    defaults = PipelineDefaults(runner.default_steps(), runner.GUIDANCE_SCALE, size, size)
    ported = [replace(choice, class_name=f"Flax{choice.class_name}") for choice in chosen]
    flax_cells = plan_runs(ported, {f"Flax{name}" for name in compatible}, request, defaults)
    torch_cells: list[RunSpec | None] = [None] * len(flax_cells)
    if supported.cross(request):
        torch_cells = list(plan_runs(chosen, set(compatible), request, defaults))
    cells = [Cell(flax, torch) for flax, torch in zip(flax_cells, torch_cells)]
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        spec = cell.flax
        groups.setdefault((spec.scheduler, repr(sorted(spec.overrides.items())), spec.steps), []).append(cell)
    order = [identifier for cell in cells for identifier in cell.ids]
    return FlaxPlan(folder, compatible[0], list(groups.values()), order)


def flax_choices(text: str, compatible: list[str]) -> list[SchedulerChoice]:
    """The --schedulers entries, by the PyTorch class each Flax class ports (the grammar's names and aliases are
    PyTorch's). Refused, naming it: an unknown name, one with no Flax version, an override the Flax class lacks."""
    from schedcmp.model.schedulers import accepted_params_of, check_override_types, init_params, scheduler_classes

    ports = runner.flax_classes()
    flax_params = {name: init_params(cls) for name, cls in ports.items()}
    every_params = {**accepted_params_of(scheduler_classes()), **flax_params}
    refuse_without_flax(text, sorted(every_params), flax_params)
    chosen = choose(text, compatible, every_params, None)  # unknown names are refused here, with suggestions
    check_override_types(chosen, ports)
    return chosen


def refuse_without_flax(text: str, known: list[str], flax_params: dict[str, set[str]]) -> None:
    """An entry naming a scheduler diffusers has no Flax version of, or an override (its own, or its UI name's)
    that the Flax class does not take."""
    import diffusers

    table = lookup_table(known)
    for entry in parse_entries(text):
        found = table.get(normalise(entry.name))
        if found is None:
            continue  # all, all+, or unknown (choose() says so, with suggestions)
        class_name, alias_overrides, _ = found
        if class_name not in flax_params:
            ported = ", ".join(short_name(name) for name in sorted(flax_params))
            raise UsageError(
                f"{entry.name!r} ({short_name(class_name)}) has no Flax version in diffusers {diffusers.__version__}; "
                f"the Flax schedulers are {ported}"
            )
        lacking = [key for key in {**alias_overrides, **entry.overrides} if key not in flax_params[class_name]]
        if lacking:
            raise UsageError(f"{entry.name!r}: Flax{class_name} takes no {', '.join(lacking)}")


# -- loading, and the results file ---------------------------------------------------------------------------------


def load(request: Request, folder: Path, progress: console.Progress) -> Models:
    """The Flax model (and the PyTorch pipeline from the same folder, with torch,flax), timed together."""
    import jax

    dtype = supported.flax_dtype(request)
    devices, platform = jax.device_count(), jax.devices()[0].platform
    name = request.model or DEFAULT_MODEL_NAME
    progress.note(
        f"loading {name} for Flax ({dtype}) on {devices} JAX {platform} device{'s' if devices > 1 else ''}: one image "
        "per device per call (params replicated, prompt ids sharded, one PRNG key per device, jit) ..."
    )
    started = time.perf_counter()
    model = runner.load(folder, dtype)
    pipe = None
    if supported.cross(request):
        progress.note(f"loading {name} for PyTorch (float32, cpu) too ...")
        pipe = crosscheck.load_torch_pipeline(folder)
    return Models(model, pipe, time.perf_counter() - started, devices, platform)


def device_text(models: Models) -> str:
    """`cpu ×2 (JAX)`, and the PyTorch side with torch,flax."""
    flax = f"{models.platform} ×{models.devices} (JAX)"
    return flax if models.torch is None else f"cpu (torch) + {flax}"


def open_results(request: Request, plan: FlaxPlan, models: Models, out_dir: Path) -> ResultsFile:
    """The folder claimed (nothing is left to refuse now) and its results file, with the comparison's header."""
    out_dir = claim_out_dir(out_dir, request.out is not None, request.overwrite)
    lock = FolderLock(out_dir).acquire()
    header = Results(
        model=request.model or DEFAULT_MODEL_NAME,
        pipeline="FlaxStableDiffusionPipeline" + (" + StableDiffusionPipeline" if models.torch is not None else ""),
        original_scheduler=plan.own_scheduler,
        device=device_text(models),
        dtype={"float32": "fp32", "bfloat16": "bf16"}[models.flax.dtype],
        generator_device="cpu" if models.torch is not None else None,  # torch,flax: the seed's latents, drawn so
        repeat=request.repeat,
        seed_mode=request.seed_mode,
        versions=versions(),
        shared_seconds=SharedSeconds(model_load=models.load_seconds),
        started=now(),
        settings=stored(request),
        model_source=request.model,
        devices=models.devices,
    )
    return ResultsFile(out_dir, header, plan.order, lock)


# -- making the cells ----------------------------------------------------------------------------------------------


class Execution:
    """The execute stage: the groups of cells in order, results.json saved after every run."""

    def __init__(self, request: Request, models: Models, results: ResultsFile, progress, events: Events):
        self.request, self.models, self.results = request, models, results
        self.progress, self.events = progress, events
        self.image_dir = None if request.no_sheet else results.folder
        self.made = 0

    def run(self, plan: FlaxPlan) -> BaseException | None:
        """Every group; -> what stopped it early (Ctrl-C, or SIGTERM as errors.Terminated), if anything did."""
        self.results.save()
        self.progress.begin(plan.size)
        try:
            for group in plan.groups:
                self.make_group(group)
        except (KeyboardInterrupt, Terminated) as stop:
            self.progress.note(f"interrupted: writing what the {len(self.results.runs)} finished cells made")
            self.results.save()
            return stop
        return None

    def add(self, run: Run, took: str = "") -> None:
        self.results.add(run)
        self.results.save()
        self.events.cell(run)
        self.made += 1
        self.progress.finished(self.made, run.label + took, run.status, run.seconds, run.reason)

    def make_group(self, group: list[Cell]) -> None:
        """One scheduler × step count: one pipeline, compiled by its first call, then every cell of the group."""
        first = group[0].flax
        self.progress.started(self.made + 1, f"{first.scheduler} ({first.steps} steps; the first call compiles)", 1)
        try:
            prepared = runner.prepare(
                self.models.flax,
                first.scheduler,
                first.prompt,
                first.steps,
                first.negative_prompt,
                first.guidance_scale,
                first.overrides,
            )
        except Exception as error:  # a scheduler the Flax pipeline cannot set up: its cells fail, with the reason
            for cell in group:
                self.make_torch(cell)
                self.add(failed(cell.flax, error))
            return
        compiled = False
        for number, cell in enumerate(group):
            torch_side = self.make_torch(cell)
            try:
                made = flax_calls(prepared, cell.flax, torch_side, self.request.repeat, compile_first=not compiled)
            except Exception as error:
                if not compiled:  # the loop cannot be traced or compiled: every cell of the group fails so
                    for rest in group[number + 1 :]:
                        self.make_torch(rest)
                    for failing in group[number:]:
                        self.add(failed(failing.flax, error))
                    return
                self.add(failed(cell.flax, error))
                continue
            compiled = True
            self.add_flax(prepared, cell, made, torch_side)

    def make_torch(self, cell: Cell) -> "TorchSide | None":
        """torch,flax: the cell in PyTorch from the seed's latents (twice: its repeat distance), recorded first."""
        if cell.torch is None or self.models.torch is None:
            return None
        spec = cell.torch
        noise = crosscheck.initial_noise(spec.seed, crosscheck.latent_shape(self.models.flax))
        align = functools.partial(
            crosscheck.run_torch,
            self.models.torch,
            spec.scheduler,
            spec.prompt,
            spec.steps,
            noise,
            spec.guidance_scale,
            overrides=spec.overrides,
            negative_prompt=spec.negative_prompt,
        )
        try:
            made = align(None, repeat=self.request.repeat)
        except Exception as error:
            self.add(replace(failed(spec, error), backend=Backend.TORCH))
            return TorchSide(spec, noise, None, align)
        self.add(torch_record(spec, made, self.image_dir))
        return TorchSide(spec, noise, made, align)

    def add_flax(self, prepared: Any, cell: Cell, made: "FlaxCalls", torch_side: "TorchSide | None") -> None:
        note = runner.run_note(prepared)
        run = flax_record(cell.flax, made, note, self.image_dir)
        if torch_side is not None and torch_side.made is not None and run.status == Status.OK:
            flax_side = FrameworkRun(
                scheduler=cell.flax.scheduler,
                nfe=cell.flax.steps,
                seconds=run.seconds,
                output=made.outputs[-1][0],
                repeat_max_abs=made.repeat_max_abs(),
            )
            spec = cell.flax
            measured = crosscheck.measure(torch_side.made, flax_side, spec.steps, spec.seed, note, torch_side.align)
            run = with_cross(run, measured, torch_side.spec.id)
        took = f" (first call {made.compile_seconds:.2f} s)" if made.compile_seconds is not None else ""
        self.add(run, took)


@dataclass(frozen=True)
class TorchSide:
    """A cell's PyTorch run (torch,flax): its spec, the latents both frameworks start from, what it made (None:
    it failed), and how to run it again with an alignment."""

    spec: RunSpec
    noise: Any  # (1, C, h, w) float32
    made: FrameworkRun | None
    align: Callable[[Any], FrameworkRun]


@dataclass(frozen=True)
class FlaxCalls:
    """A cell's Flax calls: their outputs (each (devices, H, W, 3) in [0, 1]), the timed ones' seconds, and the
    compiling first call's seconds where this cell made it."""

    outputs: list[Any]
    seconds: list[float]
    compile_seconds: float | None

    def repeat_max_abs(self) -> float:
        """Between the last two calls, and between the devices of the last (all given the same latents)."""
        last = self.outputs[-1]
        return max(max_abs_difference(self.outputs[-2], last), max_abs_difference(last[0], last[-1]))


def flax_calls(
    prepared: Any, spec: RunSpec, torch_side: TorchSide | None, repeat: int, compile_first: bool
) -> FlaxCalls:
    """The cell's jitted calls: the compiling one first where the group has not compiled yet, then `repeat` timed
    ones; with torch,flax from the PyTorch run's latents on every device, and at least two calls."""
    inputs = runner.with_inputs(prepared, spec.prompt, spec.guidance_scale)
    latents = None if torch_side is None else torch_side.noise[0]
    outputs, seconds, compile_seconds = [], [], None
    if compile_first:
        first, compile_seconds = runner.generate(inputs, spec.seed, latents)
        outputs.append(first)
    for _ in range(repeat):
        output, took = runner.generate(inputs, spec.seed, latents)
        outputs.append(output)
        seconds.append(took)
    if torch_side is not None and len(outputs) < 2:
        outputs.append(runner.generate(inputs, spec.seed, latents)[0])
    return FlaxCalls(outputs, seconds, compile_seconds)


# -- the records -----------------------------------------------------------------------------------------------------


def base_run(spec: RunSpec, backend: Backend, status: Status = Status.OK) -> Run:
    """A cell's settings as its record."""
    return Run(**spec.record_settings(), status=status, backend=backend)


def failed(spec: RunSpec, error: BaseException) -> Run:
    """A cell that raised: failed (LMS and DDPM in the Flax pipeline, docs/flax.md). The reason is the error's type
    and first sentence, as the table and the sheet show it; its `error` keeps the whole message."""
    message = one_line(error)
    reason = f"{type(error).__name__}: {message.split('. ')[0]}"
    if "while tracing the function loop_body" in message:
        reason += " (while tracing the Flax pipeline's sampling loop)"
    run = base_run(spec, Backend.FLAX, Status.FAILED)
    return replace(run, reason=reason, error=RunError(type(error).__name__, message))


def image_record(run: Run, output: Any, image_dir: Path | None) -> Run:
    """The run judged as the PyTorch engine judges (non-finite or constant fails), its pixels hashed and saved."""
    import numpy as np

    status, reason = judge_output(np.asarray(output), nsfw=False)
    rgb = (np.asarray(output) * 255).round().astype(np.uint8)
    image = None
    if image_dir is not None:
        (image_dir / "images").mkdir(exist_ok=True)
        image = f"images/{run.id}.png"
        report.write_atomic(image_dir / image, render.png_bytes(rgb))
    return replace(run, status=Status(status), reason=reason, image_path=image, sha256=pixel_sha256(rgb))


def flax_record(spec: RunSpec, made: FlaxCalls, note: str | None, image_dir: Path | None) -> Run:
    """A Flax cell: device 0's image of its last call; the median of its timed calls, its compiling call apart."""
    run = replace(
        base_run(spec, Backend.FLAX),
        nfe=spec.steps,
        seconds=statistics.median(made.seconds),
        seconds_all=made.seconds,
        compile_seconds=made.compile_seconds,
        backend_note=note,
    )
    return image_record(run, made.outputs[-1][0], image_dir)


def torch_record(spec: RunSpec, made: FrameworkRun, image_dir: Path | None) -> Run:
    """A PyTorch cell of torch,flax: its timed calls (all but the first) and its image."""
    timed = list(made.seconds_all) or [made.seconds]
    run = replace(base_run(spec, Backend.TORCH), nfe=made.nfe, seconds=made.seconds, seconds_all=timed)
    return image_record(run, made.output, image_dir)


def finite(value: float | None) -> float | None:
    """A PSNR for JSON: None where the images are identical (infinite)."""
    return None if value is None or value == float("inf") else value


def with_cross(run: Run, cross: CrossRun, torch_id: str) -> Run:
    """The Flax run with its distance to the PyTorch run; suspect where the frameworks disagree beyond the tolerance
    on the same computation (no known alignment explains it)."""
    record = CrossFramework(
        torch_run=torch_id,
        max_abs=cross.max_abs,
        psnr=finite(cross.psnr),
        torch_repeat_max_abs=cross.torch.repeat_max_abs,
        flax_repeat_max_abs=cross.flax.repeat_max_abs,
        tolerance_max_abs=cross.tolerance_max_abs,
        tolerance_psnr=cross.tolerance_psnr,
        agrees=cross.agrees,
        within=cross.within,
        alignment=cross.alignment.reason if cross.alignment else None,
        aligned_max_abs=cross.aligned_max_abs,
        aligned_psnr=finite(cross.aligned_psnr),
    )
    if cross.within:
        return replace(run, cross=record)
    why = "PyTorch and Flax disagree beyond the tolerance" + (" even aligned" if cross.alignment else "")
    return replace(run, cross=record, status=Status.SUSPECT, reason=why)


def cross_answer(runs: list[Run]) -> list[str]:
    """torch,flax in words: which schedulers the frameworks agree on, which only once aligned, which not at all."""
    crossed = [run for run in runs if run.cross is not None]
    if not crossed:
        return []
    first = crossed[0].cross

    def names(chosen: list[Run]) -> str:
        labels = [ui_label(run.scheduler.removeprefix("Flax"), run.alias, run.overrides) for run in chosen]
        return ", ".join(dict.fromkeys(labels))

    agree = names([run for run in crossed if run.cross.agrees])
    within = (
        f"from the same latents and weights, within max abs {first.tolerance_max_abs:.5f} (one 8-bit level) and "
        f"PSNR {first.tolerance_psnr:g} dB, as diffusers' defaults compute them"
    )
    lines = [f"PyTorch and Flax agree, {within}: {agree}" if agree else f"PyTorch and Flax agree on none, {within}"]
    aligned = names([run for run in crossed if not run.cross.agrees and run.cross.within])
    if aligned:
        lines.append(
            f"{aligned}: beyond it by diffusers' defaults; within once PyTorch does what the Flax side does "
            "(each run's cross.alignment says what)"
        )
    beyond = names([run for run in crossed if not run.cross.within])
    if beyond:
        lines.append(f"{beyond}: beyond it even so (suspect)")
    failing = names([run for run in runs if run.backend == Backend.FLAX and run.status == Status.FAILED])
    if failing:
        lines.append(f"{failing}: no Flax image to compare (failed in the Flax pipeline)")
    return lines
