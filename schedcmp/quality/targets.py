"""--target-psnr / --target-rmse in a comparison: the search's rounds of cells, and what it found.

The engine runs the cells of a round (every searching entry at its next step count, over every prompt and
seed, batched as usual), then hands the finished runs back here; stepsearch.StepSearch decides each entry's
next step count from the median distance over the pairs. Stochastic entries converge to another sample and
entries that start outside the reference's range have no distance at all: they are not searched, and say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from schedcmp.core.names import SchedulerChoice, ui_label
from schedcmp.core.plan import PipelineDefaults, RunSpec, plan_runs
from schedcmp.core.records import (
    STOCHASTIC_NOT_RANKED,
    Determinism,
    EqualQuality,
    Probe,
    Run,
    Status,
    TargetSpec,
    TargetStatus,
)
from schedcmp.core.request import Request
from schedcmp.quality.metrics import closer
from schedcmp.quality.stepsearch import StepSearch, Target, goal_text
from schedcmp.quality.summary import nfe_text, quantile, spread, steps_text


@dataclass
class Searched:
    """One scheduler entry under search: its choice, its search, and the cell ids of each probed step count."""

    choice: SchedulerChoice
    label: str
    search: StepSearch
    cells: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class Rounds:
    target: Target
    request: Request
    compatible: set[str]
    defaults: PipelineDefaults
    entries: list[Searched] = field(default_factory=list)
    # label -> (status, why, choice): the entries not searched
    left_out: dict[str, tuple[TargetStatus, str, SchedulerChoice]] = field(default_factory=dict)

    def cells_at(self, entry: Searched, steps: int) -> list[RunSpec]:
        cells = plan_runs([entry.choice], self.compatible, replace(self.request, steps=(steps,)), self.defaults)
        entry.cells[steps] = [cell.id for cell in cells]
        return cells

    def first_round(self) -> list[RunSpec]:
        return [cell for entry in self.entries for cell in self.cells_at(entry, entry.search.next_steps())]

    def next_round(self, runs: dict[str, Run]) -> list[RunSpec]:
        """Feed the finished runs to the searches; -> the cells of the next round (none: every search is done)."""
        cells = []
        for entry in self.entries:
            for steps, ids in entry.cells.items():
                if steps not in entry.search.probed and all(cell in runs for cell in ids):
                    entry.search.add(steps, median_distance([runs[cell] for cell in ids], self.target.metric))
            following = entry.search.next_steps()
            if following is not None and following not in entry.cells:
                cells += self.cells_at(entry, following)
        return cells

    def spec(self) -> TargetSpec:
        return TargetSpec(self.target.metric, self.target.value, self.target.max_steps)


def plan_rounds(
    target: Target,
    request: Request,
    chosen: list[SchedulerChoice],
    compatible: set[str],
    defaults: PipelineDefaults,
    determinism_of: Any,
    outside: Any,
    unsupported: Any = lambda choice: None,
) -> Rounds:
    """Which entries are searched. `determinism_of(choice)` -> (label, reason); `outside(choice)` -> why its
    runs cannot be measured against the reference (they start outside its range), or None; `unsupported(choice)`
    -> why its scheduler cannot take the schedule searched with, or None."""
    rounds = Rounds(target, request, compatible, defaults)
    for choice in chosen:
        label = ui_label(choice.class_name, choice.alias, choice.overrides)
        if any(entry.label == label for entry in rounds.entries) or label in rounds.left_out:
            continue  # the same entry twice: one search
        if (cannot := unsupported(choice)) is not None:
            rounds.left_out[label] = (TargetStatus.UNSUPPORTED, cannot, choice)
            continue
        determinism, why = determinism_of(choice)
        if determinism == Determinism.STOCHASTIC:
            rounds.left_out[label] = (TargetStatus.NOT_RANKED, STOCHASTIC_NOT_RANKED, choice)
        elif determinism != Determinism.DETERMINISTIC:
            rounds.left_out[label] = (TargetStatus.NOT_RANKED, why, choice)
        elif (reason := outside(choice)) is not None:
            rounds.left_out[label] = (TargetStatus.NOT_MEASURED, reason, choice)
        else:
            rounds.entries.append(Searched(choice, label, StepSearch(target)))
    return rounds


def median_distance(runs: list[Run], metric: str) -> float | None:
    """The median over the pairs; None unless every pair has a distance (a failed run meets no target)."""
    values = [getattr(run.distance, metric) for run in runs if run.status == Status.OK and run.distance]
    return quantile(values, 0.5) if values and len(values) == len(runs) else None


def results(rounds: Rounds, runs: dict[str, Run]) -> list[EqualQuality]:
    """Every entry's answer, cheapest at the target first (cheapest_first); then those that never reached it; then
    those left out."""
    found = [entry_result(rounds, entry, runs) for entry in rounds.entries]
    reached = cheapest_first([e for e in found if e.status == TargetStatus.REACHED], rounds.target.metric)
    found = reached + [e for e in found if e.status != TargetStatus.REACHED]
    for label, (status, why, choice) in rounds.left_out.items():
        found.append(
            EqualQuality(
                label=label,
                scheduler=choice.class_name,
                overrides=dict(choice.overrides),
                alias=choice.alias,
                status=status,
                reason=why,
            )
        )
    return found


NON_MONOTONE = "non-monotone: the first crossing found, not proven the fewest steps"


def entry_result(rounds: Rounds, entry: Searched, runs: dict[str, Run]) -> EqualQuality:
    """One searched entry's answer: its steps at the target with what they cost, or why it has none."""
    search = entry.search
    steps = search.answer()
    common = {
        "label": entry.label,
        "scheduler": entry.choice.class_name,
        "overrides": dict(entry.choice.overrides),
        "alias": entry.choice.alias,
        "probes": [Probe(s, d) for s, d in sorted(search.probed.items())],
        "non_monotone": search.non_monotone(),
    }
    if steps is None:
        largest = max(search.probed, default=None)
        why = f"does not reach {rounds.target.text()} within {rounds.target.max_steps} steps"
        if largest is not None and search.probed[largest] is not None:
            why += f" ({value_text(rounds.target.metric, search.probed[largest])} at {largest})"
        return EqualQuality(status=TargetStatus.NOT_REACHED, reason=why, **common)
    at = [runs[cell] for cell in entry.cells[steps]]
    near = [runs[cell] for side in (steps - 1, steps + 1) for cell in entry.cells.get(side, []) if cell in runs]
    nfe = spread([run.nfe for run in at if run.nfe is not None]).median
    below = steps - 1 if steps > 1 else None
    return EqualQuality(
        status=TargetStatus.REACHED,
        steps=steps,
        nfe=nfe,
        seconds=spread([run.seconds for run in at if run.seconds is not None]),
        seconds_range=seconds_range(at, near, nfe),
        distance=spread([getattr(run.distance, rounds.target.metric) for run in at]),
        runs=entry.cells[steps],
        below_steps=below,
        below_distance=search.probed.get(below) if below else None,
        below_runs=entry.cells.get(below, []) if below else [],
        reason=NON_MONOTONE if common["non_monotone"] else None,
        **common,
    )


