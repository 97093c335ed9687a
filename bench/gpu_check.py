"""The CUDA path, measured: one prepared script for a few minutes on a GPU machine (or a smoke test on a CPU).

    python bench/gpu_check.py --device cpu|cuda [--quick] [--summary PATH] [--budget SECONDS]

Needs nothing from outside the machine: the models are built from written configs with random weights
(bench/gpu_models.py, which mirrors tests/tiny.py). Sections, each timed, each printing a line and appending
a block to the summary file (flushed line by line, so a timeout still leaves what finished):

  a. `run --schedulers all` on the tiny SD 1.5-like model, fp16 and fp32 (cpu: fp32), generator on the CPU
     and on the device: every run ok, or suspect for the documented reason (EDMEuler on an ε-prediction SD
     config); an fp16 NaN is a FINDING, anything else a PROBLEM.
  b. speed on an SD 1.5-sized UNet (cpu or --quick: the same layout at tiny widths): the guide's plain loop
     against schedcmp.compare on the same pipeline (alternating rounds, medians); what synchronising around
     every denoiser call costs (schedcmp's Sampler does), against CUDA events; the batched sweep (8 seeds)
     against one call per image, with peak memory.
  c. cross-device tolerances: a baseline made on this machine's CPU with the CLI, checked on the device with
     `--tolerance cross-device`, TF32 at its defaults and TF32 off (cpu: the same flow cpu→cpu, all must match).
  d. the baseline device-class folder name, and `--reference` in fp16 (cpu: fp32).
  e. torchrun with 2 ranks on the one device (cuda:LOCAL_RANK % device count) against one process: the same
     images, the busy seconds by rank; on a CPU the ranks split the threads.
  f. flow-matching models: `--schedulers all` on a tiny FLUX.1-style pipeline (bf16 on a GPU).
  c+. (a GPU, time left) cross-device tolerances on the embedded trained model.

The summary goes to --summary, else $OUT/gpu_check_summary.txt when OUT is set, else ./gpu_check_summary.txt.
Sections are skipped, with a line saying so, once --budget seconds (default 270) are spent. Exit status: 0
when every section ran (findings are not failures), 1 when a section (or a part of one) crashed, 2 when
sections were skipped for the budget. The reference cache goes to a temporary folder (SCHEDCMP_CACHE_DIR).
schedcmp is imported from this working tree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120
PROMPT = "astronaut riding a horse on mars"
SEED = 8
REFERENCE = "DPMSolverMultistep(use_karras_sigmas=true):40"
EXPECTED_SUSPECT = ("EDMEulerScheduler", "outside its training range")  # documented in docs/how-it-works.md
NAN_REASON = "output has NaN or inf values"
PASSING = ("match", "within-tolerance")  # check's verdicts that pass
SYNC_FINDING_SHARE = 0.02  # synchronising around every denoiser call may cost at most this much

# The wrapper `check` runs in: TF32 set (or left at torch's defaults) before schedcmp loads anything.
CHECK_WRAPPER = """
import sys
import torch
if sys.argv[1] == "off":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
sys.stderr.write(f"tf32: matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}\\n")
from schedcmp.cli import main
main(sys.argv[2:])
"""


@dataclass
class Sizes:
    """How much each section does: on the GPU the real thing, with --quick seconds on two CPU cores."""

    a_steps: int = 10
    b_steps: int = 20
    b_rounds: int = 3
    b_schedulers: tuple[str, ...] = ("EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler")
    sweep_seeds: int = 8
    sweep_steps: int = 10
    sweep_schedulers: tuple[str, ...] = ("EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler")
    c_steps: int = 10
    c_schedulers: str = "Euler,DPM++ 2M,DDIM,Euler a"
    d_steps: int = 10
    d_schedulers: str = "Euler,DPM++ 2M,Heun"


QUICK = Sizes(
    a_steps=3,
    b_steps=2,
    b_rounds=2,
    b_schedulers=("EulerDiscreteScheduler", "DPMSolverMultistepScheduler"),
    sweep_steps=2,
    sweep_schedulers=("EulerDiscreteScheduler", "DDIMScheduler"),
    c_steps=3,
    c_schedulers="Euler,DPM++ 2M,Euler a",
    d_steps=3,
    d_schedulers="Euler,DPM++ 2M",
)


class Summary:
    """Lines to stdout and appended to the summary file, each flushed to disk at once."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def line(self, text: str = "") -> None:
        indent = " " * (len(text) - len(text.lstrip()) + 4)
        lines = textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False) or [""]
        for piece in lines:
            print(piece, flush=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class Context:
    device: str
    quick: bool
    sizes: Sizes
    summary: Summary
    scratch: Path
    deadline: float
    budget: float
    started: float
    tiny: Path | None = None
    crashes: list[str] = field(default_factory=list)
    notable: list[str] = field(default_factory=list)  # FINDING, PROBLEM and CRASH lines, repeated at the end
    skipped: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def line(self, text: str = "") -> None:
        self.summary.line(text)
        if text.strip().startswith(("FINDING", "PROBLEM", "CRASH")):
            self.notable.append(text.strip())

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def spent(self, what: str) -> bool:
        """True (and a line saying so) when the budget is spent, so that `what` is skipped."""
        if self.left() > 0:
            return False
        self.skipped.append(what)
        self.line(f"  {what}: skipped, the budget of {self.budget:.0f} s is spent ({self.elapsed():.0f} s)")
        return True

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def part(self, what: str, function, *args):
        """Run one part of a section; a crash is written down and the section goes on with its next part."""
        try:
            return function(*args)
        except Exception as error:
            self.crash(what, error)
            return None

    def crash(self, what: str, error: BaseException) -> None:
        traceback.print_exc()
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        self.crashes.append(what)
        self.line(f"  CRASH in {what}: {last}")


# -- helpers -------------------------------------------------------------------------------------------------


def short(name: str) -> str:
    return name.removesuffix("Scheduler")


def mib(value) -> str:
    return "n/a" if not value else f"{value / 2**20:.0f} MiB"


def spread(values: list[float]) -> str:
    """min / median / max."""
    if not values:
        return "n/a"
    return f"{min(values):.3g} / {statistics.median(values):.3g} / {max(values):.3g}"


def synchronise(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_cli(ctx: Context, argv: list[str], extra_env: dict[str, str] | None = None, limit: float = 180.0):
    """A schedcmp command in a fresh process (`python -m schedcmp ...` or the TF32 wrapper): -> CompletedProcess."""
    timeout = max(30.0, min(limit, ctx.left() + 30.0))
    done = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(extra_env),
        cwd=ctx.scratch,
        timeout=timeout,
    )
    if done.returncode not in (0, 1):  # 1 is drift; anything else: its stderr for the log
        sys.stderr.write(f"--- {' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stderr[-4000:]}\n")
    return done


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def judge_runs(runs: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """-> (expected, findings, problems) among runs that are not ok, each a line."""
    expected, findings, problems = [], [], []
    for run in runs:
        status, reason, name = run["status"], run.get("reason") or "", run["scheduler"]
        label = f"{run['id']} {status}: {reason}"
        if status == "ok":
            continue
        if status == "suspect" and name == EXPECTED_SUSPECT[0] and EXPECTED_SUSPECT[1] in reason:
            expected.append(label)
        elif status == "failed" and reason == NAN_REASON:
            findings.append(label)
        else:
            problems.append(label)
    return expected, findings, problems


def report_comparison(ctx: Context, label: str, document: dict, seconds: float) -> None:
    """One line of counts, the runs by status, and a line per run that is not ok."""
    runs = document["runs"]
    counts: dict[str, list[str]] = {}
    for run in runs:
        counts.setdefault(run["status"], []).append(short(run["scheduler"]))
    tally = ", ".join(f"{len(names)} {status}" for status, names in counts.items())
    peaks = [run["peak_memory_bytes"] for run in runs if run.get("peak_memory_bytes")]
    ctx.line(
        f"  {label}: {len(runs)} runs: {tally} | {seconds:.1f} s wall, NFE {sum(r['nfe'] or 0 for r in runs)}, "
        f"peak {mib(max(peaks) if peaks else None)} (results: device={document['device']} {document['dtype']}, "
        f"generator={document['generator_device']})"
    )
    for status, names in counts.items():
        ctx.line(f"    {status}: {' '.join(names)}")
    expected, findings, problems = judge_runs(runs)
    for text in expected:
        ctx.line(f"    expected (documented): {text}")
    for text in findings:
        ctx.line(f"    FINDING ({label}): {text}")
    for text in problems:
        ctx.line(f"    PROBLEM ({label}): {text}")


# -- a. run --schedulers all -----------------------------------------------------------------------------------


def section_a(ctx: Context) -> None:
    import schedcmp

    dtypes = ("fp16", "fp32") if ctx.cuda else ("fp32",)
    ctx.line(f"  tiny SD 1.5-like model (random weights, 32x32), {ctx.sizes.a_steps} steps, seed {SEED}")
    for dtype in dtypes:
        for generator in ("cpu", "device"):
            label = f"{dtype} generator={generator}"
            if ctx.spent(f"a {label}"):
                return

            def one(dtype=dtype, generator=generator, label=label):
                started = time.perf_counter()
                comparison = schedcmp.compare(
                    str(ctx.tiny),
                    PROMPT,
                    seed=SEED,
                    schedulers="all",
                    steps=ctx.sizes.a_steps,
                    dtype=dtype,
                    device=ctx.device,
                    generator_device=generator,
                    progress=False,
                )
                report_comparison(ctx, label, comparison.to_dict(), time.perf_counter() - started)

            ctx.part(f"a {label}", one)
    if ctx.cuda and not ctx.quick and not ctx.spent("a embedded model fp16"):
        # Random weights say little about fp16 overflow; the embedded model is trained (64x64, 7.3 M parameters).

        def embedded():
            started = time.perf_counter()
            comparison = schedcmp.compare(
                None,
                PROMPT,
                seed=SEED,
                schedulers="all",
                steps=ctx.sizes.a_steps,
                dtype="fp16",
                device="cuda",
                progress=False,
            )
            report_comparison(
                ctx, "embedded trained model, fp16 generator=cpu", comparison.to_dict(), time.perf_counter() - started
            )

        ctx.part("a embedded model fp16", embedded)


# -- b. speed --------------------------------------------------------------------------------------------------


def section_b(ctx: Context) -> None:
    import diffusers
    import gpu_models
    import torch

    import schedcmp
    from schedcmp.model import weights

    sizes, device = ctx.sizes, ctx.device
    small = ctx.quick or not ctx.cuda
    dtype = torch.float16 if ctx.cuda else torch.float32
    started = time.perf_counter()
    pipe, description = gpu_models.sd15_sized(device, dtype, quick=small)
    pipe.set_progress_bar_config(disable=True)
    synchronise(device)
    ctx.line(
        f"  model: {description}, {str(dtype).removeprefix('torch.')}, built in {time.perf_counter() - started:.1f} s"
    )
    original = pipe.scheduler
    classes = [getattr(diffusers, name) for name in sizes.b_schedulers]
    names = list(sizes.b_schedulers)

    def plain(steps: int = sizes.b_steps) -> float:
        """The guide's loop: a fresh scheduler from the original config, a fresh CPU generator, one call each."""
        synchronise(device)
        begun = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random weights in fp16 may overflow: NaN pixels warn when cast
            try:
                for cls in classes:
                    pipe.scheduler = cls.from_config(original.config)
                    generator = torch.Generator("cpu").manual_seed(SEED)
                    pipe(PROMPT, generator=generator, num_inference_steps=steps).images[0]
            finally:
                pipe.scheduler = original
        synchronise(device)
        return time.perf_counter() - begun

    def ours() -> tuple[float, float, list[dict]]:
        begun = time.perf_counter()
        comparison = schedcmp.compare(pipe, PROMPT, seed=SEED, schedulers=names, steps=sizes.b_steps, progress=False)
        wall = time.perf_counter() - begun
        runs = comparison.to_dict()["runs"]
        return wall, sum(run["seconds"] or 0.0 for run in runs), runs

    # 1. the plain loop against schedcmp, alternating; round 0 warms both up and is not counted
    def versus():
        plain_times, wall_times, call_times = [], [], []
        last_runs: list[dict] = []
        for round_number in range(sizes.b_rounds + 1):
            if round_number and ctx.spent(f"b plain-vs-schedcmp round {round_number}"):
                break
            if round_number % 2:
                wall, calls, last_runs = ours()
                plain_seconds = plain()
            else:
                plain_seconds = plain()
                wall, calls, last_runs = ours()
            if round_number:
                plain_times.append(plain_seconds)
                wall_times.append(wall)
                call_times.append(calls)
        if not plain_times:
            return
        label = ", ".join(short(name) for name in names)
        plain_median, wall_median = statistics.median(plain_times), statistics.median(wall_times)
        call_median = statistics.median(call_times)
        ctx.line(f"  plain loop vs schedcmp.compare: {label} x {sizes.b_steps} steps, {len(plain_times)} rounds")
        ctx.line(f"    plain loop (guide)          median {plain_median:.3f} s  ({spread(plain_times)})")
        ctx.line(
            f"    schedcmp.compare, wall      median {wall_median:.3f} s  (warm-up call, probes, PNGs, sheet, "
            "fingerprint included)"
        )
        ctx.line(f"    schedcmp pipeline calls     median {call_median:.3f} s  (sum of the runs' seconds)")
        ctx.line(
            f"    ratio schedcmp/plain: wall {wall_median / plain_median:.3f}, "
            f"pipeline calls {call_median / plain_median:.3f}"
        )
        weights._digests.pop(pipe, None)  # as a fresh pipeline: the digest reads every weight once
        begun = time.perf_counter()
        weights.weights_digest(pipe)
        cold = time.perf_counter() - begun
        begun = time.perf_counter()
        weights.weights_digest(pipe)
        ctx.line(
            f"    weights digest: {cold:.3f} s the first time on a pipeline, {time.perf_counter() - begun:.4f} s on "
            "every later compare() (memoised until a weight changes)"
        )
        _, findings, problems = judge_runs(last_runs)
        for text in findings:
            ctx.line(f"    FINDING (random SD 1.5-sized weights): {text}")
        for text in problems:
            ctx.line(f"    PROBLEM: {text}")

    # 2. synchronising around every denoiser call (as schedcmp's Sampler does) against none and CUDA events
    def sync_cost():
        if not ctx.cuda:
            ctx.line(
                "  sync around every denoiser call: not applicable on cpu (schedcmp synchronises only on cuda/mps)"
            )
            return
        denoiser = pipe.unet
        totals = {"sync": 0.0, "events": []}
        marks: list[float] = []

        def sync_before(module, args, kwargs):
            torch.cuda.synchronize()
            marks.append(time.perf_counter())

        def sync_after(module, args, output):
            torch.cuda.synchronize()
            totals["sync"] += time.perf_counter() - marks.pop()

        def event_before(module, args, kwargs):
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            totals["events"].append([start, None])

        def event_after(module, args, output):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            totals["events"][-1][1] = end

        hooks = {"none": None, "sync": (sync_before, sync_after), "events": (event_before, event_after)}
        times: dict[str, list[float]] = {name: [] for name in hooks}
        denoiser_ms: dict[str, list[float]] = {"sync": [], "events": []}
        for round_number in range(sizes.b_rounds):
            if ctx.spent(f"b sync-cost round {round_number + 1}"):
                break
            order = list(hooks) if round_number % 2 == 0 else list(reversed(hooks))
            for name in order:
                handles = []
                if hooks[name]:
                    before, after = hooks[name]
                    handles = [
                        denoiser.register_forward_pre_hook(before, with_kwargs=True),
                        denoiser.register_forward_hook(after),
                    ]
                totals["sync"], totals["events"] = 0.0, []
                try:
                    times[name].append(plain())
                finally:
                    for handle in handles:
                        handle.remove()
                if name == "sync":
                    denoiser_ms["sync"].append(1000 * totals["sync"])
                elif name == "events":
                    torch.cuda.synchronize()
                    denoiser_ms["events"].append(sum(a.elapsed_time(b) for a, b in totals["events"]))
        if not times["none"]:
            return
        none, sync, events = (statistics.median(times[name]) for name in ("none", "sync", "events"))
        ctx.line(f"  plain loop with denoiser hooks, {len(times['none'])} rounds (medians):")
        ctx.line(
            f"    no hooks {none:.3f} s | sync before+after each call {sync:.3f} s ({100 * (sync / none - 1):+.1f} %)"
        )
        ctx.line(
            f"    CUDA events around each call instead of syncs: {events:.3f} s ({100 * (events / none - 1):+.1f} %)"
        )
        ctx.line(
            f"    denoiser time summed: by perf_counter between syncs {statistics.median(denoiser_ms['sync']):.0f} ms,"
            f" by CUDA events {statistics.median(denoiser_ms['events']):.0f} ms"
        )
        if sync / none - 1 > SYNC_FINDING_SHARE:
            ctx.line(
                f"    FINDING: use CUDA events: synchronising around every denoiser call costs "
                f"{100 * (sync / none - 1):.1f} % (> {100 * SYNC_FINDING_SHARE:.0f} %) of the plain loop's time"
            )
        else:
            ctx.line(f"    sync cost within {100 * SYNC_FINDING_SHARE:.0f} %: no need for CUDA events")

    # 3. the batched sweep (8 seeds) against one call per image
    def sweep():
        results = {}
        for label, batch_size in (("batched", sizes.sweep_seeds), ("one per image", 1)):
            if ctx.spent(f"b sweep {label}"):
                return
            if ctx.cuda:
                torch.cuda.reset_peak_memory_stats()
            begun = time.perf_counter()
            comparison = schedcmp.compare(
                pipe,
                PROMPT,
                seed=list(range(sizes.sweep_seeds)),
                schedulers=list(sizes.sweep_schedulers),
                steps=sizes.sweep_steps,
                batch_size=batch_size,
                progress=False,
            )
            wall = time.perf_counter() - begun
            runs = comparison.to_dict()["runs"]
            peaks = [run["peak_memory_bytes"] for run in runs if run.get("peak_memory_bytes")]
            allocated = torch.cuda.max_memory_allocated() if ctx.cuda else None
            calls = sum(run["seconds"] or 0.0 for run in runs)
            results[label] = (wall, calls)
            bad = [f"{run['id']} {run['status']}" for run in runs if run["status"] != "ok"]
            ctx.line(
                f"    {label:<13} batch_size={batch_size}: wall {wall:.2f} s, pipeline calls {calls:.2f} s, peak "
                f"{mib(max(peaks) if peaks else None)} (runs), {mib(allocated)} (max_memory_allocated)"
                + (f", not ok: {len(bad)} ({bad[0]} ...)" if bad else "")
            )
        (batched_wall, batched_calls), (single_wall, single_calls) = results.values()
        ctx.line(
            f"    speed-up batched vs one call per image: wall {single_wall / batched_wall:.2f}x, "
            f"pipeline calls {single_calls / batched_calls:.2f}x"
        )

    ctx.line(f"  warm-up: {plain(2):.2f} s for {len(classes)} plain calls of 2 steps")
    if not ctx.spent("b plain-vs-schedcmp"):
        ctx.part("b plain vs schedcmp", versus)
    if not ctx.spent("b sync cost"):
        ctx.part("b sync cost", sync_cost)
    if not ctx.spent("b batched sweep"):
        schedulers = ", ".join(short(name) for name in sizes.sweep_schedulers)
        ctx.line(f"  sweep: {sizes.sweep_seeds} seeds x {schedulers} x {sizes.sweep_steps} steps, one run each way")
        ctx.part("b batched sweep", sweep)
    pipe = None  # the memory back before the next section
    if ctx.cuda:
        torch.cuda.empty_cache()


# -- c. cross-device tolerances ------------------------------------------------------------------------------


def section_c(ctx: Context, model: str | None = None, variants: tuple[str, ...] | None = None) -> None:
    """A baseline made on this machine's CPU with the CLI, checked on the device (cpu: on the CPU again).

    Checked twice: TF32 at torch's defaults (what users get) and TF32 off; a quick CPU smoke test checks once,
    through the TF32-off wrapper (each check is a fresh process: seconds of imports on a small CPU).
    """
    model = str(ctx.tiny) if model is None else model
    if variants is None:
        variants = ("off",) if ctx.quick and not ctx.cuda else ("defaults", "off")
    folder = ctx.scratch / f"baseline-{len(list(ctx.scratch.glob('baseline-*')))}"
    create = [
        "-m",
        "schedcmp",
        "baseline",
        "create",
        str(folder),
        PROMPT,
        "--model",
        model,
        "--steps",
        str(ctx.sizes.c_steps),
        "-s",
        ctx.sizes.c_schedulers,
        "--seed",
        str(SEED),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
    ]
    started = time.perf_counter()
    made = run_cli(ctx, create)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if made.returncode != 0:
        raise RuntimeError(f"baseline create exited {made.returncode}: {last_line(made.stderr)}")
    manifest = json.loads((folder / "cpu" / "manifest.json").read_text())
    ctx.line(
        f"  baseline create on cpu (fp32, {ctx.sizes.c_steps} steps, {ctx.sizes.c_schedulers}): "
        f"{len(manifest['cases'])} cases in {folder.name}/{'+'.join(classes)}, {time.perf_counter() - started:.1f} s"
    )
    every_match = True
    for variant in variants:
        if ctx.spent(f"c check TF32 {variant}"):
            return
        label = f"cpu->{ctx.device}, TF32 {variant}" if ctx.cuda else f"cpu->cpu (TF32 wrapper: {variant})"
        extra = {"NVIDIA_TF32_OVERRIDE": "0"} if variant == "off" else None
        check = [
            "-c",
            CHECK_WRAPPER,
            variant,
            "check",
            str(folder),
            "--model",
            model,
            "--device",
            ctx.device,
            "--tolerance",
            "cross-device",
            "--format",
            "json",
        ]
        started = time.perf_counter()
        done = run_cli(ctx, check, extra)
        seconds = time.perf_counter() - started
        flags = next((line for line in done.stderr.splitlines() if line.startswith("tf32:")), "tf32: ?")
        try:
            document = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"check ({label}) exited {done.returncode}: {last_line(done.stderr)}") from None
        cases = document["cases"]
        statuses: dict[str, int] = {}
        for case in cases:
            statuses[case["status"]] = statuses.get(case["status"], 0) + 1
        max_abs = [case["metrics"]["max_abs"] for case in cases if "max_abs" in (case.get("metrics") or {})]
        cosine = [case["metrics"]["cosine"] for case in cases if "cosine" in (case.get("metrics") or {})]
        ctx.line(
            f"  check {label} ({flags}): exit {done.returncode}, {len(cases)} cases: "
            f"{', '.join(f'{n} {s}' for s, n in statuses.items())} | {seconds:.1f} s | "
            f"{document['baseline_device_class']} -> {document['device_class']}, {document['tolerance_profile']}"
        )
        ctx.line(f"    max_abs min/median/max {spread(max_abs)} | cosine distance min/median/max {spread(cosine)}")
        for case in cases:
            metrics = case.get("metrics") or {}
            tolerance = case.get("tolerance") or {}
            ctx.line(
                f"    {case['id']}: {case['status']}, max_abs {metrics.get('max_abs', float('nan')):.3g} "
                f"(tol {tolerance.get('max_abs', float('nan')):.3g}), cosine {metrics.get('cosine', float('nan')):.3g} "
                f"(tol {tolerance.get('cosine', float('nan')):.3g}), ssim {metrics.get('ssim', float('nan')):.4f}"
                + (f", error: {case['error']}" if case.get("error") else "")
            )
        if ctx.cuda:
            drifted = [case["id"] for case in cases if case["status"] == "drift"]
            broken = [f"{case['id']} {case['status']}" for case in cases if case["status"] not in PASSING + ("drift",)]
            if drifted:
                ctx.line(f"    FINDING: cross-device tolerance exceeded ({label}): {', '.join(drifted)}")
            if broken or not cases:
                ctx.line(f"    PROBLEM: check ({label}): {', '.join(broken) or 'no cases'}")
        elif any(case["status"] != "match" for case in cases) or not cases:
            every_match = False
            ctx.line(f"    PROBLEM: cpu->cpu should match exactly ({label})")
    if not ctx.cuda and every_match:
        ctx.line("  cpu->cpu: every case matches")


# -- d. device class and --reference in fp16 --------------------------------------------------------------------


def section_d(ctx: Context) -> None:
    import schedcmp
    from schedcmp.ci.baseline import device_class
    from schedcmp.model import pipeline

    resolved = pipeline.resolve_device(ctx.device)
    name = device_class(resolved)
    expected = "cuda-sm90 on an H200" if ctx.cuda else "cpu"
    ctx.line(
        f"  device class (baseline folder name): {name} (expected {expected}); --device {ctx.device} -> {resolved}"
    )
    if ctx.cuda:
        import torch

        index = f"cuda:{torch.cuda.current_device()}"
        ctx.line(
            f"    {index} -> {pipeline.resolve_device(index)} -> {device_class(pipeline.resolve_device(index))}; "
            f"GPU {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}"
        )
    dtype = "fp16" if ctx.cuda else "fp32"
    for attempt in ("computed", "from the cache"):
        if ctx.spent(f"d reference ({attempt})"):
            return
        started = time.perf_counter()
        comparison = schedcmp.compare(
            str(ctx.tiny),
            PROMPT,
            seed=SEED,
            schedulers=ctx.sizes.d_schedulers,
            steps=ctx.sizes.d_steps,
            reference=REFERENCE,
            dtype=dtype,
            device=ctx.device,
            progress=False,
        )
        document = comparison.to_dict()
        seconds = time.perf_counter() - started
        ctx.line(
            f"  --reference {REFERENCE}, {dtype}, {ctx.sizes.d_schedulers} x {ctx.sizes.d_steps} steps ({attempt}):"
        )
        for reference in document["references"]:
            convergence = reference.get("self_convergence") or {}
            ctx.line(
                f"    reference {reference['id']}: {reference['status']}, NFE {reference['nfe']}, "
                f"{reference['seconds'] or 0:.2f} s, cached {reference['cached']}; self_convergence: half_steps "
                f"{convergence.get('half_steps')}, latent_rmse {convergence.get('latent_rmse', float('nan')):.3g}, "
                f"psnr {convergence.get('psnr', float('nan')):.1f}, ssim {convergence.get('ssim', float('nan')):.4f}"
                + (f"; warning: {reference['warning']}" if reference.get("warning") else "")
                + (f"; reason: {reference['reason']}" if reference.get("reason") else "")
            )
            if reference["status"] != "ok":
                ctx.line(f"    FINDING: the {dtype} reference is {reference['status']}: {reference.get('reason')}")
        for run in document["runs"]:
            distance = run.get("distance") or {}
            ctx.line(
                f"    {run['id']}: {run['status']}, latent_rmse {distance.get('latent_rmse', float('nan')):.3g}, "
                f"psnr {distance.get('psnr', float('nan')):.1f}, ssim {distance.get('ssim', float('nan')):.4f}"
                + (f" ({run['distance_note']})" if run.get("distance_note") else "")
            )
        _, findings, problems = judge_runs(document["runs"])
        for text in findings:
            ctx.line(f"    FINDING: {text}")
        for text in problems:
            ctx.line(f"    PROBLEM: {text}")
        ctx.line(f"    {seconds:.1f} s wall")


def section_e(ctx: Context) -> None:
    """torchrun with 2 ranks on this machine's one device (each rank takes cuda:LOCAL_RANK % device count) against
    one process: the same images, and how the busy seconds split. On a CPU the ranks split its threads."""
    import torch

    steps, seeds = (2, "1-4") if ctx.quick else (10, "1-8")
    threads = max(1, (os.cpu_count() or 2) // 2)
    base = [
        "run",
        PROMPT,
        "--model",
        str(ctx.tiny),
        "-s",
        "euler,ddim,dpm++ 2m",
        "--seed",
        seeds,
        "--steps",
        str(steps),
        "--device",
        ctx.device,
        "--format",
        "json",
        "--batch-size",
        "4",
    ]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "schedcmp"]
    outcome = {}
    # On a CPU both run at one thread count: other counts round CPU kernels otherwise (pixels would differ).
    single_threads = 2 * threads if ctx.cuda else threads
    for label, prefix, env in (
        ("1 process", ["-m", "schedcmp"], {"OMP_NUM_THREADS": str(single_threads)}),
        ("2 ranks", launcher, {"OMP_NUM_THREADS": str(threads)}),
    ):
        if ctx.spent(f"e {label}"):
            return
        started = time.perf_counter()
        done = run_cli(ctx, [*prefix, *base, "--out", str(ctx.scratch / f"e-{label.replace(' ', '-')}")], env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{label} exited {done.returncode}: {last_line(done.stderr)}")
        outcome[label] = (json.loads(done.stdout), wall)
    (single, single_wall), (ranked, ranked_wall) = outcome["1 process"], outcome["2 ranks"]
    same = {r["id"]: r["sha256"] for r in single["runs"]} == {r["id"]: r["sha256"] for r in ranked["runs"]}
    busy = {w["rank"]: w["busy_seconds"] for w in ranked["workers"]}
    one_busy = sum(w["busy_seconds"] for w in single["workers"])
    devices = torch.cuda.device_count() if ctx.cuda else 0
    ctx.line(
        f"  sweep: {len(single['runs'])} cells ({seeds} seeds x 3 schedulers x {steps} steps), {ctx.device}"
        + (
            f", {devices} GPU(s): both ranks on cuda:{0 % max(devices, 1)}"
            if ctx.cuda
            else f", {threads} threads a rank"
        )
    )
    ctx.line(
        f"    1 process: wall {single_wall:.1f} s, busy {one_busy:.1f} s | 2 ranks: wall {ranked_wall:.1f} s, "
        f"busy by rank {', '.join(f'{rank}: {seconds:.1f} s' for rank, seconds in sorted(busy.items()))}, "
        f"imbalance {ranked.get('imbalance') or float('nan'):.2f}"
    )
    ctx.line(
        f"    busiest rank {max(busy.values()):.1f} s against {one_busy:.1f} s in one process "
        f"({one_busy / max(max(busy.values()), 1e-9):.2f}x); images identical to one process: {same}"
    )
    if not same:
        ctx.line(
            "    FINDING: the ranks' images differ from one process's (thread counts differ on a CPU)"
            if not ctx.cuda
            else "    PROBLEM: the ranks' images differ from one process's on the GPU"
        )


def section_f(ctx: Context) -> None:
    """Flow-matching models on the device: `--schedulers all` on a tiny FLUX.1-style pipeline (bf16 on a GPU, as
    FLUX is run), every sampler with a flow form: ok or unsupported with its reason, and what each cost."""
    import schedcmp

    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    model = tiny.flux(ctx.scratch / "tiny-flux")
    dtype = "bf16" if ctx.cuda else "fp32"
    started = time.perf_counter()
    comparison = schedcmp.compare(
        str(model), PROMPT, seed=SEED, steps=ctx.sizes.a_steps, dtype=dtype, device=ctx.device, progress=False
    )
    runs = comparison.to_dict()["runs"]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    ctx.line(
        f"  tiny FLUX.1-style, {dtype}, --schedulers all x {ctx.sizes.a_steps} steps: {len(runs)} runs, "
        f"{', '.join(f'{n} {s}' for s, n in counts.items())}, {time.perf_counter() - started:.1f} s wall"
    )
    for run in runs:
        if run["status"] != "ok":
            ctx.line(f"    {run['id']}: {run['status']}: {run['reason']}")
            if run["status"] not in ("unsupported",):
                ctx.line(f"    PROBLEM: {run['id']} {run['status']}: {run['reason']}")


# -- the whole check -------------------------------------------------------------------------------------------


def header(ctx: Context) -> None:
    import torch

    from schedcmp.core.records import versions

    ctx.line(f"== schedcmp GPU check, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv[1:])}")
    ctx.line(
        f"  python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; versions {json.dumps(versions())}"
    )
    if torch.cuda.is_available():
        ctx.line(
            f"  cuda {torch.version.cuda}, {torch.cuda.get_device_name()} "
            f"(capability {torch.cuda.get_device_capability()}, "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB); TF32 defaults: "
            f"matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}"
        )
    else:
        ctx.line("  cuda: not available")
    ctx.line(f"  budget {ctx.budget:.0f} s, scratch {ctx.scratch}, schedcmp from {ROOT}")


def default_summary() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_check_summary.txt" if out else Path.cwd() / "gpu_check_summary.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True)
    parser.add_argument("--quick", action="store_true", help="tiny models and 2-3 steps: seconds on a CPU")
    parser.add_argument("--summary", type=Path, default=None, help="default: $OUT/ or ./gpu_check_summary.txt")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds; later sections are skipped after")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    scratch_holder = tempfile.TemporaryDirectory(prefix="schedcmp-gpu-check-")
    scratch = Path(scratch_holder.name)
    # Before torch and schedcmp load: no reference cache leaks, no hub is asked, schedcmp is this tree's.
    os.environ["SCHEDCMP_CACHE_DIR"] = str(scratch / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.quick and args.device == "cpu":
        # A smoke test on a small, maybe shared CPU: OpenMP threads spinning against another busy process make a
        # tiny model's call take seconds instead of 0.15 s. One thread here and in the CLI subprocesses.
        os.environ["OMP_NUM_THREADS"] = "1"
    sys.path.insert(0, str(ROOT))

    summary = Summary((args.summary or default_summary()).resolve())
    ctx = Context(
        device=args.device,
        quick=args.quick,
        sizes=QUICK if args.quick else Sizes(),
        summary=summary,
        scratch=scratch,
        deadline=started + args.budget,
        budget=args.budget,
        started=started,
    )
    try:
        import torch

        from schedcmp.model import pipeline

        pipeline.silence_libraries()
        header(ctx)
        if ctx.cuda and not torch.cuda.is_available():
            ctx.line("  CRASH: --device cuda, but torch sees no CUDA device; nothing ran")
            return 1
        import gpu_models

        made = time.perf_counter()
        ctx.tiny = gpu_models.tiny_sd15(scratch / "tiny-sd15")
        ctx.line(f"  tiny model built and saved (safetensors) in {time.perf_counter() - made:.1f} s: {ctx.tiny}")
    except Exception as error:
        ctx.crash("setup", error)
        ctx.line(f"summary: {summary.path}")
        return 1

    sections = [
        ("a", "run --schedulers all", section_a),
        ("b", "speed: plain loop vs schedcmp, sync cost, batched sweep", section_b),
        ("c", "cross-device tolerances: baseline on cpu, check on the device", section_c),
        ("d", "device class and --reference", section_d),
        ("e", "distributed: torchrun with 2 ranks against one process", section_e),
        ("f", "flow-matching models: --schedulers all on a tiny FLUX.1-style pipeline", section_f),
    ]
    if ctx.cuda and not ctx.quick:  # last, and only with time left: tolerances on a trained model
        sections.append(("c+", "cross-device tolerances on the embedded trained model", embedded_tolerances))
    for key, title, function in sections:
        ctx.line()
        ctx.line(f"[{key}] {title}")
        if key == "c+" and ctx.left() < 60:
            ctx.line(f"  not run: {ctx.left():.0f} s of the budget left (it needs about 60)")
            continue
        if ctx.spent(f"section {key}"):
            continue
        begun = time.perf_counter()
        crashes, skipped = len(ctx.crashes), len(ctx.skipped)
        try:
            function(ctx)
        except Exception as error:
            ctx.crash(f"section {key}", error)
        state = "CRASHED" if len(ctx.crashes) > crashes else "done" if len(ctx.skipped) == skipped else "cut short"
        ctx.line(f"[{key}] {state} in {time.perf_counter() - begun:.1f} s")

    ctx.line()
    code = 1 if ctx.crashes else 2 if ctx.skipped else 0
    ctx.line(f"== {len(ctx.notable)} findings, problems and crashes" + (":" if ctx.notable else ""))
    for text in list(ctx.notable):
        ctx.line(f"  {text}")
    ctx.line(
        f"== finished in {ctx.elapsed():.1f} s, exit {code}: crashed {ctx.crashes or 'none'}, "
        f"skipped {ctx.skipped or 'none'}"
    )
    print(f"summary: {summary.path}", flush=True)
    scratch_holder.cleanup()
    return code


def embedded_tolerances(ctx: Context) -> None:
    section_c(ctx, model=str(ROOT / "schedcmp" / "default_model"), variants=("defaults",))


if __name__ == "__main__":
    sys.exit(main())
