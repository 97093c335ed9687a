"""Results as files and tables: results.json, CSV, Markdown. Pure functions over plain data, plus atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from schedcmp.core.names import display_label, short_name
from schedcmp.core.records import Run, RunError, Status, TimestepRange
from schedcmp.model.sample import RunResult


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: a reader sees the old file or the new, never half."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o666 & ~current_umask())  # mkstemp makes 0600; a file gets the umask's mode
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_record(result: RunResult, image: str | None, determinism: str) -> Run:
    """A finished cell as its results.json record (distances, orders and fronts are added later)."""
    spec = result.spec
    return Run(
        id=spec.id,
        scheduler=spec.scheduler,
        alias=spec.alias,
        overrides=spec.overrides,
        compatible=spec.compatible,
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        seed=spec.seed,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        call_args=spec.call_args,
        status=result.status,
        reason=result.reason,
        error=None if result.error is None else RunError(**result.error),
        nfe=result.nfe,
        seconds=result.seconds,
        seconds_all=result.seconds_all,
        denoiser_seconds=result.denoiser_seconds,
        ms_per_nfe=result.ms_per_nfe,
        peak_memory_bytes=result.peak_memory_bytes,
        timesteps=None if result.timesteps is None else TimestepRange(*result.timesteps),
        image_path=image,
        sha256=result.sha256,
        batch=spec.batch,
        batch_size=result.batch_size,
        batch_seconds=result.batch_seconds,
        determinism=determinism,
    )


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def label(entry: dict[str, Any]) -> str:
    return display_label(entry["scheduler"], entry.get("alias"), entry.get("overrides") or {})


def sorted_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fastest first; runs without a time (failed) last, in their run order."""
    timed = sorted((e for e in entries if e.get("seconds") is not None), key=lambda e: e["seconds"])
    return timed + [e for e in entries if e.get("seconds") is None]


TABLE_COLUMNS = [
    "id",
    "scheduler",
    "steps",
    "nfe",
    "seconds",
    "seconds_min",
    "seconds_max",
    "ms_per_nfe",
    "peak_memory_mib",
    "status",
]
# The settings a sweep varies besides steps: a column each where they vary, so that rows are told apart.
AXIS_COLUMNS = ["seed", "guidance_scale", "prompt"]
# With --reference: each run's distance to the converged reference, and its order of convergence.
CONVERGENCE_COLUMNS = ["latent_rmse", "psnr", "ssim", "order", "order_note", "pareto", "note"]


PARETO_NAMES = {"seconds": "time", "nfe": "NFE"}


def has_distances(rows: list[dict[str, Any]]) -> bool:
    return any(row.get(name) is not None for row in rows for name in ("latent_rmse", "order_note", "note"))


def varying_axes(rows: list[dict[str, Any]]) -> list[str]:
    """The AXIS_COLUMNS whose values differ between runs (the total row aside)."""
    runs = [row for row in rows if row["id"] != TOTAL]
    return [axis for axis in AXIS_COLUMNS if len({repr(row.get(axis)) for row in runs}) > 1]


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    columns = TABLE_COLUMNS[:2] + varying_axes(rows) + TABLE_COLUMNS[2:]
    return columns + CONVERGENCE_COLUMNS if has_distances(rows) else columns


def order_note(order: dict[str, Any] | None) -> str | None:
    """`10-40 steps` where the order was fitted, or why there is no fit; None outside a steps sweep."""
    if not order:
        return None
    if order.get("order") is None:
        return f"no fit: {order.get('reason')}"
    return f"{order['steps'][0]}-{order['steps'][1]} steps"


TOTAL = "total"  # the id of the table's last row, which sums the others


