"""A comparison's results folder: results.json (its one owner and its one reader), the folder's claim, a resumed
folder's verified cells, the parts torchrun ranks leave, and the finish stage that writes the sheets, charts
and page from the records.

The engine (schedcmp.sweep.engine) fills a ResultsFile batch by batch; `schedcmp merge` (schedcmp.scale.merge)
fills one from parts. Both end with `finish`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from schedcmp.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_TERMINATED,
    OutputError,
    Terminated,
)
from schedcmp.core.plan import RUN_SETTINGS, RunSpec, slug
from schedcmp.core.records import (
    DocumentError,
    Results,
    Run,
    Status,
    TargetStatus,
    dumps,
    load_document,
    now,
    read_document,
    to_json,
)
from schedcmp.core.request import Request, merge, stored_values
from schedcmp.output import html_report, render, report
from schedcmp.quality import convergence, summary, targets

RANKS_FOLDER = "ranks"  # DIR/ranks/rank-K/: each torchrun rank's part; DIR/ranks/references/: rank 0's references


@dataclass
class Outcome:
    results: Results
    out_dir: Path
    sheets: list[Path]
    exit_code: int
    model: Any = None  # the LoadedModel the runs used
    stopped: BaseException | None = None  # Ctrl-C or SIGTERM ended it early: what finished is written
    part: bool = False  # a torchrun rank other than 0: its part of the folder, which rank 0 reports

    @property
    def document(self) -> dict[str, Any]:
        """The results.json document, as written."""
        return to_json(self.results)

    @property
    def sheet(self) -> Path | None:
        return self.sheets[0] if self.sheets else None


class ResultsFile:
    """The one owner of a comparison's results.json: its header and its finished cells, in plan order."""

    def __init__(self, folder: Path, results: Results, order: list[str], lock: "FolderLock | None" = None):
        self.folder = folder
        self.results = results
        self.order = order
        self.runs: dict[str, Run] = {}
        self.lock = lock  # held from the claim to the last save: no other schedcmp writes here meanwhile

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def add(self, run: Run) -> None:
        self.runs[run.id] = run

    def finished(self) -> list[Run]:
        return [self.runs[cell] for cell in self.order if cell in self.runs]

    def save(self) -> None:
        """Write results.json atomically."""
        self.results.runs = self.finished()
        report.write_atomic(self.folder / "results.json", dumps(self.results))


def read_results(folder: Path, doing: str) -> Results:
    """A run folder's results.json as its record: the one reader, with one wording for each way it can fail.
    `doing` says what for, as in "cannot {doing} {folder}: ..." ("resume from", "merge", "load")."""
    path = Path(folder) / "results.json"
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputError(f"cannot {doing} {folder}: its results.json is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise OutputError(f"cannot {doing} {folder}: its results.json cannot be read ({why})") from None
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as error:
        raise OutputError(f"cannot {doing} {folder}: its results.json is not valid JSON ({error})") from None
    try:
        return load_document(parsed, "run")
    except DocumentError as error:
        raise OutputError(f"cannot {doing} {folder}: its results.json is not a run's results ({error})") from None


def stored_source(results: Results) -> dict[str, Any]:
    """The settings a results folder was made with, as a merge source (schedcmp.core.request.merge)."""
    header = {
        "model": results.model_source,
        "model_config": results.model_config,
        "reference_spec": results.reference_spec,
        "shard": results.shard,
    }
    return stored_values(results.settings or {}, header)


def stored_request(results: Results) -> Request:
    """The request a results folder was made with, from its stored settings."""
    return merge(stored_source(results))


# -- claiming the folder -----------------------------------------------------------------------------------------

LOCK = ".schedcmp.lock"  # in an output folder while a schedcmp writes into it: who that is


class FolderLock:
    """An output folder in use: an exclusive lock on DIR/.schedcmp.lock, held while a run, a resume or a merge
    writes into DIR, and the file removed when it is done. The kernel drops the lock when the process ends,
    however it ends (kill -9 included), so a crashed run leaves no lock behind, only the file, which the next
    schedcmp in DIR takes over."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.handle = None

    def acquire(self) -> "FolderLock":
        import fcntl

        path = self.folder / LOCK
        while True:
            handle = open(path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise in_use(self.folder, holder) from None
            # The holder before us may have removed the file between our open and our lock: lock the one there.
            if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            (self.folder / LOCK).unlink(missing_ok=True)  # while still held: no one can lock it in between
            self.handle.close()  # closing the file drops the lock
            self.handle = None


def in_use(folder: Path, holder: str) -> OutputError:
    return OutputError(
        f"output folder {folder} is in use by another schedcmp ({holder}); "
        "wait for it to finish, or choose another --out"
    )


def check_not_in_use(folder: Path) -> None:
    """Refuse, before the model loads, a folder another schedcmp is writing into (a lock file no one holds, left
    by a crashed run, stays for the run that claims the folder)."""
    import fcntl

    path = Path(folder) / LOCK
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = handle.read().strip() or "another process"
            raise in_use(folder, holder) from None


def default_out_dir(prompt: str) -> Path:
    """./schedcmp-runs/<timestamp>-<prompt>: not created here; claim_out_dir makes it unique."""
    return Path("schedcmp-runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{slug(prompt)}"


def out_dir_of(request: Request) -> Path:
    return request.out or default_out_dir(request.prompt[0] if request.prompt else "")


def check_out_dir(path: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot be used, before any model is loaded and without creating anything."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is a file, not a folder")
    if path.is_dir() and any(entry.name != LOCK for entry in path.iterdir()) and not overwrite:
        raise OutputError(
            f"output folder {path} is not empty; pass --overwrite (compare(): overwrite=True) or choose another folder"
        )
    if path.is_dir():
        check_not_in_use(path)
    check_writable(path, "--out", folder=True)


def check_writable(path: Path, flag: str, folder: bool) -> None:
    """Refuse, before any work, a place that cannot be written: a file where a folder is wanted (or the other way),
    a path through a file, a folder that does not let us write. Its nearest existing folder is tried with a
    file made and removed at once: nothing is left behind."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise OutputError(
            f"{flag} {path} is a {'folder' if path.is_dir() else 'file'}, not a {'folder' if folder else 'file'}"
        )
    start = path if folder else path.parent
    existing = next(place for place in [start, *start.absolute().parents] if place.exists())
    if not existing.is_dir():
        raise OutputError(f"{flag} {path} is not writable: {existing} is a file, not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(
            f"{flag} {path} is not writable: {existing} does not let us write ({error.strerror})"
        ) from None


