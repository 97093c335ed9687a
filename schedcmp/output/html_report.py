"""report.html for a comparison: one self-contained page (images as data URIs, inline CSS and script).

Pure functions from results.json (and the PNGs beside it) to text; `write_report` is the only writer.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from schedcmp.core.records import Status, status_colour
from schedcmp.output.check_report import data_uri
from schedcmp.output.report import PARETO_NAMES, label, write_atomic
from schedcmp.quality.metrics import METRICS
from schedcmp.quality.stepsearch import goal_text

REPORT_NAME = "report.html"
STOCHASTIC_NOTE = "stochastic: not ranked against the ODE reference"

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


def order_cell(order: dict[str, Any] | None) -> tuple[str, float | None]:
    """`1.96 (steps 10–40, R² 0.995)`, or why there is no fit; nothing when the run was not part of a sweep."""
    if not order:
        return "", None
    if order.get("order") is None:
        return f'<span class="note">{escape(order.get("reason") or "no fit")}</span>', None
    steps = order.get("steps") or []
    fitted = [f"steps {steps[0]}–{steps[-1]}"] if steps else []
    if order.get("r_squared") is not None:
        fitted.append(f"R² {order['r_squared']:.3f}")
    detail = f' <span class="note">({escape(", ".join(fitted))})</span>' if fitted else ""
    return f"{order['order']:.2f}{detail}", order["order"]


def pareto_costs(entry: dict[str, Any]) -> list[str]:
    """The costs ("seconds", "nfe") on whose Pareto front this run lies."""
    return [cost for cost, on_front in (entry.get("pareto") or {}).items() if on_front]


def cells(entry: dict[str, Any], folder: Path) -> dict[str, tuple[str, Any]]:
    """Each column's (inner HTML, sort value) for one run."""
    name = label(entry)
    front = pareto_costs(entry)
    badge = f' <span class="pareto">Pareto: {" · ".join(PARETO_NAMES.get(c, c) for c in front)}</span>' if front else ""
    distance = entry.get("distance") or {}
    stochastic = entry.get("determinism") == "stochastic"
    order_html, order_value = order_cell(entry.get("order"))
    status = entry["status"]
    status_html = f'<span class="status" style="background:{status_colour(status)}">{escape(status)}</span>'
    if entry.get("reason"):
        status_html += f' <span class="note">{escape(entry["reason"])}</span>'
    return {
        "image": (
            zoomable(folder, entry.get("image"), f"{name} · {entry['steps']} steps · seed {entry['seed']}"),
            None,
        ),
        "scheduler": (
            f'{escape(name)}{badge}<br><span class="note">{escape(entry["id"])}'
            f"{' · trailing spacing' if entry.get('interval') else ''}"
            f"{' · ' + escape(entry['schedule_note']) if entry.get('schedule_note') else ''}</span>",
            name,
        ),
        "steps": (number(entry.get("steps")), entry.get("steps")),
        "nfe": (number(entry.get("nfe")), entry.get("nfe")),
        "seconds": (number(entry.get("seconds")), entry.get("seconds")),
        "ms_per_nfe": (number(entry.get("ms_per_nfe")), entry.get("ms_per_nfe")),
        "latent_rmse": (
            f'<span class="note">{STOCHASTIC_NOTE}</span>'
            if stochastic
            else number(distance.get("latent_rmse"))
            if distance or not entry.get("distance_note")
            else f'<span class="note">{escape(entry["distance_note"])}</span>',
            distance.get("latent_rmse"),
        ),
        "psnr": (number(distance.get("psnr")), distance.get("psnr")),
        "ssim": (number(distance.get("ssim"), 4), distance.get("ssim")),
        "order": (order_html, order_value),
        "determinism": (escape(entry.get("determinism")), entry.get("determinism")),
        "status": (status_html, status),
    }


