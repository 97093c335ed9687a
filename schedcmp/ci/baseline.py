"""Visual regression: `schedcmp baseline create` stores a comparison; `schedcmp check` regenerates and compares.

A baseline folder holds one sub-folder per device class (`cpu`, `cuda-sm90`, `mps`), like per-platform
snapshots. Each is an ordinary run folder (contact sheet, images/, results.json) plus `arrays/<id>.npz`
(the float output, float16) and `manifest.json`, which records everything `check` needs to regenerate each
case exactly: the model's identity, the environment, and each case's settings and hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from schedcmp.core.errors import (
    EXIT_DRIFT,
    EXIT_GENERATION_ERROR,
    EXIT_NO_CASES,
    EXIT_NONDETERMINISTIC,
    EXIT_USAGE,
    ModelError,
    SchedcmpError,
    UsageError,
)
from schedcmp.core.names import parse_entry, resolve_entry, short_name
from schedcmp.core.plan import RunSpec
from schedcmp.core.records import (
    BaselineModel,
    Case,
    CheckCase,
    CheckResults,
    Determinism,
    DocumentError,
    Manifest,
    Run,
    Status,
    ToleranceRecord,
    dumps,
    load_document,
    now,
    to_json,
    versions,
)
from schedcmp.core.request import Request
from schedcmp.model.pipeline import device_type
from schedcmp.output import console, render, report
from schedcmp.quality import metrics
from schedcmp.sweep.engine import run_comparison

MANIFEST = "manifest.json"
ARRAY_DTYPE = "float16"  # compact, and still finer than the 8-bit PNG


# Measured on the default model with bench/measure_tolerances.py (15 schedulers, 20 steps): a rerun is
# identical; another CPU thread count moves the float16 outputs by at most 0.00049 (one float16 step) and
# cosine 2.3e-9. The smallest real change we injected, "trailing" spacing on DPM++ 2M, moves them by 0.0061 to
# 0.0088 and 2.6e-6 to 4.6e-6; Karras sigmas by at least 0.057 and 1.6e-4. same-device sits between the two.
# cross-device from a measurement on an NVIDIA H200 (fp32, a baseline made on that machine's CPU, checked on
# cuda; Euler, DPM++ 2M, DDIM, Euler a at 10 steps on a tiny random SD 1.5-like model): max_abs at most 0.000977
# and cosine at most 8.3e-7 with TF32 at torch's defaults (0.000488 and 4.7e-9 with TF32 off). It allows 4x that
# max_abs and 4.8x that cosine, and still catches trailing spacing on DPM++ 2M, which the 0.05 / 1e-4 before it
# let pass. fp16 has no cross-device profile: no fp16 figures across devices were measured.
PROFILES = {
    "same-device": metrics.Tolerance(max_abs=1 / 255, cosine=1e-6),
    "cross-device": metrics.Tolerance(max_abs=1 / 255, cosine=4e-6),
}
# Ancestral and SDE samplers inject fresh noise every step, so small numeric differences grow more.
STOCHASTIC_FACTOR = 2.0


class BaselineError(SchedcmpError):
    """The baseline folder cannot be used: exit 2, or 5 when it holds no cases."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


def device_class(device: str) -> str:
    """`cpu`, `mps`, or `cuda-sm<major><minor>` (GPUs of one compute capability compute alike)."""
    if device_type(device) != "cuda":
        return device
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda-sm{major}{minor}"


def environment(device: str, dtype: str, generator_device: str, threads: int | None = None) -> dict[str, Any]:
    """Where the cases were made; `threads`: the CPU threads their runs recorded (--threads; torch's count now
    where they say none)."""
    import torch

    return {
        "versions": versions(),
        "device": device,
        "device_class": device_class(device),
        "gpu_name": torch.cuda.get_device_name(device) if device_type(device) == "cuda" else None,
        "dtype": dtype,
        "generator_device": generator_device,
        "determinism": {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "num_threads": threads or torch.get_num_threads(),
        },
        "tf32": tf32_settings(),
    }


