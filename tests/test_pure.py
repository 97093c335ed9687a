"""Planning, layout, tables and atomic writes: pure functions, tested without torch."""

import json
import subprocess
import sys

import pytest

from schedcmp import render, report
from schedcmp.config import PipelineDefaults, Settings, check_settings, parse_call_args, plan_runs, run_id
from schedcmp.errors import UsageError
from schedcmp.sample import FAILED, FILTERED, OK, judge_output, timestep_problem
from schedcmp.schedulers import SchedulerChoice

DEFAULTS = PipelineDefaults(steps=50, guidance_scale=7.5, width=64, height=64)


def test_run_ids_are_stable_and_filename_safe():
    assert run_id("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, 20, 8) == "dpmsolvermultistep-karras-s20-seed8"
    assert run_id("DDIMScheduler", {"timestep_spacing": "trailing", "eta": 0.3}, 5, 0) == "ddim-timestep_spacing-trailing-eta-0.3-s5-seed0".replace("_", "-")


def test_plan_pins_steps_and_keeps_ids_unique():
    choices = [SchedulerChoice("EulerDiscreteScheduler", steps=30), SchedulerChoice("DDIMScheduler"), SchedulerChoice("DDIMScheduler")]
    runs = plan_runs(choices, {"EulerDiscreteScheduler", "DDIMScheduler"}, Settings("a cat", steps=12, seed=3), DEFAULTS)
    assert [(r.id, r.steps) for r in runs] == [("eulerdiscrete-s30-seed3", 30), ("ddim-s12-seed3", 12), ("ddim-s12-seed3-2", 12)]
    assert runs[0].guidance_scale == 7.5 and runs[0].width == 64


def test_plan_uses_pipeline_defaults_when_nothing_is_given():
    runs = plan_runs([SchedulerChoice("DDIMScheduler")], {"DDIMScheduler"}, Settings("x", width=32), DEFAULTS)
    assert (runs[0].steps, runs[0].width, runs[0].height) == (50, 32, 64)


def test_plan_refuses_incompatible_unless_allowed():
    choice = [SchedulerChoice("FlowMatchEulerDiscreteScheduler")]
    with pytest.raises(UsageError, match="not in this pipeline's compatibles.*--allow-incompatible"):
        plan_runs(choice, {"DDIMScheduler"}, Settings("x"), DEFAULTS)
    runs = plan_runs(choice, {"DDIMScheduler"}, Settings("x", allow_incompatible=True), DEFAULTS)
    assert runs[0].compatible is False


@pytest.mark.parametrize(
    "settings, message",
    [
        (Settings("   "), "prompt is empty"),
        (Settings("x", steps=0), "--steps must be at least 1"),
        (Settings("x", repeat=0), "--repeat"),
        (Settings("x", width=-8), "--width"),
        (Settings("x", guidance_scale=-1), "--guidance-scale"),
    ],
)
def test_settings_errors(settings, message):
    with pytest.raises(UsageError, match=message):
        check_settings(settings)


def test_call_args():
    assert parse_call_args(["eta=0.3", "clip_skip=2", "guidance_rescale=0.7"]) == {"eta": 0.3, "clip_skip": 2, "guidance_rescale": 0.7}
    with pytest.raises(UsageError, match="malformed --call-arg"):
        parse_call_args(["eta"])
    with pytest.raises(UsageError, match="use --steps"):
        parse_call_args(["num_inference_steps=3"])


def test_judge_output():
    import numpy as np

    image = np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)
    assert judge_output(image, False) == (OK, None)
    assert judge_output(image, True)[0] == FILTERED
    assert judge_output(np.zeros((4, 4, 3)), False) == (FAILED, "constant image (every pixel 0.000)")
    image[0, 0, 0] = np.nan
    assert judge_output(image, False)[0] == FAILED


def test_timestep_problem():
    assert timestep_problem(0.0, 999.0, 1000) is None
    assert timestep_problem(0.9, 1000.0, 1000) is None
    assert "outside its training range 0..999" in timestep_problem(-1.55, 1.1, 1000)


def test_grid_and_tile_sizes():
    assert render.grid_shape(15) == (4, 4)
    assert render.grid_shape(1) == (1, 1)
    assert render.grid_shape(40) == (6, 7)
    assert render.tile_size(64, 64) == (192, 192)
    assert render.tile_size(32, 48) == (128, 192)
    assert render.tile_size(512, 512) == (384, 384)
    assert render.tile_size(256, 256) == (256, 256)


def test_layout_positions_do_not_overlap():
    shape = render.layout(5, 64, 64, header_lines=3)
    origins = [shape.origin(i) for i in range(5)]
    assert origins[0] == (render.PADDING, shape.header_height + render.PADDING)
    assert origins[1][0] == origins[0][0] + shape.tile_width + render.PADDING
    assert origins[3][1] == origins[0][1] + shape.tile_height + shape.label_height + render.PADDING
    assert shape.width >= origins[2][0] + shape.tile_width and shape.height >= origins[4][1] + shape.tile_height + shape.label_height


def test_wrap():
    fits = lambda line: len(line) <= 10  # noqa: E731
    assert render.wrap("one two three four", fits) == ["one two", "three four"]
    assert render.wrap("abcdefghijklmnopqrstuvw", fits) == ["abcdefghij", "klmnopqrst", "uvw"]
    assert render.wrap("", fits) == []


def entry(id, seconds, status="ok", nfe=5, alias=None):
    return {"id": id, "scheduler": "DDIMScheduler", "alias": alias, "overrides": {}, "steps": 5, "nfe": nfe, "seconds": seconds,
            "seconds_all": [] if seconds is None else [seconds, seconds * 2], "ms_per_nfe": 1.0, "peak_memory_bytes": 2**20,
            "status": status, "reason": None if status == "ok" else "boom"}


def test_table_rows_sorted_failed_last_with_total():
    rows = report.table_rows([entry("b", 2.0), entry("x", None, "failed", nfe=0), entry("a", 1.0)])
    assert [r["id"] for r in rows] == ["a", "b", "x", "total"]
    assert rows[-1]["seconds"] == 3.0 and rows[-1]["nfe"] == 10 and rows[-1]["status"] == "1 failed"
    assert rows[0]["seconds_max"] == 2.0 and rows[0]["peak_memory_mb"] == 1.0


def test_csv_and_markdown():
    rows = report.table_rows([entry("a", 1.0)])
    csv_text = report.to_csv(rows)
    assert csv_text.splitlines()[0] == ",".join(report.TABLE_COLUMNS)
    assert csv_text.splitlines()[1].startswith("a,DDIM,5,5,1.000")
    markdown = report.to_markdown(rows)
    assert markdown.splitlines()[0].startswith("| id | scheduler |") and len(markdown.splitlines()) == 4


def test_write_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "results.json"
    report.write_atomic(target, json.dumps({"a": 1}))
    report.write_atomic(target, json.dumps({"a": 2}))
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, schedcmp.cli; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
