"""What a third new user hit (a shared 2-core machine, a fresh clone, about 145 bad inputs), item by item."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def one_line_error(result, words: str, code: int = 2) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("schedcmp: error:")]
    assert result.exit_code == code and len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr


# -- 1. a folder in use is refused, by a lock a crashed run does not leave behind ------------------------------


def test_a_folder_another_schedcmp_writes_into_is_refused(cli, sd15_model, tmp_path):
    from schedcmp.sweep.results import FolderLock

    out = tmp_path / "shared"
    first = cli("run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", out)
    assert first.exit_code == 0, first.stderr
    before = (out / "results.json").read_bytes()
    lock = FolderLock(out).acquire()  # as a second run holds it while it writes
    try:
        refused = cli("run", "a cat", "--model", sd15_model, "-s", "euler", "--steps", "2", "--out", out, "--overwrite")
        one_line_error(refused, f"output folder {out} is in use by another schedcmp (pid {os.getpid()} on")
        resumed = cli("run", "--resume", out)
        one_line_error(resumed, "is in use by another schedcmp")
    finally:
        lock.release()
    assert (out / "results.json").read_bytes() == before and "loading" not in refused.stderr


def test_a_crashed_run_leaves_no_lock_behind(cli, sd15_model, tmp_path):
    out = tmp_path / "crashed"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from schedcmp.sweep.results import FolderLock; lock = FolderLock({str(out)!r}).acquire(); "
            "print('held', flush=True); import time; time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdout.readline().strip() == "held"
    busy = cli("run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", out, "--overwrite")
    one_line_error(busy, f"pid {holder.pid}")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    after = cli("run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", out, "--overwrite")
    assert after.exit_code == 0, after.stderr
    assert not (out / ".schedcmp.lock").exists()  # removed by the run that took it over


# -- 2. a size that cannot fit is refused before the warm-up ------------------------------------------------------


def test_the_trials_huge_size_is_refused_before_the_warm_up(cli, tmp_path):
    """The trial's `--width 100000 --height 100000` grew to 23.5 GB in the warm-up until the OOM killer ended it,
    leaving a results.json with 0 runs. Its activations alone need over a terabyte: refused, and nothing written."""
    result = cli("run", "astronaut", "--width", "100000", "--height", "100000", "--out", tmp_path / "o")
    one_line_error(result, "100000x100000 (1 image a call) needs at least")
    assert "GiB are free: choose a smaller --width/--height or --batch-size" in result.stderr
    assert not (tmp_path / "o").exists()


def test_the_bound_counts_the_images_of_one_call_against_the_free_memory(cli, sd15_model, tmp_path, monkeypatch):
    from schedcmp.model import pipeline

    needed: list[int] = []
    bound = pipeline.memory_needed
    monkeypatch.setattr(pipeline, "memory_needed", lambda *args: needed.append(bound(*args)) or needed[-1])
    args = ("run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "1", "--seed", "1-4")
    assert cli(*args, "--batch-size", "1", "--out", tmp_path / "a").exit_code == 0  # it fits here
    assert cli(*args, "--batch-size", "4", "--out", tmp_path / "b").exit_code == 0
    assert needed[1] == 4 * needed[0]  # four images a call: four times the activations
    monkeypatch.setattr(pipeline, "free_memory", lambda device: needed[0] * 2)  # room for two images, not four
    assert cli(*args, "--batch-size", "1", "--out", tmp_path / "c").exit_code == 0
    one_line_error(cli(*args, "--batch-size", "4", "--out", tmp_path / "d"), "(4 images a call) needs at least")
    assert not (tmp_path / "d").exists()


# -- 3. zero is a value ------------------------------------------------------------------------------------------


def test_max_steps_zero_is_refused_not_taken_for_unset(cli, tmp_path):
    import schedcmp

    one_line_error(cli("run", "x", "--target-psnr", "30", "--max-steps", "0"), "--max-steps must be at least 1, got 0")
    with pytest.raises(schedcmp.UsageError, match="--max-steps must be at least 1, got 0"):
        schedcmp.compare(None, "x", target_psnr=30, max_steps=0)


# -- 4. tracebacks that became one line ------------------------------------------------------------------------


def test_a_tolerance_that_is_not_a_number(cli, tmp_path):
    one_line_error(cli("check", tmp_path, "--tolerance-for", "euler a(max_abs=abc)"), "max_abs must be a number")


def test_a_config_that_is_not_utf8(cli, tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00prompt = 1")
    one_line_error(cli("run", "--config", binary), f"cannot read --config {binary}")


def test_a_components_weights_given_as_the_model(cli, tmp_path):
    weights = ROOT / "schedcmp" / "default_model" / "unet" / "diffusion_pytorch_model.safetensors"
    result = cli("run", "x", "--model", weights, "--model-config", ROOT / "schedcmp" / "default_model")
    one_line_error(result, "holds the weights of one component (unet)")


# -- 5. the API: one answer with the CLI, never a foreign exception ----------------------------------------------


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"schedulers": 5}, "--schedulers must be a string, or a list of entries"),
        ({"prompt": 123}, "prompt must be a string or a list of strings"),
        ({"device": "tpu"}, "unknown --device 'tpu'"),
        ({"dtype": "fp8"}, "unknown --dtype 'fp8'"),
        ({"generator_device": "cuda"}, "unknown --generator-device 'cuda'"),
    ],
)
def test_bad_api_values_are_usage_errors(arguments, words):
    import schedcmp

    prompt = arguments.pop("prompt", "x")
    with pytest.raises(schedcmp.UsageError, match=words):
        schedcmp.compare(None, prompt, **arguments)


def test_loading_settings_with_a_pipeline_object_are_refused(sd15_model, tmp_path):
    import schedcmp
    from schedcmp.model import pipeline

    pipe = pipeline.load(str(sd15_model), "cpu", "fp32").pipe
    with pytest.raises(schedcmp.UsageError, match="device, dtype apply when schedcmp loads the model"):
        schedcmp.compare(pipe, "x", device="cuda", dtype="fp16", steps=1, schedulers="ddim", progress=False)
    made = schedcmp.compare(pipe, "x", call_arg=["eta=0.5"], steps=1, schedulers="ddim", progress=False)
    assert made.runs[0].call_args == {"eta": 0.5}  # `key=value` items, as the CLI takes them


# -- 6. SDXL: the default command does not exit 1 -----------------------------------------------------------------


def test_edm_euler_on_a_saved_sdxl_config_runs_as_diffusers_intends(cli, sdxl_model, tmp_path):
    """A scheduler config written by save_config holds every default, `sigma_min: null` among them; EDMEuler took
    that None as its own sigma_min and failed every SDXL run (TypeError: NoneType ** float)."""
    import shutil

    from diffusers import EulerDiscreteScheduler

    model = Path(shutil.copytree(sdxl_model, tmp_path / "sdxl-saved"))
    config = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    EulerDiscreteScheduler.from_config(config).save_config(model / "scheduler")
    assert json.loads((model / "scheduler" / "scheduler_config.json").read_text())["sigma_min"] is None
    result = cli("run", "x", "--model", model, "--steps", "2", "--out", tmp_path / "o", "--format", "json")
    assert result.exit_code == 0, result.stderr
    [edm] = [run for run in result.json()["runs"] if run["scheduler"] == "EDMEulerScheduler"]
    assert edm["status"] == "suspect" and "outside its training range" in edm["reason"]


# -- 10, 11. check's report paths and folders ----------------------------------------------------------------------


@pytest.fixture
def small_baseline(cli, sd15_model, tmp_path):
    made = cli("baseline", "create", tmp_path / "base", "x", "--model", sd15_model, "-s", "ddim", "--steps", "2")
    assert made.exit_code == 0, made.stderr
    return tmp_path / "base"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--junit-xml", "/proc/junit.xml"], "--junit-xml /proc/junit.xml is not writable"),
        (["--results", "/etc/hostname"], "--results /etc/hostname is a file, not a folder"),
        (["--results", "/etc/hostname/sub"], "/etc/hostname is a file, not a folder"),
    ],
)
def test_check_refuses_report_paths_before_it_runs(cli, small_baseline, flags, words):
    result = cli("check", small_baseline, *flags)
    one_line_error(result, words)
    assert "checking" not in result.stderr  # nothing was regenerated


def test_a_tolerance_for_a_scheduler_no_case_runs_is_refused_before_the_load(cli, small_baseline):
    """On a FLUX baseline `--tolerance-for "euler(...)"` named EulerDiscrete, which no case ran: it changed nothing,
    silently, and every case still drifted at the profile's tolerance."""
    result = cli("check", small_baseline, "--tolerance-for", "euler(max_abs=1,cosine=1)")
    one_line_error(result, "--tolerance-for names EulerDiscrete, which no case of")
    assert "its cases run DDIM: name those" in result.stderr and "checking" not in result.stderr