def tf32_settings() -> dict[str, Any]:
    """How fp32 matrix products and convolutions run on CUDA here: TF32 changes fp32 outputs (a check on a
    GPU measured a max_abs difference about twice as large with it), so a baseline records it."""
    import os

    import torch

    return {
        "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE"),
    }


def tf32_note(recorded: dict[str, Any], device: str, dtype: str) -> str | None:
    """A line when an fp32 check on CUDA runs with other TF32 settings than its baseline was made with."""
    if device_type(device) != "cuda" or dtype != "fp32" or "tf32" not in recorded:
        return None
    now = tf32_settings()
    if recorded["tf32"] == now:
        return None
    return f"note: TF32 settings differ from the baseline's ({recorded['tf32']} there, {now} here): fp32 outputs move"


def array_sha256(array) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def compact(float_output):
    import numpy as np

    return np.asarray(float_output, dtype=np.float32).astype(ARRAY_DTYPE)


def save_array(path: Path, array) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, output=array)
    report.write_atomic(path, buffer.getvalue())


def load_array(path: Path):
    import numpy as np

    with np.load(path) as data:
        return data["output"]


def case_entry(run: Run, array) -> Case:
    """A manifest case: the run's settings and where its files are, with hashes of their content."""
    settings = ("id", "scheduler", "alias", "overrides", "compatible", "prompt", "negative_prompt", "seed", "steps")
    return Case(
        **{key: getattr(run, key) for key in settings},
        guidance_scale=run.guidance_scale,
        width=run.width,
        height=run.height,
        call_args=run.call_args,
        schedule=run.schedule,
        batch=run.batch,  # cells made by one pipeline call are regenerated together, in this order
        batch_size=run.batch_size,
        status=run.status,
        determinism=run.determinism,  # the probe's finding: stochastic cases get the wider tolerance
        image=run.image_path,
        array=f"arrays/{run.id}.npz",
        pixel_sha256=run.sha256,
        array_sha256=array_sha256(array),
        shape=list(array.shape),
        dtype=str(array.dtype),
    )


# -- create ----------------------------------------------------------------------------------------------


def refuse_foreign_folder(folder: Path) -> None:
    """A baseline goes into a folder of its own: not into a device-class folder of one, nor a run's results."""
    if (folder / MANIFEST).is_file():
        raise UsageError(f"{folder} is a baseline's {folder.name} folder; give the baseline folder, {folder.parent}")
    if (folder / "results.json").is_file():
        raise UsageError(
            f"{folder} is a run's results folder (it holds results.json); a baseline needs a folder of its own"
        )


def create(folder: Path, request: Request) -> tuple[Path, dict[str, Any], int]:
    """Run the comparison into FOLDER/<device class>/ and write its manifest. -> (folder, manifest, exit code)."""
    from schedcmp.model import pipeline

    refuse_foreign_folder(Path(folder))
    device = pipeline.resolve_device(request.device)
    target = Path(folder) / device_class(device)
    arrays: dict[str, Any] = {}

    def keep(sample):
        arrays[sample.result.spec.id] = compact(sample.output)
        (target / "arrays").mkdir(exist_ok=True)
        save_array(target / "arrays" / f"{sample.result.spec.id}.npz", arrays[sample.result.spec.id])

    outcome = run_comparison(replace(request, out=target, format="json"), keep_output=keep)
    results = outcome.results
    # an unsupported cell (a scheduler without this schedule) was planned not to run: nothing to store, no failure
    skipped = [run.id for run in results.runs if run.id not in arrays and run.status != Status.UNSUPPORTED]
    for run_id in skipped:
        console.info(f"not stored: {run_id} made no image")
    manifest = Manifest(
        created=now(),
        model=BaselineModel(request.model, results.model, pipeline.model_identity(outcome.model.pipe)),
        environment=environment(
            results.device, results.dtype, results.generator_device, next((r.threads for r in results.runs), None)
        ),
        cases=[case_entry(run, arrays[run.id]) for run in results.runs if run.id in arrays],
    )
    report.write_atomic(target / MANIFEST, dumps(manifest))
    code = outcome.exit_code if outcome.exit_code else (EXIT_DRIFT if skipped else 0)
    return target, to_json(manifest), code


