"""The command line: parse, validate, hand off to one function per command, map errors to exit codes.

Only typer and click are imported at start-up, so `schedcmp --help` stays instant; torch and diffusers
load inside the commands that need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from schedcmp import __version__
from schedcmp.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, OutputError, SchedcmpError, Terminated
from schedcmp.core.plan import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_STEPS,
    DEFAULT_REFERENCE,
    Settings,
    load_config_file,
    parse_call_args,
    parse_numbers,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run every scheduler a diffusers model is compatible with on one prompt and seed, and compare them.\n\n"
    "Exit codes: 0 success; 1 ran, but at least one run failed (check: drift); 2 usage or input error, "
    "nothing run; 3, 4, 5 see `schedcmp check --help`; 130 interrupted; 143 terminated (SIGTERM).",
)


def print_version(value: bool) -> None:
    if value:
        print(f"schedcmp {__version__}")
        raise typer.Exit(0)


@app.callback()
def options(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=print_version, is_eager=True, help="Print schedcmp's version and exit."
    ),
) -> None:
    """Run every scheduler a diffusers model is compatible with on one prompt and seed, and compare them."""


RUN_HELP = """Generate one image per scheduler, same prompt and seed, and compare them.

\b
--schedulers grammar:
  ENTRIES := ENTRY ("," ENTRY)*
  ENTRY   := NAME ["(" KEY=VALUE ("," KEY=VALUE)* ")"] [":" STEPS]
\b
  NAME    a class name with or without the Scheduler suffix, or a UI
          name ("euler a", "DPM++ 2M Karras"); case-insensitive.
          `all`  = the pipeline's compatibles; `all+` adds Karras
          variants (and flow solvers on flow-matching models).
  VALUE   true/false, none, a number, or a bare string.
  :STEPS  pins that entry's step count; --steps sets the others.