def test_a_relative_model_path_read_from_another_folder_says_what_to_do(cli, sd15_model, tmp_path, monkeypatch):
    relative = os.path.relpath(sd15_model, tmp_path)  # cli runs in tmp_path
    made = cli("baseline", "create", tmp_path / "base", "x", "--model", relative, "-s", "ddim", "--steps", "2")
    assert made.exit_code == 0, made.stderr
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = cli("check", tmp_path / "base")
    one_line_error(result, f"the baseline holds --model {relative} as it was given: check from the folder it was")


def test_check_makes_the_folder_of_its_junit_report(cli, small_baseline, tmp_path):
    """`--junit-xml reports/junit.xml` in a clean checkout: the cases ran, then the write failed on the missing
    folder (exit 2, a message naming a .tmp file), and the check's verdict was lost."""
    target = tmp_path / "reports" / "ci" / "junit.xml"
    result = cli("check", small_baseline, "--junit-xml", target)
    assert result.exit_code == 0, result.stderr
    assert target.read_text().startswith("<?xml") and [p.name for p in target.parent.iterdir()] == ["junit.xml"]


def test_check_takes_the_device_class_folder_too(cli, small_baseline):
    result = cli("check", small_baseline / "cpu", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert {case["status"] for case in result.json()["cases"]} == {"match"}


def test_baseline_create_refuses_a_run_folder_and_a_device_class_folder(cli, sd15_model, small_baseline, tmp_path):
    run = cli("run", "x", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "run")
    assert run.exit_code == 0
    one_line_error(cli("baseline", "create", tmp_path / "run", "x", "--model", sd15_model), "is a run's results folder")
    assert not (tmp_path / "run" / "cpu").exists()
    inner = cli("baseline", "create", small_baseline / "cpu", "x", "--model", sd15_model)
    one_line_error(inner, f"give the baseline folder, {small_baseline}")


# -- 12. no longer accepted silently ---------------------------------------------------------------------------


def test_model_config_without_a_single_file_model(cli):
    one_line_error(cli("run", "x", "--model-config", "/nonexistent"), "drop --model-config")


def test_a_config_prompt_of_numbers(cli, tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("prompt = [1, 2]\n")
    one_line_error(cli("run", "--config", preset), "p.toml:1: prompt must be a list of strings")


@pytest.mark.parametrize("key", ["schedule", "steps", "seed"])
def test_an_empty_list_is_refused_not_taken_for_the_default(cli, tmp_path, key):
    """`schedule = []` ran every scheduler's own schedule, and compare(steps=[]) ran 50 steps, silently."""
    import schedcmp

    preset = tmp_path / "p.toml"
    preset.write_text(f'prompt = "x"\n{key} = []\n')
    one_line_error(cli("run", "--config", preset), f"p.toml:2: {key} is an empty list: give at least one value")
    with pytest.raises(schedcmp.UsageError, match=rf"compare\({key}=\[\]\) is empty: give at least one value"):
        schedcmp.compare(None, "x", progress=False, **{key: []})


def test_one_scheduler_named_three_ways(cli):
    result = cli("run", "x", "-s", "Euler,euler,EulerDiscreteScheduler")
    one_line_error(result, "names EulerDiscrete more than once (Euler, euler, EulerDiscreteScheduler)")


# -- 7. contact-sheet labels keep their figures and break at words ----------------------------------------------


def by_characters(width: int):
    return lambda line: len(line) <= width


@pytest.mark.parametrize(
    "label, lines",
    [
        ("EulerDiscrete(use_karras_sigmas=True)", ["EulerDiscrete(", "use_karras_sigmas=", "True)"]),
        ("DDIM(timestep_spacing=trailing)", ["DDIM(", "timestep_spacing=", "trailing)"]),
        (
            "DPMSolverMultistep(use_flow_sigmas=True, prediction_type=flow_prediction, flow_shift=3.0)",
            ["DPMSolverMultistep(", "use_flow_sigmas=True,", "prediction_type=", "flow_prediction,", "flow_shift=3.0)"],
        ),
    ],
)
def test_long_names_break_at_commas_brackets_and_equals_signs(label, lines):
    """The trial's tiles read "use_k / arras_sigmas" and "timestep_spacing=t / railing"."""
    from schedcmp.output import render

    assert render.wrap(label, by_characters(21)) == lines


def test_a_tiles_figures_line_is_never_dropped_and_a_cut_says_where_the_rest_is():
    """SD3's flow-sigma DPM++ and UniPC tiles ended in "flow_shift=3.0) …": the steps · NFE · s line was gone."""
    from schedcmp.output import render

    fits = by_characters(24)
    name = "DPMSolverMultistep(use_flow_sigmas=True, prediction_type=flow_prediction, flow_shift=3.0)"
    reason = "SUSPECT: denoiser got timesteps -1.55..1.10, outside its training range 0..999, so its image is noise"
    lines = [name, "2 steps · 2 NFE · 0.05 s", "RMSE 0.31 · 12.0 dB", reason]
    label = render.tile_label(lines, fits, render.MAX_LABEL_LINES)
    text = [line for line, _ in label]
    assert len(label) <= render.MAX_LABEL_LINES and all(fits(line) for line in text)
    assert "2 steps · 2 NFE · 0.05 s" in text and "RMSE 0.31 · 12.0 dB" in text
    assert text[:5] == render.wrap(name, fits)  # the name whole, before the figures
    assert text[-2:] == ["SUSPECT: denoiser got", render.CUT_MARK]  # says where the rest is
    assert [note for _, note in label] == [False] * 6 + [True] * (len(label) - 6)  # notes in the status colour
    squeezed = [line for line, _ in render.tile_label(lines, fits, 4)]
    assert squeezed[0] == "DPMSolverMultistep(…" and "2 steps · 2 NFE · 0.05 s" in squeezed  # 4 lines: still there


def breaks_at_words(text: str, lines: list[str]) -> bool:
    """`lines` are `text` wrapped, each break at a space or after a comma, bracket, `=` or `_`."""
    position = 0
    for number, line in enumerate(lines):
        if not text.startswith(line, position):
            return False
        position += len(line)
        if number < len(lines) - 1 and not (text[position : position + 1] == " " or line[-1] in ",(=_"):
            return False
        position += text[position : position + 1] == " "
    return position == len(text)


def test_sd3_all_plus_tiles_keep_their_figures_and_whole_words(cli, sd3_model, tmp_path):
    from PIL import Image

    from schedcmp.core.records import load_document
    from schedcmp.output import render

    out = tmp_path / "sd3"
    # all+ names its flow-sigma solvers shortly now ("UniPCMultistep (flow sigmas)"); one entry with more overrides
    # keeps a label long enough to wrap, as the trial's were
    long_entry = (
        "DPMSolverMultistep(use_flow_sigmas=true,prediction_type=flow_prediction,"
        "solver_order=3,lower_order_final=false,euler_at_final=true)"
    )
    result = cli("run", "a horse", "--model", sd3_model, "-s", f"all+,{long_entry}", "--steps", "2", "--out", out)
    assert result.exit_code == 0, result.stderr
    runs = load_document(json.loads((out / "results.json").read_text()), "run").runs
    # DPM++ 2M and UniPC on flow sigmas (their labels say so: the flags and shift are in results.json)
    assert any(run.overrides.get("use_flow_sigmas") and "flow sigmas" in run.label for run in runs)
    lettering = render.Lettering()
    shape = render.layout(len(runs), runs[0].width, runs[0].height, 0)
    fits = lambda line: lettering.length(line) <= shape.tile_width  # noqa: E731
    labels = []
    for run in runs:
        lines = render.tile_lines(run)
        label = [line for line, _ in render.tile_label(lines, fits, render.MAX_LABEL_LINES)]
        assert render.wrap(lines[1], fits) == [line for line in label if "NFE" in line], run.label  # the figures
        name = label[: len(render.wrap(run.label, fits))]
        assert breaks_at_words(run.label, name) and not any(render.CUT_MARK in line for line in name), name
        labels.append(label)
    most = max(render.LABEL_LINES, *(len(label) for label in labels))
    assert most > render.LABEL_LINES  # the long names took more lines: every tile of the sheet gets them
    drawn = Image.open(out / "contact_sheet.png")  # as tall as header lines and labels of `most` lines make it
    heights = [render.layout(len(runs), runs[0].width, runs[0].height, header, most).height for header in range(12)]
    assert drawn.height in heights


# -- 8. the guide's pinned steps are six images, not a 6×3 grid ------------------------------------------------


def test_the_guides_comparison_is_one_contact_sheet_of_six(cli, tmp_path):
    from PIL import Image

    from schedcmp.output import render

    out = tmp_path / "guide"
    result = cli(
        "run", "A photograph of an astronaut riding a horse on Mars, high resolution, high definition.", "--seed", "8",
        "-s", "PNDM:50,DDIM:50,LMS:50,Euler:30,Euler a:30,DPM++ 2M:20", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    assert document["sheets"] == ["contact_sheet.png"] and len(document["runs"]) == 6
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width == render.layout(6, 64, 64, 0).width  # 3 tiles a row, as any 6 tiles: no 3-column grid
    assert sheet.height < render.layout(9, 64, 64, 0).height + 200  # two rows of tiles, not six of a grid


def test_pinned_steps_name_the_rows_when_another_axis_varies():
    from schedcmp.core.records import Run, Status
    from schedcmp.output import render

    def run(scheduler: str, steps: int, seed: int) -> Run:
        return Run(id=f"{scheduler}-{steps}-{seed}", scheduler=scheduler, prompt="p", seed=seed, steps=steps,
                   status=Status.OK)  # fmt: skip

    entries = (("PNDMScheduler", 50), ("DDIMScheduler", 30))
    pinned = [run(name, steps, seed) for name, steps in entries for seed in (1, 2)]
    assert render.steps_per_entry(pinned)
    [sheet] = render.plan_sheets(pinned, None, None, steps_per_row=True)
    assert sheet.rows == ["PNDM · 50 steps", "DDIM · 30 steps"] and sheet.columns == ["seed 1", "seed 2"]
    assert len(sheet.cells) == 4  # every cell filled
    assert not render.steps_per_entry([run("DDIMScheduler", steps, 1) for steps in (10, 20)])  # a steps sweep
    assert not render.steps_per_entry([run("DDIMScheduler", 20, 1), run("PNDMScheduler", 20, 1)])  # no steps vary


# -- 9. the answer survives timing noise, and its lines agree -----------------------------------------------------

# The trial's case: 6 schedulers, --target-psnr 25 --max-steps 16 on a busy 2-core machine. PSNR and seconds of
# each probe (doubling 1, 2, 4, 8, then bisection); Euler's 7-step run was slowed by the machine (1.12 s), its
# 8-step run took 0.76 s. The old answer: "DPM++ 2M needs 8 steps (0.86 s), 1.3× faster than Euler (7 steps)".
TRIAL_PROBES = {
    ("DDIMScheduler", None): {1: (8.3, 0.2), 2: (9.7, 0.3), 4: (18.5, 0.45), 8: (28.95, 0.82), 6: (24.0, 0.71),
                              7: (26.954, 1.20)},
    ("EulerDiscreteScheduler", "Euler"): {1: (10.4, 0.2), 2: (10.6, 0.3), 4: (15.7, 0.45), 8: (28.35, 0.76),
                                          6: (22.1, 0.70), 7: (25.05, 1.12)},
    ("DPMSolverMultistepScheduler", "DPM++ 2M"): {1: (10.6, 0.2), 2: (12.7, 0.3), 4: (18.8, 0.45),
                                                  8: (26.1, 0.86), 6: (21.3, 0.66), 7: (24.65, 0.93)},
}  # fmt: skip


def searched_rounds(probes: dict, target_psnr: float = 25.0, max_steps: int = 16, nfe_per_step: dict | None = None):
    """Hand-made records of a finished search: (Rounds, runs by id), as the engine leaves them."""
    from schedcmp.core.names import SchedulerChoice, ui_label
    from schedcmp.core.records import Determinism, Distance, Run, Status
    from schedcmp.core.request import Request
    from schedcmp.quality import targets
    from schedcmp.quality.stepsearch import StepSearch, Target

    rounds = targets.Rounds(Target("psnr", target_psnr, max_steps), Request(), set(), None)
    runs = {}
    for (scheduler, alias), table in probes.items():
        label = ui_label(scheduler, alias, {})
        entry = targets.Searched(SchedulerChoice(scheduler, alias=alias), label, StepSearch(rounds.target))
        for steps, (psnr, seconds) in table.items():
            run_id = f"{scheduler}-s{steps}"
            nfe = steps * (nfe_per_step or {}).get(label, 1)
            runs[run_id] = Run(
                id=run_id, scheduler=scheduler, alias=alias, prompt="astronaut on mars", seed=8, steps=steps, nfe=nfe,
                seconds=seconds, seconds_all=[seconds], status=Status.OK, determinism=Determinism.DETERMINISTIC,
                reference="ref-8", distance=Distance(latent_rmse=1 / psnr, psnr=psnr, ssim=1.0),
            )  # fmt: skip
            entry.search.add(steps, psnr)
            entry.cells[steps] = [run_id]
        assert entry.search.next_steps() is None  # the search is done
        rounds.entries.append(entry)
    return rounds, runs


def answer_of(probes: dict, **options) -> list[str]:
    from schedcmp.quality import summary, targets

    rounds, runs = searched_rounds(probes, **options)
    found = targets.results(rounds, runs)
    line = targets.answer_line(rounds.spec(), found)
    return summary.answer_lines(summary.summarise(list(runs.values()), "psnr"), line, rounds.target.meets)


def test_the_trials_answer_compares_model_calls_where_the_seconds_are_noise():
    from schedcmp.quality import targets

    rounds, runs = searched_rounds(TRIAL_PROBES)
    found = targets.results(rounds, runs)
    assert [(e.label, e.steps, e.nfe) for e in found] == [("DDIM", 7, 7), ("Euler", 7, 7), ("DPM++ 2M", 8, 8)]
    euler = found[1]
    assert euler.seconds_range == pytest.approx([0.76 * 7 / 8, 1.12])  # its own 8-step run, scaled to 7 NFE
    assert answer_of(TRIAL_PROBES) == [
        "PSNR ≥ 25 dB: DDIM needs 7 steps (7 NFE, 0.717–1.20 s), a tie with Euler (7 steps, 7 NFE): their seconds "
        "are within each other's timing noise; DDIM comes closer (27.0 dB against 25.1 dB)",
        "on the front (distance against NFE, among the runs that reach the target): DDIM; best pick by budget: "
        "≤8 NFE: DDIM (7–8 steps)",
        "caveat: one prompt and one seed is all this saw: an anecdote, not a ranking",
        "reading the picks: DDIM (7–8 steps) means DDIM at the most steps that fit the budget, from 7 to 8",
    ]


def test_fewer_model_calls_win_where_seconds_overlap():
    probes = {key: table for key, table in TRIAL_PROBES.items() if key[0] != "DDIMScheduler"}
    assert answer_of(probes)[0] == (
        "PSNR ≥ 25 dB: Euler needs 7 steps (7 NFE, 0.665–1.12 s), fewer model calls than DPM++ 2M (8 steps, 8 NFE); "
        "their seconds are within each other's timing noise"
    )


def test_a_speed_difference_beyond_the_noise_is_claimed_and_the_lines_say_why_they_differ():
    """Heun makes two model calls a step: at 7 steps 13 NFE, yet (say, on a machine where Euler's steps cost more)
    clearly faster in seconds. The first line goes by seconds, the front by model calls: it says so."""
    probes = {
        ("HeunDiscreteScheduler", "Heun"): {1: (12.0, 0.05), 2: (20.0, 0.1), 4: (26.0, 0.2), 3: (24.0, 0.15)},
        ("EulerDiscreteScheduler", "Euler"): TRIAL_PROBES[("EulerDiscreteScheduler", "Euler")],
    }
    lines = answer_of(probes, nfe_per_step={"Heun": 2})
    assert lines[0] == (
        "PSNR ≥ 25 dB: Heun needs 4 steps (8 NFE, 0.200 s), at least 3.32× faster than Euler (7 steps, 7 NFE), "
        "beyond their timing noise (0.665–1.12 s); by model calls alone Euler is cheaper (7 NFE against 8), which the "
        "front below counts"
    )
    assert lines[1] == (
        "on the front (distance against NFE, among the runs that reach the target): Euler; best pick by budget: "
        "≤8 NFE: Euler (7–8 steps)"
    )


def test_one_timing_alone_is_never_a_speed_claim():
    """Reached at 1 step, with no neighbour below: one timing each, however far apart, cannot be told from noise."""
    probes = {
        ("DDIMScheduler", None): {1: (30.0, 0.9)},
        ("EulerDiscreteScheduler", "Euler"): {1: (31.0, 0.2)},
    }
    first = answer_of(probes)[0]
    assert first == (
        "PSNR ≥ 25 dB: Euler needs 1 step (1 NFE, 0.20 s), a tie with DDIM (1 step, 1 NFE): their seconds are "
        "within each other's timing noise; Euler comes closer (31.0 dB against 30.0 dB)"
    )


def test_batched_cells_are_one_timing_and_a_lead_under_five_percent_is_no_speed_claim():
    """configs/answer.toml batches its 6 pairs into one call: six equal per-image seconds are one measurement.
    There DDIM (0.100 s) against DEIS (0.103 s) read "at least 1.0× faster"."""
    from schedcmp.core.records import EqualQuality, Run, Spread, Status, TargetStatus
    from schedcmp.quality import targets

    batch = [Run(id=f"c{pair}", scheduler="DDIMScheduler", prompt="p", seed=pair, steps=12, nfe=12, seconds=0.1,
                 seconds_all=[0.1], status=Status.OK) for pair in range(6)]  # fmt: skip
    assert targets.seconds_range(batch, [], 12) is None
    neighbour = Run(id="n", scheduler="DDIMScheduler", prompt="p", seed=0, steps=11, nfe=11, seconds=0.0935,
                    status=Status.OK)  # fmt: skip
    assert targets.seconds_range(batch, [neighbour], 12) == pytest.approx([0.1, 0.102])

    def reached(label: str, nfe: int, low: float, high: float) -> EqualQuality:
        return EqualQuality(label=label, scheduler=label, status=TargetStatus.REACHED, steps=nfe, nfe=nfe,
                            seconds=Spread(low, low, high), seconds_range=[low, high],
                            distance=Spread(35.4, 35.0, 36.0))  # fmt: skip

    ddim, deis = reached("DDIM", 12, 0.100, 0.1004), reached("DEIS", 13, 0.1030, 0.1050)
    assert not targets.clearly_faster(ddim, deis) and targets.cheaper(ddim, deis, "psnr")  # by model calls
    spec = targets.TargetSpec("psnr", 35.0, 100)
    assert targets.answer_line(spec, [ddim, deis]) == (
        "PSNR ≥ 35 dB: DDIM needs 12 steps (12 NFE, 0.100 s), fewer model calls than DEIS (13 steps, 13 NFE); "
        "their seconds are within each other's timing noise"
    )


# -- 14. `schedcmp report DIR` says what is missing -------------------------------------------------------------


def test_report_says_on_stderr_which_images_and_references_are_gone(cli, sd15_model, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "o"
    made = cli(
        "run", "x", "--model", sd15_model, "-s", "ddim,euler,dpm++ 2m", "--steps", "2", "--reference-spec", "DDIM:4",
        "--out", out,
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    intact = cli("report", out)
    assert intact.exit_code == 0 and "missing" not in intact.stderr
    (out / "images" / "ddim-s2-seed0.png").unlink()
    (out / "images" / "eulerdiscrete-s2-seed0.png").unlink()
    shutil.rmtree(out / "reference")
    result = cli("report", out)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 2 of 3 run images missing, 'image missing' on the page: images/ddim-s2-seed0.png, "
        "images/eulerdiscrete-s2-seed0.png",
        f"warning: 1 of 1 reference images missing (reference/ gone), 'image missing' on the page: "
        f"{json.loads((out / 'results.json').read_text())['references'][0]['image']}",
    ]
    assert result.stdout.strip() == str(out / "report.html")  # stdout stays the page alone


# -- 15. threads on a busy machine ------------------------------------------------------------------------------


def busy(load: float, cores: int = 2, default: int = 2, own: float = 0.0, omp: str | None = None):
    from schedcmp.model.threads import Machine

    return Machine(cores=cores, default=default, load=load, own=own, omp_num_threads=omp)


def test_auto_takes_the_cores_other_processes_leave():
    from schedcmp.model.threads import choose

    threads, note = choose("auto", busy(load=3.3, own=0.05))  # the trial: other processes kept both cores busy
    assert threads == 1 and note == (
        "busy machine: other processes keep 3.2 of 2 cores busy: torch gets 1 thread instead of 2 "
        "(--threads 2 to use them all)"
    )
    assert choose("auto", busy(load=0.3)) == (None, None)  # idle: torch's own count
    assert choose("auto", busy(load=2.4, own=2.0)) == (None, None)  # the load is ours (a notebook's earlier runs)
    assert choose("auto", busy(load=1.2, cores=4, default=4))[0] == 3  # one core busy elsewhere: the other three
    assert choose("auto", busy(load=9.0, omp="4")) == (None, None)  # OMP_NUM_THREADS is the user's (torchrun's)
    assert choose("auto", busy(load=None)) == (None, None)  # no load average on this system
    assert choose(2, busy(load=9.0)) == (2, None)  # a number is taken as it is
    # more threads than cores is taken too, with a warning: --threads 999 made a 2-step run take 8.7 s, not 0.03 s
    assert choose(3, busy(load=0.0)) == (
        3,
        "warning: --threads 3 is more than the 2 cores here: torch's threads will wait for cores on every operation "
        "(--threads 2, or auto, to fit them)",
    )


def test_auto_measures_the_cpu_now_not_the_minute_before(monkeypatch, steady_threads):
    """The 1-minute load average still counts a run that has just ended: bench_run's ratio went from 1.03 to 1.28
    when each run took the one before it for a busy machine. The CPU counters, less this process's own CPU time,
    say what other processes keep busy now: over the imports since the module's first reading, or a short sleep."""
    import time
    from dataclasses import replace

    from schedcmp.model import threads
    from schedcmp.model.threads import Reading

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (7.5, 7.5, 7.5))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)  # a 2-core machine, whatever runs the test
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "SAMPLE_SECONDS", 0.0)
    start = time.monotonic() - 3.0
    monkeypatch.setattr(threads, "last_reading", Reading(at=start, ticks=(1000, 400), own=5.0))  # at the import
    readings = iter(
        [
            Reading(at=start + 1.5, ticks=(1300, 550), own=6.5),  # half the ticks busy: this process, importing
            Reading(at=start + 3.0, ticks=(1600, 560), own=8.0),  # all but 10 busy: we and another process
        ]
    )
    monkeypatch.setattr(threads, "reading", lambda: next(readings))
    machine = replace(steady_threads(), default=2)
    assert (machine.load, machine.own, machine.others) == (1.0, 1.0, 0.0)
    assert threads.choose("auto", machine) == (None, None)  # a load average of 7.5 says nothing of now
    machine = replace(steady_threads(), default=2)
    assert machine.others == pytest.approx(0.933, abs=0.001) and threads.choose("auto", machine)[0] == 1

    # a window older than WINDOW_SECONDS (a notebook's second compare()) is not trusted: a fresh one is read
    monkeypatch.setattr(threads, "last_reading", Reading(at=start - 60.0, ticks=(0, 0), own=0.0))
    readings = iter(
        [Reading(at=start, ticks=(1000, 400), own=5.0), Reading(at=start + 0.2, ticks=(1040, 402), own=5.0)]
    )
    machine = replace(steady_threads(), default=2)
    assert machine.load == pytest.approx(1.9) and machine.own == 0.0 and threads.choose("auto", machine)[0] == 1

    readings = iter([Reading(at=start, ticks=None, own=5.0), Reading(at=start + 0.2, ticks=None, own=5.0)])
    assert steady_threads().load == 7.5  # no counters (no /proc): the load average stands in


def test_busy_between_two_readings(monkeypatch):
    from schedcmp.model import threads
    from schedcmp.model.threads import Reading, busy_between

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    first = Reading(at=10.0, ticks=(1000, 400), own=1.0)
    assert busy_between(first, Reading(at=12.0, ticks=(1400, 600), own=2.0)) == (1.0, 0.5)  # half of 2 cores; ours
    assert busy_between(first, Reading(at=12.0, ticks=None, own=2.0)) is None
    assert busy_between(first, Reading(at=10.0, ticks=(1400, 600), own=2.0)) is None  # no time passed
    assert busy_between(first, Reading(at=12.0, ticks=(1000, 400), own=2.0)) is None  # no ticks counted


def test_our_own_share_of_the_load_average():
    from schedcmp.model.threads import own_load

    assert own_load(2.0, 2.0) == pytest.approx(0.033, abs=0.001)  # just started: the average has barely seen us
    assert own_load(240.0, 120.0) == pytest.approx(2 * (1 - 2.718281828**-2))  # two busy threads for 2 minutes
    assert own_load(1.0, 0.0) == 0.0


def test_threads_are_set_for_the_work_and_given_back(cli, sd15_model, tmp_path, monkeypatch):
    import torch

    from schedcmp.model import threads

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "this_machine", lambda: busy(load=5.0, default=before + 1))
    result = cli("run", "x", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    assert f"torch gets 1 thread instead of {before + 1} (--threads {before + 1} to use them all)" in result.stderr
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    assert {run["threads"] for run in document["runs"]} == {1} and document["settings"]["threads"] == "auto"
    assert torch.get_num_threads() == before  # compare() leaves a notebook's threads as they were
    two = cli("run", "x", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "t", "--threads", 2)
    assert two.exit_code == 0 and "busy machine" not in two.stderr
    assert {run["threads"] for run in json.loads((tmp_path / "t" / "results.json").read_text())["runs"]} == {2}


def test_threads_is_one_setting_on_every_surface(cli, sd15_model, tmp_path):
    import inspect

    import schedcmp

    one_line_error(cli("run", "x", "--threads", "0"), "--threads must be at least 1, got 0")
    one_line_error(cli("run", "x", "--threads", "many"), "--threads must be a whole number or auto, got 'many'")
    preset = tmp_path / "p.toml"
    preset.write_text('prompt = "x"\nthreads = 1\nschedulers = "ddim"\nsteps = 2\n')
    made = cli("run", "--config", preset, "--model", sd15_model, "--out", tmp_path / "c", "--format", "json")
    assert made.exit_code == 0 and {run["threads"] for run in made.json()["runs"]} == {1}
    assert inspect.signature(schedcmp.compare).parameters["threads"].default == "auto"
    comparison = schedcmp.compare(str(sd15_model), "x", steps=1, schedulers="ddim", threads=1, progress=False)
    assert comparison.runs[0].threads == 1
    with pytest.raises(schedcmp.UsageError, match="--threads must be at least 1, got 0"):
        schedcmp.compare(None, "x", threads=0)


def test_check_regenerates_with_the_thread_count_the_baseline_was_made_with(cli, sd15_model, tmp_path, monkeypatch):
    """A baseline made by `--threads auto` on a busy machine ran on fewer threads; check on a quiet one would sum
    floats in another order: it takes the recorded count."""
    import torch

    from schedcmp.model import threads

    made = cli("baseline", "create", tmp_path / "b", "x", "--model", sd15_model, "-s", "ddim", "--steps", "2",
               "--threads", "1")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    manifest = json.loads((tmp_path / "b" / "cpu" / "manifest.json").read_text())
    assert manifest["environment"]["determinism"]["num_threads"] == 1  # what the runs used, not torch's count after
    during = []
    original = threads.chosen

    def spy(asked, note):
        during.append(asked)
        return original(asked, note)

    monkeypatch.setattr(threads, "chosen", spy)
    before = torch.get_num_threads()
    checked = cli("check", tmp_path / "b", "--format", "json")
    assert checked.exit_code == 0 and {case["status"] for case in checked.json()["cases"]} == {"match"}
    assert during == [1] and torch.get_num_threads() == before


# -- 16. small things --------------------------------------------------------------------------------------------


def test_an_out_path_through_a_file(cli):
    one_line_error(cli("run", "x", "--out", "/etc/hostname/sub"), "/etc/hostname is a file, not a folder")


def test_the_api_says_overwrite_in_its_own_words(sd15_model, tmp_path):
    import schedcmp

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(schedcmp.OutputError, match="overwrite=True"):
        schedcmp.compare(str(sd15_model), "x", steps=1, schedulers="ddim", out=tmp_path / "full", progress=False)


def test_run_help_lists_every_exit_code():
    from schedcmp.core import errors

    done = subprocess.run([sys.executable, "-m", "schedcmp", "run", "--help"], capture_output=True, text=True)
    text = " ".join(done.stdout.split())
    for code in (
        errors.EXIT_OK,
        errors.EXIT_RUN_FAILED,
        errors.EXIT_USAGE,
        errors.EXIT_INTERRUPTED,
        errors.EXIT_TERMINATED,
    ):
        assert f"{code} " in text, code


# -- 17. fonts: what the docs say to install is what the sheets then use -------------------------------------------


def test_an_emoji_prompt_is_drawn_in_colour_once_noto_color_emoji_is_installed():
    """`apt-get install fonts-noto-color-emoji` (docs/outputs.md; `make test` installs it): an emoji DejaVu Sans
    lacks was an empty box; the font is a bitmap one, drawn at its one size and scaled to the line."""
    from PIL import Image, ImageDraw

    from schedcmp.output import render

    lettering = render.Lettering()
    chosen = lettering.font_for("\U0001f680")  # 🚀
    if chosen is lettering.last_resort:
        pytest.skip("no font with emoji here: fonts-noto-color-emoji (make test installs it)")
    image = Image.new("RGB", (60, 30), "white")
    lettering.draw(ImageDraw.Draw(image), (4, 6), "\U0001f680 x", (0, 0, 0))
    coloured = [pixel for pixel in image.getdata() if max(pixel) - min(pixel) > 60]
    assert len(coloured) > 20  # drawn in its colours, not a grey box
    assert lettering.length("\U0001f680") < 2 * render.FONT_SIZE  # scaled to the line


# -- 17. the names the docs print ------------------------------------------------------------------------------


def test_flow_match_euler_as_the_docs_print_it():
    from schedcmp.core.names import choose
    from schedcmp.model.schedulers import accepted_params_of, scheduler_classes

    params = accepted_params_of(scheduler_classes())
    assert [c.class_name for c in choose("FlowMatchEuler,FlowMatchHeun", [], params, None)] == [
        "FlowMatchEulerDiscreteScheduler",
        "FlowMatchHeunDiscreteScheduler",
    ]


def test_torchsde_rounding_warnings_stay_off_stderr():
    """SDXL's sigmas put torchsde's Brownian interval a hair past its end: "Should have tb<=t1" reached stderr."""
    import warnings

    import torchsde

    from schedcmp.model import pipeline

    interval = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(1,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipeline.quiet_libraries():
            interval(0.5, 1.0000001)  # tb <= t1
            interval(-1e-7, 0.5)  # ta >= t0
        interval(0.5, 1.0000001)  # outside schedcmp the warning is the caller's
    assert [str(w.message)[:17] for w in caught] == ["Should have tb<=t"]
    assert f'"ignore:{pipeline.TORCHSDE_ROUNDING}:UserWarning"' in (ROOT / "pyproject.toml").read_text()


def test_the_charts_ticks_cover_every_point():
    """quality_vs_nfe.png's x ticks stopped at 10 while points sat at 15 (a log axis, every digit up to 10)."""
    import random

    from schedcmp.output.chart import axis_for, nice_ticks

    trial = axis_for([4, 7, 8, 15], 110, 960)
    assert nice_ticks(trial.low, trial.high, trial.log) == [2, 5, 10, 20]
    generator = random.Random(22)
    for _ in range(500):
        count = generator.randint(1, 8)
        values = [generator.choice([1, 2, 3, 10, 50]) * generator.random() + 0.01 for _ in range(count)]
        axis = axis_for(values, 0, 100)
        ticks = nice_ticks(axis.low, axis.high, axis.log)
        assert len(ticks) >= 2 and ticks[0] <= min(values) and ticks[-1] >= max(values), (values, ticks)
        assert axis.low <= min(values) and max(values) <= axis.high
