"""Sweeps spread over processes and machines: independent shards (`--shard I/N`) and ranks under torchrun.

One mechanism, two launchers. The unit of work is a whole batch as the single-process plan forms it (over
every cell, never over what a resume left), so a cell's image does not depend on where it ran. `--shard`
assigns batches up front by estimated cost, longest first to the least loaded shard; under torchrun the
ranks claim the next batch through the process group's store as they free up (work stealing). Either way
each process writes a part, a results folder of its own, and schedcmp.scale.merge joins the parts into the folder
one process would have made. A plan fingerprint in every part says which parts belong together.

Everything above "torchrun" is pure: no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from schedcmp.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_TERMINATED,
    SchedcmpError,
    Terminated,
    UsageError,
)
from schedcmp.core.plan import RunSpec, settings_to_json
from schedcmp.core.records import Run, Shard, SweepPlan, Worker, from_json, to_json

if TYPE_CHECKING:
    from schedcmp.sweep.engine import Plan

# The test-only fault: `RANK:K` makes that rank (0 without torchrun) fail once it has made K cells. README says so.
FAIL_AFTER = "SCHEDCMP_TEST_FAIL_AFTER"
RANKS_FOLDER = "ranks"  # DIR/ranks/rank-K/: each torchrun rank's part; DIR/ranks/references/: rank 0's references


class InjectedFailure(SchedcmpError):
    """The failure SCHEDCMP_TEST_FAIL_AFTER asks for: a rank dying mid-sweep, for the tests."""

    exit_code = EXIT_RUN_FAILED


# -- the shard planner (pure) ---------------------------------------------------------------------------------


def parse_shard(text: str) -> Shard:
    """`--shard I/N`: part I (counted from 0) of N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None:
        raise UsageError(f"--shard {text!r} is not INDEX/COUNT, e.g. 0/4 (indexes count from 0)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise UsageError(f"--shard {text}: the index must be 0 to {max(count - 1, 0)} of a count of at least 1")
    return Shard(index, count)


def nfe_estimate(steps: int, order: int) -> int:
    """Denoiser calls for `steps` steps of a scheduler of this `order`: Heun-like second-order ones take 2N-1."""
    return max(1, order * steps - (order - 1))


def batch_cost(batch: list[RunSpec], order: int) -> float:
    """What a batch costs, in proportion: NFE × images × pixels."""
    first = batch[0]
    return float(nfe_estimate(first.steps, order) * len(batch) * first.width * first.height)


def longest_first(costs: list[float]) -> list[int]:
    """Batch numbers, dearest first; equal costs in plan order."""
    return sorted(range(len(costs)), key=lambda number: (-costs[number], number))


def assign(costs: list[float], count: int) -> list[list[int]]:
    """Batch numbers for each of `count` shards (LPT: longest first, to the least loaded; ties to the lowest shard).

    Each shard's numbers are in plan order. Whatever the costs, no shard exceeds the mean load by more than the
    dearest batch: the batch that made a shard the busiest went to it when it was the least loaded.
    """
    loads = [0.0] * count
    shards: list[list[int]] = [[] for _ in range(count)]
    for number in longest_first(costs):
        target = min(range(count), key=lambda shard: (loads[shard], shard))
        loads[target] += costs[number]
        shards[target].append(number)
    return [sorted(numbers) for numbers in shards]


def fingerprint(
    settings: dict[str, Any],
    model: dict[str, Any],
    reference: str | None,
    batches: list[list[str]],
    images: bool,
) -> str:
    """sha256 of everything that decides which cells a sweep has and what each makes: parts of one sweep share it."""
    text = json.dumps(
        {"settings": settings, "model": model, "reference": reference, "batches": batches, "images": images},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def imbalance(workers: list[Worker]) -> float | None:
    """The busiest process's seconds over the mean (1.0 is perfect balance)."""
    busy = [worker.busy_seconds for worker in workers]
    if not busy or sum(busy) <= 0:
        return None
    return max(busy) / (sum(busy) / len(busy))


def balance_line(workers: list[Worker], value: float | None) -> str:
    """`busy seconds by process: rank 0 12.1, rank 1 11.8; imbalance 1.01 (max/mean)` for stderr."""
    names = [f"{f'shard {w.shard.index}' if w.shard else f'rank {w.rank}'} {w.busy_seconds:.1f}" for w in workers]
    return f"busy seconds by process: {', '.join(names)}; imbalance {value:.2f} (max/mean)" if value else ""


# -- the part of the plan one process runs ----------------------------------------------------------------------


@dataclass
class Placement:
    """This process's part of the plan: all of it, alone, by default; with `shard`, the batches the planner gives
    that shard. RankPlacement below is a torchrun rank's.

    The engine's execute stage asks `work` which batch numbers to run (among those with cells still to make,
    in the order to run them; a rank claims them as it goes), tells `batch_done` after each batch is saved
    (it may answer with cells other processes made meanwhile, for rank 0 to report) and, after its last
    batch, waits through `wait` for the others.
    """

    rank: int = 0
    shard: Shard | None = None
    skip: frozenset[str] = frozenset()  # cells an earlier attempt made, kept elsewhere: neither run nor recorded
    made: int = 0
    busy_seconds: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)

    def batches(self, costs: list[float]) -> set[int] | None:
        """The batch numbers this process answers for (None: all)."""
        return None if self.shard is None else set(assign(costs, self.shard.count)[self.shard.index])

    def work(self, todo: list[int], costs: list[float]) -> Iterable[int]:
        mine = self.batches(costs)
        return [number for number in todo if mine is None or number in mine]

    def batch_done(self, runs: list[Run]) -> list[Run]:
        """After each saved batch (`made` counts its cells already). -> cells made elsewhere meanwhile."""
        injected_failure(self.rank, self.made)
        return []

    def wait(self) -> Iterator[list[Run]]:
        return iter(())

    def worker(self, device: str) -> Worker:
        return Worker(
            rank=self.rank,
            cells=self.made,
            busy_seconds=round(self.busy_seconds, 3),
            host=self.where.get("host"),
            device=device,
            device_name=self.where.get("device_name"),
            threads=self.where.get("threads"),
            shard=self.shard,
        )


def injected_failure(rank: int, made: int) -> None:
    """SCHEDCMP_TEST_FAIL_AFTER=RANK:K: fail on that rank once K cells are made and saved (a test's dying rank)."""
    asked = os.environ.get(FAIL_AFTER)
    if not asked:
        return
    match = re.fullmatch(r"(\d+):(\d+)", asked.strip())
    if match is None:
        raise UsageError(f"{FAIL_AFTER}={asked!r} is not RANK:CELLS")
    if int(match[1]) == rank and made >= int(match[2]):
        raise InjectedFailure(f"rank {rank} fails after {made} cells, as {FAIL_AFTER}={asked} asks")


def sweep_plan(plan: "Plan", settings, numbered: list[list[RunSpec]], reference: str | None, images: bool) -> SweepPlan:
    """The plan record every part carries; the fingerprint covers the model (configs, weights, device type, dtype)."""
    from schedcmp.model import pipeline
    from schedcmp.quality import convergence

    model = plan.model
    identity = {
        "identity": pipeline.model_identity(model.pipe),
        "weights": convergence.model_digest(model),
        "device_type": pipeline.device_type(model.device),
        "dtype": model.dtype,
        "generator_device": plan.generator_device,
    }
    reference_text = plan.references.text if plan.references else reference
    ids = [[spec.id for spec in batch] for batch in numbered]
    digest = fingerprint(settings_to_json(settings), identity, reference_text, ids, images)
    return SweepPlan(digest, [spec.id for spec in plan.cells], images)


def batch_costs(numbered: list[list[RunSpec]]) -> list[float]:
    from schedcmp.model.schedulers import scheduler_classes

    classes = scheduler_classes()
    return [batch_cost(batch, getattr(classes.get(batch[0].scheduler), "order", 1) or 1) for batch in numbered]


def check_shard(folder: Path, previous: Shard | None, asked: Shard | None) -> None:
    """--resume continues the same shard: another one would mix two shards' cells in one folder."""
    if previous != asked:

        def text(shard):
            return f"--shard {shard.index}/{shard.count}" if shard else "no --shard"

        raise UsageError(f"--resume {folder} was made with {text(previous)}; resume it with the same")


# -- where a process runs ----------------------------------------------------------------------------------------


def placement_facts(device: str) -> dict[str, Any]:
    """The host, the device's name and torch's CPU threads, for every run entry and the header."""
    import torch

    from schedcmp.model.pipeline import device_type

    name = None
    if device_type(device) == "cuda":
        name = torch.cuda.get_device_name(torch.device(device))
    elif device_type(device) == "mps":
        name = "Apple MPS"
    else:
        name = cpu_name()
    return {"host": socket.gethostname(), "device_name": name, "threads": torch.get_num_threads()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def stamp(run: Run, rank: int, where: dict[str, Any]) -> Run:
    return replace(run, rank=rank, **where)


# -- parts on disk -----------------------------------------------------------------------------------------------


def part_folders(folder: Path) -> list[Path]:
    """The rank parts a torchrun sweep left in `folder` (DIR/ranks/rank-K), in rank order."""
    ranks = Path(folder) / RANKS_FOLDER
    if not ranks.is_dir():
        return []
    found = [path for path in ranks.iterdir() if re.fullmatch(r"rank-\d+", path.name) and path.is_dir()]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


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


# -- torchrun --------------------------------------------------------------------------------------------------------


def launched() -> bool:
    """Started by torchrun, `accelerate launch` or anything else that sets WORLD_SIZE > 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def rank_device(requested: str, local_rank: int) -> str:
    """cuda:LOCAL_RANK (modulo the GPUs there) for auto or cuda; an explicit device, or cpu, as asked."""
    import torch

    from schedcmp.model.pipeline import resolve_device

    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return resolve_device(requested)


class Team:
    """This process's seat in a torchrun job, and the job's key-value store (torch.distributed's, no process group).

    Keys carry torchrun's restart count, so a restarted job does not read the last attempt's claims.
    """

    POLL_SECONDS = 0.1

    def __init__(self, store: Any, rank: int, world_size: int, local_rank: int):
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.prefix = f"schedcmp/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        self.drained = 0

    @classmethod
    def join(cls) -> "Team":
        from datetime import timedelta

        import torch.distributed as dist

        store, rank, world_size = next(dist.rendezvous("env://", timeout=timedelta(hours=1)))
        return cls(store, rank, world_size, int(os.environ.get("LOCAL_RANK", rank)))

    def key(self, name: str) -> str:
        return self.prefix + name

    def publish(self, name: str, value: Any) -> None:
        self.store.set(self.key(name), json.dumps(value))

    def wait_for(self, name: str) -> Any:
        """A value another rank publishes, however long it takes (rank 0 may be computing references)."""
        while not self.store.check([self.key(name)]):
            time.sleep(self.POLL_SECONDS)
        return json.loads(self.store.get(self.key(name)))

    def count(self, name: str, add: int = 0) -> int:
        return int(self.store.add(self.key(name), add))

    def forward(self, run: Run) -> None:
        """A finished cell for rank 0 to report (--events and progress come from rank 0 alone)."""
        number = self.count("cells", 1)
        self.store.set(self.key(f"cell/{number}"), json.dumps(to_json(run)))

    def forwarded(self) -> list[Run]:
        """The cells the other ranks finished since the last call."""
        runs = []
        for number in range(self.drained + 1, self.count("cells") + 1):
            key = self.key(f"cell/{number}")
            runs.append(from_json(Run, json.loads(self.store.get(key))))
            self.store.delete_key(key)
            self.drained = number
        return runs


@dataclass
class RankPlacement(Placement):
    """A torchrun rank: claims the next batch (dearest first) through the store until none are left."""

    team: Team | None = None

    def work(self, todo: list[int], costs: list[float]) -> Iterator[int]:
        mine = list(super().work(todo, costs))  # a shard's batches, when torchrun runs one shard
        order = [mine[index] for index in longest_first([costs[number] for number in mine])]
        while (claimed := self.team.count("claimed", 1) - 1) < len(order):
            yield order[claimed]

    def batch_done(self, runs: list[Run]) -> list[Run]:
        if self.rank != 0:
            for run in runs:
                self.team.forward(run)
        injected_failure(self.rank, self.made)
        return self.team.forwarded() if self.rank == 0 else []

    def wait(self) -> Iterator[list[Run]]:
        """Say this rank is done; rank 0 then reports the others' cells until every rank is."""
        self.team.count("finished", 1)
        if self.rank != 0:
            return
        while self.team.count("finished") < self.team.world_size:
            yield self.team.forwarded()
            time.sleep(self.team.POLL_SECONDS)
        yield self.team.forwarded()


# -- references shared between ranks --------------------------------------------------------------------------------


def share_reference(folder: Path, ref_id: str, made) -> None:
    """Rank 0's reference output, for the other ranks to measure against (a failed one is shared as absent)."""
    from schedcmp.quality.convergence import write_reference

    if made is not None:
        write_reference(folder / RANKS_FOLDER / "references" / f"{ref_id}.npz", made)


def shared_reference(folder: Path, ref_id: str):
    from schedcmp.quality.convergence import read_reference

    return read_reference(folder / RANKS_FOLDER / "references" / f"{ref_id}.npz")


# -- a whole torchrun job ---------------------------------------------------------------------------------------------


def run_ranked(settings, model_options, options, team: Team, progress) -> Any:
    """`schedcmp run` as one rank of a torchrun job. -> the engine's Outcome (rank 0's is the merged folder's).

    Rank 0 chooses and prepares the folder (folding in what an earlier attempt finished), computes every
    reference once, then tells the others where to write; every rank claims batches and writes its own part
    (DIR/ranks/rank-K); once all are done, rank 0 merges the parts into DIR and draws the sheets and report.
    """
    from schedcmp.core.records import DocumentError, read_document
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.scale import merge
    from schedcmp.sweep import engine

    lead = team.rank == 0
    progress = progress if lead else console.Progress(enabled=False)
    with pipeline.quiet_libraries():
        params = engine.validate_before_load(settings, options)
        previous, done = None, {}
        try:
            if options.resume is not None:
                if lead:
                    previous, done = engine.previous_runs(options.resume)
                else:
                    try:
                        previous = read_document(options.resume / "results.json", "run")
                    except DocumentError as error:
                        raise UsageError(f"cannot resume from {options.resume}: {error}") from None
                engine.check_resumable(options.resume, previous, settings)
                check_shard(options.resume, previous.shard, options.shard)
            elif lead:
                out_dir = options.out or engine.default_out_dir(settings.prompts[0] if settings.prompts else "")
                engine.check_out_dir(out_dir, options.overwrite)
            device = rank_device(model_options.device, team.local_rank)
            dtype = pipeline.resolve_dtype(model_options.dtype, device)
            progress.note(
                f"{team.world_size} ranks; loading {model_options.model or pipeline.DEFAULT_MODEL_NAME} "
                f"on {device} ({dtype}) in each ..."
            )
            loaded = pipeline.load(
                model_options.model, device, dtype, model_options.allow_pickle, model_options.model_config
            )
            if previous is not None:
                engine.check_same_model(options.resume, previous, loaded)
            plan = engine.make_plan(settings, options.reference, loaded, params, {}, progress.note)
            numbered = engine.batches(plan.cells, settings.batch_size)
            record = sweep_plan(plan, settings, numbered, options.reference, not options.no_sheet)
            if lead:
                base = prepare_folder(plan, settings, model_options, options, record, done, progress)
                out_dir, skip = base.folder, frozenset(base.runs)
                references = lead_references(plan, base, options, progress)
                team.publish("start", {"out": str(out_dir), "done": sorted(skip)})
            else:
                start = team.wait_for("start")
                if "error" in start:
                    raise SchedcmpError(f"rank 0 stopped before the work began (exit {start['error']})")
                out_dir, skip = Path(start["out"]), frozenset(start["done"])
                references = {
                    ref_id: shared_reference(out_dir, ref_id)
                    for ref_id in (plan.references.specs if plan.references else {})
                }
        except SchedcmpError as error:
            if lead:
                team.publish("start", {"error": getattr(error, "exit_code", 2)})
            raise
        folder = out_dir / RANKS_FOLDER / f"rank-{team.rank}"
        folder.mkdir(parents=True, exist_ok=True)
        header = engine.header(plan, settings, model_options, options)
        header.plan, header.shard, header.world_size = record, options.shard, team.world_size
        part = engine.ResultsFile(folder, header, [spec.id for spec in plan.cells])
        placement = RankPlacement(rank=team.rank, shard=options.shard, skip=skip, team=team)
        events = engine.Events(options.events if lead else None)
        try:
            stopped = engine.execute(
                plan, settings, options, part, progress, events, None, placement, references=references
            )
        except SchedcmpError as error:  # this rank fails: what it finished is in its part
            if lead:
                base.results.exit_code = error.exit_code
                base.save()
            raise
        finally:
            events.close()
            progress.close()
        if not lead:
            code = 0 if stopped is None else EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
            return engine.Outcome(part.results, folder, [], code, loaded, stopped)
        sources = [out_dir, *part_folders(out_dir)]
        parts = merge.read_parts(sources)
        joined = merge.join_parts(out_dir, parts, merge.check_parts(parts, allow_missing=True), progress)
        outcome = engine.finish(joined.results_file, plan, options, stopped, progress)
        if stopped is None and not joined.missing:
            remove_parts(out_dir)
        return outcome


def prepare_folder(plan, settings, model_options, options, record: SweepPlan, done: dict[str, Run], progress):
    """Rank 0, before the others start: DIR claimed, its results.json written with what an earlier attempt
    finished (images linked in from its parts), and those parts removed, since ranks rewrite theirs."""
    from schedcmp.sweep import engine

    if options.resume is not None:
        out_dir = options.resume
    else:
        out_dir = options.out or engine.default_out_dir(settings.prompts[0] if settings.prompts else "")
        out_dir = engine.claim_out_dir(out_dir, options.out is not None, options.overwrite)
    header = engine.header(plan, settings, model_options, options)
    header.plan, header.shard = record, options.shard
    base = engine.ResultsFile(out_dir, header, [spec.id for spec in plan.cells])
    engine.take_done(plan.cells, done, plan.references, base)
    if base.runs:
        progress.note(f"resuming: {len(base.runs)} of {len(plan.cells)} cells already done and verified")
    base.save()
    remove_parts(out_dir)
    return base


def lead_references(plan, base, options, progress) -> dict[str, Any]:
    """Rank 0 computes every reference once (from the cache where it can), and shares them through DIR."""
    from schedcmp.model.sample import Sampler
    from schedcmp.quality import convergence

    if plan.references is None:
        return {}
    made = {}
    with Sampler(plan.model, plan.generator_device) as sampler:
        identity = convergence.reference_identity(sampler)
        image_dir = None if options.no_sheet else base.folder
        for ref_id in plan.references.specs:
            made[ref_id], summary = convergence.reference_run(
                sampler, plan.references, ref_id, identity, image_dir, progress.note, progress.step
            )
            share_reference(base.folder, ref_id, made[ref_id])
            base.results.references.append(summary)
    base.save()
    return made
