"""The consoles, progress display and the rich timing table. Nothing else in schedcmp imports rich.

Data goes to stdout; diagnostics, progress and the human table go to stderr. When stderr is not a
terminal, progress is plain lines and there are no colour codes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from schedcmp.core.records import Status, Summary, TargetStatus, status_colour

# Wide enough for the table with distances when stderr is a file or a pipe, where rich would assume 80
# columns and squeeze the scheduler names out; COLUMNS still wins.
TABLE_WIDTH_OFF_TERMINAL = 160

console = Console(soft_wrap=True)
if not console.is_terminal and "COLUMNS" not in os.environ:  # piped `schedcmp list`: whole names, not folded
    console.width = TABLE_WIDTH_OFF_TERMINAL
error_console = Console(stderr=True, highlight=False, soft_wrap=True)
if not error_console.is_terminal and "COLUMNS" not in os.environ:
    error_console.width = TABLE_WIDTH_OFF_TERMINAL


def error(message: str) -> None:
    """The one line a failing command prints."""
    error_console.print(f"schedcmp: error: {message}", markup=False, style="bold red")


def info(message: str) -> None:
    error_console.print(message, markup=False)


def stdout_is_terminal() -> bool:
    return console.is_terminal


def data(text: str) -> None:
    """Machine-readable output: exactly `text` on stdout, nothing added."""
    sys.stdout.write(text)
    sys.stdout.flush()


def in_jupyter() -> bool:
    """Inside a Jupyter kernel, where a terminal bar does not redraw but a notebook widget does."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """Runs done/total and the current scheduler's steps, and the comparison's notes.

    On a terminal a live rich bar; in Jupyter a tqdm bar (a notebook widget where ipywidgets is there);
    elsewhere plain lines on stderr. `enabled=False` shows nothing at all (schedcmp.compare(progress=False)).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.total = 0
        self.bar = None  # rich
        self.task = None
        self.notebook_bar = None  # tqdm
        self.live = enabled and error_console.is_terminal and not in_jupyter()

    def begin(self, total: int) -> None:
        self.total = total
        if self.live and self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=error_console,
                transient=True,
            )
            self.bar.start()
        elif self.enabled and in_jupyter() and self.notebook_bar is None:
            from tqdm.auto import tqdm

            self.notebook_bar = tqdm(total=total, desc="schedcmp", unit="cell")

    def grow(self, total: int) -> None:
        """A step search planned more cells."""
        self.total = total
        if self.notebook_bar is not None:
            self.notebook_bar.total = total
            self.notebook_bar.refresh()

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.notebook_bar is not None:
            self.notebook_bar.write(message, file=sys.stderr)
        else:
            info(message)

    def started(self, index: int, name: str, steps: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"[{index}/{self.total}] {name}", total=steps)
        elif self.notebook_bar is not None:
            self.notebook_bar.set_postfix_str(name, refresh=True)

    def step(self, done: int, steps: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=steps)

    def finished(self, index: int, name: str, status: str, seconds: float | None, reason: str | None) -> None:
        if not self.enabled:
            return
        if self.notebook_bar is not None:
            self.notebook_bar.update(index - self.notebook_bar.n)
            return
        took = f"{seconds:.2f} s" if seconds is not None else "-"
        line = f"[{index}/{self.total}] {name}: {status} ({took})" + (f" - {reason}" if reason else "")
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.notebook_bar is not None:
            self.notebook_bar.close()
            self.notebook_bar = None


NARROW = 110  # below this many columns the table names schedulers by their UI or short name
AXIS_TITLES = {"seed": "seed", "guidance_scale": "guidance", "prompt": "prompt", "schedule": "schedule"}

# A column of the timing table: its title, its justification, and its text for a row (schedcmp.output.report).
Column = tuple[str, str, Callable[[dict[str, Any]], str]]


