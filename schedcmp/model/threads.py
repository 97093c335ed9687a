"""Torch's CPU threads for a comparison: `--threads N`, or `auto`, which takes fewer on a busy machine.

Torch's intra-op pool splits each operation across every core and waits for its slowest thread. When other
processes keep the cores busy, some of those threads wait for a core on every operation: on a 2-core machine
beside two busy processes a run took several times as long with torch's default 2 threads as with 1
(docs/how-it-works.md#threads has bench/bench_busy.py's figures). So `auto` measures how many cores other
processes keep busy now (the kernel's CPU counters, less this process's own CPU time, over the seconds since
this module was imported, in a command the imports of torch and diffusers; over a fifth of a second of sleep
where that window is too short or too old), and where those and torch's threads would not fit the cores runs on
the cores the others leave, at least one. Not the 1-minute load average: it still counts a run that has just
ended, so each run of a shell loop would have taken the one before it for a busy machine (measured:
bench_run.py's ratio went from 1.03 to 1.28). Where there are no such counters (no /proc), the load average less
this process's own share stands in.
OMP_NUM_THREADS, where set, is the user's (or torchrun's) own choice: `auto` then leaves torch as it is. Each
torchrun rank is a process of its own and chooses for itself.

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
SAMPLE_SECONDS = 0.2  # the shortest window `auto` watches the CPU counters over: 40 ticks of 2 cores at 100 Hz
WINDOW_SECONDS = 10.0  # the longest: older than that, what was busy then may have ended (a run before this one)


@dataclass(frozen=True)
class Machine:
    """What `auto` decides from: the cores this process may use, torch's own thread count, the cores' worth of CPU in
    use now (`load`; where there are no CPU counters, the 1-minute load average), this process's share of it,
    and OMP_NUM_THREADS (None: not set)."""

    cores: int
    default: int
    load: float | None
    own: float
    omp_num_threads: str | None = None

    @property
    def others(self) -> float:
        """The cores' worth of CPU other processes use: `load` less this process's own share of it."""
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
        if int(asked) > machine.cores:  # each operation waits for its slowest thread, and these wait for a core
            return int(asked), (
                f"warning: --threads {asked} is more than the {machine.cores} cores here: torch's threads will wait "
                f"for cores on every operation (--threads {machine.cores}, or auto, to fit them)"
            )
        return int(asked), None
    if machine.omp_num_threads or machine.load is None:
        return None, None
    fits = round(machine.cores - machine.others)  # the cores the others leave
    if machine.others + machine.default <= machine.cores or fits >= machine.default:
        return None, None
    threads = max(1, fits)
    note = (
        f"busy machine: other processes keep {machine.others:.1f} of {machine.cores} cores busy: torch gets "
        f"{threads} thread{'s' if threads > 1 else ''} instead of {machine.default} "
        f"(--threads {machine.default} to use them all)"
    )
    return threads, note


def this_machine() -> Machine:
    """The cores, torch's threads and how busy other processes keep the machine, now."""
    import torch

    cores = core_count()
    omp = os.environ.get("OMP_NUM_THREADS")
    default = torch.get_num_threads()
    if omp:  # the user's choice: nothing to measure
        return Machine(cores=cores, default=default, load=None, own=0.0, omp_num_threads=omp)
    now = busy_now()
    if now is not None:
        return Machine(cores=cores, default=default, load=now[0], own=now[1])
    try:
        load = os.getloadavg()[0]
    except OSError:  # not every system keeps one
        load = None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Machine(
        cores=cores, default=default, load=load, own=own_load(usage.ru_utime + usage.ru_stime, process_age())
    )


@dataclass(frozen=True)
class Reading:
    """The kernel's CPU counters (all ticks, idle ticks; None where there are none) and this process's own CPU
    seconds, at a moment (time.monotonic())."""

    at: float
    ticks: tuple[int, int] | None
    own: float


def reading() -> Reading:
    import time

    try:
        ticks = cpu_counters()
    except (OSError, ValueError, IndexError):
        ticks = None
    times = os.times()
    return Reading(at=time.monotonic(), ticks=ticks, own=times.user + times.system)


def busy_between(first: Reading, second: Reading) -> tuple[float, float] | None:
    """(the cores' worth of CPU all processes used between two readings, this process's share of it)."""
    if first.ticks is None or second.ticks is None or second.at <= first.at:
        return None
    total, idle = second.ticks[0] - first.ticks[0], second.ticks[1] - first.ticks[1]
    if total <= 0:
        return None
    return (1 - idle / total) * (os.cpu_count() or 1), (second.own - first.own) / (second.at - first.at)


def busy_now() -> tuple[float, float] | None:
    """busy_between the last reading and now, where that is SAMPLE_SECONDS to WINDOW_SECONDS ago; otherwise over
    SAMPLE_SECONDS from now, while this process sleeps. None where there are no counters."""
    import time

    global last_reading
    first = last_reading
    if not SAMPLE_SECONDS <= time.monotonic() - first.at <= WINDOW_SECONDS:
        first = reading()
        time.sleep(SAMPLE_SECONDS)
    last_reading = reading()
    return busy_between(first, last_reading)


def cpu_counters() -> tuple[int, int]:
    """(all ticks, idle ticks) of every CPU together since boot: /proc/stat's first line."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:9]]  # user … steal
    return sum(values), values[3] + values[4]  # idle and iowait


# The first reading is taken when this module is imported, so that in a command the imports of torch and diffusers
# that follow are the window `auto` watches: no waiting added to a run (a 0.2 s sleep was 4 % of bench_run.py's).
last_reading = reading()


def process_age() -> float:
    """Seconds since this process started (from /proc; where there is none, as if it just had)."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def core_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def chosen(asked: int | str, note: Callable[[str], None]) -> Iterator[int]:
    """Torch's threads as `asked` while the block runs (-> the count it runs with); then as they were."""
    import torch

    before = torch.get_num_threads()
    # a number is taken as it is: only `auto` needs what other processes use (and may wait SAMPLE_SECONDS for it)
    machine = this_machine() if asked == "auto" else Machine(cores=core_count(), default=before, load=None, own=0.0)
    threads, why = choose(asked, machine)
    if why:
        note(why)
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