\b
Example (the diffusers guide's comparison, in one command):
  schedcmp run "astronaut on mars" --seed 8 \\
    --schedulers "PNDM:50,DDIM:50,LMS:50,Euler:30,Euler a:30,DPM++ 2M:20"

\b
Number lists (--steps, --seed, --guidance-scale): 10,20,30 | 10-50 (every
integer) | 10-50:10 (step 10) | 10-50/5 (5 evenly spaced values). Several
values make a grid: schedulers as rows, --x as columns.

\b
How close each run comes to a converged result: --reference first computes
a reference (default {reference}) for the same prompt, seed and
settings, cached for reruns, and reports every deterministic run's distance
to it (latent RMSE, PSNR, SSIM); a steps sweep adds each scheduler's fitted
order of convergence. --html writes report.html (and, with --reference, the
quality charts).

`schedcmp list` shows the names, aliases and the overrides each class accepts.
Exit codes: 0 ok; 1 a run failed (with --strict: or is suspect/filtered); 2 usage error; 130 interrupted.
"""


# The flags of a comparison, shared by `run` and `baseline create`. Defaults are None so that a --config
# file's value shows through wherever the command line says nothing; DEFAULTS below fill the rest.
SCHEDULERS = typer.Option(
    None, "--schedulers", "-s", help="Which schedulers: all, all+ or a list (grammar above). [default: all]"
)
MODEL = typer.Option(
    None, "--model", "-m", help="Diffusers folder, hub id or .safetensors file. Default: the embedded model."
)
MODEL_CONFIG = typer.Option(
    None, "--model-config", help="For a single-file checkpoint: a diffusers folder or hub id holding its configs."
)
SEED = typer.Option(None, "--seed", help="Seed(s) of the fresh generator each cell gets: 8, 1-4, 1,5,9. [default: 0]")
STEPS = typer.Option(
    None, "--steps", help="Denoising steps: 20, 10,20,30, 10-50:10 or 10-50/5 (default: the pipeline's own)."
)
GUIDANCE = typer.Option(
    None,
    "--guidance-scale",
    help="Classifier-free guidance scale(s): 7.5 or 5,7.5 or 3-9:1.5 (default: the pipeline's own).",
)
WIDTH = typer.Option(None, "--width", help="Image width in pixels (default: the model's native size).")
HEIGHT = typer.Option(None, "--height", help="Image height in pixels (default: the model's native size).")
NEGATIVE = typer.Option(None, "--negative-prompt", help="Negative prompt.")
CALL_ARG = typer.Option(None, "--call-arg", help="KEY=VALUE passed to the pipeline call, e.g. eta=0.3 (repeatable).")
DEVICE = typer.Option(None, "--device", help="auto|cpu|cuda|mps (auto: cuda, then mps, then cpu). [default: auto]")
DTYPE = typer.Option(None, "--dtype", help="auto|fp32|fp16|bf16 (auto: fp16 on cuda, fp32 otherwise). [default: auto]")
GENERATOR_DEVICE = typer.Option(
    None,
    "--generator-device",
    help="cpu (default, same images on every machine) or device (the run device's RNG, as the guide does on cuda).",
)
PROMPTS_FILE = typer.Option(
    None, "--prompts-file", help="Prompts, one per line (- for stdin); the PROMPT argument is then optional."
)
CONFIG = typer.Option(None, "--config", help="A preset (configs/*.toml); flags on the command line override it.")
SEED_MODE = typer.Option(
    None,
    "--seed-mode",
    help="same: every cell of a row gets the same seed; index: seed + the cell's index in its row. [default: same]",
)
BATCH_SIZE = typer.Option(
    None,
    "--batch-size",
    help="Cells that differ only in seed or prompt share one pipeline call, up to N images (1: no batching). "
    "[default: 8]",
)
OVERWRITE = typer.Option(None, "--overwrite/--no-overwrite", help="Write into a non-empty output folder.")
ALLOW_INCOMPATIBLE = typer.Option(
    None, "--allow-incompatible/--no-allow-incompatible", help="Run schedulers outside the pipeline's compatibles."
)
ALLOW_UNKNOWN_CALL_ARGS = typer.Option(
    None,
    "--allow-unknown-call-args/--no-allow-unknown-call-args",
    help="Send --call-arg names the pipeline's __call__ does not list (it may take **kwargs).",
)
ALLOW_PICKLE = typer.Option(
    None, "--allow-pickle/--no-allow-pickle", help="Load pickle weights (.bin/.ckpt): only for models you trust."
)

DEFAULTS = {
    "schedulers": "all",
    "seed": "0",
    "device": "auto",
    "dtype": "auto",
    "generator_device": "cpu",
    "repeat": 1,
    "format": "table",
    "seed_mode": "same",
    "batch_size": DEFAULT_BATCH_SIZE,
    "call_arg": [],
}


def read_prompts(path: str) -> list[str]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as error:
        raise SchedcmpError(f"cannot read --prompts-file {path}: {error.strerror or error}") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise SchedcmpError(f"--prompts-file {path} has no prompts")
    return prompts


def merged_values(given: dict, config: str | None, base: dict | None = None) -> dict:
    """Command line over --config file over `base` (a resumed folder's settings) over DEFAULTS. Unset flags,
    switches included, are None."""
    values = dict(DEFAULTS) | (base or {})
    if config is not None:
        values.update(load_config_file(config))
    # Only what the command line says: None is "not given"; 0, False and "" are values (--no-strict, --repeat 0).
    values.update({key: value for key, value in given.items() if value is not None and value != []})
    return values


def resume_values(folder: Path) -> dict:
    """--resume DIR: the settings DIR was made with, as flag values, so that `run --resume DIR` is the whole
    command. Flags given again must agree with them (the engine refuses other cell settings)."""
    from schedcmp.core.records import DocumentError, read_document

    try:
        previous = read_document(folder / "results.json", "run")
    except DocumentError as error:
        raise OutputError(f"cannot resume from {folder}: its results.json is missing or corrupt ({error})") from None
    stored = previous.settings
    if stored is None:  # written before schedcmp stored its settings: the command line must give them
        return {}
    try:
        return stored_values(previous, stored)
    except (KeyError, TypeError) as error:
        raise OutputError(f"cannot resume from {folder}: its stored settings are malformed ({error!r})") from None


def stored_values(previous, stored: dict) -> dict:
    """The flag values a results.json's stored settings stand for."""
    values = {
        "prompt": list(stored["prompts"]),
        "schedulers": stored["schedulers"],
        "seed": ",".join(str(seed) for seed in stored["seeds"]),
        "steps": ",".join(str(steps) for steps in stored["steps"]) or None,
        "guidance_scale": ",".join(repr(scale) for scale in stored["guidance_scales"]) or None,
        "width": stored["width"],
        "height": stored["height"],
        "negative_prompt": stored["negative_prompt"],
        "call_arg": stored["call_args"],
        "allow_incompatible": stored["allow_incompatible"],
        "allow_unknown_call_args": stored.get("allow_unknown_call_args"),
        "repeat": stored["repeat"],
        "generator_device": stored["generator_device"],
        "seed_mode": stored["seed_mode"],
        "batch_size": stored["batch_size"],
        "model": previous.model_source,
        "model_config": previous.model_config,
        "reference_spec": previous.reference_spec,
        "target_psnr": stored.get("target_value") if stored.get("target_metric") == "psnr" else None,
        "target_rmse": stored.get("target_value") if stored.get("target_metric") == "latent_rmse" else None,
        "max_steps": stored.get("max_steps") if stored.get("target_metric") else None,
        "shard": f"{previous.shard.index}/{previous.shard.count}" if previous.shard else None,
    }
    return {key: value for key, value in values.items() if value is not None}


def target_of(values: dict) -> tuple[str | None, float | None]:
    """--target-psnr or --target-rmse (one of them), as (metric, value)."""
    psnr, rmse = values.get("target_psnr"), values.get("target_rmse")
    if psnr is not None and rmse is not None:
        raise SchedcmpError("--target-psnr and --target-rmse both given: choose one")
    if values.get("max_steps") is not None and psnr is None and rmse is None:
        raise SchedcmpError("--max-steps bounds a --target-psnr or --target-rmse search: give one of those")
    if psnr is not None:
        return "psnr", float(psnr)
    if rmse is not None:
        return "latent_rmse", float(rmse)
    return None, None


def comparison_from(values: dict):
    """(Settings, ModelOptions) from merged values; every number list parsed here, one-line errors."""
    from schedcmp.sweep import engine

    prompts = list(values.get("prompt") or [])
    if values.get("prompts_file"):
        prompts += read_prompts(values["prompts_file"])
    if values["generator_device"] not in ("cpu", "device", "cuda", "mps"):
        raise SchedcmpError(f"unknown --generator-device {values['generator_device']!r}; choose cpu or device")
    target_metric, target_value = target_of(values)
    settings = Settings(
        prompts=tuple(prompts),
        schedulers=values["schedulers"],
        seeds=parse_numbers(values["seed"], "--seed"),
        steps=parse_numbers(values["steps"], "--steps") if values.get("steps") is not None else (),
        guidance_scales=parse_numbers(values["guidance_scale"], "--guidance-scale", integers=False)
        if values.get("guidance_scale") is not None
        else (),
        width=values.get("width"),
        height=values.get("height"),
        negative_prompt=values.get("negative_prompt"),
        call_args=values["call_arg"] if isinstance(values["call_arg"], dict) else parse_call_args(values["call_arg"]),
        allow_incompatible=bool(values.get("allow_incompatible")),
        allow_unknown_call_args=bool(values.get("allow_unknown_call_args")),
        repeat=values["repeat"],
        generator_device=values["generator_device"],
        seed_mode=values["seed_mode"],
        batch_size=values["batch_size"],
        target_metric=target_metric,
        target_value=target_value,
        max_steps=values.get("max_steps") or DEFAULT_MAX_STEPS,
    )
    model_options = engine.ModelOptions(
        values.get("model"),
        values.get("model_config"),
        bool(values.get("allow_pickle")),
        values["device"],
        values["dtype"],
    )
    return settings, model_options


@app.command("run", help=RUN_HELP.replace("{reference}", DEFAULT_REFERENCE), no_args_is_help=True)
def run_command(
    ctx: typer.Context,
    prompt: Optional[str] = typer.Argument(
        None, help="The prompt every scheduler gets (or use --prompts-file / --config)."
    ),
    schedulers: Optional[str] = SCHEDULERS,
    model: Optional[str] = MODEL,
    model_config: Optional[str] = MODEL_CONFIG,
    seed: Optional[str] = SEED,
    steps: Optional[str] = STEPS,
    guidance_scale: Optional[str] = GUIDANCE,
    width: Optional[int] = WIDTH,
    height: Optional[int] = HEIGHT,
    negative_prompt: Optional[str] = NEGATIVE,
    call_arg: Optional[List[str]] = CALL_ARG,
    device: Optional[str] = DEVICE,
    dtype: Optional[str] = DTYPE,
    generator_device: Optional[str] = GENERATOR_DEVICE,
    repeat: Optional[int] = typer.Option(
        None, "--repeat", help="Time each cell N times (same image); report median, min and max. [default: 1]"
    ),
    prompts_file: Optional[str] = PROMPTS_FILE,
    config: Optional[str] = CONFIG,
    x: Optional[str] = typer.Option(
        None, "--x", help="The grid's columns: steps|seed|guidance_scale|prompt (default: the first that varies)."
    ),
    z: Optional[str] = typer.Option(
        None, "--z", help="A grid of grids in one image: one grid per value of this axis, one under the other."
    ),
    seed_mode: Optional[str] = SEED_MODE,
    batch_size: Optional[int] = BATCH_SIZE,
    no_sheet: Optional[bool] = typer.Option(
        None, "--no-sheet/--sheet", help="No images and no sheet: a pure timing sweep."
    ),
    events: Optional[str] = typer.Option(
        None, "--events", help="Write one NDJSON line per finished cell to this file (- for stdout)."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue an interrupted sweep in this folder: verified cells are skipped."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder (default: ./schedcmp-runs/<timestamp>-<prompt>/)."
    ),
    overwrite: Optional[bool] = OVERWRITE,
    output_format: Optional[str] = typer.Option(
        None, "--format", "-f", help="table|json|csv|markdown: json/csv/markdown go to stdout alone. [default: table]"
    ),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="Exit 1 on suspect or filtered runs too."),
    allow_incompatible: Optional[bool] = ALLOW_INCOMPATIBLE,
    allow_pickle: Optional[bool] = ALLOW_PICKLE,
    allow_unknown_call_args: Optional[bool] = ALLOW_UNKNOWN_CALL_ARGS,
    reference: Optional[bool] = typer.Option(
        None, "--reference/--no-reference", help="Measure each run's distance to a converged reference run (cached)."
    ),
    reference_spec: Optional[str] = typer.Option(
        None,
        "--reference-spec",
        help="The reference: one entry with :STEPS, e.g. DPMSolverMultistep:200 (implies --reference).",
    ),
    html: Optional[bool] = typer.Option(
        None,
        "--html/--no-html",
        help="Also write report.html (self-contained); with --reference, the quality-vs-cost charts too.",
    ),
    target_psnr: Optional[float] = typer.Option(
        None,
        "--target-psnr",
        help="Equal quality: find each scheduler's fewest steps whose image is within DB dB PSNR of the reference "
        "(implies --reference; the median over prompts and seeds).",
        metavar="DB",
    ),
    target_rmse: Optional[float] = typer.Option(
        None,
        "--target-rmse",
        help="Equal quality, in latent RMSE to the reference: the fewest steps at most X away.",
        metavar="X",
    ),
    max_steps: Optional[int] = typer.Option(
        None, "--max-steps", help="Where a --target search gives up. [default: 100]"
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: run only part I (from 0) of N of the sweep; join the parts with `schedcmp merge`. "
        "Under torchrun (WORLD_SIZE > 1) the ranks share the work without it.",
    ),
) -> None:
    given = dict(ctx.params)  # what the command line said, by parameter name (None: not given)
    from schedcmp.output import console
    from schedcmp.scale import distributed
    from schedcmp.sweep import engine

    flags = {k: v for k, v in given.items() if k not in ("config", "prompt", "output_format")}
    flags |= {"prompt": [prompt] if prompt is not None else None, "format": output_format}
    base = resume_values(resume) if resume is not None else None
    if base and (
        prompt is not None or prompts_file or config and load_config_file(config).keys() & {"prompt", "prompts_file"}
    ):
        del base["prompt"]  # the prompts are given again (and must be the same ones)
    values = merged_values(flags, config, base)
    settings, model_options = comparison_from(values)
    output_format = values["format"]
    options = engine.OutputOptions(
        out=Path(values["out"]) if values.get("out") else None,
        overwrite=bool(values.get("overwrite")),
        format=output_format,
        strict=bool(values.get("strict")),
        x=values.get("x"),
        z=values.get("z"),
        no_sheet=bool(values.get("no_sheet")),
        events=values.get("events"),
        resume=resume,
        html=bool(values.get("html")),
        reference=values.get("reference_spec") or (DEFAULT_REFERENCE if values.get("reference") else None),
        shard=distributed.parse_shard(values["shard"]) if values.get("shard") else None,
    )
    if distributed.launched():  # torchrun, accelerate launch: this process is one rank of several
        team = distributed.Team.join()
        outcome = distributed.run_ranked(settings, model_options, options, team, console.Progress())
        if team.rank != 0:  # rank 0 reports for all
            raise typer.Exit(outcome.exit_code)
    else:
        outcome = engine.run_comparison(settings, model_options, options)
    print_outcome(outcome, output_format)
    raise typer.Exit(outcome.exit_code)


MERGE_HELP = """Join the parts of one sweep (`run --shard I/N` folders) into OUT, as one process would have made it.

The parts must come from the same plan (the same flags, model and reference: a fingerprint in each says
so), and no cell may be in two of them. Missing cells are refused, naming them, unless --allow-missing.
Exit codes: 0 ok; 1 a run failed, or cells were missing (--allow-missing); 2 refused, nothing written.
"""


@app.command("merge", help=MERGE_HELP, no_args_is_help=True)
def merge_command(
    out: Path = typer.Argument(..., help="The folder to write (new or empty, unless --overwrite)."),
    parts: List[Path] = typer.Argument(..., help="The parts' folders: DIR_0 DIR_1 ..."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Merge what the parts hold even when cells are missing (exit 1)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty OUT."),
    output_format: str = typer.Option("table", "--format", "-f", help="table|json|csv|markdown, as for `run`."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on suspect or filtered runs too."),
    x: Optional[str] = typer.Option(None, "--x", help="The grid's columns, as for `run`."),
    z: Optional[str] = typer.Option(None, "--z", help="A grid of grids, as for `run`."),
    html: bool = typer.Option(False, "--html", help="Also write report.html (and the quality charts)."),
) -> None:
    from schedcmp.output import console
    from schedcmp.scale import merge
    from schedcmp.sweep import engine

    options = engine.OutputOptions(
        out=out, overwrite=overwrite, format=output_format, strict=strict, x=x, z=z, html=html
    )
    engine.check_output_options(options)
    outcome = merge.merge(out, list(parts), options, allow_missing, console.Progress())
    print_outcome(outcome, output_format)
    raise typer.Exit(outcome.exit_code)


def print_outcome(outcome, output_format: str) -> None:
    """The data on stdout in the asked format; the tables and the answer in words on stderr."""
    from schedcmp.output import console, report
    from schedcmp.scale import distributed

    document = outcome.document
    title = f"{document['pipeline']} · {document['device']} {document['dtype']}"
    target = document.get("target")
    summary = document.get("summary")
    if target:
        rows = report.equal_quality_rows(document["equal_quality"], target["metric"])
    else:
        rows = report.table_rows(document["runs"])
    if output_format == "json":
        console.data(report.to_json(document))
    elif output_format == "csv":
        console.data(report.rows_csv(rows) if target else report.to_csv(rows))
    elif output_format == "markdown":
        text = report.rows_markdown(rows) if target else report.to_markdown(rows)
        if summary and summary["pairs"] > 1 and not target:
            text += "\n" + report.rows_markdown(report.summary_rows(summary))
        console.data(text)
    else:
        if target:
            from schedcmp.quality.stepsearch import goal_text

            goal = goal_text(target["metric"], target["value"])
            console.print_equal_quality(rows, target["metric"], f"{title} · steps at {goal}, fastest first")
        else:
            console.print_table(rows, title)
            if summary and summary["pairs"] > 1:
                console.print_summary(summary)
        if not console.stdout_is_terminal():  # on a terminal the path on stdout below says it already
            for sheet in outcome.sheets:
                console.info(f"contact sheet: {sheet}")
        if outcome.document.get("report"):
            console.info(f"report: {outcome.out_dir / outcome.document['report']}")
        console.data("".join(f"{sheet}\n" for sheet in outcome.sheets))
    for line in document.get("answer") or []:  # the answer in words, last
        console.info(f"answer: {line}")
    if distributed.launched():  # torchrun exits 1 for any failure: rank 0's last line carries schedcmp's code
        console.info(f"schedcmp: exit {outcome.exit_code}")


@app.command("report", no_args_is_help=True)
def report_command(
    folder: Path = typer.Argument(..., help="A results folder written by `schedcmp run`."),
) -> None:
    """Rebuild report.html and the quality charts from a results folder, without running anything."""
    from schedcmp.output import console, html_report

    page = html_report.rebuild_report(folder)
    console.info(f"report: {page}")
    console.data(f"{page}\n")


baseline_app = typer.Typer(no_args_is_help=True, help="Store a comparison as a baseline for `schedcmp check`.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("create", no_args_is_help=True)
def baseline_create_command(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        ..., help="Baseline folder; the cases go into FOLDER/<device class>/ (cpu, cuda-sm90, mps)."
    ),
    prompt: Optional[str] = typer.Argument(
        None, help="The prompt every scheduler gets (or use --prompts-file / --config)."
    ),
    schedulers: Optional[str] = SCHEDULERS,
    model: Optional[str] = MODEL,
    model_config: Optional[str] = MODEL_CONFIG,
    seed: Optional[str] = SEED,
    steps: Optional[str] = STEPS,
    guidance_scale: Optional[str] = GUIDANCE,
    width: Optional[int] = WIDTH,
    height: Optional[int] = HEIGHT,
    negative_prompt: Optional[str] = NEGATIVE,
    call_arg: Optional[List[str]] = CALL_ARG,
    device: Optional[str] = DEVICE,
    dtype: Optional[str] = DTYPE,
    generator_device: Optional[str] = GENERATOR_DEVICE,
    prompts_file: Optional[str] = PROMPTS_FILE,
    config: Optional[str] = CONFIG,
    seed_mode: Optional[str] = SEED_MODE,
    batch_size: Optional[int] = BATCH_SIZE,
    overwrite: Optional[bool] = OVERWRITE,
    allow_incompatible: Optional[bool] = ALLOW_INCOMPATIBLE,
    allow_pickle: Optional[bool] = ALLOW_PICKLE,
    allow_unknown_call_args: Optional[bool] = ALLOW_UNKNOWN_CALL_ARGS,
) -> None:
    """Run a comparison (the flags of `run`, or --config) and store it as a baseline.

    It stores images, float outputs and manifest.json."""
    given = dict(ctx.params)  # what the command line said, by parameter name (None: not given)
    from schedcmp.ci import baseline
    from schedcmp.output import console

    values = merged_values(
        {k: v for k, v in given.items() if k not in ("config", "prompt", "folder")}
        | {"prompt": [prompt] if prompt is not None else None},
        config,
    )
    settings, model_options = comparison_from(values)
    target, manifest, code = baseline.create(folder, settings, model_options, bool(values.get("overwrite")))
    console.info(f"baseline: {len(manifest['cases'])} cases in {target}")
    console.data(f"{target}\n")
    raise typer.Exit(code)


CHECK_HELP = """Regenerate every case of a baseline and compare.

\b
Verdicts: match (identical pixels and float output), within-tolerance,
drift, missing-baseline, error, nondeterministic (with --preflight).
Exit codes: 0 all match or within tolerance; 1 drift or missing baseline
files; 2 usage or config error; 3 generation error; 4 nondeterminism
found by --preflight; 5 the baseline folder holds no cases. When several
apply: 3, then 1, then 4.
"""


@app.command("check", help=CHECK_HELP, no_args_is_help=True)
def check_command(
    folder: Path = typer.Argument(..., help="A folder made by `schedcmp baseline create`."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Check another copy or version of the baseline's model (same architecture)."
    ),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|mps (auto: cuda, then mps, then cpu)."),
    tolerance: Optional[str] = typer.Option(
        None,
        "--tolerance",
        help="same-device|cross-device (default: same-device when the baseline's device class is this one).",
    ),
    tolerance_for: List[str] = typer.Option(
        [], "--tolerance-for", help='Per-scheduler thresholds, e.g. "euler a(max_abs=0.2,cosine=0.01)" (repeatable).'
    ),
    preflight: bool = typer.Option(
        False, "--preflight", help="Generate each case twice; cases that differ are nondeterministic, not drift."
    ),
    update: Optional[str] = typer.Option(
        None, "--update", help="missing|changed|all: write those cases into the baseline."
    ),
    results: Optional[Path] = typer.Option(
        None, "--results", help="Write results.json, report.html and baseline/result/diff PNGs of failing cases here."
    ),
    junit_xml: Optional[Path] = typer.Option(None, "--junit-xml", help="Write a JUnit XML report here."),
    output_format: str = typer.Option("table", "--format", "-f", help="table|json (the results document on stdout)."),
    allow_pickle: Optional[bool] = ALLOW_PICKLE,
) -> None:
    import os

    from schedcmp.ci import baseline
    from schedcmp.output import check_report, console, report

    if output_format not in ("table", "json"):
        raise SchedcmpError(f"unknown --format {output_format!r}; choose table or json")
    options = baseline.CheckOptions(
        folder=folder,
        model=model,
        device=device,
        profile=tolerance,
        tolerance_overrides=baseline.parse_tolerance_overrides(tolerance_for),
        preflight=preflight,
        update=update,
        allow_pickle=bool(allow_pickle),
    )
    document, case_results, code = baseline.check(options)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        if results is not None:
            baseline.write_artifacts(results, document, case_results)
        if junit_xml is not None:
            report.write_atomic(junit_xml, check_report.junit_xml(document))
        if summary_path:
            with open(summary_path, "a", encoding="utf-8") as summary:
                summary.write(check_report.step_summary(document))
    except OSError as error:
        raise OutputError(
            f"cannot write the check's reports: {error.filename or ''} {error.strerror or error}"
        ) from None
    if output_format == "json":
        console.data(report.to_json(document))
    else:
        console.print_check(document)
    raise typer.Exit(code)


@app.command("list")
def list_command(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Diffusers folder, hub id or .safetensors file. Default: the embedded model."
    ),
    model_config: Optional[str] = typer.Option(
        None, "--model-config", help="For a single-file checkpoint: a folder or hub id with its configs."
    ),
    output_format: str = typer.Option("table", "--format", "-f", help="table|json"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Load pickle weights: only for models you trust."),
) -> None:
    """Show the model's scheduler and config, the compatible schedulers, the UI names and each class's flags."""
    from schedcmp.output import console, report
    from schedcmp.sweep import engine

    if output_format not in ("table", "json"):
        raise SchedcmpError(f"unknown --format {output_format!r}; choose table or json")
    document = engine.list_document(engine.ModelOptions(model, model_config, allow_pickle))
    if output_format == "json":
        console.data(report.to_json(document))
    else:
        console.print_list(document)


@app.command("version")
def version_command() -> None:
    """Print schedcmp's version."""
    print(__version__)


def click_exceptions():
    """The click that typer parses with: recent typer bundles its own copy."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def terminate(signal_number, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a documented exit code."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)  # like Ctrl-C: finished cells, sheet and results.json are kept
    command = typer.main.get_command(app)
    exceptions = click_exceptions()
    try:
        code = command.main(args=argv, prog_name="schedcmp", standalone_mode=False)
    except exceptions.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `schedcmp` or `schedcmp run`: the help, as usage
            sys.stderr.write(error.format_message() + "\n")
            sys.exit(EXIT_USAGE)
        report_error(error.format_message(), EXIT_USAGE)
    except typer.Abort:
        report_error("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        report_error("terminated (SIGTERM)", EXIT_TERMINATED)
    except KeyboardInterrupt:
        report_error("interrupted", EXIT_INTERRUPTED)
    except SchedcmpError as error:
        report_error(str(error), error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def report_error(message: str, code: int) -> None:
    from schedcmp.output import console
    from schedcmp.scale import distributed

    # Under torchrun the shell sees torchrun's 1 for any failure: the line says schedcmp's own code.
    suffix = f" (exit {code})" if distributed.launched() else ""
    console.error(" ".join(message.split()) + suffix)
    sys.exit(code)
