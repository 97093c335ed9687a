"""The command line: parse, build the request, hand it to the entry point compare() uses too, print.

Every option of `run`, `baseline create`, `merge` and `list` comes from the declaration of the request
(schedcmp.core.request), so a flag, its help and its config key cannot drift apart. Only typer, click and the
pure core are imported at start-up, so `schedcmp --help` stays instant; torch and diffusers load inside the
commands that need them.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from schedcmp import __version__
from schedcmp.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, OutputError, SchedcmpError, Terminated
from schedcmp.core.request import (
    BASELINE,
    DEFAULT_REFERENCE,
    LIST,
    MERGE,
    RUN,
    declared,
    for_command,
    load_config_file,
    merge,
    setting_of,
    with_prompts_file,
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


# -- options from the declaration ----------------------------------------------------------------------------------


def declared_parameters(command: str) -> list[inspect.Parameter]:
    """The command's options (and the PROMPT argument), one per declared setting it takes, in declaration order.
    Every default is None, so that a --config file's value shows through wherever the command line says nothing."""
    return [declared_parameter(declaration) for declaration in for_command(command)]


def declared_parameter(declaration) -> inspect.Parameter:
    declared = setting_of(declaration)
    if not declared.flags:
        annotation, default = Optional[str], typer.Argument(None, help=declared.help, show_default=False)
    else:
        annotation = Optional[List[declared.cli_type] if declared.repeatable else declared.cli_type]
        shown = f" [default: {declared.default_text}]" if declared.default_text else ""
        default = typer.Option(
            None, *declared.flags, help=declared.help + shown, metavar=declared.metavar, show_default=False
        )
    return inspect.Parameter(declaration.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def declared_option(name: str) -> Any:
    """A declared setting's option, for a command that takes it among options of its own (`check`)."""
    return next(declared_parameter(f) for f in declared() if f.name == name).default


def command(
    parent: typer.Typer, name: str, declared: str | None, own: list[inspect.Parameter], body: Callable[..., None], **kw
) -> None:
    """Register `name` on `parent`: its own parameters, then the declared settings of `declared`; `body` gets
    every value by name (None: not given)."""

    def callback(**values: Any) -> None:
        body(values)

    parameters = own + (declared_parameters(declared) if declared else [])
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    callback.__doc__ = body.__doc__
    parent.command(name, **kw)(callback)


def own(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def sources(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the command line, the --config file) as merge sources, each with its --prompts-file folded in."""
    prompt = values.get("prompt")
    flags = with_prompts_file({**values, "prompt": [prompt] if prompt is not None else None})
    config = with_prompts_file(load_config_file(values["config"])) if values.get("config") else {}
    return flags, config


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
Exit codes: 0 ok; 1 a run failed (with --strict: or is suspect/filtered); 2 usage error; 130 interrupted;
143 terminated (SIGTERM).
"""


def run_body(values: dict[str, Any]) -> None:
    """Generate one image per scheduler, same prompt and seed, and compare them."""
    from schedcmp.output import console
    from schedcmp.scale import launch
    from schedcmp.sweep.results import read_results, stored_source

    flags, config = sources(values)
    resumed = read_results(Path(values["resume"]), "resume from") if values.get("resume") else None
    request = merge(flags, config, stored_source(resumed) if resumed else {})
    outcome = launch.run(request, resumed=resumed, progress=console.Progress())
    if not outcome.part:  # under torchrun, rank 0 reports for all
        print_outcome(outcome, request.format)
    raise typer.Exit(outcome.exit_code)


command(app, "run", RUN, [], run_body, help=RUN_HELP.replace("{reference}", DEFAULT_REFERENCE), no_args_is_help=True)


MERGE_HELP = """Join the parts of one sweep (`run --shard I/N` folders) into OUT, as one process would have made it.

The parts must come from the same plan (the same flags, model and reference: a fingerprint in each says
so), and no cell may be in two of them. Missing cells are refused, naming them, unless --allow-missing.
Exit codes: 0 ok; 1 a run failed, or cells were missing (--allow-missing); 2 refused, nothing written.
"""


def merge_body(values: dict[str, Any]) -> None:
    from schedcmp.output import console
    from schedcmp.scale import merge as merging

    request = merge({key: value for key, value in values.items() if key not in ("out", "parts", "allow_missing")})
    outcome = merging.merge(values["out"], list(values["parts"]), request, values["allow_missing"], console.Progress())
    print_outcome(outcome, request.format)
    raise typer.Exit(outcome.exit_code)


command(
    app,
    "merge",
    MERGE,
    [
        own("out", Path, typer.Argument(..., help="The folder to write (new or empty, unless --overwrite).")),
        own("parts", List[Path], typer.Argument(..., help="The parts' folders: DIR_0 DIR_1 ...")),
        own(
            "allow_missing",
            bool,
            typer.Option(
                False, "--allow-missing", help="Merge what the parts hold even when cells are missing (exit 1)."
            ),
        ),
    ],
    merge_body,
    help=MERGE_HELP,
    no_args_is_help=True,
)


def print_outcome(outcome, output_format: str) -> None:
    """The data on stdout in the asked format; the tables and the answer in words on stderr."""
    from schedcmp.output import console, report
    from schedcmp.sweep.placement import launched

    results = outcome.results
    title = f"{results.pipeline} · {results.device} {results.dtype}"
    target, summary = results.target, results.summary
    if target:
        rows = report.equal_quality_rows(results.equal_quality, target.metric)
    else:
        rows = report.table_rows(results.runs)
    if output_format == "json":
        console.data(report.to_json(outcome.document))
    elif output_format == "csv":
        console.data(report.rows_csv(rows) if target else report.to_csv(rows))
    elif output_format == "markdown":
        text = report.rows_markdown(rows) if target else report.to_markdown(rows)
        if summary and summary.pairs > 1 and not target:
            text += "\n" + report.rows_markdown(report.summary_rows(summary))
        console.data(text)
    else:
        if target:
            from schedcmp.quality.stepsearch import goal_text

            goal = goal_text(target.metric, target.value)
            console.print_equal_quality(rows, target.metric, f"{title} · steps at {goal}, cheapest first")
        else:
            console.print_table(rows, title)
            if summary and summary.pairs > 1:
                console.print_summary(summary)
        if not console.stdout_is_terminal():  # on a terminal the path on stdout below says it already
            for sheet in outcome.sheets:
                console.info(f"contact sheet: {sheet}")
        if results.report:
            console.info(f"report: {outcome.out_dir / results.report}")
        console.data("".join(f"{sheet}\n" for sheet in outcome.sheets))
    for line in results.answer or []:  # the answer in words, last
        console.info(f"answer: {line}")
    if launched():  # torchrun exits 1 for any failure: rank 0's last line carries schedcmp's code
        console.info(f"schedcmp: exit {outcome.exit_code}")


@app.command("report", no_args_is_help=True)
def report_command(
    folder: Path = typer.Argument(..., help="A results folder written by `schedcmp run`."),
) -> None:
    """Rebuild report.html and the quality charts from a results folder, without running anything."""
    from schedcmp.output import console
    from schedcmp.sweep.results import rebuild_report

    page = rebuild_report(folder, console.info)
    console.info(f"report: {page}")
    console.data(f"{page}\n")


baseline_app = typer.Typer(no_args_is_help=True, help="Store a comparison as a baseline for `schedcmp check`.")
app.add_typer(baseline_app, name="baseline")


def baseline_create_body(values: dict[str, Any]) -> None:
    """Run a comparison (the flags of `run`, or --config) and store it as a baseline.

    It stores images, float outputs and manifest.json."""
    from schedcmp.ci import baseline
    from schedcmp.output import console

    flags, config = sources({key: value for key, value in values.items() if key != "folder"})
    target, manifest, code = baseline.create(values["folder"], merge(flags, config))
    console.info(f"baseline: {len(manifest['cases'])} cases in {target}")
    console.data(f"{target}\n")
    raise typer.Exit(code)


command(
    baseline_app,
    "create",
    BASELINE,
    [
        own(
            "folder",
            Path,
            typer.Argument(
                ..., help="Baseline folder; the cases go into FOLDER/<device class>/ (cpu, cuda-sm90, mps)."
            ),
        )
    ],
    baseline_create_body,
    no_args_is_help=True,
)


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
    allow_pickle: Optional[bool] = declared_option("allow_pickle"),
) -> None:
    import os

    from schedcmp.ci import baseline
    from schedcmp.output import check_report, console, report

    from schedcmp.sweep.results import check_writable

    if output_format not in ("table", "json"):
        raise SchedcmpError(f"unknown --format {output_format!r}; choose table or json")
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    for flag, place, is_folder in (
        ("--results", results, True),
        ("--junit-xml", junit_xml, False),
        ("GITHUB_STEP_SUMMARY", summary_path, False),
    ):
        if place is not None:  # before the cases run: a report that cannot be written fails now, not after them
            check_writable(Path(place), flag, folder=is_folder)
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
    writing = "--results"
    try:
        if results is not None:
            baseline.write_artifacts(results, document, case_results)
        if junit_xml is not None:
            writing = f"--junit-xml {junit_xml}"
            junit_xml.parent.mkdir(parents=True, exist_ok=True)  # as --results makes its folder (reports/ in CI)
            report.write_atomic(junit_xml, check_report.junit_xml(document))
        if summary_path:
            writing = f"GITHUB_STEP_SUMMARY {summary_path}"
            with open(summary_path, "a", encoding="utf-8") as summary:
                summary.write(check_report.step_summary(document))
    except OSError as error:
        raise OutputError(f"cannot write {writing}: {error.strerror or error}") from None
    if output_format == "json":
        console.data(report.to_json(document))
    else:
        console.print_check(document)
    raise typer.Exit(code)


def list_body(values: dict[str, Any]) -> None:
    """Show the model's scheduler and config, the compatible schedulers, the UI names and each class's flags."""
    from schedcmp.model import listing
    from schedcmp.output import console, report

    output_format = values.pop("output_format")
    if output_format not in ("table", "json"):
        raise SchedcmpError(f"unknown --format {output_format!r}; choose table or json")
    document = listing.list_document(merge(values))
    if output_format == "json":
        console.data(report.to_json(document))
    else:
        console.print_list(document)


command(
    app,
    "list",
    LIST,
    [own("output_format", str, typer.Option("table", "--format", "-f", help="table|json"))],
    list_body,
)


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
    from schedcmp.sweep.placement import launched

    # Under torchrun the shell sees torchrun's 1 for any failure: the line says schedcmp's own code.
    suffix = f" (exit {code})" if launched() else ""
    console.error(" ".join(message.split()) + suffix)
    sys.exit(code)
