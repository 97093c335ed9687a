"""Results as files and tables: results.json, CSV, Markdown. Pure functions from the records to rows of plain data,
plus atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from schedcmp.core.names import short_name
from schedcmp.core.records import (
    STOCHASTIC_NOT_RANKED,
    Backend,
    CrossFramework,
    Determinism,
    EqualQuality,
    Order,
    Run,
    RunError,
    Spread,
    Status,
    Summary,
    TimestepRange,
)
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
        **spec.record_settings(),
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
        sigmas=result.sigmas,
    )


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def sorted_runs(runs: list[Run]) -> list[Run]:
    """Fastest first; runs without a time (failed) last, in their run order."""
    timed = sorted((run for run in runs if run.seconds is not None), key=lambda run: run.seconds)
    return timed + [run for run in runs if run.seconds is None]


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
AXIS_COLUMNS = ["seed", "guidance_scale", "prompt", "schedule"]
# With --reference: each run's distance to the converged reference, and its order of convergence.
CONVERGENCE_COLUMNS = ["latent_rmse", "psnr", "ssim", "order", "order_note", "pareto", "note"]
# --backend flax: the framework, and a Flax run's first call (tracing, XLA compilation and one run); what explains a
# Flax run beyond the scheduler's maths (a fix, updates never run, an alignment with PyTorch).
BACKEND_COLUMNS = ["backend", "compile_seconds", "backend_note"]
# --backend torch,flax: the distance to the same scheduler in PyTorch from the same latents, each framework's own
# run-to-run distance, and whether they agree within the tolerance (as diffusers' defaults, and once aligned).
CROSS_COLUMNS = [
    "cross_max_abs",
    "cross_psnr",
    "torch_repeat_max_abs",
    "flax_repeat_max_abs",
    "tolerance_max_abs",
    "tolerance_psnr",
    "agrees",
    "aligned_max_abs",
    "aligned_psnr",
    "within",
]


PARETO_NAMES = {"seconds": "time", "nfe": "NFE"}


def pareto_costs(run: Run) -> list[str]:
    """The costs ("seconds", "nfe") on whose Pareto front this run lies."""
    return [cost for cost in PARETO_NAMES if run.pareto is not None and getattr(run.pareto, cost)]


def has_distances(rows: list[dict[str, Any]]) -> bool:
    return any(row.get(name) is not None for row in rows for name in ("latent_rmse", "order_note", "note"))


def varying_axes(rows: list[dict[str, Any]]) -> list[str]:
    """The AXIS_COLUMNS whose values differ between runs (the total row aside), and the schedule wherever one is
    not the schedulers' own: `--schedule karras` alone changes every run, and the table must say so."""
    runs = [row for row in rows if row["id"] != TOTAL]
    return [
        axis
        for axis in AXIS_COLUMNS
        if len({repr(row.get(axis)) for row in runs}) > 1
        or (axis == "schedule" and any(row.get(axis) not in (None, "default") for row in runs))
    ]


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    columns = TABLE_COLUMNS[:2] + varying_axes(rows) + TABLE_COLUMNS[2:]
    if any(row.get("backend") not in (None, Backend.TORCH) for row in rows):
        columns += BACKEND_COLUMNS
    if any(row.get("cross_max_abs") is not None for row in rows):
        columns += CROSS_COLUMNS
    return columns + CONVERGENCE_COLUMNS if has_distances(rows) else columns


def order_note(order: Order | None) -> str | None:
    """`10-40 steps` where the order was fitted, or why there is no fit; None outside a steps sweep."""
    if order is None:
        return None
    if order.order is None:
        return f"no fit: {order.reason}"
    return f"{order.steps[0]}-{order.steps[1]} steps"