# -- check -----------------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    """One case's verdict in `check`."""

    case: dict[str, Any]
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, float] | None = None
    error: str | None = None
    seconds: float | None = None
    rgb: Any = None
    array: Any = None
    baseline_rgb: Any = None
    updated: bool = False


def find_manifest(folder: Path, running_class: str, profile: str | None) -> tuple[Path, str]:
    """-> (the device-class folder to check against, the tolerance profile), with a notice when crossing devices."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BaselineError(
            f"baseline folder {folder} does not exist (make one with `schedcmp baseline create {folder}`)"
        )
    if (folder / MANIFEST).is_file():  # a device-class folder itself (BASE/cpu): the one to check against
        same = folder.name == running_class
        if not same:
            console.info(
                f"notice: {folder} is a {folder.name} baseline; checking on {running_class} "
                "with cross-device tolerances"
            )
        return folder, profile or ("same-device" if same else "cross-device")
    classes = sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())
    if not classes:
        raise BaselineError(f"baseline folder {folder} holds no cases (no */{MANIFEST})", exit_code=EXIT_NO_CASES)
    if running_class in classes:
        return folder / running_class, profile or "same-device"
    chosen = classes[0]
    console.info(
        f"notice: no {running_class} baseline in {folder}; checking against {chosen} with cross-device tolerances"
    )
    return folder / chosen, profile or "cross-device"


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, validated, with the defaults of fields that older manifests lack filled in."""
    try:
        raw = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BaselineError(f"corrupt manifest {path / MANIFEST}: {error}") from None
    try:
        manifest = to_json(load_document(raw, "baseline"))
    except DocumentError as error:
        raise BaselineError(f"corrupt manifest {path / MANIFEST}: not a schedcmp baseline manifest ({error})") from None
    if not manifest["cases"]:
        raise BaselineError(f"baseline {path} holds no cases", exit_code=EXIT_NO_CASES)
    from schedcmp.flow.catalog import SCHEDULES

    for case in manifest["cases"]:  # regenerated with an unknown schedule, a case would only look like drift
        if case.get("schedule") not in (None, *SCHEDULES):
            raise BaselineError(
                f"corrupt manifest {path / MANIFEST}: case {case['id']} has schedule {case['schedule']!r}"
            )
    return manifest


def is_stochastic(case: dict[str, Any]) -> bool:
    """What the probe found when the case was made (or, for older manifests, at check): fresh noise every step
    makes small numeric differences grow more."""
    return case.get("determinism") == Determinism.STOCHASTIC


def probe_missing_determinism(cases: list[dict[str, Any]], model) -> None:
    """Manifests written before the probe's result was stored: probe each case's scheduler now."""
    from schedcmp.model.schedulers import scheduler_classes
    from schedcmp.quality import convergence

    classes = scheduler_classes()
    for case in cases:
        if case.get("determinism") is None and case["scheduler"] in classes:
            label, _ = convergence.probe_determinism(
                classes[case["scheduler"]],
                model.original_config,
                case["overrides"],
                convergence.step_arguments(case.get("call_args") or {}),
            )
            case["determinism"] = label


def parse_tolerance_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """`--tolerance-for "euler a(max_abs=0.2,cosine=0.01)"` -> {class name: {max_abs, cosine}}."""
    from schedcmp.model.schedulers import accepted_params_of, scheduler_classes

    params = accepted_params_of(scheduler_classes())
    overrides: dict[str, dict[str, float]] = {}
    for item in items:
        entry = parse_entry(item)
        if entry.steps is not None:
            raise UsageError(f"--tolerance-for {item!r}: no :STEPS here")
        bad = set(entry.overrides) - {"max_abs", "cosine"}
        if bad or not entry.overrides:
            raise UsageError(f"--tolerance-for {item!r}: give NAME(max_abs=X,cosine=Y); unknown keys {sorted(bad)}")
        class_name = resolve_entry(replace(entry, overrides={}), params).class_name
        for key, value in entry.overrides.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise UsageError(f"--tolerance-for {item!r}: {key} must be a number of at least 0, got {value!r}")
        overrides[class_name] = {k: float(v) for k, v in entry.overrides.items()}
    return overrides


