"""--target-psnr / --target-rmse in a comparison: the search's rounds of cells, and what it found.

The engine runs the cells of a round (every searching entry at its next step count, over every prompt and
seed, batched as usual), then hands the finished runs back here; stepsearch.StepSearch decides each entry's
next step count from the median distance over the pairs. Stochastic entries converge to another sample and
entries that start outside the reference's range have no distance at all: they are not searched, and say why.
"""

from __future__ import annotations

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
from schedcmp.quality.stepsearch import StepSearch, Target, goal_text
from schedcmp.quality.summary import quantile, spread


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
) -> Rounds:
    """Which entries are searched. `determinism_of(choice)` -> (label, reason); `outside(choice)` -> why its
    runs cannot be measured against the reference (they start outside its range), or None."""
    rounds = Rounds(target, request, compatible, defaults)
    for choice in chosen:
        label = ui_label(choice.class_name, choice.alias, choice.overrides)
        if any(entry.label == label for entry in rounds.entries) or label in rounds.left_out:
            continue  # the same entry twice: one search
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
    """Every entry's answer, fastest at the target first; then those that never reached it; then those left out."""
    found = []
    for entry in rounds.entries:
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
            found.append(EqualQuality(status=TargetStatus.NOT_REACHED, reason=why, **common))
            continue
        at = [runs[cell] for cell in entry.cells[steps]]
        below = steps - 1 if steps > 1 else None
        found.append(
            EqualQuality(
                status=TargetStatus.REACHED,
                steps=steps,
                nfe=spread([run.nfe for run in at if run.nfe is not None]).median,
                seconds=spread([run.seconds for run in at if run.seconds is not None]),
                distance=spread([getattr(run.distance, rounds.target.metric) for run in at]),
                runs=entry.cells[steps],
                below_steps=below,
                below_distance=search.probed.get(below) if below else None,
                below_runs=entry.cells.get(below, []) if below else [],
                reason="non-monotone: the first crossing found, not proven the fewest steps"
                if common["non_monotone"]
                else None,
                **common,
            )
        )
    found.sort(
        key=lambda e: (e.status != TargetStatus.REACHED, e.seconds.median if e.seconds and e.seconds.median else 0)
    )
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


def value_text(metric: str, value: float) -> str:
    return f"{value:.1f} dB" if metric == "psnr" else f"RMSE {value:.3g}"


def answer_line(target: TargetSpec, found: list[EqualQuality]) -> str:
    """'PSNR ≥ 35 dB: UniPC needs 12 steps (0.31 s), 2.3× faster than Euler (28 steps)'."""
    goal = goal_text(target.metric, target.value)
    reached = [entry for entry in found if entry.status == TargetStatus.REACHED]
    if not reached:
        return f"{goal}: no scheduler reached it within {target.max_steps} steps"
    best = reached[0]
    line = f"{goal}: {best.label} needs {best.steps} steps ({best.seconds.median:.2f} s)"
    if best.non_monotone:
        line += " (first crossing found: its distance is not monotone in the steps)"
    if len(reached) > 1:
        second = reached[1]
        ratio = second.seconds.median / best.seconds.median if best.seconds.median else None
        line += f", {ratio:.1f}× faster than {second.label} ({second.steps} steps)" if ratio else ""
    else:
        line += f"; no other scheduler reached it within {target.max_steps} steps"
    return line