TOTAL = "total"  # the id of the table's last row, which sums the others


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows of the timing table, sorted, with a final total row."""
    return [table_row(run) for run in sorted_runs(runs)] + [total_row(runs)]


def short_label(run: Run) -> str:
    """The name a narrow table gives a run: its UI name or short class name (`Flax Euler` for a Flax run's UI name)."""
    if run.alias and run.backend == Backend.FLAX:
        return f"Flax {run.alias}"
    return run.alias or short_name(run.scheduler)


def table_row(run: Run) -> dict[str, Any]:
    times = run.seconds_all
    distance = run.distance
    status = str(run.status) if not run.reason else f"{run.status}: {run.reason}"
    note = run.schedule_note  # what of its distance its own schedule explains
    if run.reference and not distance and run.distance_note:  # why it has no distance
        note = STOCHASTIC_NOT_RANKED if run.determinism == Determinism.STOCHASTIC else run.distance_note
    trailing = " · trailing" if run.interval else ""
    return {
        "id": run.id,
        "scheduler": run.label + trailing,
        "name": short_label(run) + trailing,
        "seed": run.seed,
        "guidance_scale": run.guidance_scale,
        "prompt": run.prompt,
        "schedule": run.schedule or "default",
        "steps": run.steps,
        "nfe": run.nfe,
        "seconds": run.seconds,
        "seconds_min": min(times) if times else None,
        "seconds_max": max(times) if times else None,
        "ms_per_nfe": run.ms_per_nfe,
        "peak_memory_mib": None if run.peak_memory_bytes is None else run.peak_memory_bytes / 2**20,
        "status": status,
        "latent_rmse": distance.latent_rmse if distance else None,
        "psnr": distance.psnr if distance else None,
        "ssim": distance.ssim if distance else None,
        "order": run.order.order if run.order else None,
        "order_note": order_note(run.order),
        "pareto": ", ".join(PARETO_NAMES[cost] for cost in pareto_costs(run)) or None,
        "note": note,
        "backend": str(run.backend or Backend.TORCH),
        "compile_seconds": run.compile_seconds,
        "backend_note": backend_note(run),
        **cross_cells(run.cross),
    }


def cross_cells(cross: CrossFramework | None) -> dict[str, Any]:
    """The CROSS_COLUMNS of a run: its distance to PyTorch (torch,flax), or nothing."""
    if cross is None:
        return {column: None for column in CROSS_COLUMNS}
    return {
        "cross_max_abs": cross.max_abs,
        "cross_psnr": cross.psnr,
        "torch_repeat_max_abs": cross.torch_repeat_max_abs,
        "flax_repeat_max_abs": cross.flax_repeat_max_abs,
        "tolerance_max_abs": cross.tolerance_max_abs,
        "tolerance_psnr": cross.tolerance_psnr,
        "agrees": cross.agrees,
        "aligned_max_abs": cross.aligned_max_abs,
        "aligned_psnr": cross.aligned_psnr,
        "within": cross.within,
    }


def backend_note(run: Run) -> str | None:
    """What explains a Flax run beyond the scheduler's maths, and, where the frameworks disagree by diffusers'
    defaults, the alignment that explains it (or that none does)."""
    notes = [run.backend_note] if run.backend_note else []
    cross = run.cross
    if cross is not None and not cross.agrees:
        if cross.within:
            notes.append(f"within once aligned: {cross.alignment}")
        else:
            notes.append(f"beyond even aligned: {cross.alignment}" if cross.alignment else "no known alignment")
    return "; ".join(notes) or None


def total_row(runs: list[Run]) -> dict[str, Any]:
    """The table's last row: how many runs, and their steps, NFE and seconds summed."""
    return {
        "id": TOTAL,
        "scheduler": f"{len(runs)} run{'s' * (len(runs) != 1)}",
        "name": f"{len(runs)} run{'s' * (len(runs) != 1)}",
        **{axis: None for axis in AXIS_COLUMNS},
        "steps": sum(run.steps for run in runs),
        "nfe": sum(run.nfe or 0 for run in runs),
        "seconds": sum(run.seconds or 0.0 for run in runs),
        "seconds_min": None,
        "seconds_max": None,
        "ms_per_nfe": None,
        "peak_memory_mib": None,
        "status": f"{sum(run.status == Status.FAILED for run in runs)} failed",
        **{column: None for column in CONVERGENCE_COLUMNS + BACKEND_COLUMNS + CROSS_COLUMNS},
        "compile_seconds": sum_of([run.compile_seconds for run in runs]),
    }


def sum_of(values: list[float | None]) -> float | None:
    """The sum of the values given; None where none is."""
    given = [value for value in values if value is not None]
    return sum(given) if given else None


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


def equal_quality_rows(found: list[EqualQuality], metric: str) -> list[dict[str, Any]]:
    """One row per scheduler entry, cheapest at the target first (the order results.json keeps)."""
    rows = []
    for entry in found:
        seconds, distance = entry.seconds or Spread(), entry.distance or Spread()
        rows.append(
            {
                "scheduler": entry.label,
                "status": str(entry.status),
                "steps": entry.steps,
                "nfe": entry.nfe,
                "seconds": seconds.median,
                "seconds_q1": seconds.q1,
                "seconds_q3": seconds.q3,
                metric: distance.median,
                f"{metric}_q1": distance.q1,
                f"{metric}_q3": distance.q3,
                "below_steps": entry.below_steps,
                f"below_{metric}": entry.below_distance,
                "probes": len(entry.probes),
                "non_monotone": entry.non_monotone,
                "note": entry.reason,
            }
        )
    return rows


def summary_rows(found: Summary) -> list[dict[str, Any]]:
    """One row per step count and scheduler entry: the distribution over the pairs, and its rank."""
    metric = found.metric
    rows = []
    for group in found.step_counts:
        for entry in group.entries:
            rows.append(
                {
                    "steps": group.steps,
                    "scheduler": entry.label,
                    "pairs": entry.pairs,
                    "nfe": entry.nfe,
                    metric: entry.distance.median,
                    f"{metric}_q1": entry.distance.q1,
                    f"{metric}_q3": entry.distance.q3,
                    "seconds": entry.seconds.median,
                    "rank": entry.rank,
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
