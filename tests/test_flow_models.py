"""schedcmp on flow-matching models (tiny SD3-style with T5 and FLUX.1-style pipelines): every sampler with a flow
form, UI names, seeds, the --schedule axis on every family, and the rest of the tool on flow models."""

from __future__ import annotations

import json

import pytest

METHODS_OK = 12  # distinct samplers (methods, not schedule variants) that must run on each flow family


def distinct_methods(runs: list[dict]) -> set[tuple]:
    """A method: the scheduler class and its solver-choosing overrides (the flow flags and shift aside)."""
    ignored = {"use_flow_sigmas", "prediction_type", "flow_shift"}
    return {
        (run["scheduler"], tuple(sorted((k, v) for k, v in run["overrides"].items() if k not in ignored)))
        for run in runs
    }


def run_json(cli, model, tmp_path, *flags: str) -> dict:
    """`schedcmp run "a horse" --model MODEL FLAGS --out TMP/o --format json`, which must exit 0: its document."""
    result = cli("run", "a horse", "--model", model, *flags, "--out", tmp_path / "o", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return result.json()


@pytest.mark.parametrize("family", ["sd3_t5_model", "flux_model"])
def test_all_runs_every_sampler_with_a_flow_form(request, cli, tmp_path, family):
    model = request.getfixturevalue(family)
    result = cli("run", "a cat", "--model", model, "--steps", "3", "--out", tmp_path / "o", "--format", "json")
    assert result.exit_code == 0, result.stderr
    runs = result.json()["runs"]
    ok = [run for run in runs if run["status"] == "ok"]
    assert len(distinct_methods(ok)) >= METHODS_OK, [run["label"] if "label" in run else run["id"] for run in ok]
    sampled = {run["overrides"]["method"] for run in ok if run["scheduler"] == "FlowSamplerScheduler"}
    assert sampled >= {
        "euler_ancestral",
        "heun",
        "dpm2",
        "dpm2_ancestral",
        "lms",
        "dpmpp_2m",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m_sde",
        "ipndm",
        "deis",
    }
    native = {run["scheduler"] for run in ok if run["scheduler"] != "FlowSamplerScheduler"}
    assert {"FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"} <= native
    for run in runs:
        assert run["status"] in ("ok", "unsupported"), (run["id"], run["reason"])
        if run["status"] == "unsupported":  # a labelled cell with the reason, not a failure
            assert run["reason"] and run["image"] is None
    if family == "flux_model":  # FluxPipeline passes sigmas and mu: FlowMatchHeun takes neither, SASolver no mu
        unsupported = {run["scheduler"]: run["reason"] for run in runs if run["status"] == "unsupported"}
        assert "takes no sigmas, which FluxPipeline passes" in unsupported["FlowMatchHeunDiscreteScheduler"]
        assert unsupported["FlowMatchHeunDiscreteScheduler"].endswith("; FlowSampler(method=heun) takes them")
        assert "takes no mu" in unsupported["SASolverScheduler"]


def test_ui_names_on_a_flow_model(cli, flux_model, tmp_path):
    result = cli(
        "run",
        "a cat",
        "--model",
        flux_model,
        "--steps",
        "3",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "-s",
        "Euler,Euler a,DPM++ 2M,LMS,FlowSampler(method=heun),FlowSampler(method=dpmpp_2m)",
    )
    assert result.exit_code == 0, result.stderr
    got = [
        (run["scheduler"], run["overrides"].get("method"), run["overrides"].get("use_flow_sigmas"))
        for run in result.json()["runs"]
    ]
    assert got == [
        ("FlowMatchEulerDiscreteScheduler", None, None),  # diffusers' native flow scheduler where there is one
        ("FlowSamplerScheduler", "euler_ancestral", None),  # else the flow sampler's method
        ("DPMSolverMultistepScheduler", None, True),
        ("FlowSamplerScheduler", "lms", None),
        ("FlowSamplerScheduler", "heun", None),  # both stay reachable by an explicit name
        ("FlowSamplerScheduler", "dpmpp_2m", None),
    ]
    assert all(run["compatible"] for run in result.json()["runs"])


@pytest.mark.parametrize("schedulers", ["Euler a,DPM++ SDE", "DPM++ 2M SDE"])
def test_a_seed_reproduces_stochastic_runs_and_a_batch_makes_what_each_run_makes_alone(
    cli, flux_model, tmp_path, schedulers
):
    """FluxPipeline calls step without a generator: schedcmp hands the run's generators to the flow sampler (and
    to a native scheduler's step), one per image."""
    import numpy as np
    from PIL import Image

    def run(name, *extra):
        done = cli(
            "run",
            "a cat",
            "--model",
            flux_model,
            "--steps",
            "3",
            "-s",
            schedulers,
            "--out",
            tmp_path / name,
            "--format",
            "json",
            *extra,
        )
        assert done.exit_code == 0, done.stderr
        return {r["id"]: r for r in done.json()["runs"]}

    def pixels(name, run):
        return np.asarray(Image.open(tmp_path / name / run["image"])).astype(int)

    batched, again, alone = (
        run("a", "--seed", "1,2"),
        run("b", "--seed", "1,2"),
        run("c", "--seed", "1,2", "--batch-size", "1"),
    )
    assert {k: r["sha256"] for k, r in batched.items()} == {k: r["sha256"] for k, r in again.items()}
    # FluxPipeline's own numbers move by a rounding step with the batch size (FlowMatchEuler too); another noise
    # stream would move the images by far more.
    for key, made in batched.items():
        assert np.abs(pixels("a", made) - pixels("c", alone[key])).max() <= 1, key
    assert all(r["batch_size"] == 2 for r in batched.values()) and all(r["status"] == "ok" for r in batched.values())
    by_seed = {}
    for r in batched.values():
        by_seed.setdefault(r["scheduler"] + str(r["overrides"]), []).append(r["sha256"])
    assert all(len(set(hashes)) == 2 for hashes in by_seed.values())  # two seeds, two images


def test_the_sampler_by_schedule_grid(cli, sd15_model, tmp_path):
    """`-s "euler,dpm++ 2m,heun" --schedule default,karras,exponential,beta --x schedule`, and DDIM, which has
    no Karras schedule: a labelled cell, never a silent default."""
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "euler,dpm++ 2m,heun,ddim",
        "--steps",
        "3",
        "--schedule",
        "default,karras,exponential,beta",
        "--x",
        "schedule",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--html",
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    runs = document["runs"]
    assert len(runs) == 16 and len({run["id"] for run in runs}) == 16
    assert {run["schedule"] for run in runs} == {None, "karras", "exponential", "beta"}  # None: its own
    unsupported = {(run["scheduler"], run["schedule"]): run["reason"] for run in runs if run["status"] != "ok"}
    assert unsupported == {
        ("DDIMScheduler", "karras"): "DDIM: no karras schedule",
        ("DDIMScheduler", "exponential"): "DDIM: no exponential schedule",
        ("DDIMScheduler", "beta"): "DDIM: no beta schedule",
    }
    euler = {run["schedule"]: run for run in runs if run["scheduler"] == "EulerDiscreteScheduler"}
    assert len({run["sha256"] for run in euler.values()}) == 4  # each schedule makes its own image
    assert euler["karras"]["sigmas"] != euler[None]["sigmas"] and euler[None]["sigmas"][-1] == 0
    assert document["settings"]["schedules"] == ["default", "karras", "exponential", "beta"]
    assert document["sheets"] == ["contact_sheet.png"]
    page = (tmp_path / "o" / "report.html").read_text()
    assert "<h2>Schedules</h2>" in page and page.count("<polyline") == 13  # 3 × 4 runs and DDIM's default
    # the page's table says which schedule made each thumbnail, as the terminal's does: a column, and the caption
    assert '<th data-column="schedule" data-type="text"' in page and page.count('data-value="karras">karras<') == 4
    assert 'alt="EulerDiscrete (Euler) · karras schedule · 3 steps · seed 0"' in page
    assert '<th data-column="seed"' not in page  # one seed: no column for it


def test_comfy_schedules_take_the_flow_sampler_only(cli, flux_model, tmp_path):
    result = cli(
        "run",
        "a cat",
        "--model",
        flux_model,
        "--steps",
        "3",
        "-s",
        "euler,FlowSampler(method=euler),heun",
        "--schedule",
        "simple,sgm_uniform",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    status = {
        (run["overrides"].get("method", run["scheduler"]), run["schedule"]): run["status"]
        for run in result.json()["runs"]
    }
    assert status[("euler", "simple")] == status[("euler", "sgm_uniform")] == "ok"
    assert status[("FlowMatchEulerDiscreteScheduler", "simple")] == "unsupported"
    reasons = {(run["scheduler"], run["schedule"]): run["reason"] for run in result.json()["runs"]}
    # the cell says what to run instead: the flow sampler's method of the same name takes every schedule
    assert reasons[("FlowMatchEulerDiscreteScheduler", "simple")] == (
        "FlowMatchEulerDiscrete: no simple schedule; FlowSampler(method=euler) takes it"
    )


def test_schedule_from_a_config_and_from_compare(sd15_model, cli, tmp_path):
    import schedcmp

    preset = tmp_path / "p.toml"
    preset.write_text('prompt = "a horse"\nschedule = ["default", "karras"]\nschedulers = "euler"\nsteps = 2\n')
    done = cli("run", "--config", preset, "--model", sd15_model, "--out", tmp_path / "o", "--format", "json")
    assert done.exit_code == 0 and [r["schedule"] for r in done.json()["runs"]] == [None, "karras"]
    made = schedcmp.compare(str(sd15_model), "a horse", schedulers="euler", steps=2, schedule="karras", progress=False)
    assert made.runs[0].schedule == "karras" and made.runs[0].id.startswith("eulerdiscrete-karras")
    with pytest.raises(schedcmp.UsageError, match="unknown --schedule 'karas'"):
        schedcmp.compare(str(sd15_model), "a horse", schedule="karas")


def test_reference_and_target_on_a_flow_model(cli, sd3_t5_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    result = cli(
        "run",
        "a cat",
        "--model",
        sd3_t5_model,
        "-s",
        "Euler,FlowSampler(method=heun),DPM++ 2M,Euler a",
        "--steps",
        "2,4,8",
        "--reference",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    [reference] = {r["id"]: r for r in document["references"]}.values()
    assert reference["status"] == "ok" and reference["scheduler"] == "FlowSamplerScheduler"
    measured = [run for run in document["runs"] if run["distance"]]
    assert {run["overrides"].get("method", run["scheduler"]) for run in measured} >= {"heun"}
    orders = {run["overrides"].get("method", run["scheduler"]): run["order"] for run in document["runs"]}
    assert orders["euler_ancestral"] is None or orders["euler_ancestral"]["order"] is None  # stochastic: no order
    targeted = cli(
        "run",
        "a cat",
        "--model",
        sd3_t5_model,
        "-s",
        "Euler,FlowSampler(method=heun)",
        "--target-rmse",
        "0.5",
        "--max-steps",
        "8",
        "--out",
        tmp_path / "t",
        "--format",
        "json",
    )
    assert targeted.exit_code == 0, targeted.stderr
    assert {entry["status"] for entry in targeted.json()["equal_quality"]} <= {"reached", "not reached"}


def test_a_baseline_of_flow_samplers_is_checked(cli, flux_model, tmp_path):
    made = cli(
        "baseline",
        "create",
        tmp_path / "b",
        "a cat",
        "--model",
        flux_model,
        "--steps",
        "3",
        "-s",
        "Euler a,FlowSampler(method=heun),DPM++ 2M SDE",
        "--seed",
        "1,2",
        "--schedule",
        "default,karras",
    )
    assert made.exit_code == 0, made.stderr
    checked = cli("check", tmp_path / "b", "--format", "json")
    assert checked.exit_code == 0, checked.stderr
    assert {case["status"] for case in checked.json()["cases"]} == {"match"}


def test_list_says_what_runs_natively_and_what_through_the_flow_sampler(cli, flux_model):
    result = cli("list", "--model", flux_model, "--format", "json")
    assert result.exit_code == 0, result.stderr
    flow = result.json()["flow"]
    assert {entry["name"]: entry["via"] for entry in flow}["Euler a"] == "flow sampler (euler_ancestral)"
    assert {entry["name"]: entry["via"] for entry in flow}["DPM++ 2M"] == "native: DPMSolverMultistep on flow sigmas"
    assert json.dumps(flow)
    # the UI names table is this model's: it said Euler -> EulerDiscreteScheduler, which -s does not do here
    aliases = {entry["name"]: (entry["class"], entry["overrides"]) for entry in result.json()["aliases"]}
    assert aliases["Euler"] == ("FlowMatchEulerDiscreteScheduler", {})
    assert aliases["DPM++ 2M Karras"] == ("FlowSamplerScheduler", {"method": "dpmpp_2m", "schedule": "karras"})


def test_karras_ui_names_on_a_flow_model_are_the_flow_samplers_on_karras_sigmas(cli, flux_model, tmp_path):
    """They named ε-model classes, which a flow model does not list: refused, with a hint to --allow-incompatible."""
    names = "DPM++ 2M Karras,LMS Karras,DPM++ 2M SDE Karras"
    result = cli("run", "a cat", "--model", flux_model, "-s", names, "--steps", "3", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    runs = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    assert [(run["alias"], run["overrides"], run["status"]) for run in runs] == [
        ("DPM++ 2M Karras", {"method": "dpmpp_2m", "schedule": "karras"}, "ok"),
        ("LMS Karras", {"method": "lms", "schedule": "karras"}, "ok"),
        ("DPM++ 2M SDE Karras", {"method": "dpmpp_2m_sde", "schedule": "karras"}, "ok"),
    ]


def test_shards_of_a_flow_sweep_merge_into_what_one_process_makes(cli, flux_model, tmp_path):
    common = [
        "a cat",
        "--model",
        flux_model,
        "--steps",
        "3",
        "-s",
        "Euler a,FlowSampler(method=heun),DPM++ 2M SDE",
        "--seed",
        "1-3",
        "--format",
        "json",
    ]
    single = cli("run", *common, "--out", tmp_path / "one")
    parts = [cli("run", *common, "--shard", f"{index}/2", "--out", tmp_path / f"part{index}") for index in (0, 1)]
    assert single.exit_code == 0 and all(part.exit_code == 0 for part in parts)
    merged = cli("merge", tmp_path / "merged", tmp_path / "part0", tmp_path / "part1", "--format", "json")
    assert merged.exit_code == 0, merged.stderr
    assert {r["id"]: r["sha256"] for r in merged.json()["runs"]} == {
        r["id"]: r["sha256"] for r in single.json()["runs"]
    }


def test_a_search_leaves_out_a_scheduler_that_cannot_take_its_schedule(cli, sd15_model, tmp_path):
    """DDIM has no karras schedule: its search ran on its own sigmas under a karras id, was called ok, and the
    answer could pick it. Now it is left out, with the reason, like a plain run's cell."""
    flags = ("-s", "euler,ddim", "--schedule", "karras", "--target-psnr", "20", "--max-steps", "3")
    document = run_json(cli, sd15_model, tmp_path, *flags)
    found = {entry["label"]: entry for entry in document["equal_quality"]}
    assert found["DDIM"]["status"] == "unsupported" and found["DDIM"]["reason"] == "DDIM: no karras schedule"
    assert not [run for run in document["runs"] if run["scheduler"] == "DDIMScheduler" and run["status"] == "ok"]
    assert found["Euler"]["status"] in ("reached", "not reached")
    assert document["answer"][0].startswith("PSNR ≥ 20 dB on the karras schedule: ")  # what the steps are counted on


@pytest.mark.parametrize(
    "entry, words",
    [
        ("FlowSampler(method=nope)", "FlowSampler: unknown method 'nope'; choose one of euler, euler_ancestral"),
        ("FlowSampler(method=dpmpp_2m_sde, eta=2)", "FlowSampler: eta must lie in [0, 1], not 2"),
        ("FlowSampler(method=heun, schedule=nope)", "FlowSampler: unknown schedule 'nope'"),
    ],
)
def test_a_bad_flow_sampler_option_is_refused_before_the_model_loads(cli, flux_model, tmp_path, entry, words):
    """They were failed runs (exit 1) after the load, with a sheet and results.json written."""
    result = cli("run", "a cat", "--model", flux_model, "-s", entry, "--steps", "2", "--out", tmp_path / "o")
    errors = [line for line in result.stderr.splitlines() if line.startswith("schedcmp: error:")]
    assert result.exit_code == 2 and len(errors) == 1 and words in errors[0], result.stderr
    assert "loading" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_flow_models_own_ui_names_pass_the_check_before_the_load(cli, flux_model, sd15_model, tmp_path):
    """`-s "DPM++ 2S a"` was refused as unknown before the load, whose names were the ε-models' only; on a flow
    model it is the flow sampler's method, and on another model the error says what the name is."""
    ran = cli("run", "a cat", "--model", flux_model, "-s", "DPM++ 2S a", "--steps", "2", "--out", tmp_path / "a")
    assert ran.exit_code == 0, ran.stderr
    document = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [(r["overrides"]["method"], r["alias"]) for r in document["runs"]] == [("dpmpp_2s_ancestral", "DPM++ 2S a")]
    refused = cli("run", "a cat", "--model", sd15_model, "-s", "DPM++ 2S a", "--steps", "2", "--out", tmp_path / "b")
    assert refused.exit_code == 2 and not (tmp_path / "b").exists()
    assert "'DPM++ 2S a' names a flow-matching model's sampler (FLUX.1, SD3); this model is not one" in refused.stderr
    unknown = cli("run", "a cat", "-s", "DPM++ 2Sx", "--out", tmp_path / "c")
    assert unknown.exit_code == 2 and "unknown scheduler 'DPM++ 2Sx'; did you mean" in unknown.stderr


def test_one_schedule_for_every_run_is_said_in_the_table_and_on_the_sheet(cli, sd15_model, tmp_path):
    """`--schedule karras` alone changes every run, yet only the ids said so: no column, nothing on the sheet."""
    from schedcmp.output import render
    from schedcmp.sweep.results import read_results

    args = ("run", "a horse", "--model", sd15_model, "-s", "euler,dpm++ 2m", "--steps", "2", "--format", "csv")
    result = cli(*args, "--schedule", "karras", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split(",")[:3] == ["id", "scheduler", "schedule"] and all(",karras," in row for row in rows)
    results = read_results(tmp_path / "k", "load")
    assert "2 steps · karras schedule" in render.sheet_header(results, results.runs)[1]
    plain = cli(*args, "--out", tmp_path / "d")  # each scheduler's own schedule: no column, nothing said
    assert "schedule" not in plain.stdout.splitlines()[0].split(",")
    results = read_results(tmp_path / "d", "load")
    assert "schedule" not in render.sheet_header(results, results.runs)[1]


def test_a_schedule_that_repeats_a_timestep_is_an_unsupported_cell_that_says_so(cli, sd15_model, tmp_path):
    """diffusers rounds the beta schedule's sigmas to whole timesteps; at 40 steps two round to 998, and a multistep
    scheduler, which finds its place by timestep, runs past its sigmas: an IndexError (UniPC: an AssertionError)."""
    document = run_json(cli, sd15_model, tmp_path, "-s", "dpm++ 2m,heun", "--steps", "40", "--schedule", "beta")
    runs = {run["scheduler"]: run for run in document["runs"]}
    dpm = runs["DPMSolverMultistepScheduler"]
    assert dpm["status"] == "unsupported" and dpm["reason"] == (
        "DPMSolverMultistep: its beta schedule at 40 steps repeats timestep 998 (diffusers rounds the sigmas to "
        "whole timesteps), and its step lookup cannot take that"
    )
    assert dpm["error"]["type"] == "IndexError"  # what diffusers raised stays in the record
    assert runs["HeunDiscreteScheduler"]["status"] == "ok"  # its timesteps come twice by design: not a repeat


def test_an_entry_with_the_schedule_of_its_own_says_its_default_cell_is_that_run(cli, sd15_model, tmp_path):
    """`DPM++ 2M Karras` × `--schedule karras` said "sets its own schedule ... not --schedule karras", the same one."""
    flags = ("-s", "dpm++ 2m karras", "--steps", "2", "--schedule", "default,karras,beta")
    reasons = {run["schedule"]: run["reason"] for run in run_json(cli, sd15_model, tmp_path, *flags)["runs"]}
    assert reasons == {
        None: None,
        "karras": "DPMSolverMultistep: its entry has the karras schedule already (use_karras_sigmas=True): its "
        "default cell is that run",
        "beta": "DPMSolverMultistep: sets its own schedule (use_karras_sigmas=True), not --schedule beta",
    }


def test_a_class_name_a_flow_model_does_not_list_points_to_its_ui_name(cli, flux_model, tmp_path):
    """`-s UniPCMultistep` on FLUX.1 (ε-prediction math on a flow model) said only "pass --allow-incompatible"."""
    result = cli("run", "a cat", "--model", flux_model, "-s", "UniPCMultistep", "--steps", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert "on a flow-matching model a UI name runs it on flow sigmas where diffusers can" in result.stderr