def claim_out_dir(path: Path, chosen: bool, overwrite: bool) -> Path:
    """Create the output folder once the plan stands. A folder the user did not choose is made unique, also
    against another schedcmp started in the same second (mkdir is atomic); one the user chose and asked to
    overwrite loses the files its previous results.json lists, and nothing else."""
    try:
        if not chosen:
            return claim_unique(path)
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            remove_previous_files(path)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"output folder {path} is not writable: {error.strerror or error}") from None
    return path


def claim_unique(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        candidate = path if number == 1 else path.with_name(f"{path.name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise OutputError(f"no free output folder beside {path}; choose one with --out")


def remove_previous_files(folder: Path) -> None:
    """--overwrite: the images, sheets, charts, page and results.json of the comparison that was there before."""
    try:
        previous = read_document(folder / "results.json", "run")
    except DocumentError:
        return  # not a schedcmp results folder (or none): its files are not ours to delete
    for name in previous.files():
        target = (folder / name).resolve()
        if target.is_relative_to(folder.resolve()) and target.is_file():
            target.unlink()
    for sub in ("images", "reference"):
        if (folder / sub).is_dir() and not any((folder / sub).iterdir()):
            (folder / sub).rmdir()


# -- a resumed folder and the parts torchrun ranks leave in it ----------------------------------------------------


def verified_runs(folder: Path, results: Results) -> dict[str, Run]:
    """--resume: the cells a folder (and its rank parts) lists whose image is there with the recorded pixel hash."""
    import numpy as np
    from PIL import Image

    from schedcmp.model.sample import pixel_sha256

    verified = {}
    for source, found in [(folder, results), *parts_of(folder)]:  # a torchrun sweep's ranks wrote parts
        for run in found.runs:
            image = source / (run.image_path or "")
            if run.id in verified or run.status == Status.FAILED or not run.image_path or not image.is_file():
                continue
            try:
                pixels = np.asarray(Image.open(image).convert("RGB"))
            except OSError:
                continue
            if pixel_sha256(pixels) == run.sha256:
                verified[run.id] = replace(run, folder=source)
    return verified


def part_folders(folder: Path) -> list[Path]:
    """The rank parts a torchrun sweep left in `folder` (DIR/ranks/rank-K), in rank order."""
    ranks = Path(folder) / RANKS_FOLDER
    if not ranks.is_dir():
        return []
    found = [path for path in ranks.iterdir() if re.fullmatch(r"rank-\d+", path.name) and path.is_dir()]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def parts_of(folder: Path) -> list[tuple[Path, Results]]:
    """The readable rank parts in `folder` (an unreadable one is as if absent: its cells run again)."""
    parts = []
    for part in part_folders(folder):
        try:
            parts.append((part, read_document(part / "results.json", "run")))
        except DocumentError:
            continue
    return parts


def place_file(source: Path, target: Path) -> None:
    """A hard link where the filesystem allows it (the files are written once, never changed), else a copy."""
    if source.resolve() == target.resolve():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def adopt(run: Run, folder: Path) -> Run:
    """A resumed run found in a part: its image moves into `folder` (linked), and it belongs there."""
    if run.folder is not None and run.image_path and Path(run.folder).resolve() != Path(folder).resolve():
        place_file(Path(run.folder) / run.image_path, Path(folder) / run.image_path)
    return replace(run, folder=None)


def remove_parts(folder: Path) -> None:
    """Once `folder`'s results.json lists every cell its rank parts held: the parts are no longer needed."""
    shutil.rmtree(Path(folder) / RANKS_FOLDER, ignore_errors=True)


def matches(run: Run, spec: RunSpec, reference: str | None) -> bool:
    """A resumed cell counts only if made with exactly this cell's settings and measured against the same reference."""
    return all(getattr(run, name) == getattr(spec, name) for name in RUN_SETTINGS) and run.reference == reference


def take_done(
    cells: list[RunSpec], done: dict[str, Run], references: convergence.ReferencePlan | None, results: ResultsFile
) -> int:
    """The cells a resumed folder already holds (`done`), made exactly so, join `results`, their images linked in
    from a torchrun part where that is where they are. -> how many."""
    references_of = references.of_run if references else {}
    taken = [spec for spec in cells if spec.id in done and matches(done[spec.id], spec, references_of.get(spec.id))]
    for spec in taken:
        results.add(adopt(done[spec.id], results.folder))
    return len(taken)


class Events:
    """--events: one NDJSON line per finished cell, flushed at once so a watcher sees it."""

    def __init__(self, target: str | None):
        self.handle = None
        if target == "-":
            self.handle = sys.stdout
        elif target is not None:
            try:
                self.handle = open(target, "a", encoding="utf-8")
            except OSError as error:
                raise OutputError(f"cannot write --events {target}: {error.strerror or error}") from None

    def cell(self, run: Run) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps({"event": "cell", **to_json(run)}, ensure_ascii=False) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None and self.handle is not sys.stdout:
            self.handle.close()


def rebuild_report(folder: Path, note: Callable[[str], None] = lambda line: None) -> Path:
    """`schedcmp report DIR`: the charts and report.html again, from DIR/results.json and its images; `note`
    hears what results.json names and the folder no longer holds (the page says "image missing" there)."""
    results = read_results(folder, "build a report from")
    for line in missing_files(folder, results):
        note(f"warning: {line}")
    try:
        page = html_report.write_charts_and_page(folder, results)
        report.write_atomic(folder / "results.json", dumps(results))  # last: it names the charts and the page
    except OSError as error:
        raise OutputError(f"cannot write the report into {folder}: {error.strerror or error}") from None
    return page


def missing_files(folder: Path, results: Results, shown: int = 10) -> list[str]:
    """One line for each kind of file results.json names that `folder` lacks: its count and names."""
    kinds = {
        "run images": [run.image_path for run in results.runs if run.image_path],
        "reference images": [reference.image for reference in results.references if reference.image],
        "contact sheets": list(results.sheets),
    }
    lines = []
    for kind, names in kinds.items():
        gone = [name for name in dict.fromkeys(names) if not (folder / name).is_file()]
        if not gone:
            continue
        folders = [f"{parent}/" for parent in dict.fromkeys(str(Path(name).parent) for name in gone)]
        gone_folders = [name for name in folders if name != "./" and not (folder / name).is_dir()]
        where = f" ({', '.join(gone_folders)} gone)" if gone_folders else ""
        listed = ", ".join(gone[:shown]) + (f" and {len(gone) - shown} more" if len(gone) > shown else "")
        lines.append(f"{len(gone)} of {len(set(names))} {kind} missing{where}, 'image missing' on the page: {listed}")
    return lines


# -- the finish stage ----------------------------------------------------------------------------------------------


def finish(
    results: ResultsFile,
    request: Request,
    stopped: BaseException | None,
    progress,
    references: convergence.ReferencePlan | None = None,
    rounds: targets.Rounds | None = None,
    model: Any = None,
) -> Outcome:
    """Orders, fronts and warnings; then the sheets, charts and page; results.json last, naming them.

    `references` and `rounds` are the plan's (None for `schedcmp merge`, which works from the runs alone)."""
    header_record = results.results
    header_record.finished = now()
    header_record.interrupted = stopped is not None
    fit_orders_and_fronts(results)
    warn_about_references(header_record, results.finished(), progress)
    conclude(header_record, results.finished(), references, rounds)
    results.save()  # first without the sheets: drawing them must not put the results at risk
    sheets = draw_sheets(results, request, progress)
    header_record.sheets = [str(path.relative_to(results.folder)) for path in sheets]
    if request.html:
        html_report.write_charts_and_page(results.folder, header_record)
    code = EXIT_TERMINATED if isinstance(stopped, Terminated) else exit_code(header_record, request.strict)
    header_record.exit_code = code
    results.save()  # last: it names the sheets, charts and page only once they exist
    return Outcome(header_record, results.folder, sheets, code, model, stopped)


def fit_orders_and_fronts(results: ResultsFile) -> None:
    runs = results.finished()
    orders, fronts = convergence.fit_orders(runs), convergence.pareto_fronts(runs)
    for run in runs:
        results.add(replace(run, order=orders.get(run.id), pareto=fronts.get(run.id)))


def warn_about_references(header_record: Results, runs: list[Run], progress) -> None:
    """A reference that has not converged enough to rank its runs says so, on stderr and in its record."""
    references = header_record.references
    warnings = convergence.convergence_warnings(references, runs)
    header_record.references = [replace(r, warning=warnings.get(r.id, r.warning)) for r in references]
    for line in convergence.warning_lines(references, warnings):
        progress.note(f"warning: {line}")


def conclude(
    header_record: Results,
    runs: list[Run],
    references: convergence.ReferencePlan | None,
    rounds: targets.Rounds | None,
) -> None:
    """The answer: each entry's steps at the target, the summary across prompts and seeds, and both in words.

    The summary is worked out from the runs, not from the plan: `merge` finishes without one."""
    if references is not None:
        header_record.interval = references.interval  # a search's rounds added runs
    if not any(run.reference for run in runs):
        return
    metric, target_answer, meets = "latent_rmse", None, None
    if rounds is not None:
        header_record.equal_quality = targets.results(rounds, {run.id: run for run in runs})
        schedule = next((s for s in rounds.request.schedule if s != "default"), None)  # a search takes one
        target_answer = targets.answer_line(header_record.target, header_record.equal_quality, schedule)
        metric, meets = rounds.target.metric, rounds.target.meets
    header_record.summary = summary.summarise(runs, metric)
    header_record.answer = summary.answer_lines(header_record.summary, target_answer, meets)


def draw_sheets(results: ResultsFile, request: Request, progress) -> list[Path]:
    """The contact sheet or a sweep's grids, from the saved images (none with --no-sheet or no runs)."""
    if request.no_sheet or not results.results.runs:
        return []
    runs, steps_per_row = sheet_runs(results.results)
    steps_per_row = steps_per_row and "steps" not in (request.x, request.z)  # asked for: the steps are an axis
    sheets, notices = render.write_sheets(results.folder, results.results, runs, request.x, request.z, steps_per_row)
    for notice in notices:
        progress.note(notice)
    return sheets


def sheet_runs(results: Results) -> tuple[list[Run], bool]:
    """What the sheets show: every run; after a step search, each entry's runs at its own equal-quality steps.
    -> (the runs, whether each row has its own step count: a search's answers, or NAME:STEPS pins)."""
    found = results.equal_quality or []
    if not results.target or not any(entry.status == TargetStatus.REACHED for entry in found):
        return results.runs, render.steps_per_entry(results.runs)
    chosen = [cell for entry in found for cell in entry.runs]
    by_id = {run.id: run for run in results.runs}
    return [by_id[cell] for cell in chosen if cell in by_id], True


def exit_code(results: Results, strict: bool) -> int:
    if results.interrupted:
        return EXIT_INTERRUPTED
    bad = {Status.FAILED} if not strict else {Status.FAILED, Status.SUSPECT, Status.FILTERED}
    if any(run.status in bad for run in results.runs):
        return EXIT_RUN_FAILED
    if any(reference.status == Status.FAILED for reference in results.references):
        return EXIT_RUN_FAILED  # --reference was asked for and nothing could be measured against it
    return EXIT_OK
