"""report.html for a comparison: one self-contained page (images as data URIs, inline CSS and script).

Pure functions from the comparison's records (and the PNGs beside them) to text; `write_report` is the only writer.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from schedcmp.core.records import (
    STOCHASTIC_NOT_RANKED,
    Determinism,
    EntrySummary,
    Order,
    Reference,
    Results,
    Run,
    Spread,
    Status,
    StepSummary,
    status_colour,
)
from schedcmp.output import render
from schedcmp.output.check_report import data_uri
from schedcmp.output.report import AXIS_COLUMNS, PARETO_NAMES, pareto_costs, varying_axes, write_atomic
from schedcmp.output.report import table_row as table_row_values
from schedcmp.quality.metrics import METRICS
from schedcmp.quality.stepsearch import goal_text

REPORT_NAME = "report.html"

# (key, header text, how the column sorts: "number", "text" or None for not at all)
COLUMNS = [
    ("image", "image", None),
    ("scheduler", "scheduler", "text"),
    ("steps", "steps", "number"),
    ("nfe", "NFE", "number"),
    ("seconds", "seconds", "number"),
    ("ms_per_nfe", "ms/NFE", "number"),
    ("latent_rmse", "latent RMSE", "number"),
    ("psnr", "PSNR (dB)", "number"),
    ("ssim", "SSIM", "number"),
    ("order", "order", "number"),
    ("determinism", "determinism", "text"),
    ("status", "status", "text"),
]
# The settings a sweep varies get a column each after the scheduler's, as in the terminal's table: a run's id alone
# does not say which schedule or guidance made a thumbnail.
AXIS_HEADERS = {"seed": "seed", "guidance_scale": "guidance", "prompt": "prompt", "schedule": "schedule"}
AXIS_KINDS = {"seed": "number", "guidance_scale": "number", "prompt": "text", "schedule": "text"}


def axis_value(run: Run, axis: str) -> Any:
    return "default" if axis == "schedule" and run.schedule is None else getattr(run, axis)


def table_columns(runs: list[Run]) -> list[tuple[str, str, str | None]]:
    """COLUMNS, with a column for each axis the terminal's table shows (report.varying_axes)."""
    varying = varying_axes([table_row_values(run) for run in runs])
    return COLUMNS[:2] + [(a, AXIS_HEADERS[a], AXIS_KINDS[a]) for a in varying] + COLUMNS[2:]


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def number(value: float | int | None, digits: int = 3) -> str:
    """`digits` significant figures, integers as they are, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def sort_value(value: float | int | str | None) -> str:
    """What a cell sorts by: the number itself (JavaScript's Number() reads "Infinity"), "" when empty."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def image_tag(folder: Path, relative: str | None, alt: str, css_class: str) -> str:
    """An <img> with the PNG embedded, or a note saying the file is not there."""
    if not relative or not (folder / relative).is_file():
        return f'<span class="missing">{"no image" if not relative else "image missing: " + escape(relative)}</span>'
    return f'<img class="{css_class}" alt="{escape(alt)}" src="{data_uri(folder / relative)}">'


def zoomable(folder: Path, relative: str | None, caption: str) -> str:
    """A thumbnail that opens the image at full size in the overlay."""
    tag = image_tag(folder, relative, caption, "thumb")
    if not tag.startswith("<img"):
        return tag
    return (
        f'<button type="button" class="zoom" data-caption="{escape(caption)}" '
        f'aria-label="full size: {escape(caption)}">{tag}</button>'
    )


def order_cell(order: Order | None) -> tuple[str, float | None]:
    """`1.96 (steps 10–40, R² 0.995)`, or why there is no fit; nothing when the run was not part of a sweep."""
    if order is None:
        return "", None
    if order.order is None:
        return f'<span class="note">{escape(order.reason or "no fit")}</span>', None
    steps = order.steps or []
    fitted = [f"steps {steps[0]}–{steps[-1]}"] if steps else []
    if order.r_squared is not None:
        fitted.append(f"R² {order.r_squared:.3f}")
    detail = f' <span class="note">({escape(", ".join(fitted))})</span>' if fitted else ""
    return f"{order.order:.2f}{detail}", order.order


def cells(run: Run, folder: Path) -> dict[str, tuple[str, Any]]:
    """Each column's (inner HTML, sort value) for one run."""
    name = run.label
    distance = run.distance
    order_html, order_value = order_cell(run.order)
    schedule = f" · {run.schedule} schedule" if run.schedule else ""
    return {
        "image": (zoomable(folder, run.image_path, f"{name}{schedule} · {run.steps} steps · seed {run.seed}"), None),
        "scheduler": (scheduler_cell(run, name), name),
        "steps": (number(run.steps), run.steps),
        "nfe": (number(run.nfe), run.nfe),
        "seconds": (seconds_cell(run), run.seconds),
        "ms_per_nfe": (number(run.ms_per_nfe), run.ms_per_nfe),
        "latent_rmse": (distance_cell(run), distance.latent_rmse if distance else None),
        "psnr": (number(distance.psnr if distance else None), distance.psnr if distance else None),
        "ssim": (number(distance.ssim if distance else None, 4), distance.ssim if distance else None),
        "order": (order_html, order_value),
        "determinism": (escape(run.determinism), run.determinism),
        "status": (status_cell(run), run.status),
        **{axis: (escape(axis_value(run, axis)), axis_value(run, axis)) for axis in AXIS_COLUMNS},
    }


def seconds_cell(run: Run) -> str:
    """The seconds, and a Flax group's first call (tracing and XLA compilation) where this run made it."""
    if run.compile_seconds is None:
        return number(run.seconds)
    return f'{number(run.seconds)}<br><span class="note">first call {number(run.compile_seconds)}</span>'


def scheduler_cell(run: Run, name: str) -> str:
    """The run's name, its Pareto badge, its id and what its schedule means for its distance."""
    front = pareto_costs(run)
    badge = f' <span class="pareto">Pareto: {" · ".join(PARETO_NAMES.get(c, c) for c in front)}</span>' if front else ""
    return (
        f'{escape(name)}{badge}<br><span class="note">{escape(run.id)}'
        f"{' · trailing spacing' if run.interval else ''}"
        f"{' · ' + escape(run.schedule_note) if run.schedule_note else ''}"
        f"{' · ' + escape(run.backend_note) if run.backend_note else ''}"
        f"{' · ' + escape(render.distance_line(run)) if run.cross else ''}</span>"
    )


def distance_cell(run: Run) -> str:
    """The latent RMSE, or why there is none."""
    if run.determinism == Determinism.STOCHASTIC:
        return f'<span class="note">{STOCHASTIC_NOT_RANKED}</span>'
    if run.distance is not None or not run.distance_note:
        return number(run.distance.latent_rmse if run.distance else None)
    return f'<span class="note">{escape(run.distance_note)}</span>'


def status_cell(run: Run) -> str:
    """The status in its colour, and the reason beside it."""
    text = f'<span class="status" style="background:{status_colour(run.status)}">{escape(run.status)}</span>'
    if run.reason:
        text += f' <span class="note">{escape(run.reason)}</span>'
    return text


def table_row(run: Run, folder: Path, columns: list[tuple[str, str, str | None]]) -> str:
    """One <tr> per run, carrying its id, status and fronts as data attributes for scripts and tests."""
    front = pareto_costs(run)
    marked = ' class="pareto-row"' if front else ""
    row_cells = cells(run, folder)
    tds = "".join(
        f'<td data-column="{key}" data-value="{escape(sort_value(row_cells[key][1]))}">{row_cells[key][0]}</td>'
        for key, _, _ in columns
    )
    return (
        f'<tr data-id="{escape(run.id)}" data-status="{escape(run.status)}" data-pareto="{" ".join(front)}"'
        f"{marked}>{tds}</tr>"
    )


def table_header(columns: list[tuple[str, str, str | None]]) -> str:
    """Sortable headers hold a button (keyboard reachable); aria-sort says how the table is sorted now."""
    headers = []
    for key, text, kind in columns:
        if kind is None:
            headers.append(f'<th data-column="{key}">{escape(text)}</th>')
        else:
            headers.append(
                f'<th data-column="{key}" data-type="{kind}" aria-sort="none">'
                f'<button type="button">{escape(text)}</button></th>'
            )
    return "<tr>" + "".join(headers) + "</tr>"


def distinct(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(value for value in values if value is not None))


def header_items(results: Results) -> list[tuple[str, str]]:
    """(term, escaped text) pairs for the page's header: what was run, where and with what."""
    runs = results.runs
    device = " · ".join(escape(value) for value in (results.device, results.dtype) if value)
    if results.generator_device:
        device += f" (generator on {escape(results.generator_device)})"
    items = [
        ("prompt", "<br>".join(escape(p) for p in distinct([r.prompt for r in runs]))),
        ("negative prompt", "<br>".join(escape(p) for p in distinct([r.negative_prompt for r in runs]))),
        ("seed", ", ".join(escape(s) for s in distinct([r.seed for r in runs]))),
        ("model", escape(results.model)),
        ("pipeline", f"{escape(results.pipeline)} (its own scheduler: {escape(results.original_scheduler)})"),
        ("device", device),
        ("repeat", f"{escape(results.repeat)} (seeds: {escape(results.seed_mode)})"),
        ("versions", ", ".join(f"{escape(name)} {escape(version)}" for name, version in results.versions.items())),
        (
            "started",
            escape(results.started) + (f" · finished {escape(results.finished)}" if results.finished else ""),
        ),
    ]
    if results.interrupted:
        items.append(("interrupted", "yes: the runs below are the ones that finished"))
    return [(term, text) for term, text in items if text]


def reference_section(results: Results, folder: Path) -> str:
    """Each reference: its image, spec, cost, whether it came from the cache and its own convergence."""
    if not results.references:
        return ""
    parts = []
    for reference in results.references:
        caption = f"reference {reference.label} · {reference.steps} steps"
        parts.append(
            f'<div class="reference" data-id="{escape(reference.id)}">'
            f"{zoomable(folder, reference.image, caption)}"
            f"<p>{'<br>'.join(reference_lines(reference))}</p></div>"
        )
    return "<h2>Reference</h2>" + "".join(parts)


def reference_lines(reference: Reference) -> list[str]:
    """What a reference is, what it cost (or why it failed), and how far halving its steps moves it."""
    cost = (
        f"{number(reference.seconds)} s · {number(reference.nfe)} NFE"
        if reference.seconds is not None
        else f"{number(reference.nfe)} NFE"
    )
    lines = [
        f"<b>{escape(reference.label)}</b>, {escape(reference.steps)} steps (<code>{escape(reference.spec)}</code>)"
    ]
    if reference.status == Status.FAILED:
        lines.append(
            f'<span class="status" style="background:{status_colour(Status.FAILED)}">failed</span> '
            f"{escape(reference.reason)}: "
            "no distances were measured against it"
        )
    else:
        lines.append(cost + (" · from the cache" if reference.cached else " · computed for this run"))
    convergence = reference.self_convergence
    if convergence and convergence.latent_rmse is not None:
        lines.append(
            f"against itself at {escape(convergence.half_steps)} steps: "
            f"latent RMSE {number(convergence.latent_rmse)} "
            "(distances much below this are noise)"
        )
    return lines


def failure_section(results: Results) -> str:
    """Every run that is not ok, with its status and the reason."""
    failing = [run for run in results.runs if run.status != Status.OK]
    if not failing:
        return '<h2>Failures</h2><p id="failures">None: every run finished ok.</p>'
    items = "".join(
        f'<li data-id="{escape(run.id)}"><b>{escape(run.label)}</b> ({escape(run.id)}): {escape(run.status)}: '
        f"{escape(run.reason or 'no reason recorded')}</li>"
        for run in failing
    )
    return f'<h2>Failures</h2><ul id="failures">{items}</ul>'


def charts_note(results: Results) -> str:
    """With several references, say whose runs the charts show (their distances share no scale)."""
    references = results.references
    if len(references) < 2:
        return ""
    first = references[0]
    return (
        f'<p class="note">The charts show the runs measured against the first of {len(references)} references '
        f"(prompt {escape(first.prompt)}, seed {escape(first.seed)}); the table has them all.</p>"
    )


def answer_section(results: Results) -> str:
    """The comparison's conclusion in words, at the top of the page."""
    lines = results.answer or []
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<section id="answer"><h2>Answer</h2><ul>{items}</ul></section>'


METRIC_TITLES = {"psnr": "PSNR (dB)", "latent_rmse": "latent RMSE"}


def spread_cell(found: Spread | None, digits: int = 3) -> str:
    if found is None or found.median is None:
        return ""
    text = number(found.median, digits)
    if found.q1 is not None and found.q1 != found.q3:
        text += f' <span class="note">({number(found.q1, digits)}–{number(found.q3, digits)})</span>'
    return text


def equal_quality_section(results: Results) -> str:
    """Each entry's steps at the target, cheapest first, with the probe below it and how the search went."""
    target = results.target
    if not target:
        return ""
    goal = goal_text(target.metric, target.value)
    rows = []
    for entry in results.equal_quality or []:
        probes = ", ".join(f"{probe.steps}: {number(probe.distance)}" for probe in entry.probes)
        below = f"{entry.below_steps} steps: {number(entry.below_distance)}" if entry.below_steps else ""
        rows.append(
            f'<tr data-status="{escape(entry.status)}"><td>{escape(entry.label)}</td>'
            f"<td>{escape(entry.status)}</td><td>{number(entry.steps)}</td>"
            f"<td>{number(entry.nfe)}</td><td>{spread_cell(entry.seconds)}</td>"
            f"<td>{spread_cell(entry.distance)}</td><td>{escape(below)}</td>"
            f'<td class="note">{escape(entry.reason or "")}<br>'
            f"probes (steps: median): {escape(probes)}</td></tr>"
        )
    titles = ("scheduler", "status", "steps", "NFE", "seconds", METRIC_TITLES[target.metric], "one step fewer", "")
    head = "".join(f"<th>{name}</th>" for name in titles)
    return (
        f"<h2>Equal quality: {escape(goal)}</h2>"
        f'<p class="note">Median (IQR) over the prompts and seeds; the fewest steps found by doubling then '
        f"bisection, with at most {escape(target.max_steps)} steps. The run one step fewer does not reach "
        f"the target. Cheapest first: by seconds where they differ beyond their timing noise, else by model calls, "
        f"then by distance.</p>"
        f'<table id="equal-quality"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def distribution_svg(entries: list[EntrySummary], metric: str) -> str:
    """One row per scheduler entry, a dot per prompt and seed pair, the median as a bar."""
    values = [value for entry in entries for value in entry.values.values() if math.isfinite(value)]
    if not values:
        return ""
    log = metric == "latent_rmse" and min(values) > 0 and max(values) / min(values) > 20
    scale = math.log10 if log else (lambda v: v)
    low, high = scale(min(values)), scale(max(values))
    if high == low:
        low, high = low - 1, high + 1
    left, width, row = 190, 420, 22

    def x(value: float) -> float:
        value = min(max(value, min(values)), max(values))  # inf (equal to the reference) drawn at the edge
        return left + (scale(value) - low) / (high - low) * width

    parts = []
    for index, entry in enumerate(entries):
        y = 14 + index * row
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(entry.label)}</text>')
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#eaeef2"/>')
        for value in entry.values.values():
            parts.append(f'<circle class="pair" cx="{x(value):.1f}" cy="{y}" r="3.5" fill="#1f6feb" opacity="0.6"/>')
        median = entry.distance.median
        if median is not None:
            parts.append(
                f'<line class="median" x1="{x(median):.1f}" y1="{y - 8}" x2="{x(median):.1f}" y2="{y + 8}" '
                'stroke="#cf222e" stroke-width="3"/>'
            )
    bottom = 14 + len(entries) * row
    for value, anchor in ((min(values), "start"), (max(values), "end")):
        parts.append(
            f'<text x="{x(value):.1f}" y="{bottom + 4}" text-anchor="{anchor}" class="tick">{number(value)}</text>'
        )
    caption = METRIC_TITLES[metric] + (" (log scale)" if log else "") + f"; {METRICS[metric]} is closer"
    parts.append(f'<text x="{left + width / 2}" y="{bottom + 20}" text-anchor="middle" class="tick">{caption}</text>')
    return (
        f'<svg class="distribution" width="{left + width + 20}" height="{bottom + 28}" role="img" '
        f'font-size="12" font-family="system-ui, sans-serif">{"".join(parts)}</svg>'
    )


# One colour per line of the σ chart, cycled (the legend names each).
LINE_COLOURS = ["#1f6feb", "#cf222e", "#1a7f37", "#bc4c00", "#8250df", "#0a7d7d", "#bf3989", "#57606a", "#9a6700"]


def schedule_lines(runs: list[Run]) -> list[tuple[str, list[float]]]:
    """(label, σ per step) once for each scheduler × schedule × steps the runs used: what each schedule is."""
    lines: dict[str, list[float]] = {}
    for run in runs:
        if run.sigmas:
            label = run.label + (f" · {run.schedule}" if run.schedule else "") + f" · {run.steps} steps"
            # Heun-like schedulers hold each σ twice (two model calls a step): one point per step
            steps = [value for index, value in enumerate(run.sigmas) if index == 0 or value != run.sigmas[index - 1]]
            lines.setdefault(label, steps)
    return list(lines.items())


def schedule_svg(lines: list[tuple[str, list[float]]]) -> str:
    """σ against the step, one line per scheduler × schedule: a log scale where σ spans more than 30×, with the
    last σ (0) left out of a log scale; a legend under the plot."""
    positive = [value for _, sigmas in lines for value in sigmas if value > 0]
    if not positive:
        return ""
    log = max(positive) / min(positive) > 30
    scale = math.log10 if log else (lambda v: v)
    low, high = (scale(min(positive)), scale(max(positive))) if log else (0.0, max(positive))
    left, top, width, height = 50, 10, 520, 220
    parts = [f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#d0d7de"/>']
    for index, (label, sigmas) in enumerate(lines):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        dashes = "" if index < len(LINE_COLOURS) else ' stroke-dasharray="5 3"'  # a second round of colours
        across, up = width / max(len(sigmas) - 1, 1), height / (high - low or 1)  # each run from its start to its end
        points = [
            f"{left + step * across:.1f},{top + height - (scale(v) - low) * up:.1f}"
            for step, v in enumerate(sigmas)
            if v > 0 or not log
        ]
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="1.5"{dashes}/>'
        )
        legend_y = top + height + 34 + 16 * index
        parts.append(
            f'<line x1="{left}" y1="{legend_y - 4}" x2="{left + 18}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="3"{dashes}/>'
        )
        parts.append(f'<text x="{left + 24}" y="{legend_y}">{escape(label)}</text>')
    for value, y in ((max(positive), top + 4), (min(positive) if log else 0.0, top + height)):
        parts.append(f'<text x="{left - 4}" y="{y}" text-anchor="end" class="tick">{number(value)}</text>')
    caption = f"σ at each step, first to last{' (log scale; the final σ = 0 not drawn)' if log else ''}"
    parts.append(
        f'<text x="{left + width / 2}" y="{top + height + 16}" text-anchor="middle" class="tick">{caption}</text>'
    )
    total = top + height + 34 + 16 * len(lines)
    return (
        f'<svg class="schedules" width="{left + width + 20}" height="{total}" role="img" '
        f'font-size="12" font-family="system-ui, sans-serif">{"".join(parts)}</svg>'
    )


def schedule_section(results: Results) -> str:
    """What each run's schedule is, before its distances: σ per step, one line per scheduler × schedule."""
    svg = schedule_svg(schedule_lines(results.runs))
    return (
        f"<h2>Schedules</h2><p>The noise level σ at each step of each scheduler and schedule.</p>{svg}" if svg else ""
    )


def win_matrix(group: StepSummary) -> str:
    """Row A, column B: on how many pairs A came strictly closer than B."""
    labels = [entry.label for entry in group.entries]
    head = "<th>A beats B on … pairs</th>" + "".join(f"<th>{escape(name)}</th>" for name in labels)
    rows = "".join(
        f"<tr><th>{escape(a)}</th>"
        + "".join("<td>–</td>" if a == b else f"<td>{group.wins.get(a, {}).get(b, 0)}</td>" for b in labels)
        + "</tr>"
        for a in labels
    )
    return f'<table class="wins" data-steps="{group.steps}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def summary_section(results: Results) -> str:
    """Across prompts and seeds: per step count, the distribution chart, the ranks and the win matrix."""
    found = results.summary
    if not found or not found.step_counts:
        return ""
    note = found.note or "rank: 1 + the entries significantly better (two-sided sign test at 5% on the pairs)"
    parts = [
        f'<h2>Across prompts and seeds</h2><p id="summary-note">{escape(found.pairs)} prompt and seed pairs; '
        f"{escape(note)}. Each dot is one pair, the red bar the median.</p>"
    ]
    for group in found.step_counts:
        ranks = ", ".join(f"{escape(entry.label)} {entry.rank}" for entry in group.entries if entry.rank is not None)
        parts.append(
            f'<section class="step-summary" data-steps="{group.steps}"><h3>{group.steps} steps</h3>'
            f"{distribution_svg(group.entries, found.metric)}"
            + (f"<p>ranks: {ranks}</p>" if ranks else "")
            + f"{win_matrix(group)}</section>"
        )
    return "".join(parts)


def figures(folder: Path, names: list[str], alt: str) -> str:
    return "".join(f"<figure>{image_tag(folder, name, f'{alt} {name}', 'wide')}</figure>" for name in names)


def page(results: Results, folder: Path) -> str:
    """The whole report.html as text."""
    folder = Path(folder)
    runs = results.runs
    title = distinct([run.prompt for run in runs])
    header = "".join(f"<dt>{escape(term)}</dt><dd>{text}</dd>" for term, text in header_items(results))
    interval = results.interval
    note = f'<p class="interval"><b>Schedules:</b> {escape(interval.note)}</p>' if interval and interval.note else ""
    sheets = figures(folder, results.sheets, "contact sheet")
    charts = figures(folder, results.charts, "chart")
    columns = table_columns(runs)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    summary = ", ".join(f"{n} {escape(status)}" for status, n in sorted(counts.items()))
    return PAGE.format(
        title=escape(title[0] if title else "comparison"),
        answer=answer_section(results),
        equal_quality=equal_quality_section(results),
        across=summary_section(results),
        header=header,
        references=reference_section(results, folder),
        interval=note,
        sheets=(f"<h2>Contact sheet</h2>{sheets}" if sheets else "") + schedule_section(results),
        summary=f"{len(runs)} run{'s' * (len(runs) != 1)}: {summary}. Click a header to sort, a thumbnail for the "
        "full-size image.",
        head=table_header(columns),
        rows="\n".join(table_row(run, folder, columns) for run in runs),
        charts=f"<h2>Quality against cost</h2>{charts_note(results)}{charts}" if charts else "",
        failures=failure_section(results),
    )


def write_report(folder: Path, results: Results) -> Path:
    """folder/report.html, written atomically; returns its path."""
    path = Path(folder) / REPORT_NAME
    write_atomic(path, page(results, folder))
    return path


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>schedcmp: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }}
dt {{ font-weight: bold; }} dd {{ margin: 0; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: middle; }}
th button {{ font: inherit; font-weight: bold; border: 0; background: none; cursor: pointer; padding: 0; }}
th[aria-sort="ascending"] button::after {{ content: " ▲"; }}
th[aria-sort="descending"] button::after {{ content: " ▼"; }}
td[data-column="steps"], td[data-column="nfe"], td[data-column="seconds"], td[data-column="ms_per_nfe"],
td[data-column="latent_rmse"], td[data-column="psnr"], td[data-column="ssim"] {{ text-align: right; }}
tr.pareto-row {{ background: #ddf4ff; }}
td[data-column="order"] {{ min-width: 9em; }}
.pareto {{ font-size: 12px; color: white; background: #1f6feb; padding: 0 5px; border-radius: 4px; }}
.status {{ font-weight: bold; color: white; padding: 1px 6px; border-radius: 4px; }}
.note {{ color: #57606a; font-size: 12px; }}
.missing {{ color: #cf222e; font-size: 12px; }}
.zoom {{ border: 0; padding: 0; background: none; cursor: zoom-in; }}
img.thumb {{ width: 64px; display: block; }}
img.wide {{ max-width: 100%; }}
figure {{ margin: 0 0 1em 0; }}
.reference {{ display: flex; gap: 12px; align-items: center; }}
.interval {{ background: #fff8c5; padding: 6px 10px; border-radius: 6px; }}
#answer {{ background: #dafbe1; padding: 4px 12px; border-radius: 6px; }}
table.wins td {{ text-align: right; }}
svg .tick {{ fill: #57606a; }}
#overlay {{ position: fixed; inset: 0; background: rgba(0, 0, 0, 0.8); display: flex; align-items: center;
  justify-content: center; flex-direction: column; cursor: zoom-out; }}
#overlay[hidden] {{ display: none; }}
#overlay img {{ max-width: 95vw; max-height: 88vh; background: white; }}
#overlay p {{ color: white; }}
</style></head>
<body>
<h1>schedcmp: {title}</h1>
{answer}
<dl>{header}</dl>
{references}
{interval}
{equal_quality}
{sheets}
<h2>Runs</h2>
<p>{summary}</p>
<table id="runs"><thead>{head}</thead>
<tbody>
{rows}
</tbody></table>
{charts}
{across}
{failures}
<div id="overlay" hidden role="dialog" aria-modal="true" aria-label="full-size image">
<img id="overlay-image" alt=""><p id="overlay-caption"></p></div>
<script>
// Count the images that really decoded, so a browser test can tell a page that shows them.
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.querySelectorAll("img[src]"));
  var shown = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-shown", String(shown));
  document.body.setAttribute("data-images-total", String(images.length));
}});

// Sort by a column: numbers as numbers, empty cells last whichever the direction; a second click reverses.
function sortBy(header) {{
  var body = document.querySelector("#runs tbody");
  var column = header.getAttribute("data-column");
  var numeric = header.getAttribute("data-type") === "number";
  var ascending = header.getAttribute("aria-sort") !== "ascending";
  var rows = Array.prototype.slice.call(body.rows);
  var value = function (row) {{
    return row.querySelector('td[data-column="' + column + '"]').getAttribute("data-value");
  }};
  rows.forEach(function (row, index) {{ row.sortIndex = index; }});
  rows.sort(function (a, b) {{
    var x = value(a), y = value(b);
    if (x === "" || y === "") {{ return (x === "") - (y === "") || a.sortIndex - b.sortIndex; }}
    var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return (ascending ? order : -order) || a.sortIndex - b.sortIndex;
  }});
  rows.forEach(function (row) {{ body.appendChild(row); }});
  document.querySelectorAll("#runs th[aria-sort]").forEach(function (other) {{
    other.setAttribute("aria-sort", "none");
  }});
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}}
document.querySelectorAll("#runs th[aria-sort] button").forEach(function (button) {{
  button.addEventListener("click", function () {{ sortBy(button.parentElement); }});
}});

// A thumbnail opens its image at its natural size; Escape or a click anywhere closes it.
var overlay = document.getElementById("overlay");
document.querySelectorAll("button.zoom").forEach(function (button) {{
  button.addEventListener("click", function () {{
    document.getElementById("overlay-image").src = button.querySelector("img").src;
    document.getElementById("overlay-caption").textContent = button.getAttribute("data-caption");
    overlay.hidden = false;
  }});
}});
overlay.addEventListener("click", function () {{ overlay.hidden = true; }});
document.addEventListener("keydown", function (event) {{ if (event.key === "Escape") {{ overlay.hidden = true; }} }});
</script>
</body></html>
"""


def write_charts_and_page(folder: Path, results: Results) -> Path:
    """The quality charts and report.html of a comparison's records; `results` names them afterwards."""
    from schedcmp.output import chart

    results.charts, results.report = chart.write_charts(folder, results), REPORT_NAME
    return write_report(folder, results)
