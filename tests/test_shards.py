"""The shard planner as pure functions: which batches each shard runs, and the fingerprint parts share. No torch."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from schedcmp.core.errors import UsageError
from schedcmp.core.plan import RunSpec
from schedcmp.core.records import Shard
from schedcmp.core.request import shard_of
from schedcmp.sweep import placement


def random_costs(seed: int, count: int) -> list[float]:
    """Batch costs as sweeps make them: a few dear ones (Heun at 80 steps, big batches) among many cheap ones."""
    generator = random.Random(seed)
    return [float(generator.choice([1, 2, 3, 5, 8]) * generator.randint(1, 80) * 4096) for _ in range(count)]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 16])
def test_every_batch_goes_to_exactly_one_shard_and_no_shard_exceeds_the_mean_by_more_than_the_dearest(seed, shards):
    costs = random_costs(seed, random.Random(seed).randint(1, 60))
    assigned = placement.assign(costs, shards)
    assert len(assigned) == shards
    numbers = [number for shard in assigned for number in shard]
    assert sorted(numbers) == list(range(len(costs)))  # disjoint and covering: each batch once, whole
    assert all(shard == sorted(shard) for shard in assigned)  # each shard runs its batches in plan order
    loads = [sum(costs[number] for number in shard) for shard in assigned]
    assert max(loads) <= sum(costs) / shards + max(costs) + 1e-6
    assert placement.assign(list(costs), shards) == assigned  # deterministic


def test_longest_first_beats_round_robin_on_a_skewed_sweep():
    costs = [80.0, 1, 1, 1, 80, 1, 1, 1]  # two Heun batches at 80 steps among cheap ones
    assigned = placement.assign(costs, 2)
    assert [sum(costs[n] for n in shard) for shard in assigned] == [83.0, 83.0]
    assert placement.longest_first([1.0, 5.0, 5.0, 2.0]) == [1, 2, 3, 0]  # equal costs keep plan order


def test_more_shards_than_batches_leaves_some_empty():
    assert placement.assign([3.0, 1.0], 4) == [[0], [1], [], []]


def test_cost_is_nfe_times_images_times_pixels():
    def spec(steps):
        return RunSpec("x", "HeunDiscreteScheduler", None, {}, True, "p", None, 0, steps, 7.5, 64, 32)

    assert placement.nfe_estimate(20, 1) == 20 and placement.nfe_estimate(20, 2) == 39  # Heun: 2N-1
    assert placement.batch_cost([spec(20), spec(20), spec(20)], 2) == 39 * 3 * 64 * 32


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 1 / 2 ", Shard(1, 2))])
def test_shard_syntax(text, shard):
    assert shard_of(text, "--shard") == shard


@pytest.mark.parametrize("text", ["2/2", "-1/3", "x", "1/0", "0/0", "1", "1/2/3", "0.5/2"])
def test_bad_shard_syntax_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        shard_of(text, "--shard")


def test_the_fingerprint_changes_with_every_input_and_only_with_them():
    base = ({"seeds": [1]}, {"weights": "abc"}, "DPMSolverMultistep:8", [["a", "b"], ["c"]], True)
    digest = placement.fingerprint(*base)
    assert placement.fingerprint(*base) == digest
    for index, other in enumerate(
        [{"seeds": [2]}, {"weights": "abd"}, "DPMSolverMultistep:9", [["a"], ["b", "c"]], False]
    ):
        changed = list(base)
        changed[index] = other
        assert placement.fingerprint(*changed) != digest, f"input {index} is not in the fingerprint"


def test_imbalance_is_the_busiest_over_the_mean():
    from schedcmp.core.records import Worker

    workers = [Worker(rank=0, cells=4, busy_seconds=3.0), Worker(rank=1, cells=4, busy_seconds=1.0)]
    assert placement.imbalance(workers) == 1.5
    assert placement.imbalance([]) is None


def test_the_planner_imports_no_torch():
    code = (
        "import sys, schedcmp.sweep.placement, schedcmp.scale.merge; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
