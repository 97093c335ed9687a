"""How close each run comes to a converged reference solution from the same starting noise.

The solver papers judge a sampler by its distance to a reference computed with many steps of an accurate
solver. This module plans those references (one per prompt, seed and settings), notes which runs start
later than the reference (their distance includes it), decides which runs are stochastic (they converge to a
different sample and are never ranked), measures distances, and fits the empirical order of convergence of a
steps sweep. Everything below "pure" works on the runs' records and needs neither torch nor diffusers.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from schedcmp.core.errors import UsageError
from schedcmp.core.names import FLOW_SAMPLER, SchedulerChoice, display_label, parse_entry, resolve_entry, short_name
from schedcmp.core.plan import RUN_SETTINGS, RunSpec
from schedcmp.core.records import (
    STOCHASTIC_NOT_RANKED,
    Determinism,
    Distance,
    Interval,
    Order,
    Pareto,
    Reference,
    Run,
    SelfConvergence,
    Status,
    versions,
)
from schedcmp.model.schedulers import build, effective_overrides, init_params
from schedcmp.model.weights import weights_digest
from schedcmp.quality import metrics

# Why config.DEFAULT_REFERENCE is DPM++ 2M with Karras sigmas at 400 steps: Karras sigmas crowd the steps
# where the noise is low, where uniform-in-t steps are coarsest (σ grows like √t there), so over the same
# interval DPM++ 2M converges far faster with them. bench/reference_convergence.py measures it on the
# default model: halving its 400 steps moves the final latent by 2.2e-4 RMSE, about 190 times less than
# the closest 20-step run is from it (docs/convergence.md has the table).

# Why the flow sampler's Heun at 200 steps on a flow-matching model: it follows the pipeline's own σ grid (shift,
# FLUX's mu), and on exact Gaussian data (tests/analytic_flow.py, float64) its 399 model calls land 8.6e-5 RMS
# from the exact solution on SD3's grid and 3.2e-5 on FLUX's, against 1.1e-3 and 1.2e-3 for the native DPM++ 2M on
# flow sigmas at 400 (the reference before 2026-12-04) and 3.8e-3 for FlowMatchEuler at 400 (docs/flow.md).
FLOW_REFERENCE = "FlowSampler(method=heun):200"

# A reference that halving its steps moves by more than this share of the smallest distance it judges has
# not converged enough to rank those runs: say so.
SELF_CONVERGENCE_WARNING = 0.1

# A run that starts at a noise level this much (relatively) below the reference's starts late; one this much
# above starts outside the range the reference integrates over. 1% is far below what a late start costs
# (SD 1.5's leading spacing starts 20 steps at t=951, sigma 9.7 against the reference's 14.6) and above what
# rounding gives: on flow models FlowMatchEuler starts at sigma 1 and DPM++ on flow sigmas at 0.999, both
# from what is in practice the same pure noise.
START_TOLERANCE = 0.01

# The determinism vocabulary is declared once, in schedcmp.core.records.
DETERMINISTIC, STOCHASTIC, UNKNOWN = Determinism.DETERMINISTIC, Determinism.STOCHASTIC, Determinism.UNKNOWN

# The settings that make two runs share a reference: everything but the scheduler and its steps.
REFERENCE_FIELDS = ("prompt", "negative_prompt", "seed", "guidance_scale", "width", "height", "call_args")


@dataclass(frozen=True)
class ReferencePlan:
    """The references a comparison needs, and what each run's own schedule means for its distance."""

    text: str  # the reference entry, spelled out: NAME(overrides):STEPS
    specs: dict[str, RunSpec]  # reference id -> the reference run
    half_specs: dict[str, RunSpec]  # reference id -> the same run with half the steps (its self-convergence)
    of_run: dict[str, str]  # run id -> reference id
    interval: Interval  # start_timestep, note: what results.json and the report say
    off_interval: dict[str, str]  # run id -> why it cannot be compared (it starts outside the reference's range)
    schedule_notes: dict[str, str]  # run id -> what of its distance its own schedule explains (a late start)


