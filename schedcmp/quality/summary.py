"""Conclusions across prompts and seeds: the distributions, the paired wins, the ranks and the answer in words.

Pure: it works on the runs' records. A "pair" is one reference: a (prompt, seed) and the settings they
share, the same starting noise for every scheduler. Two scheduler entries are compared on the pairs where
both have a distance; A beats B on a pair when it came strictly closer. An entry's rank at a step count is 1
+ the number of entries that beat it significantly (a two-sided sign test at 5% on their pairs), so entries
nothing beats share rank 1. Under 6 pairs no split is significant (5 wins of 5 has p = 0.0625), so the
ranks are not given: "too few pairs to rank".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from schedcmp.core.names import ui_label
from schedcmp.core.records import EntrySummary, Run, Spread, StepSummary, Summary
from schedcmp.quality.convergence import ranked
from schedcmp.quality.metrics import closer, closest_first, pareto_front

SIGNIFICANCE = 0.05
MIN_PAIRS = 6  # the fewest pairs on which a sign test at 5% can separate two entries
TOO_FEW = "too few pairs to rank"
METRIC_NAMES = {"latent_rmse": "latent RMSE", "psnr": "PSNR"}


def entry_label(run: Run) -> str:
    return ui_label(run.scheduler, run.alias, run.overrides or {})


def measured(run: Run) -> bool:
    """Ranked against a reference (convergence.ranked), which names the pair."""
    return ranked(run) and bool(run.reference)


def value_of(run: Run, metric: str) -> float:
    return getattr(run.distance, metric)


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), without numpy."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    if ordered[low] == ordered[high]:  # also keeps inf (an image equal to the reference) out of inf - inf
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread()
    return Spread(median=quantile(values, 0.5), q1=quantile(values, 0.25), q3=quantile(values, 0.75))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if both were equally likely."""
    n = wins + losses
    if n == 0:
        return 1.0
    fewer = min(wins, losses)
    tail = sum(math.comb(n, k) for k in range(fewer + 1)) / 2**n
    return min(1.0, 2 * tail)


def pairs_of(runs: list[Run]) -> list[str]:
    """The pairs (references) the measured runs cover, in order of first appearance."""
    return list(dict.fromkeys(run.reference for run in runs if measured(run)))


def summarise(runs: list[Run], metric: str = "latent_rmse") -> Summary:
    """Per step count, per scheduler entry: distributions over the pairs, win counts and ranks."""
    pairs = pairs_of(runs)
    by_steps: dict[int, dict[str, dict[str, Run]]] = {}  # steps -> label -> pair -> run
    for run in runs:
        if measured(run):
            by_steps.setdefault(run.steps, {}).setdefault(entry_label(run), {})[run.reference] = run
    return Summary(
        metric=metric,
        pairs=len(pairs),
        ranked=len(pairs) >= MIN_PAIRS,
        note=None if len(pairs) >= MIN_PAIRS else f"{TOO_FEW} ({len(pairs)} of the {MIN_PAIRS} a sign test needs)",
        step_counts=[step_summary(steps, by_steps[steps], metric, len(pairs)) for steps in sorted(by_steps)],
    )


def step_summary(steps: int, found: dict[str, dict[str, Run]], metric: str, pairs: int) -> StepSummary:
    """One step count: each entry's distribution over its pairs (label -> pair -> run), their wins and ranks."""
    labels = list(found)
    wins = {a: {b: wins_of(found[a], found[b], metric) for b in labels if b != a} for a in labels}
    entries = [entry_summary(name, found[name], metric, rank(name, labels, wins, pairs)) for name in labels]
    entries.sort(key=lambda entry: (entry.rank or 0, sort_distance(entry.distance.median, metric)))
    return StepSummary(steps=steps, entries=entries, wins=wins)


def entry_summary(name: str, by_pair: dict[str, Run], metric: str, rank: int | None) -> EntrySummary:
    """One entry at one step count: its distance, seconds and NFE over the pairs (pair -> run), and its rank."""
    runs = list(by_pair.values())
    return EntrySummary(
        label=name,
        scheduler=runs[0].scheduler,
        overrides=runs[0].overrides or {},
        pairs=len(runs),
        nfe=spread([run.nfe for run in runs if run.nfe is not None]).median,
        distance=spread([value_of(run, metric) for run in runs]),
        seconds=spread([run.seconds for run in runs if run.seconds is not None]),
        values={pair: value_of(run, metric) for pair, run in by_pair.items()},
        rank=rank,
    )


def sort_distance(value: float | None, metric: str) -> float:
    return math.inf if value is None else closest_first(metric, value)


