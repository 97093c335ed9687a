"""One sweep, spread: 2 shards + `merge`, and 2 torchrun ranks, each give what one process gives.

Every process runs with OMP_NUM_THREADS=1 (as torchrun sets it), so that pixels may be compared bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import schedcmp

ROOT = Path(schedcmp.__file__).parent.parent
# 4 schedulers (Heun among them: 2N-1 calls) × 2 seeds in batches of 2 = 4 batches; a reference per seed.
SWEEP = [
    "a red apple",
    "-s",
    "euler,ddim,heun,dpm++ 2m",
    "--steps",
    "3",
    "--seed",
    "1,2",
    "--batch-size",
    "2",
    "--reference-spec",
    "DPMSolverMultistep:8",
]
# What may differ between processes: timings, memory, where it ran, and what timing decides (the seconds front).
VARIES = {"seconds", "seconds_all", "denoiser_seconds", "ms_per_nfe", "peak_memory_bytes", "batch_seconds"}
VARIES |= {"rank", "shard", "host", "device_name", "threads", "pareto"}  # where a run was made, and its timing


def environment(cache: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, OMP_NUM_THREADS="1", SCHEDCMP_CACHE_DIR=str(cache), PYTHONPATH=path, **extra)


def schedcmp_run(*args, cache: Path, ranks: int = 1, torchrun=(), **extra) -> subprocess.CompletedProcess:
    """`python -m schedcmp ARGS`, or with `ranks`, `python -m torch.distributed.run ... -m schedcmp ARGS`."""
    launcher = [sys.executable, "-m", "schedcmp"]
    if ranks > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        launcher += [*torchrun, "-m", "schedcmp"]
    command = [*launcher, *[str(arg) for arg in args]]
    return subprocess.run(command, capture_output=True, text=True, env=environment(cache, **extra), timeout=600)


def same_cells(document: dict, expected: dict) -> None:
    """Equal as the issue defines it: ids, settings, statuses, pixel sha256 and distances (orders too)."""
    assert [run["id"] for run in document["runs"]] == [run["id"] for run in expected["runs"]]
    for run, want in zip(document["runs"], expected["runs"]):
        differing = {key for key in want if run.get(key) != want[key]} - VARIES
        assert not differing, f"{run['id']} differs in {sorted(differing)}"
        assert run["pareto"]["nfe"] == want["pareto"]["nfe"]
    assert document["settings"] == expected["settings"]
    assert document["plan"] == expected["plan"]
    assert document["answer"] == expected["answer"] and document["summary"]["pairs"] == expected["summary"]["pairs"]
    assert [r["id"] for r in document["references"]] == [r["id"] for r in expected["references"]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="module")
def single(folders) -> dict:
    """The sweep in one process: what every spread run must equal."""
    done = schedcmp_run("run", *SWEEP, "--out", folders / "single", "--format", "json", cache=folders / "cache-1")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {run["status"] for run in document["runs"]} == {"ok"} and len(document["runs"]) == 8
    assert all(run["distance"] for run in document["runs"]) and len(document["references"]) == 2
    return document


@pytest.fixture(scope="module")
def shards(folders) -> list[Path]:
    made = []
    for index in range(2):  # each shard its own cache: each computes the references it needs
        out = folders / f"shard-{index}"
        done = schedcmp_run("run", *SWEEP, "--shard", f"{index}/2", "--out", out, cache=folders / f"cache-s{index}")
        assert done.returncode == 0, done.stderr
        made.append(out)
    return made


def test_two_shards_merged_equal_one_process(single, shards, folders):
    parts = [json.loads((shard / "results.json").read_text()) for shard in shards]
    assert [part["shard"] for part in parts] == [{"index": 0, "count": 2}, {"index": 1, "count": 2}]
    assert all(part["plan"] == single["plan"] for part in parts)
    held = [run["id"] for part in parts for run in part["runs"]]
    assert sorted(held) == sorted(run["id"] for run in single["runs"])  # disjoint, covering
    assert not (shards[0] / "contact_sheet.png").exists()  # the merge draws the sheets
    merged = schedcmp_run("merge", folders / "merged", *shards, "--format", "json", "--html", cache=folders / "c")
    assert merged.returncode == 0, merged.stderr
    document = json.loads(merged.stdout)
    same_cells(document, single)
    assert document == json.loads((folders / "merged" / "results.json").read_text())
    assert document["world_size"] == 2 and [w["shard"]["index"] for w in document["workers"]] == [0, 1]
    # The trial: every merged run said rank 0. Each says the shard it was made in, as its part did.
    made_in = {run["id"]: run["shard"] for part in parts for run in part["runs"]}
    assert {run["id"]: run["shard"] for run in document["runs"]} == made_in
    assert {run["shard"]["index"] for run in document["runs"]} == {0, 1}
    assert document["imbalance"] >= 1 and "imbalance" in merged.stderr
    assert document["exit_code"] == 0 and document["sheets"] == ["contact_sheet.png"] and document["report"]
    for name in (
        document["sheets"] + [r["image"] for r in document["runs"]] + [r["image"] for r in document["references"]]
    ):
        assert (folders / "merged" / name).is_file()


def test_two_torchrun_ranks_equal_one_process(single, folders, tmp_path):
    out, events = folders / "ranked", tmp_path / "events.ndjson"
    done = schedcmp_run(
        "run", *SWEEP, "--out", out, "--format", "json", "--events", events, cache=folders / "cache-r", ranks=2
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # rank 0 alone prints: one document
    same_cells(document, single)
    assert document["world_size"] == 2 and sorted(w["rank"] for w in document["workers"]) == [0, 1]
    assert sum(w["cells"] for w in document["workers"]) == 8 and document["imbalance"] >= 1
    assert {run["rank"] for run in document["runs"]} <= {0, 1} and all(run["threads"] == 1 for run in document["runs"])
    assert all(run["host"] and run["device_name"] for run in document["runs"])
    assert len(document["references"]) == 2 and not any(r["cached"] for r in document["references"])
    lines = [json.loads(line) for line in events.read_text().splitlines()]  # rank 0 writes every rank's cells
    assert sorted(line["id"] for line in lines) == sorted(run["id"] for run in single["runs"])
    assert not (out / "ranks").exists()  # the parts are merged and gone
    assert done.stderr.strip().splitlines()[-1] == "schedcmp: exit 0"
    assert (out / "contact_sheet.png").is_file()


def test_a_dying_rank_leaves_what_finished_and_resume_runs_the_rest(single, folders, tmp_path):
    out, logs = folders / "faulty", tmp_path / "logs"
    failed = schedcmp_run(
        "run",
        *SWEEP,
        "--out",
        out,
        cache=folders / "cache-f",
        ranks=2,
        torchrun=["--redirects=3", f"--log-dir={logs}"],  # each rank's streams in a file of its own
        SCHEDCMP_TEST_FAIL_AFTER="1:2",
    )
    assert failed.returncode == 1  # torchrun's code for any failing rank
    stderr = {path.parent.name: path.read_text() for path in logs.rglob("stderr.log")}
    assert "rank 1 fails after 2 cells" in stderr["1"] and stderr["1"].strip().endswith("(exit 1)")
    assert stderr["0"].strip().splitlines()[-1] == "schedcmp: exit 143"  # SIGTERM from torchrun: schedcmp's code
    written = json.loads((out / "results.json").read_text())
    assert written["exit_code"] == 143 and written["interrupted"]
    part = json.loads((out / "ranks" / "rank-1" / "results.json").read_text())
    assert len(part["runs"]) >= 2  # the failing rank's finished batch was on disk before it failed
    resumed = schedcmp_run("run", "--resume", out, "--format", "json", cache=folders / "cache-f")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming:" in resumed.stderr
    same_cells(json.loads(resumed.stdout), single)
    assert not (out / "ranks").exists()


def test_resume_under_torchrun_after_rank_0_dies(single, folders):
    out = folders / "faulty-0"
    failed = schedcmp_run(
        "run", *SWEEP, "--out", out, cache=folders / "cache-g", ranks=2, SCHEDCMP_TEST_FAIL_AFTER="0:1"
    )
    assert failed.returncode == 1 and "rank 0 fails after 2 cells" in failed.stderr
    assert json.loads((out / "results.json").read_text())["exit_code"] == 1
    assert json.loads((out / "ranks" / "rank-0" / "results.json").read_text())["runs"]  # on disk before it died
    resumed = schedcmp_run("run", "--resume", out, "--format", "json", cache=folders / "cache-g", ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    same_cells(json.loads(resumed.stdout), single)


# -- merge refusals: in this process, on the shards above ------------------------------------------------------


def test_merge_refuses_parts_of_another_sweep(shards, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    other = tmp_path / "other"
    made = cli("run", *[("1,3" if arg == "1,2" else arg) for arg in SWEEP], "--shard", "1/2", "--out", other)
    assert made.exit_code == 0, made.stderr
    refused = cli("merge", tmp_path / "out", shards[0], other)
    assert refused.exit_code == 2 and "parts of different sweeps" in refused.stderr
    assert "seeds (1, 2) there, (1, 3) here" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_cell_in_two_parts(shards, cli, tmp_path):
    copy = shutil.copytree(shards[0], tmp_path / "copy-of-shard-0")
    refused = cli("merge", tmp_path / "out", shards[0], shards[1], copy)
    assert refused.exit_code == 2 and "cells in more than one part" in refused.stderr
    assert not (tmp_path / "out").exists()
    # The trial: the same folder twice said "cells in more than one part (shard0 and shard0)".
    twice = cli("merge", tmp_path / "out", shards[0], shards[1], shards[0])
    assert twice.exit_code == 2 and f"{shards[0]} is given twice" in twice.stderr
    assert not (tmp_path / "out").exists()


def test_merge_refuses_missing_cells_naming_them_unless_allowed(shards, cli, tmp_path):
    held = {run["id"] for run in json.loads((shards[1] / "results.json").read_text())["runs"]}
    refused = cli("merge", tmp_path / "out", shards[0])
    assert refused.exit_code == 2 and "4 of 8 cells are in no part" in refused.stderr
    assert all(cell in refused.stderr for cell in sorted(held)) and "--allow-missing" in refused.stderr
    assert not (tmp_path / "out").exists() and len(refused.stderr.strip().splitlines()) == 1
    allowed = cli("merge", tmp_path / "out", shards[0], "--allow-missing", "--format", "json")
    assert allowed.exit_code == 1
    document = allowed.json()
    assert document["exit_code"] == 1 and len(document["runs"]) == 4 and not held & {r["id"] for r in document["runs"]}
    assert (tmp_path / "out" / "contact_sheet.png").is_file()


def test_merge_refuses_a_used_out_folder_and_a_folder_that_is_no_part(shards, cli, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    refused = cli("merge", tmp_path / "full", *shards)
    assert refused.exit_code == 2 and "not empty" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    nothing = cli("merge", tmp_path / "out", shards[0], tmp_path / "full")
    assert nothing.exit_code == 2 and "results.json is missing" in nothing.stderr and not (tmp_path / "out").exists()
    itself = cli("merge", shards[0], *shards)
    assert itself.exit_code == 2 and "is one of the parts" in itself.stderr


@pytest.mark.parametrize("text", ["2/2", "-1/3", "x", "1/0"])
def test_run_refuses_a_bad_shard_in_one_line(cli, text, tmp_path):
    refused = cli("run", "a red apple", "--shard", text, "--out", tmp_path / "out")
    assert refused.exit_code == 2 and refused.stderr.startswith("schedcmp: error: --shard")
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_shard_resumes_as_that_shard(shards, cli, tmp_path):
    copy = shutil.copytree(shards[1], tmp_path / "copy")
    refused = cli("run", "--resume", copy, "--shard", "0/2")
    assert refused.exit_code == 2 and "made with --shard 1/2" in refused.stderr


def test_compare_runs_a_shard_too(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(schedcmp.UsageError, match="--shard"):
        schedcmp.compare(None, "a red apple", shard="3/3")
    part = schedcmp.compare(
        None, "a red apple", schedulers="euler,heun", steps=2, seed=[1, 2], batch_size=1, shard="1/2", progress=False
    )
    made = {run.id for run in part.runs}
    assert (part.results.shard.index, part.results.shard.count) == (1, 2)
    assert len(made) == 2 and set(part.results.plan.cells) > made and len(part.results.plan.cells) == 4
