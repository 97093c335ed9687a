"""`schedcmp merge OUT DIR...`: the parts of one sweep (shards, or torchrun's rank parts) joined into one folder.

The parts must carry the same plan fingerprint, and no cell may be in two of them; what none of them holds
is missing, refused unless asked for. Everything is checked before OUT is touched. Then the images and
references are linked (or copied) into OUT, results.json lists the runs in plan order, and the finish stage
of a run (orders, Pareto fronts, sheets, report) runs on the whole: OUT is the folder one process would
have made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from schedcmp.core.errors import EXIT_OK, EXIT_RUN_FAILED, OutputError, UsageError
from schedcmp.core.records import Results, Run
from schedcmp.core.request import Request, check_output, difference
from schedcmp.sweep import placement
from schedcmp.sweep.results import (
    FolderLock,
    Outcome,
    ResultsFile,
    check_out_dir,
    claim_out_dir,
    finish,
    place_file,
    read_results,
    stored_request,
)

# How many missing or duplicate cells an error message names before it counts the rest.
NAMED = 5


@dataclass
class Part:
    folder: Path
    results: Results


@dataclass
class Joined:
    results_file: ResultsFile  # of the target folder, holding every run found
    missing: list[str]


def read_parts(folders: list[Path]) -> list[Part]:
    return [Part(Path(folder), read_results(folder, "merge")) for folder in folders]


def named(ids: list[str]) -> str:
    more = len(ids) - NAMED
    return ", ".join(ids[:NAMED]) + (f" and {more} more" if more > 0 else "")


def check_plans(parts: list[Part]) -> None:
    """Every part made by one plan, or a one-line refusal saying how they differ."""
    first = parts[0]
    for part in parts:
        if part.results.plan is None:
            raise UsageError(f"cannot merge {part.folder}: it has no plan fingerprint (made by an older schedcmp)")
    for part in parts[1:]:
        if part.results.plan.fingerprint == first.results.plan.fingerprint:
            continue
        how = "another model, reference or batching"
        if part.results.settings and first.results.settings:
            how = "; ".join(difference(stored_request(first.results), stored_request(part.results))) or how
        raise UsageError(f"{part.folder} and {first.folder} are parts of different sweeps ({how}); nothing merged")


def gather(parts: list[Part]) -> tuple[dict[str, tuple[Run, Path]], list[str]]:
    """run id -> (the run, its part's folder); refuses a cell two parts hold. -> also cells whose image is gone."""
    found: dict[str, tuple[Run, Path]] = {}
    duplicates: list[str] = []
    lost: list[str] = []
    for part in parts:
        for run in part.results.runs:
            if run.id in found:
                duplicates.append(f"{run.id} ({found[run.id][1]} and {part.folder})")
                continue
            if run.image_path and not (part.folder / run.image_path).is_file():
                lost.append(run.id)
                continue
            found[run.id] = (run, part.folder)
    if duplicates:
        raise UsageError(f"cells in more than one part: {named(duplicates)}; nothing merged")
    return found, lost


def check_parts(parts: list[Part], allow_missing: bool) -> tuple[dict[str, tuple[Run, Path]], list[str]]:
    """Every refusal, before anything is written. -> (run id -> (run, its part's folder), the missing cells)."""
    if not parts:
        raise UsageError("merge needs at least one part")
    check_plans(parts)
    cells = parts[0].results.plan.cells
    found, lost = gather(parts)
    missing = [cell for cell in cells if cell not in found]
    if missing and not allow_missing:
        raise UsageError(
            f"{len(missing)} of {len(cells)} cells are in no part: {named(missing)}"
            + (f" ({len(lost)} of them lost their image)" if lost else "")
            + "; pass --allow-missing to merge what is there"
        )
    return found, missing


def join_parts(
    target: Path, parts: list[Part], checked: tuple[dict[str, tuple[Run, Path]], list[str]], progress
) -> Joined:
    """Put every run, image and reference of the parts into `target` (already claimed); `checked` is what
    check_parts found in them. results.json is left to the finish stage."""
    found, missing = checked
    references = {}
    try:
        for run, folder in found.values():
            if run.image_path:
                place_file(folder / run.image_path, target / run.image_path)
        for part in parts:
            for reference in part.results.references:
                if reference.id in references:
                    continue
                if reference.image and (part.folder / reference.image).is_file():
                    place_file(part.folder / reference.image, target / reference.image)
                references[reference.id] = reference
    except OSError as error:
        raise OutputError(f"cannot merge into {target}: {error.strerror or error}") from None
    workers = sorted(
        (worker for part in parts for worker in part.results.workers or []),
        key=lambda worker: (worker.shard.index if worker.shard else -1, worker.rank),
    )
    header = replace(
        parts[0].results,
        started=min((part.results.started for part in parts if part.results.started), default=None),
        finished=None,
        interrupted=False,
        sheets=[],
        charts=[],
        report=None,
        references=list(references.values()),
        shard=None,
        world_size=len(workers) or None,
        workers=workers or None,
        imbalance=placement.imbalance(workers),
        exit_code=None,
        runs=[],
    )
    cells = parts[0].results.plan.cells
    results = ResultsFile(target, header, list(cells))
    for run, _ in found.values():
        results.add(replace(run, order=None, pareto=None))  # the finish stage fits them again, over every cell
    if len(workers) > 1:
        progress.note(placement.balance_line(workers, header.imbalance))
    threads = {worker.threads for worker in workers if worker.device == "cpu"}
    if len(threads) > 1:  # CPU kernels round differently with other thread counts: not the one-process pixels
        progress.note(f"warning: the parts ran on CPU with {sorted(threads)} threads; give them one --threads N")
    if missing:
        progress.note(f"warning: {len(missing)} of {len(cells)} cells are in no part: {named(missing)}")
    return Joined(results, missing)


def merge(out: Path, folders: list[Path], request: Request, allow_missing: bool, progress) -> Outcome:
    """`schedcmp merge`: -> the Outcome for OUT; its exit code is 1 when cells were missing. `request` holds the
    output settings (--x, --z, --html, --format, --strict, --overwrite)."""
    check_output(request)
    if not folders:
        raise UsageError("merge needs the folders of the parts: schedcmp merge OUT DIR_0 DIR_1 ...")
    seen: set[Path] = set()
    for folder in folders:
        if Path(folder).resolve() == Path(out).resolve():
            raise UsageError(f"OUT {out} is one of the parts; merge into a new folder")
        if Path(folder).resolve() in seen:
            raise UsageError(f"{folder} is given twice; give each part once")
        seen.add(Path(folder).resolve())
    check_out_dir(out, request.overwrite)
    parts = read_parts(folders)
    parts.sort(key=lambda part: part.results.shard.index if part.results.shard else -1)
    checked = check_parts(parts, allow_missing)  # every refusal before OUT is touched
    target = claim_out_dir(out, True, request.overwrite)
    lock = FolderLock(target).acquire()
    try:
        joined = join_parts(target, parts, checked, progress)
        images = parts[0].results.plan.images
        outcome = finish(joined.results_file, replace(request, no_sheet=not images), None, progress)
        if joined.missing and outcome.exit_code == EXIT_OK:
            outcome.exit_code = joined.results_file.results.exit_code = EXIT_RUN_FAILED
            joined.results_file.save()
        return outcome
    finally:
        lock.release()
