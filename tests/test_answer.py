"""The answer: the equal-quality step search, the summary across prompts and seeds, and both in words."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from browser import Browser

from schedcmp.core.records import Determinism, Distance, Run, Status
from schedcmp.quality import stepsearch, summary
from schedcmp.quality.stepsearch import Target

# -- the search, pure ---------------------------------------------------------------------------------


def test_search_finds_the_first_crossing_and_keeps_the_step_below():
    curve = {steps: 1.0 / steps for steps in range(1, 101)}  # monotone: reaches 0.05 first at 20 steps
    search = stepsearch.run_search(Target("latent_rmse", 0.05, 100), curve.get)
    assert search.answer() == 20 and 19 in search.probed and not search.target.meets(search.probed[19])
    assert sorted(search.probed) == [1, 2, 4, 8, 16, 18, 19, 20, 24, 32]  # doubling, then bisection in 16..32
    assert not search.non_monotone()


def test_search_gives_up_at_max_steps_and_probes_the_cap():
    search = stepsearch.run_search(Target("psnr", 40.0, 20), lambda steps: 10.0 + steps)  # 30 dB at 20
    assert search.answer() is None and sorted(search.probed) == [1, 2, 4, 8, 16, 20]


def test_out_of_order_probes_are_flagged_non_monotone():
    values = {1: 0.8, 2: 7.0, 3: 0.8, 4: 0.3, 5: 0.14, 6: 0.09, 7: 0.06, 8: 0.05}  # Heun's RMSE on the exact denoiser
    search = stepsearch.run_search(Target("latent_rmse", 0.1, 8), values.get)
    assert search.answer() == 6 and search.non_monotone()


def test_a_step_count_without_a_distance_meets_no_target():
    search = stepsearch.run_search(Target("psnr", 30.0, 8), lambda steps: None if steps < 4 else 31.0)
    assert search.answer() == 4 and search.probed[3] is None


# -- the summary, pure: paired wins, sign tests, ranks --------------------------------------------------


def entry(scheduler: str, pair: int, rmse: float, steps: int = 10, nfe: int | None = None) -> Run:
    return Run(
        id=f"{scheduler}-{steps}-{pair}",
        scheduler=f"{scheduler}Scheduler",
        prompt="p",
        seed=pair,
        steps=steps,
        nfe=nfe or steps,
        seconds=0.1 * steps,
        status=Status.OK,
        determinism=Determinism.DETERMINISTIC,
        reference=f"ref-{pair}",
        distance=Distance(latent_rmse=rmse, psnr=-rmse, ssim=1.0),
    )


def test_sign_test_is_the_exact_two_sided_binomial():
    assert summary.sign_test(6, 0) == pytest.approx(2 / 64)
    assert summary.sign_test(5, 0) == pytest.approx(2 / 32)  # 0.0625: five pairs can never separate two entries
    assert summary.sign_test(3, 3) == 1.0 and summary.sign_test(0, 0) == 1.0
    assert summary.sign_test(8, 1) == pytest.approx(2 * (1 + 9) / 512)


def test_ranks_on_a_hand_made_table_with_ties():
    # A beats B on all 6 pairs; C ties A on 2 pairs and beats it on 2, loses on 2; B and C: C wins 6.
    table = {
        "A": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        "B": [0.2, 0.3, 0.2, 0.4, 0.2, 0.5],
        "C": [0.1, 0.1, 0.05, 0.05, 0.15, 0.15],
    }
    entries = [entry(name, pair, value) for name, values in table.items() for pair, value in enumerate(values)]
    found = summary.summarise(entries)
    [group] = found.step_counts
    assert found.pairs == 6 and found.ranked and found.note is None
    assert group.wins["A"]["B"] == 6 and group.wins["B"]["A"] == 0
    assert group.wins["C"]["A"] == 2 and group.wins["A"]["C"] == 2  # the 2 tied pairs count for neither
    ranks = {row.label: row.rank for row in group.entries}
    assert ranks == {"A": 1, "C": 1, "B": 3}  # nothing beats A or C significantly: they share rank 1
    medians = {row.label: row.distance.median for row in group.entries}
    assert medians["B"] == pytest.approx(0.25) and medians["C"] == pytest.approx(0.1)
    iqr = next(row.distance for row in group.entries if row.label == "B")
    assert (iqr.q1, iqr.q3) == (pytest.approx(0.2), pytest.approx(0.375))


def test_five_pairs_are_too_few_to_rank():
    entries = [entry(name, pair, value) for name, value in (("A", 0.1), ("B", 0.9)) for pair in range(5)]
    found = summary.summarise(entries)
    assert not found.ranked and found.note.startswith("too few pairs to rank")
    assert all(row.rank is None for row in found.step_counts[0].entries)
    assert found.step_counts[0].wins["A"]["B"] == 5
    lines = summary.answer_lines(found)
    assert "too few pairs to rank" in lines[-1]


def test_stochastic_and_failed_runs_are_left_out_of_the_summary():
    entries = [entry("A", 0, 0.1), entry("B", 0, 0.2)]
    entries.append(replace(entry("C", 0, 0.01), determinism=Determinism.STOCHASTIC))
    entries.append(replace(entry("D", 0, 0.01), status=Status.FAILED))
    found = summary.summarise(entries)
    assert [row.label for row in found.step_counts[0].entries] == ["A", "B"]


def test_answer_in_words_names_the_front_and_the_pick_for_each_budget():
    entries = [
        entry("Euler", 0, 0.3, steps=10),
        entry("Euler", 0, 0.15, steps=20),
        entry("Heun", 0, 0.35, steps=10, nfe=19),  # beaten by Euler at 10 steps: cheaper and closer
        entry("Heun", 0, 0.02, steps=20, nfe=39),
        entry("LMS", 0, 0.5, steps=20),  # beaten by Euler at the same NFE: not on the front
    ]
    lines = summary.answer_lines(summary.summarise(entries))
    assert lines[0] == (
        "on the front (distance against NFE): Euler, Heun; best pick by budget: "
        "≤20 NFE: Euler (10–20 steps); ≤39 NFE: Heun (20 steps)"
    )
    assert lines[1].startswith("caveat: one prompt and one seed")


# -- the search on the exact denoiser, against a scan of every step count --------------------------------

REFERENCE = "DPMSolverMultistep(use_karras_sigmas=true):200"
TARGET_RMSE = 0.1


def test_step_search_on_the_exact_denoiser_matches_a_brute_force_scan(sd15_model, tmp_path, monkeypatch, capsys):
    """Same answer as running every step count from 1 to 24, from far fewer pipeline calls."""
    import analytic

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.sweep import engine

    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    model = analytic.swap_in(pipeline.load(str(sd15_model), "cpu", "fp32"))
    common = {"prompt": ("x",), "schedulers": "Euler,DPM++ 2M,LMS", "seed": (1,), "guidance_scale": (1.0,)}

    def run(name: str, **settings):
        return engine.run_comparison(
            Request(**common, **settings, out=tmp_path / name, reference_spec=REFERENCE, no_sheet=True),
            loaded=model,
            progress=console.Progress(False),
        ).results

    scan = run("scan", steps=tuple(range(1, 25)))
    searched = run("search", target_rmse=TARGET_RMSE, max_steps=24)
    answers = {found.label: found for found in searched.equal_quality}
    for label in ("Euler", "DPM++ 2M", "LMS"):
        curve = {run.steps: run.distance.latent_rmse for run in scan.runs if summary.entry_label(run) == label}
        steps = sorted(curve)
        assert all(curve[a] > curve[b] for a, b in zip(steps, steps[1:])), f"{label} is not monotone here"
        first = min(s for s in steps if curve[s] <= TARGET_RMSE)
        assert answers[label].status == "reached" and answers[label].steps == first, label
        assert answers[label].below_steps == first - 1 and answers[label].below_distance > TARGET_RMSE
        assert not answers[label].non_monotone
        at = {run.id: run for run in searched.runs}
        assert all(at[cell].distance.latent_rmse <= TARGET_RMSE for cell in answers[label].runs)
    scan_calls, search_calls = len(scan.runs), len(searched.runs)
    with capsys.disabled():
        print(f"\n  pipeline calls: scan of 1..24 steps {scan_calls}, search {search_calls}")
    assert search_calls < scan_calls / 2
    assert searched.answer[0].startswith("latent RMSE ≤ 0.1: ")


def test_heun_on_the_exact_denoiser_is_flagged_non_monotone(sd15_model, tmp_path, monkeypatch):
    """Heun's 2-step run is farther than its 1-step run in latent RMSE: the answer is the first crossing."""
    import analytic

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.sweep import engine

    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    model = analytic.swap_in(pipeline.load(str(sd15_model), "cpu", "fp32"))
    document = engine.run_comparison(
        Request(
            prompt=("x",),
            schedulers="Heun",
            guidance_scale=(1.0,),
            target_rmse=TARGET_RMSE,
            max_steps=16,
            out=tmp_path / "heun",
            reference_spec=REFERENCE,
            no_sheet=True,
        ),
        loaded=model,
        progress=console.Progress(False),
    ).document
    [heun] = document["equal_quality"]
    assert heun["status"] == "reached" and heun["non_monotone"] and "first crossing" in heun["reason"]
    probes = {probe["steps"]: probe["distance"] for probe in heun["probes"]}
    assert probes[2] > probes[1]
    assert "first crossing found" in document["answer"][0]