def table_row(entry: dict[str, Any], folder: Path) -> str:
    """One <tr> per run, carrying its id, status and fronts as data attributes for scripts and tests."""
    front = pareto_costs(entry)
    marked = ' class="pareto-row"' if front else ""
    row_cells = cells(entry, folder)
    tds = "".join(
        f'<td data-column="{key}" data-value="{escape(sort_value(row_cells[key][1]))}">{row_cells[key][0]}</td>'
        for key, _, _ in COLUMNS
    )
    return (
        f'<tr data-id="{escape(entry["id"])}" data-status="{escape(entry["status"])}" data-pareto="{" ".join(front)}"'
        f"{marked}>{tds}</tr>"
    )


def table_header() -> str:
    """Sortable headers hold a button (keyboard reachable); aria-sort says how the table is sorted now."""
    headers = []
    for key, text, kind in COLUMNS:
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


def header_items(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(term, escaped text) pairs for the page's header: what was run, where and with what."""
    runs = document["runs"]
    versions = document.get("versions") or {}
    device = " · ".join(escape(document.get(key)) for key in ("device", "dtype") if document.get(key))
    if document.get("generator_device"):
        device += f" (generator on {escape(document['generator_device'])})"
    items = [
        ("prompt", "<br>".join(escape(p) for p in distinct([r["prompt"] for r in runs]))),
        ("negative prompt", "<br>".join(escape(p) for p in distinct([r.get("negative_prompt") for r in runs]))),
        ("seed", ", ".join(escape(s) for s in distinct([r["seed"] for r in runs]))),
        ("model", escape(document.get("model"))),
        (
            "pipeline",
            f"{escape(document.get('pipeline'))} (its own scheduler: {escape(document.get('original_scheduler'))})",
        ),
        ("device", device),
        ("repeat", f"{escape(document.get('repeat'))} (seeds: {escape(document.get('seed_mode'))})"),
        ("versions", ", ".join(f"{escape(name)} {escape(version)}" for name, version in versions.items())),
        (
            "started",
            escape(document.get("started"))
            + (f" · finished {escape(document['finished'])}" if document.get("finished") else ""),
        ),
    ]
    if document.get("interrupted"):
        items.append(("interrupted", "yes: the runs below are the ones that finished"))
    return [(term, text) for term, text in items if text]


def reference_section(document: dict[str, Any], folder: Path) -> str:
    """Each reference: its image, spec, cost, whether it came from the cache and its own convergence."""
    references = document.get("references") or []
    if not references:
        return ""
    parts = []
    for reference in references:
        cost = (
            f"{number(reference.get('seconds'))} s · {number(reference.get('nfe'))} NFE"
            if reference.get("seconds") is not None
            else f"{number(reference.get('nfe'))} NFE"
        )
        lines = [
            f"<b>{escape(reference.get('label'))}</b>, {escape(reference.get('steps'))} steps "
            f"(<code>{escape(reference.get('spec'))}</code>)"
        ]
        if reference.get("status") == "failed":
            lines.append(
                f'<span class="status" style="background:{status_colour(Status.FAILED)}">failed</span> '
                f"{escape(reference.get('reason'))}: "
                "no distances were measured against it"
            )
        else:
            lines.append(cost + (" · from the cache" if reference.get("cached") else " · computed for this run"))
        convergence = reference.get("self_convergence")
        if convergence and convergence.get("latent_rmse") is not None:
            lines.append(
                f"against itself at {escape(convergence.get('half_steps'))} steps: "
                f"latent RMSE {number(convergence['latent_rmse'])} "
                "(distances much below this are noise)"
            )
        caption = f"reference {reference.get('label')} · {reference.get('steps')} steps"
        parts.append(
            f'<div class="reference" data-id="{escape(reference.get("id"))}">'
            f"{zoomable(folder, reference.get('image'), caption)}"
            f"<p>{'<br>'.join(lines)}</p></div>"
        )
    return "<h2>Reference</h2>" + "".join(parts)


def failure_section(document: dict[str, Any]) -> str:
    """Every run that is not ok, with its status and the reason."""
    failing = [entry for entry in document["runs"] if entry["status"] != "ok"]
    if not failing:
        return '<h2>Failures</h2><p id="failures">None: every run finished ok.</p>'
    items = "".join(
        f'<li data-id="{escape(e["id"])}"><b>{escape(label(e))}</b> ({escape(e["id"])}): {escape(e["status"])}: '
        f"{escape(e.get('reason') or 'no reason recorded')}</li>"
        for e in failing
    )
    return f'<h2>Failures</h2><ul id="failures">{items}</ul>'


def charts_note(document: dict[str, Any]) -> str:
    """With several references, say whose runs the charts show (their distances share no scale)."""
    references = document.get("references") or []
    if len(references) < 2:
        return ""
    first = references[0]
    return (
        f'<p class="note">The charts show the runs measured against the first of {len(references)} references '
        f"(prompt {escape(first.get('prompt'))}, seed {escape(first.get('seed'))}); the table has them all.</p>"
    )


def answer_section(document: dict[str, Any]) -> str:
    """The comparison's conclusion in words, at the top of the page."""
    lines = document.get("answer") or []
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<section id="answer"><h2>Answer</h2><ul>{items}</ul></section>'


METRIC_TITLES = {"psnr": "PSNR (dB)", "latent_rmse": "latent RMSE"}


def spread_cell(found: dict[str, Any] | None, digits: int = 3) -> str:
    if not found or found.get("median") is None:
        return ""
    text = number(found["median"], digits)
    if found.get("q1") is not None and found["q1"] != found["q3"]:
        text += f' <span class="note">({number(found["q1"], digits)}–{number(found["q3"], digits)})</span>'
    return text


def equal_quality_section(document: dict[str, Any]) -> str:
    """Each entry's steps at the target, fastest first, with the probe below it and how the search went."""
    target = document.get("target")
    if not target:
        return ""
    metric = target["metric"]
    goal = goal_text(metric, target["value"])
    rows = []
    for entry in document.get("equal_quality") or []:
        probes = ", ".join(f"{probe['steps']}: {number(probe['distance'])}" for probe in entry.get("probes") or [])
        below = (
            f"{entry['below_steps']} steps: {number(entry.get('below_distance'))}" if entry.get("below_steps") else ""
        )
        rows.append(
            f'<tr data-status="{escape(entry["status"])}"><td>{escape(entry["label"])}</td>'
            f"<td>{escape(entry['status'])}</td><td>{number(entry.get('steps'))}</td>"
            f"<td>{number(entry.get('nfe'))}</td><td>{spread_cell(entry.get('seconds'))}</td>"
            f"<td>{spread_cell(entry.get('distance'))}</td><td>{escape(below)}</td>"
            f'<td class="note">{escape(entry.get("reason") or "")}<br>'
            f"probes (steps: median): {escape(probes)}</td></tr>"
        )
    head = "".join(
        f"<th>{name}</th>"
        for name in ("scheduler", "status", "steps", "NFE", "seconds", METRIC_TITLES[metric], "one step fewer", "")
    )
    return (
        f"<h2>Equal quality: {escape(goal)}</h2>"
        f'<p class="note">Median (IQR) over the prompts and seeds; the fewest steps found by doubling then '
        f"bisection, with at most {escape(target['max_steps'])} steps. The run one step fewer does not reach "
        f"the target.</p>"
        f'<table id="equal-quality"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def distribution_svg(entries: list[dict[str, Any]], metric: str) -> str:
    """One row per scheduler entry, a dot per prompt and seed pair, the median as a bar."""
    values = [value for entry in entries for value in entry["values"].values() if math.isfinite(value)]
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
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(entry["label"])}</text>')
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#eaeef2"/>')
        for value in entry["values"].values():
            parts.append(f'<circle class="pair" cx="{x(value):.1f}" cy="{y}" r="3.5" fill="#1f6feb" opacity="0.6"/>')
        median = entry["distance"]["median"]
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
    caption = (
        METRIC_TITLES[metric]
        + (" (log scale)" if log else "")
        + f"; {METRICS[metric]} is closer"
    )
    parts.append(f'<text x="{left + width / 2}" y="{bottom + 20}" text-anchor="middle" class="tick">{caption}</text>')
    return (
        f'<svg class="distribution" width="{left + width + 20}" height="{bottom + 28}" role="img" '
        f'font-size="12" font-family="system-ui, sans-serif">{"".join(parts)}</svg>'
    )


def win_matrix(group: dict[str, Any]) -> str:
    """Row A, column B: on how many pairs A came strictly closer than B."""
    labels = [entry["label"] for entry in group["entries"]]
    head = "<th>A beats B on … pairs</th>" + "".join(f"<th>{escape(name)}</th>" for name in labels)
    rows = "".join(
        f"<tr><th>{escape(a)}</th>"
        + "".join("<td>–</td>" if a == b else f"<td>{group['wins'].get(a, {}).get(b, 0)}</td>" for b in labels)
        + "</tr>"
        for a in labels
    )
    return (
        f'<table class="wins" data-steps="{group["steps"]}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def summary_section(document: dict[str, Any]) -> str:
    """Across prompts and seeds: per step count, the distribution chart, the ranks and the win matrix."""
    found = document.get("summary")
    if not found or not found.get("step_counts"):
        return ""
    metric = found["metric"]
    note = found.get("note") or "rank: 1 + the entries significantly better (two-sided sign test at 5% on the pairs)"
    parts = [
        f'<h2>Across prompts and seeds</h2><p id="summary-note">{escape(found["pairs"])} prompt and seed pairs; '
        f"{escape(note)}. Each dot is one pair, the red bar the median.</p>"
    ]
    for group in found["step_counts"]:
        ranks = ", ".join(
            f"{escape(entry['label'])} {entry['rank']}" for entry in group["entries"] if entry.get("rank") is not None
        )
        parts.append(
            f'<section class="step-summary" data-steps="{group["steps"]}"><h3>{group["steps"]} steps</h3>'
            f"{distribution_svg(group['entries'], metric)}"
            + (f"<p>ranks: {ranks}</p>" if ranks else "")
            + f"{win_matrix(group)}</section>"
        )
    return "".join(parts)


def figures(folder: Path, names: list[str], alt: str) -> str:
    return "".join(f"<figure>{image_tag(folder, name, f'{alt} {name}', 'wide')}</figure>" for name in names)


def page(document: dict[str, Any], folder: Path) -> str:
    """The whole report.html as text."""
    folder = Path(folder)
    runs = document["runs"]
    title = distinct([r["prompt"] for r in runs])
    header = "".join(f"<dt>{escape(term)}</dt><dd>{text}</dd>" for term, text in header_items(document))
    interval = document.get("interval") or {}
    note = f'<p class="interval"><b>Schedules:</b> {escape(interval.get("note"))}</p>' if interval.get("note") else ""
    sheets = figures(folder, document.get("sheets") or [], "contact sheet")
    charts = figures(folder, document.get("charts") or [], "chart")
    counts: dict[str, int] = {}
    for entry in runs:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    summary = ", ".join(f"{n} {escape(status)}" for status, n in sorted(counts.items()))
    return PAGE.format(
        title=escape(title[0] if title else "comparison"),
        answer=answer_section(document),
        equal_quality=equal_quality_section(document),
        across=summary_section(document),
        header=header,
        references=reference_section(document, folder),
        interval=note,
        sheets=f"<h2>Contact sheet</h2>{sheets}" if sheets else "",
        summary=f"{len(runs)} runs: {summary}. Click a header to sort, a thumbnail for the full-size image.",
        head=table_header(),
        rows="\n".join(table_row(entry, folder) for entry in runs),
        charts=f"<h2>Quality against cost</h2>{charts_note(document)}{charts}" if charts else "",
        failures=failure_section(document),
    )


def write_report(folder: Path, document: dict[str, Any]) -> Path:
    """folder/report.html, written atomically; returns its path."""
    path = Path(folder) / REPORT_NAME
    write_atomic(path, page(document, folder))
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


def write_charts_and_page(folder: Path, results) -> Path:
    """The quality charts and report.html of a comparison's records; `results` names them afterwards."""
    from schedcmp.core.records import to_json
    from schedcmp.output import chart

    results.charts, results.report = chart.write_charts(folder, to_json(results)), REPORT_NAME
    return write_report(folder, to_json(results))