def timings(run: Run) -> list[float]:
    """Every timing of an ok run: each repeat (--repeat), or its one measurement."""
    if run.status != Status.OK or run.seconds is None:
        return []
    return list(run.seconds_all) or [run.seconds]


def seconds_range(at: list[Run], near: list[Run], nfe: float | None) -> list[float] | None:
    """[fastest, slowest] of every timing of one cost: the runs `at` it (each pair, each repeat), and the runs
    `near` it (one step either side) scaled to its `nfe`. A timing is noisy (a busy machine makes one run 1.5×
    slower than the next), so an entry's own neighbours say how far to trust it. Cells batched into one
    pipeline call share its timing: one measurement, counted once; None from a single one."""
    found = {seconds for run in at for seconds in timings(run)}
    if nfe:
        found |= {seconds * nfe / run.nfe for run in near if run.nfe for seconds in timings(run)}
    return [min(found), max(found)] if len(found) > 1 else None


# -- which entry is cheapest at the target, in words ----------------------------------------------------------


NOISE_FLOOR = 0.05  # a few timings trust seconds to 5% at best: a smaller lead is no speed claim


def clearly_faster(a: EqualQuality, b: EqualQuality) -> bool:
    """`a`'s seconds beat `b`'s beyond both their measured ranges, by more than NOISE_FLOOR (never on one timing)."""
    if a.seconds_range is None or b.seconds_range is None:
        return False
    return a.seconds_range[1] * (1 + NOISE_FLOOR) < b.seconds_range[0]