def check_tolerance_names(overrides: dict[str, dict[str, float]], cases: list[dict[str, Any]], folder: Path) -> None:
    """A --tolerance-for that names no case's scheduler would change nothing, silently: on a flow model's baseline
    `euler` is FlowMatchEulerDiscrete, which the name, read without the model, does not say."""
    used = sorted({case["scheduler"] for case in cases})
    unused = [name for name in overrides if name not in used]
    if unused:
        raise UsageError(
            f"--tolerance-for names {', '.join(short_name(name) for name in unused)}, which no case of {folder} runs; "
            f"its cases run {', '.join(short_name(name) for name in used)}: name those"
        )


def tolerance_for(case: dict[str, Any], profile: str, overrides: dict[str, dict[str, float]]) -> metrics.Tolerance:
    base = PROFILES[profile]
    if is_stochastic(case):
        base = metrics.Tolerance(base.max_abs * STOCHASTIC_FACTOR, base.cosine * STOCHASTIC_FACTOR)
    given = overrides.get(case["scheduler"], {})
    return metrics.Tolerance(given.get("max_abs", base.max_abs), given.get("cosine", base.cosine))


def spec_of(case: dict[str, Any]) -> RunSpec:
    return RunSpec(
        id=case["id"],
        scheduler=case["scheduler"],
        alias=case["alias"],
        overrides=case["overrides"],
        compatible=case["compatible"],
        prompt=case["prompt"],
        negative_prompt=case["negative_prompt"],
        seed=case["seed"],
        steps=case["steps"],
        guidance_scale=case["guidance_scale"],
        width=case["width"],
        height=case["height"],
        call_args=case.get("call_args") or {},
        schedule=case.get("schedule"),
    )


def load_baseline_case(folder: Path, case: dict[str, Any]):
    """-> (rgb, array) of a stored case, or None when its files are gone."""
    import numpy as np
    from PIL import Image

    image, array = folder / case["image"], folder / case["array"]
    if not image.is_file() or not array.is_file():
        return None
    return np.asarray(Image.open(image).convert("RGB")), load_array(array)


@dataclass
class CheckOptions:
    folder: Path
    model: str | None = None
    device: str = "auto"
    profile: str | None = None
    tolerance_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    preflight: bool = False
    update: str | None = None  # missing | changed | all
    allow_pickle: bool = False


UPDATE_MODES = ("missing", "changed", "all")


def check(options: CheckOptions) -> tuple[dict[str, Any], list[CaseResult], int]:
    """Regenerate every case of the baseline and compare. -> (results document, case results, exit code)."""
    from schedcmp.model import pipeline

    with pipeline.quiet_libraries():
        return check_quietly(options)


def recorded_threads(recorded: dict[str, Any]) -> contextlib.AbstractContextManager:
    """Torch's CPU threads as the baseline was made with them: another count sums floats in another order (and
    `--threads auto` takes fewer on a busy machine); a manifest that does not say leaves them as they are."""
    from schedcmp.model import threads

    count = recorded.get("determinism", {}).get("num_threads")
    return threads.chosen(count, console.info) if count else contextlib.nullcontext()


def load_checked_model(options: CheckOptions, manifest: dict[str, Any], device: str):
    """--model, or the model the baseline was made with, as it was given to `baseline create`."""
    from schedcmp.model import pipeline

    source = options.model if options.model is not None else manifest["model"]["source"]
    try:
        return pipeline.load(source, device, manifest["environment"]["dtype"], options.allow_pickle)
    except ModelError as error:
        if options.model is not None or Path(source).is_absolute() or "not found" not in str(error):
            raise
        raise ModelError(  # a relative path, as given to `baseline create`, read from another folder
            f"{error}; the baseline holds --model {source} as it was given: check from the folder it was made in, "
            "or pass --model"
        ) from None


