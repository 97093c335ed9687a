"""Which part of a sweep this process runs: the shard planner (pure), the Placement the engine asks which
batches to run, the plan fingerprint that says which parts belong together, and where a process runs.

One mechanism, two launchers. The unit of work is a whole batch as the single-process plan forms it (over
every cell, never over what a resume left), so a cell's image does not depend on where it ran. `--shard`
assigns batches up front by estimated cost, longest first to the least loaded shard; under torchrun the
ranks claim the next batch as they free up (schedcmp.scale.torchrun's RankPlacement). Either way each
process writes a part, and schedcmp.scale.merge joins the parts into the folder one process would have made.

Pure but for `placement_facts` and `batch_costs`, which import torch and diffusers inside.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

from schedcmp.core.errors import EXIT_RUN_FAILED, SchedcmpError, UsageError
from schedcmp.core.plan import RunSpec
from schedcmp.core.records import Run, Shard, Worker

# The test-only fault: `RANK:K` makes that rank (0 without torchrun) fail once it has made K cells
# (docs/distributed.md says so).
FAIL_AFTER = "SCHEDCMP_TEST_FAIL_AFTER"


class InjectedFailure(SchedcmpError):
    """The failure SCHEDCMP_TEST_FAIL_AFTER asks for: a rank dying mid-sweep, for the tests."""

    exit_code = EXIT_RUN_FAILED


def launched() -> bool:
    """Started by torchrun, `accelerate launch` or anything else that sets WORLD_SIZE > 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


# -- the shard planner (pure) ---------------------------------------------------------------------------------


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


def stamp(run: Run, rank: int, shard: Shard | None, where: dict[str, Any]) -> Run:
    """A run with where it was made: the rank, the shard, and placement_facts' host, device name and threads."""
    return replace(run, rank=rank, shard=shard, **where)
