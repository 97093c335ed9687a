"""Planning, layout, tables and atomic writes: pure functions, tested without torch."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from schedcmp.core.errors import UsageError
from schedcmp.core.names import SchedulerChoice
from schedcmp.core.plan import PipelineDefaults, plan_runs, run_id
from schedcmp.core.records import Run, Status
from schedcmp.core.request import Request, check, parse_call_args
from schedcmp.model.sample import FAILED, FILTERED, OK, judge_output, timestep_problem
from schedcmp.output import render, report

DEFAULTS = PipelineDefaults(steps=50, guidance_scale=7.5, width=64, height=64)


def test_run_ids_are_stable_and_filename_safe():
    assert (
        run_id("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, 20, 8)
        == "dpmsolvermultistep-karras-s20-seed8"
    )
    assert run_id(
        "DDIMScheduler", {"timestep_spacing": "trailing", "eta": 0.3}, 5, 0
    ) == "ddim-timestep_spacing-trailing-eta-0.3-s5-seed0".replace("_", "-")


def test_plan_pins_steps_and_keeps_ids_unique():
    choices = [
        SchedulerChoice("EulerDiscreteScheduler", steps=30),
        SchedulerChoice("DDIMScheduler"),
        SchedulerChoice("DDIMScheduler"),
    ]
    runs = plan_runs(
        choices, {"EulerDiscreteScheduler", "DDIMScheduler"}, Request(("a cat",), steps=(12,), seed=(3,)), DEFAULTS
    )
    assert [(r.id, r.steps) for r in runs] == [
        ("eulerdiscrete-s30-seed3", 30),
        ("ddim-s12-seed3", 12),
        ("ddim-s12-seed3-2", 12),
    ]
    assert runs[0].guidance_scale == 7.5 and runs[0].width == 64


def test_plan_uses_pipeline_defaults_when_nothing_is_given():
    runs = plan_runs([SchedulerChoice("DDIMScheduler")], {"DDIMScheduler"}, Request(("x",), width=32), DEFAULTS)
    assert (runs[0].steps, runs[0].width, runs[0].height) == (50, 32, 64)


def test_plan_refuses_incompatible_unless_allowed():
    choice = [SchedulerChoice("FlowMatchEulerDiscreteScheduler")]
    with pytest.raises(UsageError, match="not in this pipeline's compatibles.*--allow-incompatible"):
        plan_runs(choice, {"DDIMScheduler"}, Request(("x",)), DEFAULTS)
    runs = plan_runs(choice, {"DDIMScheduler"}, Request(("x",), allow_incompatible=True), DEFAULTS)
    assert runs[0].compatible is False


@pytest.mark.parametrize(
    "settings, message",
    [
        (Request(("   ",)), "prompt is empty"),
        (Request(()), "no prompt"),
        (Request(("x",), steps=(0,)), "--steps must be at least 1"),
        (Request(("x",), repeat=0), "--repeat"),
        (Request(("x",), width=-8), "--width"),
        (Request(("x",), guidance_scale=(-1,)), "--guidance-scale"),
        (Request(("x",), batch_size=0), "--batch-size"),
        (Request(("x",), seed_mode="random"), "--seed-mode"),
    ],
)
def test_settings_errors(settings, message):
    with pytest.raises(UsageError, match=message):
        check(settings)


def test_call_args():
    assert parse_call_args(["eta=0.3", "clip_skip=2", "guidance_rescale=0.7"]) == {
        "eta": 0.3,
        "clip_skip": 2,
        "guidance_rescale": 0.7,
    }
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
    assert (
        shape.width >= origins[2][0] + shape.tile_width
        and shape.height >= origins[4][1] + shape.tile_height + shape.label_height
    )


def test_wrap():
    fits = lambda line: len(line) <= 10  # noqa: E731
    assert render.wrap("one two three four", fits) == ["one two", "three four"]
    assert render.wrap("abcdefghijklmnopqrstuvw", fits) == ["abcdefghij", "klmnopqrst", "uvw"]
    assert render.wrap("", fits) == []


def entry(id, seconds, status=Status.OK, nfe=5, alias=None) -> Run:
    return Run(
        id=id,
        scheduler="DDIMScheduler",
        alias=alias,
        prompt="p",
        seed=0,
        steps=5,
        nfe=nfe,
        seconds=seconds,
        seconds_all=[] if seconds is None else [seconds, seconds * 2],
        ms_per_nfe=1.0,
        peak_memory_bytes=2**20,
        status=status,
        reason=None if status == Status.OK else "boom",
    )


def test_table_rows_sorted_failed_last_with_total():
    rows = report.table_rows([entry("b", 2.0), entry("x", None, Status.FAILED, nfe=0), entry("a", 1.0)])
    assert [r["id"] for r in rows] == ["a", "b", "x", "total"]
    assert rows[-1]["seconds"] == 3.0 and rows[-1]["nfe"] == 10 and rows[-1]["status"] == "1 failed"
    assert rows[0]["seconds_max"] == 2.0 and rows[0]["peak_memory_mib"] == 1.0  # MiB, and named so


def test_csv_and_markdown():
    rows = report.table_rows([entry("a", 1.0)])
    csv_text = report.to_csv(rows)
    assert csv_text.splitlines()[0] == ",".join(report.TABLE_COLUMNS)
    assert csv_text.splitlines()[1].startswith("a,DDIM,5,5,1.000")
    assert len(csv_text.splitlines()) == 2  # no total row: a sum is not a run
    markdown = report.to_markdown(rows)
    assert markdown.splitlines()[0].startswith("| id | scheduler |") and len(markdown.splitlines()) == 4


def test_a_seed_sweep_tells_its_rows_apart():
    """Four identical "EulerDiscrete (Euler) | 20 | 20 | 0.15" rows: the varying axes get columns."""
    entries = [replace(entry(f"e{seed}", 1.0), seed=seed) for seed in (1, 2)]
    rows = report.table_rows(entries)
    assert report.table_columns(rows)[:3] == ["id", "scheduler", "seed"]
    assert [line.split(",")[2] for line in report.to_csv(rows).splitlines()] == ["seed", "1", "2"]
    assert "prompt" not in report.table_columns(rows) and "guidance_scale" not in report.table_columns(rows)


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


# -- grids, number lists, presets ---------------------------------------------------------------------

from schedcmp.core.plan import batches  # noqa: E402
from schedcmp.core.request import load_config_file, parse_numbers  # noqa: E402


@pytest.mark.parametrize(
    "text, integers, values",
    [
        ("10,20,30", True, (10, 20, 30)),
        ("1-4", True, (1, 2, 3, 4)),
        ("10-50:10", True, (10, 20, 30, 40, 50)),
        ("10-50:15", True, (10, 25, 40)),
        ("10-50/5", True, (10, 20, 30, 40, 50)),
        ("1-10/4", True, (1, 4, 7, 10)),
        ("8", True, (8,)),
        ("5,7.5", False, (5.0, 7.5)),
        ("3-9:1.5", False, (3.0, 4.5, 6.0, 7.5, 9.0)),
        ("1-2/3", False, (1.0, 1.5, 2.0)),
        ("3,1-3", True, (3, 1, 2)),
    ],
)
def test_number_lists(text, integers, values):
    assert parse_numbers(text, "--x", integers) == values


@pytest.mark.parametrize(
    "text, integers, message",
    [
        ("abc", True, "not a number"),
        ("5-1", True, "backwards"),
        ("1.5", True, "whole numbers"),
        ("1-3:0", True, "positive"),
        ("1-3/0", True, "at least 1"),
        ("5-7", False, "needs :STEP or /COUNT"),
        ("1,,2", True, "not a number"),
    ],
)
def test_number_list_errors(text, integers, message):
    with pytest.raises(UsageError, match=message):
        parse_numbers(text, "--steps", integers)


def test_plan_expands_every_axis_and_pinned_steps_do_not_sweep():
    choices = [SchedulerChoice("DDIMScheduler"), SchedulerChoice("EulerDiscreteScheduler", steps=7)]
    settings = Request(("a", "b"), steps=(2, 3), seed=(1, 2), guidance_scale=(5.0, 7.5))
    runs = plan_runs(choices, {"DDIMScheduler", "EulerDiscreteScheduler"}, settings, DEFAULTS)
    assert len(runs) == 2 * 2 * 2 * 2 + 1 * 2 * 2 * 2
    assert len({r.id for r in runs}) == len(runs)
    assert runs[0].id == "ddim-s2-seed1-g5.0-p0" and runs[-1].id == "eulerdiscrete-s7-seed2-g7.5-p1"
    assert {r.steps for r in runs if r.scheduler == "EulerDiscreteScheduler"} == {7}


def test_seed_modes():
    choice = [SchedulerChoice("DDIMScheduler")]
    same = plan_runs(choice, {"DDIMScheduler"}, Request(("a",), steps=(2, 3, 4), seed=(8,)), DEFAULTS)
    index = plan_runs(
        choice, {"DDIMScheduler"}, Request(("a",), steps=(2, 3, 4), seed=(8,), seed_mode="index"), DEFAULTS
    )
    assert [r.seed for r in same] == [8, 8, 8] and [r.seed for r in index] == [8, 9, 10]


def test_batches_group_only_seed_and_prompt_differences():
    choices = [SchedulerChoice("DDIMScheduler"), SchedulerChoice("EulerDiscreteScheduler")]
    runs = plan_runs(
        choices,
        {"DDIMScheduler", "EulerDiscreteScheduler"},
        Request(("a", "b"), steps=(2, 3), seed=(1, 2, 3)),
        DEFAULTS,
    )
    planned = batches(runs, 4)
    for batch in planned:
        assert len(batch) <= 4 and len({(r.scheduler, r.steps) for r in batch}) == 1
    assert sorted(r.id for batch in planned for r in batch) == sorted(r.id for r in runs)
    assert [len(b) for b in batches(runs, 1)] == [1] * len(runs)


def test_grid_pages_split_big_grids():
    assert render.pages(3, 4, 64, 64, 3) == [(range(0, 3), range(0, 4))]
    split = render.pages(100, 50, 64, 64, 3, limit=2000)
    assert len(split) > 1
    covered = {(r, c) for rows, columns in split for r in rows for c in columns}
    assert covered == {(r, c) for r in range(100) for c in range(50)}
    for rows, columns in split:
        shape = render.grid_shape_for(len(rows), len(columns), 64, 64, 3)
        assert shape.width <= 2000 and shape.height <= 2000


def grid_entry(scheduler, steps, seed, status=Status.OK) -> Run:
    return Run(
        id=f"{scheduler}-{steps}-{seed}",
        scheduler=scheduler,
        steps=steps,
        seed=seed,
        guidance_scale=7.5,
        prompt="p",
        status=status,
    )


def test_plan_sheets_rows_columns_and_one_sheet_per_other_axis():
    entries = [
        grid_entry(s, st, seed)
        for s in ("DDIMScheduler", "EulerDiscreteScheduler")
        for seed in (1, 2)
        for st in (10, 20, 30)
    ]
    sheets = render.plan_sheets(entries, None, None)
    assert [sheet.title for sheet in sheets] == ["seed 1", "seed 2"]
    assert sheets[0].rows == ["DDIM", "EulerDiscrete"] and sheets[0].columns == ["steps 10", "steps 20", "steps 30"]
    assert sorted((r, c) for r, c, _ in sheets[0].cells) == [(r, c) for r in range(2) for c in range(3)]
    by_seed = render.plan_sheets(entries, "seed", None)
    assert [sheet.title for sheet in by_seed] == ["steps 10", "steps 20", "steps 30"] and by_seed[0].columns == [
        "seed 1",
        "seed 2",
    ]
    assert render.plan_sheets([grid_entry("DDIMScheduler", 10, 1)], None, None) is None


def test_the_z_axis_stacks_and_an_x_that_does_not_vary_is_not_obeyed():
    """`--z seed` without --x used to make seed the columns; `--x seed` without seeds split a sweep in 1-cell sheets."""
    entries = [
        replace(grid_entry(s, 10, seed), guidance_scale=g)
        for s in ("DDIMScheduler", "EulerDiscreteScheduler")
        for seed in (1, 2)
        for g in (5.0, 7.5)
    ]
    stacked = render.plan_sheets(entries, None, "seed")
    assert [sheet.title for sheet in stacked] == ["seed 1", "seed 2"]
    assert stacked[0].columns == ["guidance 5.0", "guidance 7.5"]
    steps_only = [grid_entry(s, st, 1) for s in ("DDIMScheduler",) for st in (10, 20)]
    [sheet] = render.plan_sheets(steps_only, "seed", None)
    assert sheet.columns == ["steps 10", "steps 20"] and sheet.title == ""


def test_presets_in_configs_load():
    from pathlib import Path

    folder = Path(__file__).parent.parent / "configs"
    for name in ("guide", "karras", "steps-sweep", "ci-quick", "convergence"):
        values = load_config_file(str(folder / f"{name}.toml"))
        assert values["prompt"] and values["schedulers"]
    assert load_config_file(str(folder / "convergence.toml"))["reference"] is True
    guide = load_config_file(str(folder / "guide.toml"))
    assert guide["seed"] == "8" and "DPM++ 2M:20" in guide["schedulers"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'prompt = "x"\nsteps = 20\nguidance = 7\n',
            r"preset.toml:3: unknown key 'guidance'; did you mean 'guidance_scale'",
        ),
        ('prompt = "x"\n\nwidth = "wide"\n', r"preset.toml:3: width must be int, got str"),
        ('prompt = "x"\nstrict = 1\n', r"preset.toml:2: strict must be bool"),
        ("steps = true\n", r"preset.toml:1: steps must be"),
        ("prompt = [1, {a = 2}]\n", r"preset.toml:1: prompt must be a list of strings"),
        ('prompt = "x\n', r"not valid TOML"),
    ],
)
def test_preset_errors_name_the_key_and_line(tmp_path, text, message):
    path = tmp_path / "preset.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config_file(str(path))


def test_preset_values_in_flag_form(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'prompt = ["a", "b"]\nsteps = [10, 20]\nseed = "1-3"\n'
        'call_arg = {eta = 0.5, use_x = true}\nschedulers = ["ddim", "euler"]\n'
    )
    assert load_config_file(str(path)) == {
        "prompt": ["a", "b"],
        "steps": "10,20",
        "seed": "1-3",
        "call_arg": ["eta=0.5", "use_x=true"],
        "schedulers": "ddim,euler",
    }


def test_negative_numbers_parse_so_that_each_flag_says_what_is_wrong_with_them():
    """`--steps -5` used to say "'-5' is not a number"; now the number is read and the flag's own check speaks."""
    assert parse_numbers("-3", "--seed") == (-3,) and parse_numbers("-3-1", "--seed") == (-3, -2, -1, 0, 1)
    with pytest.raises(UsageError, match="--steps must be at least 1, got -5"):
        check(Request(prompt=("x",), steps=parse_numbers("-5", "--steps")))