def check_quietly(options: CheckOptions) -> tuple[dict[str, Any], list[CaseResult], int]:
    from schedcmp.model import pipeline
    from schedcmp.model.sample import Sampler

    if options.profile is not None and options.profile not in PROFILES:
        raise UsageError(f"unknown --tolerance {options.profile!r}; choose from {', '.join(PROFILES)}")
    if options.update is not None and options.update not in UPDATE_MODES:
        raise UsageError(f"unknown --update {options.update!r}; choose from {', '.join(UPDATE_MODES)}")
    device = pipeline.resolve_device(options.device)
    folder, profile = find_manifest(options.folder, device_class(device), options.profile)
    manifest = read_manifest(folder)
    check_tolerance_names(options.tolerance_overrides, manifest["cases"], folder)
    recorded = manifest["environment"]
    model = load_checked_model(options, manifest, device)
    count = len(manifest["cases"])
    console.info(f"checking {count} case{'s' * (count != 1)} of {folder} with {model.name} ({profile} tolerances) ...")
    difference = pipeline.identity_difference(manifest["model"]["identity"], pipeline.model_identity(model.pipe))
    if difference:
        raise UsageError(f"model {model.name} is not the baseline's model: {difference}")
    probe_missing_determinism(manifest["cases"], model)
    note = tf32_note(recorded, device, recorded["dtype"])
    if note:
        console.info(note)

    results: list[CaseResult] = []
    progress = console.Progress()
    progress.begin(len(manifest["cases"]))
    generator_device = "cpu" if recorded["generator_device"] == "cpu" else device
    groups: dict[Any, list[dict[str, Any]]] = {}
    for case in manifest["cases"]:
        groups.setdefault(case.get("batch") or case["id"], []).append(case)
    try:
        with Sampler(model, generator_device) as sampler, recorded_threads(recorded):
            for group in groups.values():
                progress.started(
                    len(results) + 1, group[0]["id"] + (f" ×{len(group)}" if len(group) > 1 else ""), group[0]["steps"]
                )
                started = time.perf_counter()
                made = sampler.run_batch([spec_of(case) for case in group], repeat=2 if options.preflight else 1)
                seconds = (time.perf_counter() - started) / len(group)
                for case, sample in zip(group, made):
                    tolerance = tolerance_for(case, profile, options.tolerance_overrides)
                    outcome = judge_case(folder, case, sample, tolerance, options.preflight, seconds)
                    results.append(outcome)
                    progress.finished(len(results), case["id"], outcome.status, outcome.seconds, outcome.error)
    finally:
        progress.close()
    if options.update:
        if options.model is not None:  # what is written now was made with this model
            manifest["model"]["source"], manifest["model"]["name"] = options.model, model.name
        write_updates(folder, manifest, results, options.update)
    document = check_document(folder, model.name, profile, device, results)
    return document, results, check_exit_code(results)


def judge_case(
    folder: Path,
    case: dict[str, Any],
    sample,
    tolerance: metrics.Tolerance,
    preflight: bool,
    seconds: float,
) -> CaseResult:
    """One regenerated case against its stored files: error, nondeterministic, missing, or the metrics' verdict."""
    from schedcmp.model.sample import pixel_sha256

    result, rgb, float_output = sample.result, sample.rgb, sample.output
    outcome = CaseResult(
        case=case,
        status=metrics.ERROR,
        tolerance={"max_abs": tolerance.max_abs, "cosine": tolerance.cosine},
        seconds=seconds,
    )
    if rgb is None:
        outcome.error = result.reason
        return outcome
    if preflight and result.reason and "nondeterministic" in result.reason:
        outcome.status, outcome.error = metrics.NONDETERMINISTIC, "two generations of this case differ"
        return outcome
    outcome.rgb, outcome.array = rgb, compact(float_output)
    stored = load_baseline_case(folder, case)
    if stored is None:
        outcome.status = metrics.MISSING
        gone = [case[key] for key in ("image", "array") if not (folder / case[key]).is_file()]
        outcome.error = f"baseline file{'s' if len(gone) > 1 else ''} {' and '.join(gone)} missing"
        return outcome
    outcome.baseline_rgb, baseline_array = stored
    same = pixel_sha256(rgb) == case["pixel_sha256"] and array_sha256(outcome.array) == case["array_sha256"]
    outcome.status, outcome.metrics = metrics.compare(
        baseline_array, outcome.array, outcome.baseline_rgb, rgb, same, tolerance
    )
    return outcome


