"""`schedcmp run` as one rank of a torchrun (or `accelerate launch`) job: the ranks share the sweep's batches.

Rank 0 chooses and prepares the folder (folding in what an earlier attempt finished), computes every
reference once, then tells the others where to write; every rank claims batches through the job's store and
writes its own part (DIR/ranks/rank-K); once all are done, rank 0 merges the parts into DIR and draws the
sheets and report. The set-up is the engine's own (schedcmp.sweep.engine.prepare, load_model, make_plan).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from schedcmp.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, SchedcmpError, Terminated
from schedcmp.core.plan import batches
from schedcmp.core.records import Run, SweepPlan, from_json, to_json
from schedcmp.core.request import Request
from schedcmp.model import threads
from schedcmp.output import console
from schedcmp.scale import merge
from schedcmp.sweep import engine
from schedcmp.sweep.placement import Placement, injected_failure, longest_first
from schedcmp.sweep.results import (
    RANKS_FOLDER,
    Events,
    FolderLock,
    Outcome,
    ResultsFile,
    claim_out_dir,
    finish,
    out_dir_of,
    part_folders,
    remove_parts,
    take_done,
)


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


# -- a whole torchrun job ------------------------------------------------------------------------------------------


@dataclass
class Start:
    """What a rank knows once rank 0 has prepared the folder: the plan, where to write, what is done."""

    plan: engine.Plan
    record: SweepPlan
    out_dir: Path
    skip: frozenset[str]  # cells an earlier attempt made
    references: dict[str, Any]
    base: ResultsFile | None = None  # rank 0's: the folder's own results file


def run_ranked(
    request: Request, team: Team, progress: console.Progress, loaded: Any = None, resumed: Any = None
) -> Outcome:
    """This process's rank of the job. -> the engine's Outcome: rank 0's is the merged folder's, another rank's
    is its part (`part` set)."""
    from schedcmp.model import pipeline

    lead = team.rank == 0
    progress = progress if lead else console.Progress(enabled=False)
    with pipeline.quiet_libraries(), contextlib.ExitStack() as held:
        try:
            start = begin(request, team, progress, loaded, resumed, held)
        except SchedcmpError as error:
            if lead:
                team.publish("start", {"error": getattr(error, "exit_code", 2)})
            raise
        return work(request, team, progress, start)


def begin(
    request: Request, team: Team, progress: console.Progress, loaded: Any, resumed: Any, held: contextlib.ExitStack
) -> Start:
    """The engine's set-up on every rank; rank 0 then prepares the folder and the references for all. `held` keeps
    the rank's torch threads (--threads) until the rank's work is done."""
    lead = team.rank == 0
    prepared = engine.prepare(request, resumed, lead)
    held.enter_context(threads.chosen(request.threads, progress.note))  # each rank, its own process, for itself
    model = loaded or engine.load_model(
        request, rank_device(request.device, team.local_rank), progress, f"{team.world_size} ranks; "
    )
    if prepared.previous is not None:
        engine.check_same_model(request.resume, prepared.previous, model)
    plan = engine.make_plan(request, model, prepared.params, {}, progress.note)
    record = engine.sweep_plan(plan, request, batches(plan.cells, request.batch_size))
    if lead:
        base = prepare_folder(plan, request, prepared, record, progress)
        references = lead_references(plan, base, request, progress)
        team.publish("start", {"out": str(base.folder), "done": sorted(base.runs)})
        return Start(plan, record, base.folder, frozenset(base.runs), references, base)
    start = team.wait_for("start")
    if "error" in start:
        raise SchedcmpError(f"rank 0 stopped before the work began (exit {start['error']})")
    out_dir = Path(start["out"])
    specs = plan.references.specs if plan.references else {}
    references = {ref_id: shared_reference(out_dir, ref_id) for ref_id in specs}
    return Start(plan, record, out_dir, frozenset(start["done"]), references)


def work(request: Request, team: Team, progress: console.Progress, start: Start) -> Outcome:
    """Claim and make batches into this rank's part; rank 0 then joins the parts."""
    lead = team.rank == 0
    folder = start.out_dir / RANKS_FOLDER / f"rank-{team.rank}"
    folder.mkdir(parents=True, exist_ok=True)
    header = engine.header(start.plan, request)
    header.plan, header.shard, header.world_size = start.record, request.shard, team.world_size
    part = ResultsFile(folder, header, [spec.id for spec in start.plan.cells])
    where = RankPlacement(rank=team.rank, shard=request.shard, skip=start.skip, team=team)
    events = Events(request.events if lead else None)
    try:
        stopped = engine.execute(start.plan, request, part, progress, events, None, where, start.references)
    except SchedcmpError as error:  # this rank fails: what it finished is in its part
        if lead:
            start.base.results.exit_code = error.exit_code
            start.base.save()
        raise
    finally:
        events.close()
        progress.close()
    if not lead:
        code = 0 if stopped is None else EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
        return Outcome(part.results, folder, [], code, start.plan.model, stopped, part=True)
    try:
        parts = merge.read_parts([start.out_dir, *part_folders(start.out_dir)])
        joined = merge.join_parts(start.out_dir, parts, merge.check_parts(parts, allow_missing=True), progress)
        plan = start.plan
        outcome = finish(joined.results_file, request, stopped, progress, plan.references, plan.rounds, plan.model)
        if stopped is None and not joined.missing:
            remove_parts(start.out_dir)
        return outcome
    finally:
        start.base.release()


def prepare_folder(
    plan: engine.Plan, request: Request, prepared: engine.Prepared, record: SweepPlan, progress: console.Progress
) -> ResultsFile:
    """Rank 0, before the others start: DIR claimed, its results.json written with what an earlier attempt
    finished (images linked in from its parts), and those parts removed, since ranks rewrite theirs."""
    out_dir = request.resume or claim_out_dir(out_dir_of(request), request.out is not None, request.overwrite)
    header = engine.header(plan, request)
    header.plan, header.shard = record, request.shard
    base = ResultsFile(out_dir, header, [spec.id for spec in plan.cells], FolderLock(out_dir).acquire())
    take_done(plan.cells, prepared.done or {}, plan.references, base)
    if base.runs:
        progress.note(f"resuming: {len(base.runs)} of {len(plan.cells)} cells already done and verified")
    base.save()
    remove_parts(out_dir)
    return base


def lead_references(
    plan: engine.Plan, base: ResultsFile, request: Request, progress: console.Progress
) -> dict[str, Any]:
    """Rank 0 computes every reference once (from the cache where it can), and shares them through DIR."""
    from schedcmp.model.sample import Sampler
    from schedcmp.quality import convergence

    if plan.references is None:
        return {}
    made = {}
    with Sampler(plan.model, plan.generator_device) as sampler:
        identity = convergence.reference_identity(sampler)
        image_dir = None if request.no_sheet else base.folder
        for ref_id in plan.references.specs:
            made[ref_id], summary = convergence.reference_run(
                sampler, plan.references, ref_id, identity, image_dir, progress.note, progress.step
            )
            share_reference(base.folder, ref_id, made[ref_id])
            base.results.references.append(summary)
    base.save()
    return made