def test_fontconfig_charsets_parse_to_ranges():
    ranges = render.charset_ranges("20-7e a0-2e9 2ec 400-4ff")
    assert ranges == ((0x20, 0x7E), (0xA0, 0x2E9), (0x2EC, 0x2EC), (0x400, 0x4FF))
    assert render.covers(ranges, ord("Ж")) and render.covers(ranges, 0x2EC) and not render.covers(ranges, 0x2EB)
    assert not render.covers(ranges, 0x10) and not render.covers((), 0x41)


def test_every_character_of_a_mixed_prompt_has_a_glyph_in_the_font_drawing_it():
    """Cyrillic, Greek and Arabic came out as boxes in Pillow's own font; now each finds a font that has it."""
    lettering = render.Lettering()
    chain = {id(chosen): ranges for chosen, ranges in lettering.fonts}
    text = "astronaut Привет мир Γειά σου مرحبا بالعالم 宇航员"
    for chosen, run in lettering.runs(text):
        for character in run.strip():
            if id(chosen) in chain:
                assert render.covers(chain[id(chosen)], ord(character)), (character, chosen.path)
            else:  # Pillow's own font only where no installed font has the character (CJK without Noto CJK here)
                assert not any(render.covers(ranges, ord(character)) for _, ranges in lettering.fonts), character
    script_fonts = {character: lettering.font_for(character) for character in "aЖΓم"}
    assert all(id(chosen) in chain for chosen in script_fonts.values()), "DejaVu Sans (make test installs it)"