def write_updates(folder: Path, manifest: dict[str, Any], results: list[CaseResult], mode: str) -> None:
    """The explicit way to write into a baseline: `--update missing|changed|all`."""
    wanted = {
        "missing": {metrics.MISSING},
        "changed": {metrics.MISSING, metrics.DRIFT, metrics.WITHIN},
        "all": {metrics.MISSING, metrics.DRIFT, metrics.WITHIN, metrics.MATCH},
    }[mode]
    from schedcmp.model.sample import pixel_sha256

    for outcome in results:
        if outcome.status not in wanted or outcome.rgb is None:
            continue
        case = outcome.case
        (folder / "arrays").mkdir(exist_ok=True)
        (folder / "images").mkdir(exist_ok=True)
        report.write_atomic(folder / case["image"], render.png_bytes(outcome.rgb))
        save_array(folder / case["array"], outcome.array)
        case["pixel_sha256"], case["array_sha256"] = pixel_sha256(outcome.rgb), array_sha256(outcome.array)
        case["shape"], case["dtype"] = list(outcome.array.shape), str(outcome.array.dtype)
        outcome.updated = True
    manifest["updated"] = now()
    report.write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")


SEVERITY = [
    (metrics.ERROR, EXIT_GENERATION_ERROR),
    (metrics.DRIFT, EXIT_DRIFT),
    (metrics.MISSING, EXIT_DRIFT),
    (metrics.NONDETERMINISTIC, EXIT_NONDETERMINISTIC),
]


def check_exit_code(results: list[CaseResult]) -> int:
    """The most severe wins, in the order 3 (error), 1 (drift, missing), 4 (nondeterministic); updated cases pass."""
    statuses = {r.status for r in results if not r.updated}
    for status, code in SEVERITY:
        if status in statuses:
            return code
    return 0


def check_document(
    folder: Path, model_name: str, profile: str, device: str, results: list[CaseResult]
) -> dict[str, Any]:
    """The check's results; `model` names the model actually checked (it may not be the baseline's)."""
    checked = CheckResults(
        baseline=str(folder),
        baseline_device_class=folder.name,
        device_class=device_class(device),
        tolerance_profile=profile,
        model=model_name,
        versions=versions(),
        finished=now(),
        exit_code=check_exit_code(results),
        cases=[
            CheckCase(
                id=r.case["id"],
                scheduler=r.case["scheduler"],
                alias=r.case["alias"],
                status=r.status,
                updated=r.updated,
                metrics=r.metrics,
                tolerance=None if r.tolerance is None else ToleranceRecord(**r.tolerance),
                error=r.error,
                seconds=r.seconds,
            )
            for r in results
        ],
    )
    return to_json(checked)


def write_artifacts(results_dir: Path, document: dict[str, Any], results: list[CaseResult]) -> None:
    """--results DIR: per failing case baseline/result/diff PNGs, results.json and report.html."""
    from schedcmp.output import check_report

    results_dir.mkdir(parents=True, exist_ok=True)
    for outcome, entry in zip(results, document["cases"]):
        if outcome.status == metrics.MATCH or outcome.rgb is None:
            continue
        case_dir = results_dir / outcome.case["id"]
        case_dir.mkdir(exist_ok=True)
        report.write_atomic(case_dir / "result.png", render.png_bytes(outcome.rgb))
        entry["result_image"] = f"{outcome.case['id']}/result.png"
        if outcome.baseline_rgb is not None:
            report.write_atomic(case_dir / "baseline.png", render.png_bytes(outcome.baseline_rgb))
            entry["baseline_image"] = f"{outcome.case['id']}/baseline.png"
            if outcome.baseline_rgb.shape == outcome.rgb.shape:
                report.write_atomic(
                    case_dir / "diff.png", render.png_bytes(metrics.diff_heatmap(outcome.baseline_rgb, outcome.rgb))
                )
                entry["diff_image"] = f"{outcome.case['id']}/diff.png"
    report.write_atomic(results_dir / "results.json", report.to_json(document))
    report.write_atomic(results_dir / "report.html", check_report.html(document, results_dir))
