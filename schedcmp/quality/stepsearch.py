"""The equal-quality step search: the fewest steps at which a scheduler comes as close to the reference as asked.

Pure: the search is told each probed step count's distance (the median over the comparison's prompt and
seed pairs) and says which step count to run next. Doubling from 1 finds a step count that meets the target;
bisection between it and the largest failing count below it finds the first crossing. Every probe is kept, so
the answer is checkable: the run at the answer meets the target and the run one step fewer does not, and
both were made. Curves are not always monotone (more steps, farther away: LMS on the default model), so a
search that saw two probes out of order says its answer is the first crossing found, not proven the fewest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schedcmp.core.request import DEFAULT_MAX_STEPS
from schedcmp.quality.metrics import as_close, closer


@dataclass(frozen=True)
class Target:
    """What an equal-quality search aims at: PSNR of the image at least `value` dB, or latent RMSE at most it."""

    metric: str  # "psnr" or "latent_rmse"
    value: float
    max_steps: int = DEFAULT_MAX_STEPS

    def meets(self, distance: float | None) -> bool:
        return distance is not None and as_close(self.metric, distance, self.value)

    def better(self, a: float, b: float) -> bool:
        """`a` is strictly closer to the reference than `b`."""
        return closer(self.metric, a, b)

    def text(self) -> str:
        return goal_text(self.metric, self.value)


def goal_text(metric: str, value: float) -> str:
    """A target in words: `PSNR ≥ 35 dB`, `latent RMSE ≤ 0.1`."""
    return f"PSNR ≥ {value:g} dB" if metric == "psnr" else f"latent RMSE ≤ {value:g}"


@dataclass
class StepSearch:
    """One scheduler entry's search. `probed` maps step counts to their distance (None: no distance there,
    e.g. the run failed); add() each result, next_steps() says what to run next (None: done)."""

    target: Target
    probed: dict[int, float | None] = field(default_factory=dict)

    def add(self, steps: int, distance: float | None) -> None:
        self.probed[steps] = distance

    def first_meeting(self) -> int | None:
        meeting = [steps for steps, distance in self.probed.items() if self.target.meets(distance)]
        return min(meeting) if meeting else None

    def next_steps(self) -> int | None:
        found = self.first_meeting()
        if found is None:  # doubling: 1, 2, 4, ... and the cap itself
            largest = max(self.probed, default=0)
            if largest >= self.target.max_steps:
                return None
            return min(self.target.max_steps, 2 * largest) if largest else 1
        below = max((steps for steps in self.probed if steps < found), default=0)
        if found - below <= 1:
            return None
        return (below + found) // 2  # bisection: every probe below `found` failed

    def answer(self) -> int | None:
        """The first crossing: the fewest probed steps that meet the target, once the search is done."""
        return self.first_meeting() if self.next_steps() is None else None

    def non_monotone(self) -> bool:
        """Two probed step counts out of order: more steps, strictly farther from the reference."""
        points = sorted((steps, distance) for steps, distance in self.probed.items() if distance is not None)
        return any(
            self.target.better(earlier, later)
            for index, (_, earlier) in enumerate(points)
            for _, later in points[index + 1 :]
        )


def run_search(target: Target, distance_at) -> StepSearch:
    """Drive one search to its end with `distance_at(steps) -> distance | None` (tests and benchmarks; the engine
    advances many searches together, one batch of pipeline calls per round)."""
    search = StepSearch(target)
    while (steps := search.next_steps()) is not None:
        search.add(steps, distance_at(steps))
    return search