def test_a_huge_prompt_gets_a_few_header_lines():
    lines = render.header_lines(["prompt: " + "word " * 2000, "seed 1"], lambda line: len(line) <= 80)
    assert len(lines) == render.HEADER_LINES_PER_ITEM + 1 and lines[-2].endswith(" …") and lines[-1] == "seed 1"


def test_each_native_flow_scheduler_names_its_flow_sampler_twin():
    """What an unsupported native cell suggests instead: the flow sampler's method with the same UI name."""
    from schedcmp.core.names import NATIVE_FLOW, flow_sampler_twin

    assert flow_sampler_twin("DPMSolverMultistepScheduler", {**NATIVE_FLOW, "flow_shift": 3.0}) == (
        "FlowSampler(method=dpmpp_2m)"
    )
    sde = {**NATIVE_FLOW, "flow_shift": 3.0, "algorithm_type": "sde-dpmsolver++"}
    assert flow_sampler_twin("DPMSolverMultistepScheduler", sde) == "FlowSampler(method=dpmpp_2m_sde)"
    assert flow_sampler_twin("FlowMatchHeunDiscreteScheduler", {}) == "FlowSampler(method=heun)"
    assert flow_sampler_twin("UniPCMultistepScheduler", NATIVE_FLOW) is None  # no UniPC method
    assert flow_sampler_twin("DPMSolverMultistepScheduler", {}) is None  # not on flow sigmas
    assert flow_sampler_twin("DPMSolverMultistepScheduler", {**NATIVE_FLOW, "solver_order": 3}) is None


def test_a_grid_cells_label_grows_to_what_its_longest_needs():
    """A torch,flax grid cut "vs torch 0.13 lv · 83.5 dB" to "vs torch … (in results.json)" and dropped the compile
    time: a grid's cells had two label lines, whatever their labels held."""
    assert render.grid_label_lines([["2 NFE · 0.03 s"]], 64, 64) == render.GRID_CELL_LINES == 2
    flax = ["2 NFE · 0.03 s", "vs torch 3.15 lv · 53.2 dB; aligned: within", "first call (compile) 3.58 s"]
    assert render.grid_label_lines([["2 NFE · 0.03 s"], flax], 64, 64) == 4
    failed = ["0 NFE", "FAILED: " + "a very long reason " * 20]
    assert render.grid_label_lines([failed], 64, 64) == render.GRID_MAX_CELL_LINES  # then cut, whole in results.json