# -- the CLI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "10"], "--target-psnr chooses each scheduler's steps itself: drop --steps"),
        (["-s", "euler:10,ddim"], "euler:STEPS pins its steps"),
        (["--target-rmse", "0.1"], "--target-psnr and --target-rmse both given"),
        (["--target-psnr", "0"], None),
        (["--shard", "0/2"], "a --target search runs in one process"),
    ],
)
def test_target_refusals(cli, tmp_path, extra, message):
    args = ["run", "x", "--target-psnr", "30", "--out", tmp_path / "o", *extra]
    if extra[0] == "--target-psnr":
        args = ["run", "x", "--out", tmp_path / "o", *extra]
    result = cli(*args)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (message or "must be a positive number") in result.stderr
    assert not (tmp_path / "o").exists()


def test_max_steps_without_a_target_is_refused(cli, tmp_path):
    result = cli("run", "x", "--max-steps", "40", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--max-steps bounds a --target-psnr or --target-rmse search" in result.stderr


def test_target_run_on_a_real_pipeline(cli, sd15_model, tmp_path, monkeypatch):
    """Two seeds, a target in PSNR: every entry's answer is checkable in results.json, the sheet shows the
    answers, the answer ends stderr, and report.html shows it in a browser."""
    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    result = cli(
        "run",
        "a red apple",
        "--model",
        sd15_model,
        "-s",
        "euler,dpm++ 2m,euler a",
        "--seed",
        "1,2",
        "--target-psnr",
        "30",
        "--max-steps",
        "12",
        "--reference-spec",
        "DPMSolverMultistep:24",
        "--html",
        "--out",
        tmp_path / "t",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("answer: ")
    document = json.loads((tmp_path / "t" / "results.json").read_text())
    assert document["target"] == {"metric": "psnr", "value": 30.0, "max_steps": 12}
    runs = {run["id"]: run for run in document["runs"]}
    found = {entry["label"]: entry for entry in document["equal_quality"]}
    assert found["Euler a"]["status"] == "not ranked" and "stochastic" in found["Euler a"]["reason"]
    assert not any(run["scheduler"] == "EulerAncestralDiscreteScheduler" for run in runs.values())
    for label in ("Euler", "DPM++ 2M"):
        entry = found[label]
        probes = {probe["steps"]: probe["distance"] for probe in entry["probes"]}
        if entry["status"] == "reached":
            assert probes[entry["steps"]] >= 30 and len(entry["runs"]) == 2
            if entry["steps"] > 1:
                assert probes[entry["steps"] - 1] < 30 and all(cell in runs for cell in entry["below_runs"])
        else:
            assert entry["status"] == "not reached" and max(probes) == 12 and "within 12 steps" in entry["reason"]
    assert document["summary"]["pairs"] == 2 and document["summary"]["note"].startswith("too few pairs to rank")
    assert document["answer"][0].startswith("PSNR ≥ 30 dB: ")
    assert any("too few pairs to rank" in line for line in document["answer"])
    if any(entry["status"] == "reached" for entry in document["equal_quality"]):
        assert document["sheets"] == ["contact_sheet.png"]  # one grid: each entry at its steps, a column per seed
    report = Path(tmp_path / "t" / "report.html")
    with Browser(tmp_path / "profile") as browser:
        browser.open(report.as_uri())
        browser.wait_for("document.body.dataset.imagesTotal")
        assert browser.evaluate("document.querySelector('#answer li').textContent") == document["answer"][0]
        rows = browser.evaluate("[...document.querySelectorAll('#equal-quality tbody tr')].map(r => r.dataset.status)")
        assert rows == [entry["status"] for entry in document["equal_quality"]]
        first = document["summary"]["step_counts"][0]
        dots = browser.evaluate(
            f"document.querySelectorAll('.step-summary[data-steps=\"{first['steps']}\"] circle.pair').length"
        )
        assert dots == sum(len(row["values"]) for row in first["entries"])
        assert browser.evaluate("document.querySelectorAll('table.wins').length") == len(
            document["summary"]["step_counts"]
        )


def test_the_schedules_note_names_the_step_counts_of_a_partial_late_start():
    from schedcmp.core.plan import RunSpec
    from schedcmp.quality.convergence import interval_note

    def spec(scheduler: str, steps: int) -> RunSpec:
        return RunSpec(f"{scheduler}-{steps}", scheduler, None, {}, True, "x", None, 0, steps, 7.5, 64, 64)

    runs = [spec(name, steps) for name in ("EulerDiscreteScheduler", "DDIMScheduler") for steps in (1, 2, 4)]
    notes = {"EulerDiscreteScheduler-1": "starts at t=0: part of its distance is the late start"}
    notes |= {f"DDIMScheduler-{steps}": "starts at t=1: late start; ends early: early end" for steps in (1, 2, 4)}
    note = interval_note(999.0, runs, notes, {})
    assert "EulerDiscrete at 1 step, DDIM start later" in note and "; DDIM end early" in note
