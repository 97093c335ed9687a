"""--backend in the main environment (diffusers 0.42, no jax): the setting on every surface, the Flax path's
refusals before anything loads, the one line naming `make flax`, and Flax records in the table, the files and the
sheet (pure: records made here). The Flax runs themselves are tests/test_flax.py's, in .venv-flax."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from schedcmp.core import records
from schedcmp.core.errors import EXIT_USAGE, UsageError
from schedcmp.core.request import Request
from schedcmp.flax import FlaxUnavailable, missing_dependency, supported

V1 = Path(__file__).parent / "data" / "v1"
without_jax = pytest.mark.skipif(missing_dependency() is None, reason="jax is here: tests/test_flax.py runs Flax")


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@without_jax
@pytest.mark.parametrize("backend", ["flax", "torch,flax"])
def test_a_flax_run_without_jax_exits_2_naming_make_flax(cli, backend):
    result = cli("run", "astronaut", "--backend", backend, "-s", "ddim", "--steps", "2")
    assert result.exit_code == EXIT_USAGE and result.stdout == ""
    assert "make flax" in only_line(result.stderr) and ".venv-flax/bin/schedcmp" in result.stderr
    assert not Path("schedcmp-runs").exists()  # nothing was made


@without_jax
def test_a_config_file_gives_the_backend_too(cli, tmp_path):
    preset = tmp_path / "flax.toml"
    preset.write_text('backend = "flax"\nschedulers = "ddim"\n')
    result = cli("run", "astronaut", "--config", preset)
    assert result.exit_code == EXIT_USAGE and "make flax" in only_line(result.stderr)


@without_jax
def test_compare_with_the_flax_backend_raises_the_same_error():
    import schedcmp

    with pytest.raises(FlaxUnavailable, match="make flax") as raised:
        schedcmp.compare(None, "astronaut", backend="flax", schedulers="ddim", steps=2)
    assert raised.value.exit_code == EXIT_USAGE


def test_an_unknown_backend_is_refused(cli):
    result = cli("run", "astronaut", "--backend", "jax")
    assert result.exit_code == EXIT_USAGE
    assert "unknown --backend 'jax'; choose from torch, flax, torch,flax" in only_line(result.stderr)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--reference"], "--reference"),
        (["--target-psnr", "30"], "--target-psnr"),
        (["--shard", "0/2"], "--shard"),
        (["--call-arg", "eta=0.3"], "--call-arg"),
        (["--width", "32"], "--width"),
        (["--schedule", "default,karras"], "--schedule"),  # it was ignored: Flax cells ran on their own sigmas
        (["--batch-size", "2"], "--batch-size"),
        (["--device", "cpu"], "--device"),
        (["--generator-device", "device"], "--generator-device"),
        (["--dtype", "fp16"], "--dtype fp16"),
        (["--model", "some/hub-id"], "--model some/hub-id"),
    ],
)
def test_what_the_flax_path_does_not_take_is_refused_before_anything_loads(cli, flags, named):
    """Refused by the request alone, in either environment: before jax is looked for, before any folder exists."""
    result = cli("run", "astronaut", "--backend", "flax", *flags)
    assert result.exit_code == EXIT_USAGE
    line = only_line(result.stderr)
    assert named in line and "--backend flax" in line and "make flax" not in line
    assert not Path("schedcmp-runs").exists()


def test_refusals_that_only_the_api_or_a_launcher_can_reach():
    with pytest.raises(UsageError, match="--resume is not supported with --backend flax"):
        supported.refuse(Request(prompt=("a",), backend="flax", resume=Path("old")), False, False)
    with pytest.raises(UsageError, match="runs in one process: run it without torchrun"):
        supported.refuse(Request(prompt=("a",), backend="flax"), True, False)
    with pytest.raises(UsageError, match="not a pipeline object"):
        supported.refuse(Request(prompt=("a",), backend="flax"), False, True)
    with pytest.raises(UsageError, match="compares the frameworks in float32"):
        supported.refuse(Request(prompt=("a",), backend="torch,flax", dtype="bf16"), False, False)
    assert supported.flax_dtype(Request(backend="flax", dtype="bf16")) == "bfloat16"


def test_the_flax_driver_is_imported_by_the_entry_point_alone_and_imports_no_jax():
    """schedcmp.flax.comparison sits beside the engine, called by schedcmp.scale.launch only; importing it (and
    the Flax package) needs nothing of jax, so it imports here, where there is none."""
    import subprocess
    import sys

    modules = "schedcmp.flax.comparison, schedcmp.scale.launch"
    code = f"import sys, {modules}; print(sorted({{'jax', 'flax'}} & set(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


# -- Flax records: old files, the table, the files, the sheet -------------------------------------------------------


def test_files_written_before_the_flax_backend_load_as_torch_runs():
    results = records.read_document(V1 / "results.json", "run")
    assert all(run.backend is None and run.cross is None for run in results.runs)  # None: the PyTorch engine
    assert results.devices is None
    assert "jax" not in records.versions() or missing_dependency() is None  # named only where installed


def flax_results() -> records.Results:
    """A torch,flax comparison as the Flax driver records it: PyTorch's DDIM, Flax's (within), Flax's PNDM (aligned)
    and Flax's LMS (failed)."""
    base = records.Run(
        id="ddim-s10-seed8",
        scheduler="DDIMScheduler",
        prompt="astronaut",
        seed=8,
        steps=10,
        status=records.Status.OK,
        width=64,
        height=64,
        image_path="images/ddim-s10-seed8.png",
    )
    torch_ddim = replace(base, seconds=1.2, seconds_all=[1.2], nfe=10, backend=records.Backend.TORCH)
    cross = records.CrossFramework(
        torch_run="ddim-s10-seed8",
        max_abs=0.00014,
        psnr=94.2,
        torch_repeat_max_abs=0.0,
        flax_repeat_max_abs=0.0,
        tolerance_max_abs=1 / 255,
        tolerance_psnr=60.0,
        agrees=True,
        within=True,
    )
    flax_ddim = replace(
        torch_ddim,
        id="flaxddim-s10-seed8",
        scheduler="FlaxDDIMScheduler",
        backend=records.Backend.FLAX,
        seconds=0.2,
        compile_seconds=6.0,
        cross=cross,
    )
    flax_pndm = replace(
        flax_ddim,
        id="flaxpndm-s10-seed8",
        scheduler="FlaxPNDMScheduler",
        compile_seconds=5.0,
        backend_note="the last 1 update(s) are never applied",
        cross=replace(
            cross,
            torch_run="pndm-s10-seed8",
            max_abs=0.0655,
            psnr=37.1,
            agrees=False,
            alignment="PyTorch stopped after `steps` UNet calls too",
            aligned_max_abs=0.00065,
            aligned_psnr=84.3,
        ),
    )
    flax_lms = replace(
        flax_ddim,
        id="flaxlmsdiscrete-s10-seed8",
        scheduler="FlaxLMSDiscreteScheduler",
        alias="LMS",
        status=records.Status.FAILED,
        reason="TracerBoolConversionError: ...",
        seconds=None,
        nfe=None,
        compile_seconds=None,
        cross=None,
        image_path=None,
    )
    return records.Results(
        model="m",
        pipeline="FlaxStableDiffusionPipeline + StableDiffusionPipeline",
        device="cpu (torch) + cpu ×2 (JAX)",
        devices=2,
        runs=[torch_ddim, flax_ddim, flax_pndm, flax_lms],
    )