def wins_of(a: dict[str, Run], b: dict[str, Run], metric: str) -> int:
    """On how many shared pairs A came strictly closer than B."""
    return sum(closer(metric, value_of(a[pair], metric), value_of(b[pair], metric)) for pair in a.keys() & b.keys())


def rank(name: str, labels: list[str], wins: dict[str, dict[str, int]], pairs: int) -> int | None:
    if pairs < MIN_PAIRS:
        return None
    beaten_by = [
        other
        for other in labels
        if other != name
        and wins[other][name] > wins[name][other]
        and sign_test(wins[other][name], wins[name][other]) < SIGNIFICANCE
    ]
    return 1 + len(beaten_by)


# -- the answer in words --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontPoint:
    """An entry at a step count: its median NFE and median distance."""

    label: str
    steps: int
    nfe: float
    distance: float


def front_points(summary: Summary, meets: Callable[[float], bool] | None = None) -> list[FrontPoint]:
    """The (median NFE, median distance) points no other point beats, cheapest first (among those `meets`
    accepts, when given)."""
    points = [
        FrontPoint(entry.label, group.steps, entry.nfe, entry.distance.median)
        for group in summary.step_counts
        for entry in group.entries
        if entry.nfe is not None
        and entry.distance.median is not None
        and (meets is None or meets(entry.distance.median))
    ]
    metric = summary.metric
    front = [points[index] for index in pareto_front([(p.nfe, sort_distance(p.distance, metric)) for p in points])]
    return sorted(front, key=lambda point: (point.nfe, sort_distance(point.distance, metric)))


def budget_picks(front: list[FrontPoint]) -> list[tuple[float, str, list[int]]]:
    """(largest NFE budget, entry, its step counts) per stretch of the front one entry holds, cheapest first:
    within a budget, the best pick is the front's closest point that fits. Entries that tie (the same NFE and
    distance: DPM++ 2M, UniPC and DEIS are one method at 1 and 2 steps) share a pick, named together."""
    merged: list[FrontPoint] = []
    for point in front:
        if merged and (merged[-1].nfe, merged[-1].distance) == (point.nfe, point.distance):
            merged[-1] = replace(merged[-1], label=merged[-1].label + " = " + point.label)
        else:
            merged.append(point)
    picks: list[tuple[float, str, list[int]]] = []
    for point in merged:
        if picks and picks[-1][1] == point.label:
            picks[-1] = (point.nfe, point.label, picks[-1][2] + [point.steps])
        else:
            picks.append((point.nfe, point.label, [point.steps]))
    return picks


def nfe_text(value: float) -> str:
    return f"{value:g}"


def answer_lines(
    summary: Summary, target_answer: str | None = None, meets: Callable[[float], bool] | None = None
) -> list[str]:
    """What the comparison says, in words: the target's answer, the front and the pick for each budget, and
    how much to trust it. `meets`: with a target, the picks are among the points that reach it (a search's
    first probes, at 1 or 2 steps, are far from any answer)."""
    lines = [target_answer] if target_answer else []
    front = front_points(summary, meets)
    if not front:
        if meets is not None:
            return lines
        return lines + ["no deterministic run was measured against the reference: nothing to rank"]
    names = list(dict.fromkeys(point.label for point in front))
    chosen = budget_picks(front)
    picks = "; ".join(f"≤{nfe_text(budget)} NFE: {name} ({steps_text(steps)})" for budget, name, steps in chosen)
    where = "" if meets is None else ", among the runs that reach the target"
    lines.append(f"on the front (distance against NFE{where}): {', '.join(names)}; best pick by budget: {picks}")
    pairs = summary.pairs
    if pairs == 1:
        lines.append("caveat: one prompt and one seed is all this saw: an anecdote, not a ranking")
    elif pairs < MIN_PAIRS:
        lines.append(f"caveat: medians over {pairs} prompt and seed pairs; {TOO_FEW} (a sign test needs {MIN_PAIRS})")
    else:
        lines.append(f"medians over {pairs} prompt and seed pairs; ranks by a sign test at 5%")
    ranged = [(name, steps) for _, name, steps in chosen if len(steps) > 1]
    if ranged:
        name, steps = ranged[0]
        lines.append(
            f"reading the picks: {name} ({steps_text(steps)}) means {name} at the most steps that fit the budget, "
            f"from {min(steps)} to {max(steps)}"
        )
    return lines


def steps_text(steps: list[int]) -> str:
    if len(steps) > 1:
        return f"{min(steps)}–{max(steps)} steps"
    return "1 step" if steps[0] == 1 else f"{steps[0]} steps"