def cheaper(a: EqualQuality, b: EqualQuality, metric: str) -> bool:
    """`a` costs less at the target than `b`: faster beyond timing noise; within it, fewer model calls; at the same
    calls, closer to the reference."""
    if clearly_faster(a, b) or clearly_faster(b, a):
        return clearly_faster(a, b)
    if a.nfe != b.nfe:
        return (a.nfe or 0) < (b.nfe or 0)
    return closer(metric, a.distance.median, b.distance.median)


def cheapest_first(reached: list[EqualQuality], metric: str) -> list[EqualQuality]:
    """The reached entries in order of cost: each time, one that no other left is cheaper than (the fewest NFE,
    then the fastest median, among several)."""
    left, order = list(reached), []
    while left:
        unbeaten = [e for e in left if not any(cheaper(o, e, metric) for o in left if o is not e)] or left
        order.append(min(unbeaten, key=lambda e: (e.nfe or 0, e.seconds.median or 0)))
        left.remove(order[-1])
    return order


def value_text(metric: str, value: float) -> str:
    return f"{value:.1f} dB" if metric == "psnr" else f"RMSE {value:.3g}"


def answer_line(target: TargetSpec, found: list[EqualQuality], schedule: str | None = None) -> str:
    """'PSNR ≥ 35 dB: UniPC needs 12 steps (12 NFE, 0.30–0.33 s), at least 2.1× faster than Euler (28 steps,
    28 NFE), beyond their timing noise (0.70–0.74 s)'; seconds within each other's noise are compared by model
    calls, or called a tie. `found` is in results()'s order, cheapest first; `schedule`: the one --schedule searched
    with, where it is not each scheduler's own."""
    goal = goal_text(target.metric, target.value) + (f" on the {schedule} schedule" if schedule else "")
    reached = [entry for entry in found if entry.status == TargetStatus.REACHED]
    if not reached:
        return f"{goal}: no scheduler reached it within {target.max_steps} steps"
    best = reached[0]
    line = f"{goal}: {best.label} needs {steps_text([best.steps])} ({cost_text(best)})"
    if best.non_monotone:
        line += " (first crossing found: its distance is not monotone in the steps)"
    if len(reached) == 1:
        return line + f"; no other scheduler reached it within {target.max_steps} steps"
    line += ", " + against(best, reached[1], target.metric)
    fewest = min(reached, key=lambda entry: entry.nfe or 0)
    if (fewest.nfe or 0) < (best.nfe or 0):  # only a clear speed difference puts more model calls first
        line += (
            f"; by model calls alone {fewest.label} is cheaper ({nfe_text(fewest.nfe or 0)} NFE against "
            f"{nfe_text(best.nfe or 0)}), which the front below counts"
        )
    return line


def cost_text(entry: EqualQuality) -> str:
    """`8 NFE, 0.76–1.12 s`: the model calls, and every timing of them (one timing: itself)."""
    return f"{nfe_text(entry.nfe or 0)} NFE, {seconds_text(entry)}"


def seconds_text(entry: EqualQuality) -> str:
    """`0.718–1.12 s`: the range of its timings to 3 digits (0.075 and 0.076 are not both 0.08), or its median."""
    if entry.seconds_range is None:
        return f"{entry.seconds.median:.2f} s"
    low, high = (f"{value:#.3g}".rstrip(".") for value in entry.seconds_range)
    return f"{low}–{high} s" if low != high else f"{low} s"


def against(best: EqualQuality, second: EqualQuality, metric: str) -> str:
    """How the cheapest entry compares with the next: faster beyond noise, fewer calls, or a tie."""
    other = f"{second.label} ({steps_text([second.steps])}, {nfe_text(second.nfe or 0)} NFE)"
    if clearly_faster(best, second):  # the ratio their timings' nearest ends allow, rounded down
        ratio = math.floor(100 * second.seconds_range[0] / best.seconds_range[1]) / 100
        return f"at least {ratio:.2f}× faster than {other}, beyond their timing noise ({seconds_text(second)})"
    if (best.nfe or 0) < (second.nfe or 0):
        return f"fewer model calls than {other}; their seconds are within each other's timing noise"
    line = f"a tie with {other}: their seconds are within each other's timing noise"
    if closer(metric, best.distance.median, second.distance.median):
        ours, theirs = value_text(metric, best.distance.median), value_text(metric, second.distance.median)
        line += f"; {best.label} comes closer ({ours} against {theirs})"
    return line
