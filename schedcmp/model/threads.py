"""Torch's CPU threads for a comparison: `--threads N`, or `auto`, which takes fewer on a busy machine.

Torch's intra-op pool splits each operation across every core and waits for its slowest thread. When other
processes keep the cores busy, some of those threads wait for a core on every operation: on a 2-core machine
beside two busy processes a run took several times as long with torch's default 2 threads as with 1
(docs/how-it-works.md#threads has bench/bench_busy.py's figures). So `auto` reads the 1-minute load average,
takes off what this process put there itself, and where the rest and torch's threads would not fit the cores
runs on the cores the others leave, at least one. OMP_NUM_THREADS, where set, is the user's (or torchrun's)
own choice: `auto` then leaves torch as it is. Each torchrun rank is a process of its own and chooses for itself.

The choice is pure (`choose`); `chosen` sets torch's threads before the work and gives the old count back after,
so a notebook that calls compare() keeps its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from dataclasses import dataclass
from typing import Callable, Iterator

LOAD_WINDOW = 60.0  # seconds: the time constant of the kernel's 1-minute load average


@dataclass(frozen=True)
class Machine:
    """What `auto` decides from: the cores this process may use, torch's own thread count, the 1-minute load
    average, this process's share of it, and OMP_NUM_THREADS (None: not set)."""

    cores: int
    default: int
    load: float | None
    own: float
    omp_num_threads: str | None = None

    @property
    def others(self) -> float:
        """The load other processes put on the machine: the load average, less what this process added."""
        return max(0.0, (self.load or 0.0) - self.own)


def own_load(cpu_seconds: float, age_seconds: float, window: float = LOAD_WINDOW) -> float:
    """What this process has added to the 1-minute load average: its mean busy threads (CPU seconds over its age),
    as far as the exponentially decaying average has had time to count them."""
    if age_seconds <= 0:
        return 0.0
    return cpu_seconds / age_seconds * (1 - math.exp(-age_seconds / window))


def choose(asked: int | str, machine: Machine) -> tuple[int | None, str | None]:
    """-> (the threads to give torch, None to leave it as it is; a note for stderr when `auto` took fewer)."""
    if asked != "auto":
        return int(asked), None
    if machine.omp_num_threads or machine.load is None:
        return None, None
    fits = round(machine.cores - machine.others)  # the cores the others leave
    if machine.others + machine.default <= machine.cores or fits >= machine.default:
        return None, None
    threads = max(1, fits)
    note = (
        f"busy machine: 1-minute load {machine.load:.1f} on {machine.cores} cores, {machine.others:.1f} of it other "
        f"processes: torch gets {threads} thread{'s' if threads > 1 else ''} instead of {machine.default} "
        f"(--threads {machine.default} to use them all)"
    )
    return threads, note


def this_machine() -> Machine:
    """The cores, torch's threads, the load average and this process's share of it, now."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not every system keeps one
        load = None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Machine(
        cores=cores,
        default=torch.get_num_threads(),
        load=load,
        own=own_load(usage.ru_utime + usage.ru_stime, process_age()),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
    )


def process_age() -> float:
    """Seconds since this process started (from /proc; where there is none, as if it just had)."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


@contextlib.contextmanager
def chosen(asked: int | str, note: Callable[[str], None]) -> Iterator[int]:
    """Torch's threads as `asked` while the block runs (-> the count it runs with); then as they were."""
    import torch

    before = torch.get_num_threads()
    threads, why = choose(asked, this_machine())
    if why:
        note(why)
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
