"""Sweeps on a tiny real pipeline: grids, batching equivalence, presets, events, resume after kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CONFIGS = Path(__file__).parent.parent / "configs"


def pixels(path: Path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_grid_has_one_entry_per_cell_and_one_sheet_per_other_axis(sd15_model, cli, tmp_path):
    out = tmp_path / "o"
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim,euler",
        "--steps",
        "2,3",
        "--seed",
        "1-2",
        "--out",
        out,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    cells = {(r["scheduler"], r["steps"], r["seed"]) for r in document["runs"]}
    assert cells == {
        (s, st, seed) for s in ("DDIMScheduler", "EulerDiscreteScheduler") for st in (2, 3) for seed in (1, 2)
    }
    assert document["sheets"] == ["contact_sheet-seed-1.png", "contact_sheet-seed-2.png"]
    sheet = Image.open(out / "contact_sheet-seed-1.png")
    assert sheet.width > 2 * 192 and sheet.height > 2 * 192
    for run in document["runs"]:
        assert run["batch_size"] in (1, 2) and (out / run["image"]).is_file()


def test_x_axis_choice_and_no_sheet(sd15_model, cli, tmp_path):
    by_seed = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--steps",
        "2,3",
        "--seed",
        "1-2",
        "--x",
        "seed",
        "--out",
        tmp_path / "a",
        "--format",
        "json",
    )
    assert by_seed.json()["sheets"] == ["contact_sheet-steps-2.png", "contact_sheet-steps-3.png"]
    bare = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--seed",
        "1-3",
        "--steps",
        "2",
        "--no-sheet",
        "--out",
        tmp_path / "b",
        "--format",
        "json",
    )
    document = bare.json()
    assert document["sheets"] == [] and all(r["image"] is None and r["sha256"] for r in document["runs"])
    assert not (tmp_path / "b" / "images").exists()  # no images, and no empty images/ either


def test_batched_images_equal_unbatched_for_every_compatible_scheduler(sd15_model, cli, tmp_path):
    """One pipeline call with a list of generators (and of noise_sampler_seeds for the SDE one)."""
    common = ["run", "a horse", "--model", sd15_model, "-s", "all", "--seed", "3-5", "--steps", "3", "--format", "json"]
    batched = cli(*common, "--out", tmp_path / "batched", "--batch-size", "3").json()
    single = cli(*common, "--out", tmp_path / "single", "--batch-size", "1").json()
    schedulers = {r["scheduler"] for r in batched["runs"]}
    assert "DPMSolverSDEScheduler" in schedulers and len(schedulers) >= 14
    single_by_id = {r["id"]: r for r in single["runs"]}
    for run in batched["runs"]:
        assert run["batch_size"] == 3 and single_by_id[run["id"]]["batch_size"] == 1
        difference = np.abs(
            pixels(tmp_path / "batched" / run["image"]) - pixels(tmp_path / "single" / run["image"])
        ).max()
        assert difference <= 2, (run["id"], difference)
    seeds_differ = {r["sha256"] for r in batched["runs"] if r["scheduler"] == "DDIMScheduler"}
    assert len(seeds_differ) == 3  # each image of a batch starts from its own noise


def test_prompts_file_and_prompt_axis(sd15_model, cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a horse\n\na rocket\n")
    result = cli(
        "run",
        "--prompts-file",
        prompts,
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    runs = result.json()["runs"]
    assert [r["prompt"] for r in runs] == ["a horse", "a rocket"] and runs[0]["batch_size"] == 2
    assert cli("run", "--model", sd15_model, "--out", tmp_path / "n").exit_code == 2


def test_config_file_with_command_line_overrides(sd15_model, cli, tmp_path):
    result = cli(
        "run",
        "--config",
        CONFIGS / "guide.toml",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "-s",
        "pndm,euler a:3",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    runs = result.json()["runs"]
    assert runs[0]["prompt"].startswith("A photograph of an astronaut") and {r["seed"] for r in runs} == {8}
    assert [(r["scheduler"], r["steps"]) for r in runs] == [
        ("PNDMScheduler", 2),
        ("EulerAncestralDiscreteScheduler", 3),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('prompt = "x"\nsedd = 3\n')
    error = cli("run", "--config", bad, "--model", sd15_model)
    assert error.exit_code == 2 and "bad.toml:2: unknown key 'sedd'" in error.stderr


def test_steps_sweep_preset_makes_a_grid(sd15_model, cli, tmp_path):
    result = cli(
        "run",
        "--config",
        CONFIGS / "steps-sweep.toml",
        "--model",
        sd15_model,
        "--steps",
        "2,4",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    document = result.json()
    assert result.exit_code == 0 and document["sheets"] == ["contact_sheet.png"]
    assert {r["steps"] for r in document["runs"]} == {2, 4} and len({r["scheduler"] for r in document["runs"]}) >= 5


def test_events_ndjson(sd15_model, cli, tmp_path):
    events = tmp_path / "events.ndjson"
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim,euler",
        "--seed",
        "1-2",
        "--steps",
        "2",
        "--events",
        events,
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 4 and all(line["event"] == "cell" and line["status"] == "ok" for line in lines)
    to_stdout = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--steps",
        "2",
        "--events",
        "-",
        "--format",
        "csv",
        "--out",
        tmp_path / "p",
    )
    assert json.loads(to_stdout.stdout.splitlines()[0])["id"] == "ddim-s2-seed0"
    refused = cli("run", "a horse", "--model", sd15_model, "--events", "-", "--format", "json")
    assert refused.exit_code == 2 and "--events -" in refused.stderr


def test_resume_after_kill_9(sd15_model, tmp_path):
    out = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "schedcmp",
        "run",
        "a horse",
        "--model",
        str(sd15_model),
        "-s",
        "ddim,euler,heun,lms",
        "--seed",
        "1-3",
        "--steps",
        "40",
        "--batch-size",
        "1",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900  # generous: a busy CI machine is slow, the loop ends as soon as 3 cells are done
    while time.monotonic() < deadline:
        try:
            if len(json.loads((out / "results.json").read_text())["runs"]) >= 3:
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    done_before = {r["id"]: r["sha256"] for r in json.loads((out / "results.json").read_text())["runs"]}
    assert 3 <= len(done_before) < 12
    resumed = subprocess.run(
        [*command[:-2], "--resume", str(out), "--format", "json"], capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(done_before)} of 12 cells" in resumed.stderr
    document = json.loads(resumed.stdout)
    assert len(document["runs"]) == 12
    for run in document["runs"]:
        if run["id"] in done_before:
            assert run["sha256"] == done_before[run["id"]]
    assert (out / "contact_sheet.png").is_file() or document["sheets"]


def test_z_axis_makes_a_grid_of_grids(sd15_model, cli, tmp_path):
    out = tmp_path / "o"
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim,euler",
        "--steps",
        "2,3",
        "--seed",
        "1-2",
        "--z",
        "seed",
        "--out",
        out,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["sheets"] == ["contact_sheet.png"]
    separate = Image.open(tmp_path / "o" / "contact_sheet.png")
    single = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim,euler",
        "--steps",
        "2,3",
        "--seed",
        "1",
        "--out",
        tmp_path / "p",
        "--format",
        "json",
    )
    one_grid = Image.open(tmp_path / "p" / single.json()["sheets"][0])
    assert separate.height > 1.8 * one_grid.height - 100  # two grids, one under the other


def test_an_x_axis_that_does_not_vary_is_said(sd15_model, cli, tmp_path):
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--steps",
        "2,3",
        "--x",
        "seed",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0 and "--x seed: the seed does not vary here; the columns are steps" in result.stderr
    assert result.json()["sheets"] == ["contact_sheet.png"]
