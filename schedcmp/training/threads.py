"""Share a small CPU politely: use every core when it is idle, one when something else is running.

On a 2-core machine a niced two-thread PyTorch job stalls completely whenever another process takes a core,
because each parallel op waits for its starved thread; one thread then runs faster than two.
"""

from __future__ import annotations

import os
import resource
import time

import torch


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have used since boot (from /proc/stat)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    ticks = [int(v) for v in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ThreadGovernor:
    """Call `update()` between training steps; it sets torch's thread count from others' recent CPU use."""

    def __init__(self, max_threads: int | None = None, interval_s: float = 5.0):
        self.max_threads = max_threads or os.cpu_count() or 1
        self.interval_s = interval_s
        self.available = os.path.exists("/proc/stat")
        self._mark()
        torch.set_num_threads(self.max_threads)

    def _mark(self) -> None:
        self.last_time = time.monotonic()
        if self.available:
            self.last_busy, self.last_own = _busy_cpu_seconds(), _own_cpu_seconds()

    def update(self) -> int:
        if not self.available or self.max_threads == 1:
            return torch.get_num_threads()
        elapsed = time.monotonic() - self.last_time
        if elapsed < self.interval_s:
            return torch.get_num_threads()
        others = ((_busy_cpu_seconds() - self.last_busy) - (_own_cpu_seconds() - self.last_own)) / elapsed
        # Cores other processes kept busy on average; leave them theirs.
        threads = max(1, min(self.max_threads, round(self.max_threads - others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self._mark()
        return threads