def reference_choice(text: str, accepted_params: dict[str, set[str]]) -> SchedulerChoice:
    """`--reference-spec`: one scheduler entry with its steps, e.g. `DPMSolverMultistep:200`."""
    entry = parse_entry(text)
    if entry.steps is None:
        raise UsageError(f"--reference-spec {text!r} needs its steps, e.g. {entry.name}:200")
    if entry.steps < 2:
        raise UsageError(
            f"--reference-spec {text!r}: a reference needs at least 2 steps (it is also run at half of them)"
        )
    if entry.name.lower() in ("all", "all+"):
        raise UsageError("--reference-spec names one scheduler, not all")
    return resolve_entry(entry, accepted_params)


def flow_reference(flow_shift: float) -> str:
    """The default reference on a flow-matching model (FLOW_REFERENCE says why); the flow sampler reads the shift
    from the pipeline's config, so `flow_shift` is not needed to say it."""
    return FLOW_REFERENCE


def check_reference(
    choice: SchedulerChoice,
    compatible: list[str],
    allow_incompatible: bool,
    flow_model: bool,
    determinism: tuple[str, str],
) -> None:
    """A reference must solve this model's ODE: a compatible class (or a flow solver on a flow model), no sampler."""
    if not (
        choice.class_name in compatible
        or allow_incompatible
        or (flow_model and (choice.overrides.get("use_flow_sigmas") or choice.class_name == FLOW_SAMPLER))
    ):
        raise UsageError(
            f"the reference {short_name(choice.class_name)} is not in this pipeline's compatibles; "
            "choose another --reference-spec or pass --allow-incompatible"
        )
    if determinism[0] == STOCHASTIC:
        raise UsageError(
            f"the reference {short_name(choice.class_name)} is stochastic (it adds noise as it goes): "
            "it would converge "
            "to another sample, not to the ODE's solution; choose a deterministic --reference-spec"
        )


def reference_group(spec: RunSpec) -> str:
    """The key shared by the runs one reference serves."""
    return json.dumps([getattr(spec, name) for name in REFERENCE_FIELDS], sort_keys=True, default=str)


def reference_id(choice: SchedulerChoice, spec: RunSpec) -> str:
    digest = hashlib.sha256(
        (reference_group(spec) + repr(sorted(choice.overrides.items())) + str(choice.steps)).encode()
    ).hexdigest()
    return f"ref-{short_name(choice.class_name).lower()}-s{choice.steps}-{digest[:8]}"


@dataclass(frozen=True)
class Start:
    """Where a schedule starts: its first timestep, the noise level there, and whether it ends early."""

    timestep: float
    sigma: float
    ends_early: bool = False


def schedule_start(cls: type, config: Any, overrides: dict[str, Any], steps: int) -> Start | None:
    """Where a scheduler starts for this many steps (None: it cannot say without a pipeline, e.g. a flow
    scheduler with dynamic shifting, which needs the image size)."""
    try:
        scheduler = build(cls, config, overrides)
        scheduler.set_timesteps(steps, device="cpu")
        timestep = float(scheduler.timesteps.max())
        sigmas = getattr(scheduler, "sigmas", None)
        if sigmas is not None and len(sigmas):
            sigma = float(sigmas.max())
        else:  # DDIM, PNDM, DDPM step on alphas: the noise level of their first timestep
            alpha = float(scheduler.alphas_cumprod[int(round(timestep))])
            sigma = ((1 - alpha) / alpha) ** 0.5
    except Exception:
        return None
    # DDIM and PNDM with set_alpha_to_one=false end at the first training timestep's noise, not at zero.
    ends_early = "set_alpha_to_one" in init_params(cls) and scheduler.config.set_alpha_to_one is False
    return Start(timestep, sigma, ends_early)


