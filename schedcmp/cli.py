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
from schedcmp.errors import EXIT_INTERRUPTED, EXIT_USAGE, SchedcmpError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Run every scheduler a diffusers model is compatible with on one prompt and seed, and compare them.\n\n"
    "Exit codes: 0 success; 1 ran, but at least one run failed; 2 usage or input error, nothing run; "
    "130 interrupted.",
)

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

`schedcmp list` shows the names, aliases and the overrides each class accepts.
Exit codes: 0 ok; 1 a run failed (with --strict: or is suspect/filtered); 2 usage error; 130 interrupted.
"""


@app.command("run", help=RUN_HELP, no_args_is_help=True)
def run_command(
    prompt: str = typer.Argument(..., help="The prompt every scheduler gets."),
    schedulers: str = typer.Option("all", "--schedulers", "-s", help="Which schedulers: all, all+ or a list (grammar above)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Diffusers folder, hub id or .safetensors file. Default: the embedded model."),
    model_config: Optional[str] = typer.Option(None, "--model-config", help="For a single-file checkpoint: a diffusers folder or hub id holding its configs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fresh generator each scheduler gets."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the pipeline's own)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="Classifier-free guidance scale (default: the pipeline's own)."),
    width: Optional[int] = typer.Option(None, "--width", help="Image width in pixels (default: the model's native size)."),
    height: Optional[int] = typer.Option(None, "--height", help="Image height in pixels (default: the model's native size)."),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", help="Negative prompt."),
    call_arg: List[str] = typer.Option([], "--call-arg", help="KEY=VALUE passed to the pipeline call, e.g. eta=0.3 (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|mps (auto: cuda, then mps, then cpu)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto|fp32|fp16|bf16 (auto: fp16 on cuda, fp32 otherwise)."),
    generator_device: str = typer.Option("cpu", "--generator-device", help="cpu (default, same images on every machine) or device (the run device's RNG, as the guide does on cuda)."),
    repeat: int = typer.Option(1, "--repeat", help="Time each scheduler N times (same image); report median, min and max."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: ./schedcmp-runs/<timestamp>-<prompt>/)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out folder."),
    output_format: str = typer.Option("table", "--format", "-f", help="table|json|csv|markdown: json/csv/markdown go to stdout alone."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on suspect or filtered runs too."),
    allow_incompatible: bool = typer.Option(False, "--allow-incompatible", help="Run schedulers outside the pipeline's compatibles."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Load pickle weights (.bin/.ckpt): only for models you trust."),
) -> None:
    from schedcmp import compare, output, report
    from schedcmp.config import Settings, parse_call_args

    if generator_device not in ("cpu", "device", "cuda", "mps"):
        raise SchedcmpError(f"unknown --generator-device {generator_device!r}; choose cpu or device")
    settings = Settings(
        prompt=prompt, schedulers=schedulers, seed=seed, steps=steps, guidance_scale=guidance_scale,
        width=width, height=height, negative_prompt=negative_prompt, call_args=parse_call_args(call_arg),
        allow_incompatible=allow_incompatible, repeat=repeat, generator_device=generator_device,
    )
    outcome = compare.run_comparison(
        settings,
        compare.ModelOptions(model, model_config, allow_pickle, device, dtype),
        compare.OutputOptions(out, overwrite, output_format, strict),
    )
    rows = report.table_rows(outcome.document["runs"])
    if output_format == "json":
        output.data(report.to_json(outcome.document))
    elif output_format == "csv":
        output.data(report.to_csv(rows))
    elif output_format == "markdown":
        output.data(report.to_markdown(rows))
    else:
        output.print_table(rows, f"{outcome.document['pipeline']} · {outcome.document['device']} {outcome.document['dtype']}")
        if outcome.sheet is not None:
            output.info(f"contact sheet: {outcome.sheet}")
            output.data(f"{outcome.sheet}\n")
    raise typer.Exit(outcome.exit_code)


@app.command("list")
def list_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Diffusers folder, hub id or .safetensors file. Default: the embedded model."),
    model_config: Optional[str] = typer.Option(None, "--model-config", help="For a single-file checkpoint: a folder or hub id with its configs."),
    output_format: str = typer.Option("table", "--format", "-f", help="table|json"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Load pickle weights: only for models you trust."),
) -> None:
    """Show the model's scheduler and config, the compatible schedulers, the UI names and each class's flags."""
    from schedcmp import compare, output, report

    if output_format not in ("table", "json"):
        raise SchedcmpError(f"unknown --format {output_format!r}; choose table or json")
    document = compare.list_document(compare.ModelOptions(model, model_config, allow_pickle))
    if output_format == "json":
        output.data(report.to_json(document))
    else:
        output.print_list(document)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a documented exit code."""
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
    except KeyboardInterrupt:
        report_error("interrupted", EXIT_INTERRUPTED)
    except SchedcmpError as error:
        report_error(str(error), error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def report_error(message: str, code: int) -> None:
    from schedcmp import output

    output.error(" ".join(message.split()))
    sys.exit(code)