def number_text(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def seconds_text(row: dict[str, Any]) -> str:
    """The median seconds, and their range over --repeat where it is one."""
    text = "" if row["seconds"] is None else f"{row['seconds']:.2f}"
    if row.get("seconds_min") is not None and row["seconds_max"] != row["seconds_min"]:
        text += f" ({row['seconds_min']:.2f}-{row['seconds_max']:.2f})"
    return text


def status_text(row: dict[str, Any], measured: bool) -> str:
    """The status, and under --reference the note on the run's distance (why it has none, what its schedule adds);
    a Flax run's note (a fix, updates never run, the alignment that explains a difference from PyTorch)."""
    notes = [row["note"]] if measured and row.get("note") else []
    notes += [row["backend_note"]] if row.get("backend_note") else []
    return row["status"] + "".join(f" ({note})" for note in notes)


def cross_text(max_abs: float | None, psnr: float | None) -> str:
    """A distance between two images in [0, 1]: max abs in 8-bit levels, and PSNR: `0.04 lv 94.2 dB`."""
    if max_abs is None:
        return ""
    return f"{max_abs * 255:.2f} lv " + ("identical" if psnr is None else f"{psnr:.1f} dB")


def agrees_text(row: dict[str, Any]) -> str:
    """Within the tolerance as diffusers' defaults compute it; else NO, and the distance once aligned."""
    if row.get("agrees") is None:
        return ""
    if row["agrees"]:
        return "yes"
    if row["aligned_max_abs"] is None:
        return "NO"
    aligned = cross_text(row["aligned_max_abs"], row["aligned_psnr"])
    return f"NO; aligned: {aligned}, {'within' if row['within'] else 'STILL BEYOND'}"


def order_text(row: dict[str, Any]) -> str:
    return f"{row['order']:.2f} ({row['order_note']})" if row["order"] is not None else row["order_note"] or ""


def repeats_text(row: dict[str, Any]) -> str:
    """Each framework's distance between two identical calls of its own, torch/flax: `0/0`."""
    if row.get("torch_repeat_max_abs") is None:
        return ""
    return f"{row['torch_repeat_max_abs']:.2g}/{row['flax_repeat_max_abs']:.2g}"


COST_COLUMNS: list[Column] = [
    ("steps", "right", lambda r: str(r["steps"])),
    ("NFE", "right", lambda r: str(r["nfe"] or "")),
    ("seconds", "right", seconds_text),
    ("compile s", "right", lambda r: number_text(r.get("compile_seconds"), ".2f")),  # a Flax group's first call
]
# --backend torch,flax: the Flax run's distance to PyTorch's from the same latents (max abs in 8-bit levels, PSNR),
# each framework's own between two identical calls, and whether they agree within the tolerance.
CROSS_COLUMNS: list[Column] = [
    ("vs torch", "right", lambda r: cross_text(r.get("cross_max_abs"), r.get("cross_psnr"))),
    ("repeats", "right", repeats_text),
    ("agrees", "left", agrees_text),
]
# Under --reference: how close each run came, in place of ms/NFE and peak memory (which stay in the CSV and JSON).
DISTANCE_COLUMNS: list[Column] = [
    ("RMSE", "right", lambda r: number_text(r["latent_rmse"], ".3g")),
    ("PSNR", "right", lambda r: number_text(r["psnr"], ".1f")),
    ("SSIM", "right", lambda r: number_text(r["ssim"], ".4f")),
    ("order", "left", order_text),
    ("Pareto", "left", lambda r: r["pareto"] or ""),
]
MACHINE_COLUMNS: list[Column] = [
    ("ms/NFE", "right", lambda r: number_text(r["ms_per_nfe"], ".1f")),
    ("peak MiB", "right", lambda r: number_text(r["peak_memory_mib"], ".0f")),
]


def timing_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """The timing table's columns for these rows: the scheduler, a column per setting a sweep varies, the costs, the
    distances (or ms/NFE and peak memory), the status; a column with nothing in it is left out."""
    from schedcmp.output.report import TOTAL, has_distances, varying_axes

    measured = has_distances(rows)
    name = "name" if error_console.width < NARROW else "scheduler"
    columns: list[Column] = [("scheduler", "left", lambda r: r[name])]
    columns += [(AXIS_TITLES[a], "left", lambda r, a=a: "" if r[a] is None else str(r[a])) for a in varying_axes(rows)]
    columns += COST_COLUMNS + CROSS_COLUMNS + (DISTANCE_COLUMNS if measured else MACHINE_COLUMNS)
    columns.append(("status", "left", lambda r: status_text(r, measured)))
    runs = [row for row in rows if row["id"] != TOTAL]
    return [c for c in columns if c[0] in ("scheduler", "status") or any(c[2](row) for row in runs)]


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The timing table, on stderr (the terminal), sorted, with its total row last (schedcmp.output.report's rows).

    Under --reference the distances take the place of ms/NFE and peak memory, which stay in the CSV and JSON.
    The settings a sweep varies get a column each; a column with nothing in it is left out.
    """
    from schedcmp.output.report import TOTAL

    columns = timing_columns(rows)
    table = Table(title=title, title_justify="left")
    for column, justify, _ in columns:
        table.add_column(
            column,
            justify=justify,
            no_wrap=column not in ("scheduler", "status", "order", "prompt", "agrees"),
            overflow="fold",
            ratio=3 if column in ("scheduler", "status") else None,
        )
    runs = [row for row in rows if row["id"] != TOTAL]
    status_colours = {Status.OK: None} | {row["status"]: status_colour(row["status"].split(":")[0]) for row in runs}
    for row in rows:
        cells = [value(row) for _, _, value in columns]
        colour = status_colours.get(row["status"]) if row["id"] != TOTAL else None
        cells[-1] = Text(cells[-1], style=colour) if colour else cells[-1]  # the shared status colours
        table.add_row(
            *cells,
            end_section=row["id"] == rows[-2]["id"] if len(rows) > 1 else False,
            style="bold" if row["id"] == TOTAL else None,
        )
    error_console.print(table)


def spread_text(median: float | None, q1: float | None, q3: float | None, spec: str) -> str:
    if median is None:
        return ""
    text = format(median, spec)
    return text if q1 is None or q1 == q3 else f"{text} ({format(q1, spec)}–{format(q3, spec)})"


def print_equal_quality(rows: list[dict[str, Any]], metric: str, title: str) -> None:
    """The equal-quality table, on stderr: each entry's steps at the target, cheapest first; medians (IQR)."""
    spec = ".1f" if metric == "psnr" else ".3g"
    table = Table(title=title, title_justify="left")
    for column in ("scheduler", "steps", "NFE", "seconds", "PSNR" if metric == "psnr" else "RMSE", "note"):
        table.add_column(column, justify="left" if column in ("scheduler", "note") else "right", overflow="fold")
    for row in rows:
        reached = row["status"] == TargetStatus.REACHED
        note = row["note"] or ("" if reached else row["status"])
        if reached and row["below_steps"]:
            note = f"{row['below_steps']} steps: {format(row[f'below_{metric}'], spec)}" + (f"; {note}" if note else "")
        table.add_row(
            row["scheduler"],
            "" if row["steps"] is None else str(row["steps"]),
            "" if row["nfe"] is None else f"{row['nfe']:g}",
            spread_text(row["seconds"], row["seconds_q1"], row["seconds_q3"], ".2f"),
            spread_text(row[metric], row[f"{metric}_q1"], row[f"{metric}_q3"], spec),
            Text(note, style=None if reached else "yellow"),
        )
    error_console.print(table)


def print_summary(found: Summary) -> None:
    """Across prompts and seeds, on stderr: per step count, each entry's median distance (IQR), seconds, rank."""
    metric = found.metric
    spec = ".1f" if metric == "psnr" else ".3g"
    title = f"across {found.pairs} prompt and seed pairs: median (IQR)" + (
        f"; {found.note}" if found.note else "; rank: 1 + entries significantly better (sign test, 5%)"
    )
    table = Table(title=title, title_justify="left")
    for column in ("steps", "scheduler", "NFE", "PSNR" if metric == "psnr" else "RMSE", "seconds", "rank"):
        table.add_column(column, justify="left" if column == "scheduler" else "right", overflow="fold")
    for group in found.step_counts:
        for number, entry in enumerate(group.entries):
            distance, seconds = entry.distance, entry.seconds
            table.add_row(
                str(group.steps) if number == 0 else "",
                entry.label,
                "" if entry.nfe is None else f"{entry.nfe:g}",
                spread_text(distance.median, distance.q1, distance.q3, spec),
                spread_text(seconds.median, seconds.q1, seconds.q3, ".2f"),
                "" if entry.rank is None else str(entry.rank),
                end_section=number == len(group.entries) - 1,
            )
    error_console.print(table)


def print_list(document: dict[str, Any]) -> None:
    """`schedcmp list` as tables on stdout."""
    console.print(f"{document['pipeline']} from {document['model']}", highlight=False, markup=False)
    console.print(f"current scheduler: {document['scheduler']['class']}", highlight=False)
    config = Table(title="its config (as pipeline.scheduler.config)", title_justify="left")
    config.add_column("key")
    config.add_column("value")
    for key, value in document["scheduler"]["config"].items():
        config.add_row(key, repr(value))
    console.print(config)
    schedulers = Table(title="compatible schedulers (the order of --schedulers all)", title_justify="left")
    for column in ("class", "UI names", "accepts"):
        schedulers.add_column(column, overflow="fold")
    for entry in document["compatible"]:
        schedulers.add_row(entry["class"], ", ".join(entry["aliases"]), ", ".join(entry["accepts"]))
    console.print(schedulers)
    aliases = Table(title="UI names (case-insensitive)", title_justify="left")
    for column in ("name", "class", "overrides"):
        aliases.add_column(column)
    for alias in document["aliases"]:
        aliases.add_row(alias["name"], alias["class"], ", ".join(f"{k}={v}" for k, v in alias["overrides"].items()))
    console.print(aliases)
    if document.get("flow"):
        flow = Table(title="on this flow-matching model, --schedulers all runs (in this order)", title_justify="left")
        for column in ("name", "runs as", "class"):
            flow.add_column(column, overflow="fold")
        for entry in document["flow"]:
            flow.add_row(entry["name"], entry["via"], entry["class"])
        console.print(flow)


def print_check(document: dict[str, Any]) -> None:
    """`schedcmp check`'s verdicts, on stderr, and a one-line summary."""
    from schedcmp.output.check_report import metric_text

    table = Table(title=f"check against {document['baseline']} ({document['tolerance_profile']})", title_justify="left")
    for column in ("case", "status", "metrics (tolerance)"):
        table.add_column(column, overflow="fold")
    counts: dict[str, int] = {}
    for case in document["cases"]:
        counts[case["status"]] = counts.get(case["status"], 0) + 1
        status = case["status"] + (" (updated)" if case.get("updated") else "")
        table.add_row(
            case["id"], f"[{status_colour(case['status'])}]{status}[/]", case.get("error") or metric_text(case)
        )
    error_console.print(table)
    info(", ".join(f"{count} {status}" for status, count in sorted(counts.items())) + f"; exit {document['exit_code']}")
