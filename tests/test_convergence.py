"""Distances to a reference, stochastic labelling, orders of convergence, the report command."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from schedcmp.core import records
from schedcmp.core.records import Determinism, Distance, Reference, Run, SelfConvergence, Status
from schedcmp.quality import convergence, metrics

# -- pure metrics, by hand ------------------------------------------------------------------------------


def test_latent_rmse_and_psnr_by_hand():
    assert metrics.latent_rmse([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(math.sqrt(12.5))
    assert metrics.psnr([0.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]) == pytest.approx(20.0)  # mse 0.01
    assert metrics.psnr([0.5], [0.5]) == math.inf


def test_order_of_an_exact_power_law():
    nfes = [10, 20, 40, 80]
    fit = metrics.fit_order(nfes, [3.0 * n**-2 for n in nfes])
    assert fit.order == pytest.approx(2.0) and (fit.first, fit.last) == (0, 3)


def test_order_fit_leaves_out_the_plateau():
    # Falls at order 1, then flattens where the reference's own error is reached.
    fit = metrics.fit_order([10, 20, 40, 80, 160], [0.1, 0.05, 0.025, 0.0201, 0.0200])
    assert fit.order == pytest.approx(1.0) and (fit.first, fit.last) == (0, 2)


def test_no_fit_where_errors_do_not_fall_or_points_are_too_few():
    assert metrics.fit_order([10, 20, 40], [0.1, 0.1, 0.1]).reason == "errors do not fall with more steps"
    assert metrics.fit_order([10, 20], [0.1, 0.05]).order is None
    assert "zero" in metrics.fit_order([10, 20, 40], [0.1, 0.0, 0.0]).reason


def test_pareto_front_by_hand():
    points = [(1, 5), (2, 3), (3, 4), (2, 3), (4, 1), (5, 1)]
    assert metrics.pareto_front(points) == [0, 1, 3, 4]  # (3,4) is beaten by (2,3); (5,1) by (4,1)


def entry(
    run_id, steps, nfe, seconds, rmse, determinism=Determinism.DETERMINISTIC, scheduler="EulerDiscreteScheduler"
) -> Run:
    return Run(
        id=run_id,
        scheduler=scheduler,
        prompt="p",
        seed=0,
        guidance_scale=7.5,
        width=64,
        height=64,
        reference="ref-1",
        steps=steps,
        nfe=nfe,
        seconds=seconds,
        status=Status.OK,
        determinism=determinism,
        distance=None if rmse is None else Distance(latent_rmse=rmse, psnr=30.0, ssim=0.9),
    )


def set_orders(entries: list[Run]) -> list[Run]:
    """What the comparison's finish stage does with the fitted orders: each run gets its scheduler's."""
    orders = convergence.fit_orders(entries)
    return [replace(e, order=orders[e.id]) for e in entries]


def set_orders_and_fronts(entries: list[Run]) -> list[Run]:
    fronts = convergence.pareto_fronts(entries)
    return [replace(e, pareto=fronts[e.id]) for e in set_orders(entries)]


def test_orders_and_fronts_over_results_entries():
    entries = [entry(f"e{n}", n, n, n / 10, 1.0 / n) for n in (10, 20, 40)]
    entries += [
        entry(f"h{n}", n, 2 * n - 1, n / 5, 4.0 / n**2, scheduler="HeunDiscreteScheduler") for n in (10, 20, 40)
    ]
    entries.append(
        entry("a20", 20, 20, 2.0, None, determinism=Determinism.STOCHASTIC, scheduler="EulerAncestralDiscreteScheduler")
    )
    by_id = {e.id: e for e in set_orders_and_fronts(entries)}
    assert by_id["e10"].order.order == pytest.approx(1.0) and by_id["e10"].order.steps == [10, 40]
    assert by_id["h40"].order.order == pytest.approx(2.0, abs=0.1)
    assert by_id["a20"].order is None and by_id["a20"].pareto is None  # one step count: no sweep
    # Time: e10 (1 s, 0.1) is the cheapest; e20 (2 s, 0.05) is beaten by h10 (2 s, 0.04).
    assert by_id["e10"].pareto.seconds and not by_id["e20"].pareto.seconds
    assert by_id["h10"].pareto.seconds and by_id["h40"].pareto.nfe


# -- stochastic or not: every scheduler class diffusers ships, probed -----------------------------------

# What each class does, from its algorithm (never read by the code under test, which runs the scheduler):
# ancestral and SDE samplers, DDPM, consistency-model and LCM/TCD multistep sampling add fresh noise each
# step; ODE solvers do not. Classes the generic loop cannot drive are "unknown", with the reason.
EXPECTED = {
    "CMStochasticIterativeScheduler": "stochastic",
    "CogVideoXDDIMScheduler": "deterministic",
    "CosineDPMSolverMultistepScheduler": "stochastic",
    "DDIMInverseScheduler": "deterministic",
    "DDIMParallelScheduler": "deterministic",
    "DDIMScheduler": "deterministic",
    "DDPMParallelScheduler": "stochastic",
    "DDPMScheduler": "stochastic",
    "DEISMultistepScheduler": "deterministic",
    "DPMSolverMultistepInverseScheduler": "deterministic",
    "DPMSolverMultistepScheduler": "deterministic",
    "DPMSolverSDEScheduler": "stochastic",
    "DPMSolverSinglestepScheduler": "deterministic",
    "EDMDPMSolverMultistepScheduler": "deterministic",
    "EDMEulerScheduler": "deterministic",
    "EulerAncestralDiscreteScheduler": "stochastic",
    "EulerDiscreteScheduler": "deterministic",
    "FlowMapEulerDiscreteScheduler": "deterministic",
    "FlowMatchEulerDiscreteScheduler": "deterministic",
    "FlowSamplerScheduler": "deterministic",  # schedcmp's own (schedcmp.flow); its default method is Euler
    "FlowMatchHeunDiscreteScheduler": "deterministic",
    "FlowMatchLCMScheduler": "stochastic",
    "HeunDiscreteScheduler": "deterministic",
    "IPNDMScheduler": "deterministic",
    "KDPM2AncestralDiscreteScheduler": "stochastic",
    "KDPM2DiscreteScheduler": "deterministic",
    "LCMScheduler": "stochastic",
    "LMSDiscreteScheduler": "deterministic",
    "LTXEulerAncestralRFScheduler": "stochastic",
    "MiniMaxH3Scheduler": "deterministic",
    "PNDMScheduler": "deterministic",
    "SASolverScheduler": "stochastic",
    "TCDScheduler": "stochastic",
    "UniPCMultistepScheduler": "deterministic",
}
# Need inputs no image pipeline's loop gives (masks, token ids, protein frames, paired timesteps ...).
UNPROBEABLE = {
    "AmusedScheduler",
    "BlockRefinementScheduler",
    "CogVideoXDPMScheduler",
    "DDPMWuerstchenScheduler",
    "DiscreteDDIMScheduler",
    "EntropyBoundScheduler",
    "HeliosDMDScheduler",
    "HeliosScheduler",
    "KarrasVeScheduler",
    "PiflowScheduler",
    "RFD4ProteinaScheduler",
    "RePaintScheduler",
    "SCMScheduler",
    "ScoreSdeVeScheduler",
    "UnCLIPScheduler",
    "VQDiffusionScheduler",
}
SD15_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "skip_prk_steps": True,
}


def test_every_scheduler_class_is_labelled_by_running_it():
    from schedcmp.model.schedulers import scheduler_classes

    classes = scheduler_classes()
    assert set(classes) - set(EXPECTED) - UNPROBEABLE == set(), "a new diffusers scheduler: add what its algorithm does"
    found = {name: convergence.probe_determinism(cls, SD15_CONFIG, {}, {}) for name, cls in classes.items()}
    wrong = {name: found[name] for name, label in EXPECTED.items() if name in found and found[name][0] != label}
    assert wrong == {}
    for name in UNPROBEABLE & set(found):
        assert found[name][0] == "unknown" and "could not be probed" in found[name][1]


@pytest.mark.parametrize(
    "name, overrides, step_arguments, label",
    [
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, {}, "stochastic"),
        ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}, {}, "stochastic"),
        ("DDIMScheduler", {}, {"eta": 0.5}, "stochastic"),
        ("DDIMScheduler", {}, {"eta": 0.0}, "deterministic"),
        ("TCDScheduler", {}, {"eta": 0.0}, "deterministic"),
        ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, {}, "stochastic"),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, {}, "deterministic"),
        ("FlowSamplerScheduler", {"method": "euler_ancestral"}, {}, "stochastic"),
        ("FlowSamplerScheduler", {"method": "dpmpp_sde"}, {}, "stochastic"),
        ("FlowSamplerScheduler", {"method": "heun"}, {}, "deterministic"),
    ],
)
def test_config_and_call_arguments_decide_too(name, overrides, step_arguments, label):
    from schedcmp.model.schedulers import scheduler_classes

    assert convergence.probe_determinism(scheduler_classes()[name], SD15_CONFIG, overrides, step_arguments)[0] == label


# -- orders of convergence on an exact denoiser ---------------------------------------------------------


def test_fitted_orders_match_theory_on_gaussian_data(sd15_model, tmp_path, monkeypatch):
    """Real schedulers drive the exact ε-prediction of Gaussian data; the fits must give their orders.

    First-order: Euler, and DDIM (ending at ᾱ=1, so that it solves the same ODE to the end).
    Second-order: Heun and DPM++ 2M, with Karras sigmas: the default uniform-in-t spacings end with one
    large jump from σ(t≈1000/N) to 0 that is first-order for every solver (see docs/convergence.md).
    """
    import analytic

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline
    from schedcmp.sweep import engine

    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    model = analytic.swap_in(pipeline.load(str(sd15_model), "cpu", "fp32"))
    outcome = engine.run_comparison(
        Request(
            prompt=("x",),
            schedulers="Euler,DDIM(set_alpha_to_one=true,timestep_spacing=trailing),Heun(use_karras_sigmas=true),"
            "DPM++ 2M Karras",
            seed=(1,),
            steps=(8, 16, 32, 64),
            guidance_scale=(1.0,),
            out=tmp_path / "out",
            reference_spec="DPMSolverMultistep(use_karras_sigmas=true):400",
            no_sheet=True,
        ),
        loaded=model,
    )
    orders = {
        (e["scheduler"], e["overrides"].get("use_karras_sigmas", False)): e["order"] for e in outcome.document["runs"]
    }
    assert 0.75 <= orders["EulerDiscreteScheduler", False]["order"] <= 1.25
    assert 0.7 <= orders["DDIMScheduler", False]["order"] <= 1.3
    assert 1.7 <= orders["HeunDiscreteScheduler", True]["order"] <= 2.8
    assert 1.7 <= orders["DPMSolverMultistepScheduler", True]["order"] <= 2.3
    for found in orders.values():
        assert found["steps"][0] < found["steps"][1] and found["r_squared"] >= metrics.FIT_MIN_R_SQUARED
    # Each run keeps the schedule it was given: DDIM starts where the reference does because the user said
    # trailing, not because schedcmp moved it.
    for entry in outcome.document["runs"]:
        assert entry["interval"] is None and entry["schedule_note"] is None, entry["id"]


# -- the CLI: --reference, the cache, --html, `schedcmp report` -----------------------------------------


@pytest.fixture
def reference_run(cli, sd15_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))

    def run(out, *extra):
        return cli(
            "run",
            "a red apple",
            "--model",
            sd15_model,
            "--schedulers",
            "ddim,euler,euler a,dpm++ 2m",
            "--steps",
            "3",
            "--reference-spec",
            "DPMSolverMultistep:8",
            "--out",
            tmp_path / out,
            *extra,
        )

    return run


def test_reference_distances_labels_and_cache(reference_run, tmp_path):
    first = reference_run("one", "--html")
    assert first.exit_code == 0, first.stderr
    document = json.loads((tmp_path / "one" / "results.json").read_text())
    [reference] = document["references"]
    assert reference["cached"] is False and reference["nfe"] == 8 and (tmp_path / "one" / reference["image"]).is_file()
    assert reference["self_convergence"]["half_steps"] == 4 and reference["self_convergence"]["latent_rmse"] > 0
    runs = {e["scheduler"]: e for e in document["runs"]}
    euler_a = runs["EulerAncestralDiscreteScheduler"]
    assert (
        euler_a["determinism"] == "stochastic"
        and euler_a["distance"] is None
        and "not ranked" in euler_a["distance_note"]
    )
    for name in ("DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"):
        distance = runs[name]["distance"]
        assert distance["latent_rmse"] > 0 and 0 < distance["ssim"] <= 1 and distance["psnr"] > 0
    # DDIM keeps its leading spacing and starts late: measured as the user runs it, and labelled.
    assert runs["DDIMScheduler"]["interval"] is None and runs["DDIMScheduler"]["id"] == "ddim-s3-seed0"
    assert (
        runs["DDIMScheduler"]["schedule_note"].startswith("starts at t=")
        and "late start" in (runs["DDIMScheduler"]["schedule_note"])
    )
    assert runs["EulerDiscreteScheduler"]["schedule_note"] is None
    assert "DDIM start later" in document["interval"]["note"]
    ranked = [e for e in document["runs"] if e["distance"]]
    for run in ranked:  # on the front exactly when no other run is both no slower and no farther, and better in one
        beaten = any(
            o["seconds"] <= run["seconds"]
            and o["distance"]["latent_rmse"] <= run["distance"]["latent_rmse"]
            and o is not run
            and (o["seconds"] < run["seconds"] or o["distance"]["latent_rmse"] < run["distance"]["latent_rmse"])
            for o in ranked
        )
        assert run["pareto"]["seconds"] is not beaten
    assert document["charts"] == ["quality_vs_time.png", "quality_vs_nfe.png"] and document["report"] == "report.html"
    assert "quality_vs_time" in (tmp_path / "one" / "report.html").read_text()

    second = reference_run("two", "--format", "json")
    assert second.exit_code == 0
    rerun = second.json()
    assert rerun["references"][0]["cached"] is True and "from the cache" in second.stderr
    same = {e["id"]: e["distance"] for e in rerun["runs"]}
    assert same == {e["id"]: e["distance"] for e in document["runs"]}


def test_report_rebuilds_the_page_from_a_results_folder(reference_run, cli, tmp_path):
    assert reference_run("one").exit_code == 0
    folder = tmp_path / "one"
    assert not (folder / "report.html").exists()
    results_before = json.loads((folder / "results.json").read_text())
    rebuilt = cli("report", folder)
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == str(folder / "report.html") and (folder / "quality_vs_nfe.png").is_file()
    after = json.loads((folder / "results.json").read_text())
    assert after["runs"] == results_before["runs"] and after["report"] == "report.html"
    page = (folder / "report.html").read_text()
    assert all(e["id"] in page for e in after["runs"])


def test_report_errors_are_one_line(cli, tmp_path):
    missing = cli("report", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "results.json is missing" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"kind": "check"}')
    assert cli("report", tmp_path / "bad").exit_code == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ("DDIM", "needs its steps"),
        ("all:50", "one scheduler"),
        ("Eulr:50", "unknown scheduler"),
        ("DDIM:1", "at least 2 steps"),
    ],
)
def test_bad_reference_spec_is_a_usage_error(cli, spec, message, tmp_path):
    result = cli("run", "x", "--reference-spec", spec, "--out", tmp_path / "o")
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_stochastic_reference_is_refused(cli, sd15_model, tmp_path):
    result = cli(
        "run",
        "x",
        "--model",
        sd15_model,
        "--schedulers",
        "euler",
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--reference-spec",
        "Euler a:20",
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("schedcmp: error:")]
    assert (
        result.exit_code == 2 and len(errors) == 1 and "is stochastic" in errors[0] and "Traceback" not in result.stderr
    )


def test_a_malformed_results_file_is_one_line(cli, tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "results.json").write_text('{"kind": "run", "runs": ["not a run"]}')
    result = cli("report", tmp_path / "odd")
    assert result.exit_code == 2 and "Traceback" not in result.stderr and "a run is not an object" in result.stderr


def test_an_unconverged_reference_is_flagged():
    reference = Reference(
        id="ref-1",
        spec="DPMSolverMultistep:8",
        scheduler="DPMSolverMultistepScheduler",
        steps=8,
        status=Status.OK,
        self_convergence=SelfConvergence(half_steps=4, latent_rmse=0.05, psnr=30.0, ssim=0.9),
    )
    references = [reference]
    entries = [entry("e20", 20, 20, 1.0, 0.2), entry("e40", 40, 40, 2.0, 0.1)]
    warnings = convergence.convergence_warnings(references, entries)
    [line] = convergence.warning_lines(references, warnings)
    assert "DPMSolverMultistep:8" in line and "0.1" in warnings["ref-1"]
    references = [replace(reference, self_convergence=replace(reference.self_convergence, latent_rmse=0.001))]
    assert convergence.convergence_warnings(references, entries) == {} and references[0].warning is None


def test_csv_columns_with_distances():
    from schedcmp.output import report

    entries = [entry(f"e{n}", n, n, n / 10, 1.0 / n) for n in (10, 20, 40)]
    entries.append(
        entry("a20", 20, 20, 2.0, None, determinism=Determinism.STOCHASTIC, scheduler="EulerAncestralDiscreteScheduler")
    )
    entries[-1] = replace(entries[-1], distance_note="stochastic: converges to another sample")
    entries = [
        replace(
            e, alias=None, seconds_all=[e.seconds], peak_memory_bytes=None, ms_per_nfe=None, reason=None, interval=None
        )
        for e in entries
    ]
    entries = set_orders_and_fronts(entries)
    rows = list(__import__("csv").DictReader(report.to_csv(report.table_rows(entries)).splitlines()))
    assert list(rows[0])[-7:] == report.CONVERGENCE_COLUMNS
    euler = next(row for row in rows if row["id"] == "e10")
    assert (
        float(euler["order"]) == pytest.approx(1.0) and euler["order_note"] == "10-40 steps" and euler["status"] == "ok"
    )
    stochastic = next(row for row in rows if row["id"] == "a20")
    assert (
        stochastic["note"] == "stochastic: not ranked"
        and stochastic["latent_rmse"] == ""
        and stochastic["status"] == "ok"
    )


def test_without_reference_runs_are_still_labelled(cli, sd15_model, tmp_path):
    result = cli(
        "run",
        "x",
        "--model",
        sd15_model,
        "--schedulers",
        "euler,euler a",
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0
    document = result.json()
    assert document["references"] == [] and document["interval"] is None and not (tmp_path / "o" / "reference").exists()
    assert [e["determinism"] for e in document["runs"]] == ["deterministic", "stochastic"]


def test_a_sweep_without_distances_says_why_it_has_no_order():
    note = "starts at t=1.1, the reference at t=999.0: not on its interval"
    entries = [replace(entry(f"x{n}", n, n, n / 10, None), distance_note=note) for n in (10, 20, 40)]
    entries = set_orders(entries)
    assert entries[0].order.reason == "no distances: starts at t=1.1, the reference at t=999.0: not on its interval"


def test_stochastic_runs_in_a_sweep_get_no_order():
    entries = [
        entry(
            f"a{n}", n, n, n / 10, None, determinism=Determinism.STOCHASTIC, scheduler="EulerAncestralDiscreteScheduler"
        )
        for n in (10, 20, 40)
    ]
    entries = set_orders(entries)
    assert all(e.order.order is None and e.order.reason == "stochastic: no ODE order" for e in entries)


def test_resume_keeps_measured_cells_and_reruns_unmeasured_ones(reference_run, cli, sd15_model, tmp_path):
    assert reference_run("one").exit_code == 0
    before = json.loads((tmp_path / "one" / "results.json").read_text())
    again = reference_run("ignored", "--resume", tmp_path / "one", "--format", "json")
    assert again.exit_code == 0 and "4 of 4 cells already done" in again.stderr
    after = again.json()
    assert after["references"][0]["cached"] is True  # the summary is rebuilt from the cache
    assert [e["distance"] for e in after["runs"]] == [e["distance"] for e in before["runs"]]

    plain = cli(
        "run",
        "a red apple",
        "--model",
        sd15_model,
        "--schedulers",
        "ddim,euler,euler a,dpm++ 2m",
        "--steps",
        "3",
        "--out",
        tmp_path / "plain",
    )
    assert plain.exit_code == 0
    measured = reference_run("ignored", "--resume", tmp_path / "plain", "--format", "json")
    assert "resuming" not in measured.stderr  # cells made without a reference are not reused as measured ones
    assert measured.json()["runs"][0]["distance"] is not None


def test_a_failing_reference_measures_nothing_and_exits_1(cli, sd15_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    # diffusers refuses this combination when the scheduler is built: the reference run fails like any run.
    result = cli(
        "run",
        "x",
        "--model",
        sd15_model,
        "--schedulers",
        "euler",
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--reference-spec",
        "DPMSolverMultistep(algorithm_type=sde-dpmsolver):4",
        "--html",
    )
    assert result.exit_code == 1, result.stderr
    document = result.json()
    assert document["references"][0]["status"] == "failed" and document["references"][0]["reason"]
    assert document["runs"][0]["distance"] is None and document["runs"][0]["distance_note"] == "the reference failed"
    assert "no distances were measured" in (tmp_path / "o" / "report.html").read_text()


def test_a_seed_sweep_gets_one_reference_per_seed(cli, sd15_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    result = cli(
        "run",
        "x",
        "--model",
        sd15_model,
        "--schedulers",
        "euler,ddim",
        "--steps",
        "2",
        "--seed",
        "1,2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--reference-spec",
        "Euler:6",
        "--html",
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    references = {r["id"]: r["seed"] for r in document["references"]}
    assert sorted(references.values()) == [1, 2]
    assert all(references[e["reference"]] == e["seed"] for e in document["runs"])
    from schedcmp.output import chart

    points = chart.chart_points(records.load_document(document, "run"), "nfe")
    assert len(points) == 2  # the first reference's runs only: distances to other references share no scale
    assert "first of 2 references" in (tmp_path / "o" / "report.html").read_text()


def test_flow_models_get_a_flow_reference_and_incompatible_references_are_refused(
    cli, sd3_model, sd15_model, tmp_path, monkeypatch
):
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    flow = cli(
        "run",
        "x",
        "--model",
        sd3_model,
        "--schedulers",
        "FlowMatchEulerDiscrete",
        "--steps",
        "2,4,8",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--reference",
    )
    assert flow.exit_code == 0, flow.stderr
    [reference] = flow.json()["references"]
    # A flow solve: since 2026-12-04 the flow sampler's Heun (convergence.FLOW_REFERENCE says why), before it DPM++ 2M
    # on flow sigmas.
    assert reference["scheduler"] == "FlowSamplerScheduler" and reference["overrides"] == {"method": "heun"}
    assert reference["status"] == "ok"
    assert all(e["distance"] is not None for e in flow.json()["runs"])
    refused = cli(
        "run",
        "x",
        "--model",
        sd15_model,
        "--schedulers",
        "euler",
        "--steps",
        "2",
        "--out",
        tmp_path / "p",
        "--reference-spec",
        "FlowMatchEulerDiscrete:8",
    )
    assert refused.exit_code == 2 and "not in this pipeline's compatibles" in refused.stderr


def test_a_real_runs_report_in_chromium(reference_run, tmp_path):
    """The page `run --html` writes, in a browser with no network: every run listed, every image decoded, sortable."""
    from browser import Browser

    assert reference_run("one", "--html").exit_code == 0
    folder = tmp_path / "one"
    document = json.loads((folder / "results.json").read_text())
    with Browser(tmp_path / "profile") as browser:
        browser.page("Network.enable")
        browser.page(
            "Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1
        )
        browser.open((folder / "report.html").as_uri())
        shown = browser.wait_for(
            "document.body.dataset.imagesTotal"
            " && [document.body.dataset.imagesShown, document.body.dataset.imagesTotal]"
        )
        assert shown[0] == shown[1] and int(shown[0]) == 4 + 1 + 1 + 2  # runs, reference, sheet, charts
        rows = "[...document.querySelectorAll('#runs tbody tr')].map(row => row.dataset.id)"
        assert sorted(browser.evaluate(rows)) == sorted(e["id"] for e in document["runs"])
        browser.click('#runs th[data-column="latent_rmse"] button')
        ranked = sorted((e for e in document["runs"] if e["distance"]), key=lambda e: e["distance"]["latent_rmse"])
        assert browser.evaluate(rows)[: len(ranked)] == [e["id"] for e in ranked]
        browser.screenshot(Path(__file__).parent / "artifacts" / "report_page_real_run.png")


def test_an_id_names_one_image_with_and_without_the_reference(cli, sd15_model, tmp_path, monkeypatch):
    """--reference measures the run the user makes: the same id, the same image, as without it."""
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    common = ["run", "a horse", "--model", sd15_model, "-s", "ddim,euler", "--steps", "4", "--format", "json"]
    plain = cli(*common, "--out", tmp_path / "plain").json()
    measured = cli(*common, "--out", tmp_path / "measured", "--reference-spec", "DPMSolverMultistep:8").json()
    images = {}
    for document in (plain, measured):
        for run in document["runs"]:
            assert images.setdefault(run["id"], run["sha256"]) == run["sha256"], run["id"]
    assert (
        {run["id"] for run in measured["runs"]}
        == {run["id"] for run in plain["runs"]}
        == {
            "ddim-s4-seed0",
            "eulerdiscrete-s4-seed0",
        }
    )
    ddim = next(run for run in measured["runs"] if run["id"] == "ddim-s4-seed0")
    assert ddim["distance"] is not None and "late start" in ddim["schedule_note"]