def test_flax_records_fit_the_schema_and_come_back():
    import schemas

    results = flax_results()
    document = json.loads(records.dumps(results))
    schemas.validate(document)
    back = records.load_document(document, "run")
    assert back.runs[2].cross.alignment and back.runs[2].backend == "flax" and back.devices == 2


def test_the_table_gives_compile_seconds_and_the_distance_to_pytorch():
    from schedcmp.output import console, report

    rows = report.table_rows(flax_results().runs)
    columns = report.table_columns(rows)
    assert {"backend", "compile_seconds", "cross_max_abs", "cross_psnr", "agrees", "within"} <= set(columns)
    assert "latent_rmse" not in columns  # no reference: the notes are the backend's
    by_id = {row["id"]: row for row in rows}
    assert by_id["total"]["compile_seconds"] == 11.0
    assert "within once aligned: PyTorch stopped after" in by_id["flaxpndm-s10-seed8"]["backend_note"]
    titles = [title for title, _, _ in console.timing_columns(rows)]
    assert ["compile s", "vs torch", "repeats", "agrees"] == titles[4:8]
    texts = {title: text(by_id["flaxpndm-s10-seed8"]) for title, _, text in console.timing_columns(rows)}
    assert texts["agrees"] == "NO; aligned: 0.17 lv 84.3 dB, within"
    assert texts["vs torch"] == "16.70 lv 37.1 dB" and texts["compile s"] == "5.00" and texts["repeats"] == "0/0"
    csv = report.to_csv(rows).splitlines()
    assert "compile_seconds" in csv[0] and "cross_max_abs" in csv[0] and len(csv) == 5


def test_a_torch_only_table_keeps_its_columns():
    from schedcmp.output import report

    runs = records.read_document(V1 / "results.json", "run").runs
    columns = report.table_columns(report.table_rows(runs))
    assert not {"backend", "compile_seconds", "cross_max_abs"} & set(columns)


def test_the_sheet_labels_say_compile_and_the_distance_to_pytorch():
    from schedcmp.output import render

    runs = flax_results().runs
    expected = ["10 NFE · 0.20 s", "vs torch 0.04 lv · 94.2 dB", "first call (compile) 6.00 s"]
    assert render.cell_lines(runs[1]) == expected
    assert render.distance_line(runs[2]) == "vs torch 16.70 lv · 37.1 dB; aligned: within"


def test_the_answer_says_when_the_frameworks_agree_on_none():
    """With PNDM alone it said "PyTorch and Flax agree, ... within max abs 0.00392 ...: none"."""
    from schedcmp.flax.comparison import cross_answer

    runs = flax_results().runs
    assert cross_answer(runs)[0].endswith("as diffusers' defaults compute them: DDIM")
    lines = cross_answer([run for run in runs if run.scheduler != "FlaxDDIMScheduler"])
    assert lines[0] == (
        "PyTorch and Flax agree on none, from the same latents and weights, within max abs 0.00392 (one 8-bit "
        "level) and PSNR 60 dB, as diffusers' defaults compute them"
    )
    assert lines[1].startswith("PNDM: beyond it by diffusers' defaults; within once PyTorch does")