def plan_references(
    runs: list[RunSpec], choice: SchedulerChoice, config: Any, classes: dict[str, type]
) -> ReferencePlan:
    """One reference per group of runs; every run keeps the schedule it has for the user.

    A run that starts later than the reference (Stable Diffusion 1.5's "leading" spacing starts DDIM, PNDM and
    DDPM at t=951 for 20 steps, the reference at t=999) or ends early (`set_alpha_to_one=false`) is measured
    as it is: what its schedule leaves undone is part of what that scheduler gets the user, and its note says
    so. Only a run that starts outside the reference's range (EDM's sigma 80 against 14.6) is not measured.
    """
    reference = schedule_start(classes[choice.class_name], config, choice.overrides, choice.steps)
    off_interval: dict[str, str] = {}
    schedule_notes: dict[str, str] = {}
    for spec in runs:
        overrides = effective_overrides(classes[spec.scheduler], spec.overrides, spec.schedule)
        start = schedule_start(classes[spec.scheduler], config, overrides, spec.steps)
        if start is None or reference is None:
            continue
        if start.sigma > reference.sigma * (1 + START_TOLERANCE):
            off_interval[spec.id] = (
                f"starts at sigma {start.sigma:.3g}, outside the reference's range (sigma up to "
                f"{reference.sigma:.3g}): not measured"
            )
            continue
        notes = []
        if start.sigma < reference.sigma * (1 - START_TOLERANCE):
            notes.append(f"starts at t={start.timestep:.0f}: part of its distance is the late start")
        if start.ends_early:
            notes.append("ends early (set_alpha_to_one=false): part of its distance is the early end")
        if notes:
            schedule_notes[spec.id] = "; ".join(notes)
    specs: dict[str, RunSpec] = {}
    half_specs: dict[str, RunSpec] = {}
    of_run: dict[str, str] = {}
    for spec in runs:
        ref_id = reference_id(choice, spec)
        of_run[spec.id] = ref_id
        if ref_id not in specs:
            specs[ref_id] = replace(
                spec,
                id=ref_id,
                scheduler=choice.class_name,
                alias=choice.alias,
                overrides=dict(choice.overrides),
                compatible=True,
                steps=choice.steps,
                batch=None,
            )
            half_specs[ref_id] = replace(specs[ref_id], id=ref_id + "-half", steps=max(1, choice.steps // 2))
    text = f"{display_label(choice.class_name, None, choice.overrides)}:{choice.steps}"
    start_at = reference.timestep if reference is not None else None
    interval = Interval(start_timestep=start_at, note=interval_note(start_at, runs, schedule_notes, off_interval))
    return ReferencePlan(text, specs, half_specs, of_run, interval, off_interval, schedule_notes)


def interval_note(
    start_at: float | None, runs: list[RunSpec], schedule_notes: dict[str, str], off_interval: dict[str, str]
) -> str:
    """One sentence for the report: every run keeps its own schedule, and what that means for its distance.

    A scheduler that starts late only at some step counts (Euler's linspace puts a single step at t=0) is
    named with them."""

    def names(which) -> str:
        found: dict[str, set[int]] = {}
        every: dict[str, set[int]] = {}
        for spec in runs:
            every.setdefault(short_name(spec.scheduler), set()).add(spec.steps)
            if which(spec):
                found.setdefault(short_name(spec.scheduler), set()).add(spec.steps)
        return ", ".join(
            name if steps == every[name] else f"{name} at {steps_list(sorted(steps))}" for name, steps in found.items()
        )

    late = names(lambda spec: "late start" in schedule_notes.get(spec.id, ""))
    early = names(lambda spec: "early end" in schedule_notes.get(spec.id, ""))
    outside = names(lambda spec: spec.id in off_interval)
    where = f"t={start_at:.0f}" if start_at is not None else "its first timestep"
    note = f"the reference starts at {where}; every run keeps its own schedule"
    if late:
        note += f"; {late} start later, and part of their distance is the late start"
    if early:
        note += f"; {early} end early (set_alpha_to_one=false), and part of their distance is the early end"
    if outside:
        note += f"; {outside} start outside the reference's range and are not measured"
    return note


def steps_list(steps: list[int]) -> str:
    shown = ", ".join(str(count) for count in steps[:6]) + (", ..." if len(steps) > 6 else "")
    return f"{shown} step{'s' if steps != [1] else ''}"


# -- stochastic or not, found by running the scheduler ------------------------------------------------


def determinism_key(spec: RunSpec) -> str:
    return json.dumps(
        [spec.scheduler, spec.overrides, spec.schedule, step_arguments(spec.call_args)], sort_keys=True, default=str
    )


def step_arguments(call_args: dict[str, Any]) -> dict[str, Any]:
    """The pipeline arguments that reach `scheduler.step` (DDIM's eta)."""
    return {key: value for key, value in call_args.items() if key == "eta"}


def probe_determinism(
    cls: type, config: Any, overrides: dict[str, Any], step_kwargs: dict[str, Any], steps: int = 6
) -> tuple[str, str]:
    """Run the scheduler twice from the same start latents with two different noise generators.

    Outputs that differ mean the scheduler injects noise (ancestral, SDE, DDPM, DDIM with eta > 0, ...):
    it samples, rather than solving the probability-flow ODE the reference solves. The denoiser is a fixed
    linear function, so only the scheduler can make the two runs differ. The answer depends only on the
    arguments, so it is kept for the process: a notebook's second comparison does not pay for it again (a
    KDPM2 class alone costs ~0.4 s to build, its constructor walks 1000 sigmas in Python).
    """
    key = json.dumps(
        [cls.__module__, cls.__qualname__, dict(config), overrides, step_kwargs, steps], sort_keys=True, default=str
    )
    if key not in PROBED:
        PROBED[key] = probe_twice(cls, config, overrides, step_kwargs, steps)
    return PROBED[key]


PROBED: dict[str, tuple[str, str]] = {}


def probe_twice(
    cls: type, config: Any, overrides: dict[str, Any], step_kwargs: dict[str, Any], steps: int
) -> tuple[str, str]:
    import torch

    outputs = []
    for noise_seed in (1, 2):
        try:
            outputs.append(probe_run(cls, config, overrides, step_kwargs, steps, noise_seed))
        except Exception as error:  # a scheduler this loop cannot drive (inpainting, discrete tokens, ...)
            return (
                UNKNOWN,
                f"could not be probed: {type(error).__name__}: "
                f"{str(error).splitlines()[0][:120] if str(error) else ''}".rstrip(": "),
            )
    if not all(torch.isfinite(output).all() for output in outputs):
        return UNKNOWN, "the probe gave non-finite values"
    if torch.equal(outputs[0], outputs[1]):
        return DETERMINISTIC, "two noise generators gave the same result"
    return STOCHASTIC, "two noise generators gave different results: it samples, converging to another sample"


def probe_run(
    cls: type, config: Any, overrides: dict[str, Any], step_kwargs: dict[str, Any], steps: int, noise_seed: int
):
    """A plain denoising loop as pipelines run it, on 1×4×8×8 latents, with a generator seeded `noise_seed`."""
    import torch

    init = init_params(cls)
    extra = {"noise_sampler_seed": noise_seed} if "noise_sampler_seed" in init else {}
    scheduler = build(cls, config, {**overrides, **extra})
    set_parameters = inspect.signature(scheduler.set_timesteps).parameters
    if "mu" in set_parameters and getattr(scheduler.config, "use_dynamic_shifting", False):
        scheduler.set_timesteps(steps, device="cpu", mu=1.0)
    else:
        scheduler.set_timesteps(steps, device="cpu")
    start = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=start) * getattr(scheduler, "init_noise_sigma", 1.0)
    noise = torch.Generator().manual_seed(noise_seed)
    step_parameters = inspect.signature(scheduler.step).parameters
    kwargs = {key: value for key, value in step_kwargs.items() if key in step_parameters}
    if "generator" in step_parameters:
        kwargs["generator"] = noise
    for timestep in scheduler.timesteps:
        model_input = (
            scheduler.scale_model_input(latents, timestep) if hasattr(scheduler, "scale_model_input") else latents
        )
        model_output = 0.5 * model_input  # any fixed smooth function: the question is only what the scheduler adds
        stepped = scheduler.step(model_output, timestep, latents, **kwargs)
        latents = stepped.prev_sample if hasattr(stepped, "prev_sample") else stepped[0]
    return latents


# -- the reference cache ------------------------------------------------------------------------------


def cache_dir() -> Path:
    """SCHEDCMP_CACHE_DIR, else $XDG_CACHE_HOME/schedcmp, else ~/.cache/schedcmp."""
    if os.environ.get("SCHEDCMP_CACHE_DIR"):
        return Path(os.environ["SCHEDCMP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "schedcmp"


def cache_key(identity: dict[str, Any], spec: RunSpec) -> str:
    """The cache entry of one reference: what `identity` says of the model and machine, and the run's every setting."""
    fields = {name: getattr(spec, name) for name in RUN_SETTINGS}
    text = json.dumps({"identity": identity, "run": fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ReferenceOutput:
    """A reference run's final latent, float image (H×W×C in [0, 1]) and RGB, and what it cost."""

    latent: Any
    output: Any
    rgb: Any
    nfe: int | None
    seconds: float | None
    cached: bool = False


def read_reference(path: Path) -> ReferenceOutput | None:
    """A reference output write_reference saved; None when absent, truncated or not ours."""
    import numpy as np

    try:
        with np.load(path) as stored:
            meta = json.loads(str(stored["meta"]))
            return ReferenceOutput(
                stored["latent"], stored["output"], stored["rgb"], meta["nfe"], meta["seconds"], cached=True
            )
    except Exception:
        return None


def write_reference(path: Path, reference: ReferenceOutput) -> None:
    """`path` (.npz, written atomically): the reference's latent, output and RGB, and what it cost."""
    import io

    import numpy as np

    from schedcmp.output.report import write_atomic

    buffer = io.BytesIO()
    meta = json.dumps({"nfe": reference.nfe, "seconds": reference.seconds})
    np.savez(buffer, latent=reference.latent, output=reference.output, rgb=reference.rgb, meta=np.array(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def load_cached(key: str) -> ReferenceOutput | None:
    """The cache only saves time: an entry absent, truncated or not ours is computed again."""
    return read_reference(cache_dir() / "references" / f"{key}.npz")


def store_cached(key: str, reference: ReferenceOutput) -> None:
    """Best effort: a cache that cannot be written costs time later, never this run."""
    try:
        write_reference(cache_dir() / "references" / f"{key}.npz", reference)
    except OSError:
        pass


def distances(latent, output, rgb, reference: ReferenceOutput) -> Distance | None:
    """Latent RMSE, PSNR and SSIM of one run to its reference; None when a shape differs."""
    import numpy as np

    if (
        latent is None
        or np.shape(latent) != np.shape(reference.latent)
        or np.shape(output) != np.shape(reference.output)
    ):
        return None
    return Distance(
        latent_rmse=metrics.latent_rmse(latent, reference.latent),
        psnr=metrics.psnr(output, reference.output),
        ssim=metrics.ssim(rgb, reference.rgb),
    )


# -- pure: orders and Pareto fronts over the runs ---------------------------------------------------------


SWEEP_FIELDS = (
    "scheduler",
    "overrides",
    "prompt",
    "negative_prompt",
    "seed",
    "guidance_scale",
    "width",
    "height",
    "call_args",
    "reference",
)


def ranked(run: Run) -> bool:
    """A run measured against the ODE reference: finished ok, deterministic, with a distance."""
    return run.status == Status.OK and run.determinism == DETERMINISTIC and run.distance is not None


def sweeps(runs: list[Run]) -> list[list[Run]]:
    """The runs grouped by everything but their steps: one scheduler entry's steps sweep per group."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps([getattr(run, name) for name in SWEEP_FIELDS], sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def fit_orders(runs: list[Run]) -> dict[str, Order | None]:
    """Run id -> its scheduler's fitted order in a steps sweep (None outside a sweep)."""
    orders: dict[str, Order | None] = {}
    for group in sweeps(runs):
        if len({run.steps for run in group}) < 2 or not any(run.reference for run in group):
            orders.update((run.id, None) for run in group)
        else:
            orders.update((run.id, sweep_order(group)) for run in group)
    return orders


def sweep_order(group: list[Run]) -> Order:
    """The order of convergence of one steps sweep, or why it has none."""
    points = sorted((run for run in group if ranked(run) and run.nfe), key=lambda run: run.nfe)
    if any(run.determinism == STOCHASTIC for run in group):
        return Order(reason="stochastic: no ODE order")
    if not points:
        why = next((run.distance_note for run in group if run.distance_note), "no run finished ok")
        return Order(reason=f"no distances: {why}")
    fit = metrics.fit_order([run.nfe for run in points], [run.distance.latent_rmse for run in points])
    fitted = fit.order is not None
    return Order(
        order=fit.order,
        steps=[points[fit.first].steps, points[fit.last].steps] if fitted else None,
        nfe=[points[fit.first].nfe, points[fit.last].nfe] if fitted else None,
        r_squared=fit.r_squared,
        reason=fit.reason,
    )


def convergence_warnings(references: list[Reference], runs: list[Run]) -> dict[str, str]:
    """Reference id -> why it has not converged enough: its self-convergence is not well below the smallest
    distance it judges."""
    warnings = {}
    for reference in references:
        moved = reference.self_convergence.latent_rmse if reference.self_convergence else None
        distances = [run.distance.latent_rmse for run in runs if ranked(run) and run.reference == reference.id]
        if moved is not None and distances and moved > SELF_CONVERGENCE_WARNING * min(distances):
            warnings[reference.id] = (
                f"halving its steps moves it by {moved:.2g}, more than {SELF_CONVERGENCE_WARNING:g} of the smallest "
                f"distance it judges ({min(distances):.2g}): give it more steps"
            )
    return warnings


def warning_lines(references: list[Reference], warnings: dict[str, str]) -> list[str]:
    """One line for the user per reference that has not converged enough."""
    return [
        f"reference {reference.spec} has not converged enough: {warnings[reference.id]}"
        for reference in references
        if reference.id in warnings
    ]


def pareto_fronts(runs: list[Run]) -> dict[str, Pareto | None]:
    """Run id -> on the front of distance against seconds, and against NFE, among its reference's runs (None: not
    ranked)."""
    fronts: dict[str, Pareto | None] = {run.id: None for run in runs}
    by_reference: dict[str, list[Run]] = {}
    for run in runs:
        if ranked(run) and run.reference:
            by_reference.setdefault(run.reference, []).append(run)
    for group in by_reference.values():
        on_front = {cost: front_ids(group, cost) for cost in ("seconds", "nfe")}
        for run in group:
            fronts[run.id] = Pareto(seconds=run.id in on_front["seconds"], nfe=run.id in on_front["nfe"])
    return fronts


def front_ids(group: list[Run], cost: str) -> set[str]:
    """The runs of `group` no other run beats in both `cost` and distance."""
    usable = [run for run in group if getattr(run, cost) is not None]
    front = metrics.pareto_front([(getattr(run, cost), run.distance.latent_rmse) for run in usable])
    return {usable[index].id for index in front}


# -- running and measuring references (the comparison's execute stage calls these) ----------------------------


def reference_identity(sampler) -> dict[str, Any]:
    """What a cached reference must have been made with: the model (configs and weights) and where it ran."""
    from schedcmp.model.pipeline import model_identity

    model = sampler.model
    return {
        "model": model_identity(model.pipe),
        "weights": weights_digest(model.pipe),
        "device": model.device,
        "dtype": model.dtype,
        "generator_device": sampler.generator_device,
        "versions": {k: v for k, v in versions().items() if k != "schedcmp"},
    }


def reference_run(
    sampler, plan: ReferencePlan, ref_id: str, identity: dict[str, Any], out_dir: Path | None, note, on_step
) -> tuple[ReferenceOutput | None, Reference]:
    """A reference and its half-steps twin, from the cache or computed (and cached); and its results.json record.

    Its image goes to `out_dir`/reference/ (None: --no-sheet, no images at all). `note` takes progress lines,
    `on_step` the steps of the pipeline call.
    """
    from schedcmp.output import render, report

    spec, half_spec = plan.specs[ref_id], plan.half_specs[ref_id]
    made = {}
    failure = None
    for which, this in (("reference", spec), ("half", half_spec)):
        key = cache_key(identity, this)
        found = load_cached(key)
        if found is None:
            label = display_label(this.scheduler, this.alias, this.overrides)
            note(f"{which} run: {label} at {this.steps} steps (cached for the next run) ...")
            sample = sampler.run(this, 1, on_step)
            if sample.result.status != Status.OK or sample.latent is None:
                failure = sample.result.reason or "the pipeline gave no final latent"
                break
            found = ReferenceOutput(sample.latent, sample.output, sample.rgb, sample.result.nfe, sample.result.seconds)
            store_cached(key, found)
        made[which] = found
    reference = made.get("reference") if failure is None else None
    image, self_convergence = None, None
    if reference is not None:
        if out_dir is not None:
            image = f"reference/{ref_id}.png"
            (out_dir / "reference").mkdir(exist_ok=True)
            report.write_atomic(out_dir / image, render.png_bytes(reference.rgb))
        half = made["half"]
        # The same settings but the steps: the shapes match, so there is always a distance.
        moved = distances(half.latent, half.output, half.rgb, reference)
        self_convergence = SelfConvergence(half_spec.steps, moved.latent_rmse, moved.psnr, moved.ssim)
        cost = "from the cache" if reference.cached else f"{reference.seconds:.2f} s, {reference.nfe} NFE"
        note(f"reference {plan.text}: {cost}; halving its steps moves its latent by {moved.latent_rmse:.2g} RMSE")
    else:
        note(f"reference {plan.text} failed: {failure}; no distances for its runs")
    summary = Reference(
        id=ref_id,
        spec=plan.text,
        label=display_label(spec.scheduler, spec.alias, spec.overrides),
        scheduler=spec.scheduler,
        overrides=spec.overrides,
        steps=spec.steps,
        **{name: getattr(spec, name) for name in REFERENCE_FIELDS},
        status=Status.OK if reference is not None else Status.FAILED,
        reason=failure,
        nfe=reference.nfe if reference else None,
        seconds=reference.seconds if reference else None,
        cached=bool(reference and reference.cached),
        image=image,
        self_convergence=self_convergence,
    )
    return reference, summary


def measure(sample, determinism: str, determinism_reason: str, reference, plan: ReferencePlan) -> tuple:
    """(distance, note): a run's distance to its reference, or None and why it has none."""
    if sample.rgb is None:
        return None, "no image"
    if determinism == STOCHASTIC:
        return None, STOCHASTIC_NOT_RANKED
    if determinism == UNKNOWN:
        return None, f"not ranked: {determinism_reason}"
    if sample.result.spec.id in plan.off_interval:
        return None, plan.off_interval[sample.result.spec.id]
    if reference is None:
        return None, "the reference failed"
    found = distances(sample.latent, sample.output, sample.rgb, reference)
    return found, None if found is not None else "its latent or image has another shape than the reference's"