def table_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the timing table, sorted, with a final total row."""
    rows = []
    for entry in sorted_entries(entries):
        times = entry.get("seconds_all") or []
        peak = entry.get("peak_memory_bytes")
        distance = entry.get("distance") or {}
        status = entry["status"] if not entry.get("reason") else f"{entry['status']}: {entry['reason']}"
        note = entry.get("schedule_note")  # what of its distance its own schedule explains
        if entry.get("reference") and not distance and entry.get("distance_note"):  # why it has no distance
            note = "stochastic: not ranked" if entry.get("determinism") == "stochastic" else entry["distance_note"]
        rows.append(
            {
                "id": entry["id"],
                "scheduler": label(entry) + (" · trailing" if entry.get("interval") else ""),
                "name": (entry.get("alias") or short_name(entry["scheduler"]))
                + (" · trailing" if entry.get("interval") else ""),
                "seed": entry.get("seed"),
                "guidance_scale": entry.get("guidance_scale"),
                "prompt": entry.get("prompt"),
                "steps": entry["steps"],
                "nfe": entry.get("nfe"),
                "seconds": entry.get("seconds"),
                "seconds_min": min(times) if times else None,
                "seconds_max": max(times) if times else None,
                "ms_per_nfe": entry.get("ms_per_nfe"),
                "peak_memory_mib": None if peak is None else peak / 2**20,
                "status": status,
                "latent_rmse": distance.get("latent_rmse"),
                "psnr": distance.get("psnr"),
                "ssim": distance.get("ssim"),
                "order": (entry.get("order") or {}).get("order"),
                "order_note": order_note(entry.get("order")),
                "pareto": ", ".join(PARETO_NAMES[cost] for cost, on in (entry.get("pareto") or {}).items() if on)
                or None,
                "note": note,
            }
        )
    rows.append(
        {
            "id": TOTAL,
            "scheduler": f"{len(entries)} runs",
            "name": f"{len(entries)} runs",
            **{axis: None for axis in AXIS_COLUMNS},
            "steps": sum(e["steps"] for e in entries),
            "nfe": sum(e.get("nfe") or 0 for e in entries),
            "seconds": sum(e.get("seconds") or 0.0 for e in entries),
            "seconds_min": None,
            "seconds_max": None,
            "ms_per_nfe": None,
            "peak_memory_mib": None,
            "status": f"{sum(e['status'] == Status.FAILED for e in entries)} failed",
            **{column: None for column in CONVERGENCE_COLUMNS},
        }
    )
    return rows


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.3g}"  # distances to a reference are often this small
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The timing table's rows; a sum is not a run, so the total row stays out: data stays data."""
    return rows_csv([row for row in rows if row["id"] != TOTAL], table_columns(rows))


def to_markdown(rows: list[dict[str, Any]]) -> str:
    return rows_markdown(rows, table_columns(rows))


def to_html(rows: list[dict[str, Any]]) -> str:
    """The table as an HTML <table> (for Jupyter), the same columns as the CSV."""
    from html import escape

    columns = table_columns(rows)
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell(row[key]))}</td>" for key in columns) + "</tr>" for row in rows)
    return f'<table class="schedcmp"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# -- the answer: equal-quality steps and the summary across prompts and seeds ---------------------------------


def equal_quality_rows(found: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per scheduler entry, fastest at the target first (the order results.json keeps)."""
    rows = []
    for entry in found:
        seconds, distance = entry.get("seconds") or {}, entry.get("distance") or {}
        rows.append(
            {
                "scheduler": entry["label"],
                "status": entry["status"],
                "steps": entry.get("steps"),
                "nfe": entry.get("nfe"),
                "seconds": seconds.get("median"),
                "seconds_q1": seconds.get("q1"),
                "seconds_q3": seconds.get("q3"),
                metric: distance.get("median"),
                f"{metric}_q1": distance.get("q1"),
                f"{metric}_q3": distance.get("q3"),
                "below_steps": entry.get("below_steps"),
                f"below_{metric}": entry.get("below_distance"),
                "probes": len(entry.get("probes") or []),
                "non_monotone": entry.get("non_monotone"),
                "note": entry.get("reason"),
            }
        )
    return rows


def summary_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step count and scheduler entry: the distribution over the pairs, and its rank."""
    metric = found["metric"]
    rows = []
    for group in found["step_counts"]:
        for entry in group["entries"]:
            rows.append(
                {
                    "steps": group["steps"],
                    "scheduler": entry["label"],
                    "pairs": entry["pairs"],
                    "nfe": entry.get("nfe"),
                    metric: entry["distance"]["median"],
                    f"{metric}_q1": entry["distance"]["q1"],
                    f"{metric}_q3": entry["distance"]["q3"],
                    "seconds": entry["seconds"]["median"],
                    "rank": entry.get("rank"),
                }
            )
    return rows


def rows_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as CSV, in `columns` (default: the first row's keys)."""
    columns = columns if columns is not None else list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: cell(row[key]) for key in columns})
    return buffer.getvalue()


def rows_markdown(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table, in `columns` (default: the first row's keys)."""
    columns = columns if columns is not None else list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[key]).replace("|", "\\|") for key in columns) + " |")
    return "\n".join(lines) + "\n"
