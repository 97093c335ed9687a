"""`schedcmp run` end to end on tiny real pipelines: faithful images, measurements, files, exit codes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

GUIDE_LIKE = "pndm,ddim,lms,euler,euler a,dpm++ 2m karras,dpm++ sde,heun"


def pixels_sha256(path) -> str:
    return hashlib.sha256(np.asarray(Image.open(path).convert("RGB")).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def guide_run(sd15_model, tmp_path_factory):
    """One comparison shared by several tests (the CLI in-process, json on stdout)."""
    import contextlib
    import io

    from schedcmp.cli import main

    out = tmp_path_factory.mktemp("guide") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as stop:
        main(
            [
                "run",
                "astronaut on mars",
                "--model",
                str(sd15_model),
                "--seed",
                "8",
                "--steps",
                "4",
                "--schedulers",
                GUIDE_LIKE + ",heun:2",
                "--out",
                str(out),
                "--format",
                "json",
                "--repeat",
                "2",
            ]
        )
    assert stop.value.code == 0
    return out, json.loads(stdout.getvalue())


def test_each_image_equals_the_guides_plain_loop(sd15_model, guide_run):
    """The guide's loop: fresh scheduler from the original config, fresh CPU generator, pipe(prompt, ...)."""
    import diffusers
    import torch

    out, document = guide_run
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(sd15_model))
    pipe.set_progress_bar_config(disable=True)
    original_config = pipe.scheduler.config
    for run in document["runs"]:
        cls = getattr(diffusers, run["scheduler"])
        overrides = dict(run["overrides"])
        if cls is diffusers.DPMSolverSDEScheduler:
            overrides["noise_sampler_seed"] = 8  # what schedcmp documents, so that the SDE run repeats
        pipe.scheduler = cls.from_config(original_config, **overrides)
        generator = torch.Generator(device="cpu").manual_seed(8)
        image = pipe("astronaut on mars", generator=generator, num_inference_steps=run["steps"]).images[0]
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(out / run["image"]))), run["id"]


def test_results_json_fields(guide_run):
    out, document = guide_run
    assert document["schema_version"] == 1 and document["kind"] == "run"
    assert (
        document["pipeline"] == "StableDiffusionPipeline"
        and document["device"] == "cpu"
        and document["dtype"] == "fp32"
    )
    assert set(document["versions"]) == {"schedcmp", "diffusers", "torch", "transformers"}
    assert document["shared_seconds"]["prompt_encoding"] > 0 and document["shared_seconds"]["warmup"] > 0
    assert document["started"] and document["finished"]
    ids = [run["id"] for run in document["runs"]]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["pndm-s4-seed8", "ddim-s4-seed8"]
    assert "dpmsolvermultistep-karras-s4-seed8" in ids
    required = {
        "id",
        "scheduler",
        "alias",
        "overrides",
        "compatible",
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "guidance_scale",
        "width",
        "height",
        "status",
        "error",
        "nfe",
        "seconds",
        "seconds_all",
        "peak_memory_bytes",
        "image",
        "sha256",
    }
    for run in document["runs"]:
        assert required <= set(run)
        assert run["status"] == "ok" and run["error"] is None and run["compatible"] is True
        assert len(run["seconds_all"]) == 2 and min(run["seconds_all"]) <= run["seconds"] <= max(run["seconds_all"])
        assert run["peak_memory_bytes"] > 0
        assert run["sha256"] == pixels_sha256(out / run["image"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["runs"] == document["runs"]
    assert (out / "contact_sheet.png").is_file()


def test_nfe_is_counted_at_the_denoiser(guide_run):
    _, document = guide_run
    by_id = {run["id"]: run for run in document["runs"]}
    assert by_id["ddim-s4-seed8"]["nfe"] == 4
    assert by_id["eulerdiscrete-s4-seed8"]["nfe"] == 4
    assert by_id["heundiscrete-s4-seed8"]["nfe"] == 2 * 4 - 1  # Heun: two calls a step but the last
    assert by_id["heundiscrete-s2-seed8"]["nfe"] == 2 * 2 - 1
    assert by_id["dpmsolversde-s4-seed8"]["nfe"] == 2 * 4 - 1
    assert by_id["pndm-s4-seed8"]["nfe"] == 5  # PLMS warms up with one extra call


def test_aliases_and_overrides_recorded(guide_run):
    _, document = guide_run
    karras = next(r for r in document["runs"] if r["id"] == "dpmsolvermultistep-karras-s4-seed8")
    assert karras["alias"] == "DPM++ 2M Karras" and karras["overrides"] == {"use_karras_sigmas": True}
    euler_a = next(r for r in document["runs"] if r["scheduler"] == "EulerAncestralDiscreteScheduler")
    assert euler_a["alias"] == "Euler a"


def test_prompt_is_encoded_once_for_all_schedulers(sd15_model):
    """The text encoder computes each distinct input once, however many schedulers run."""
    from schedcmp.core.plan import RunSpec
    from schedcmp.model import pipeline
    from schedcmp.model.sample import Sampler

    model = pipeline.load(str(sd15_model), "cpu", "fp32")
    real_calls = []
    encoder = model.text_encoders[0]
    real_forward = encoder.forward

    def counted_forward(*args, **kwargs):
        real_calls.append(1)
        return real_forward(*args, **kwargs)

    encoder.forward = counted_forward  # the sampler's memo wraps this, so it counts real computations
    with Sampler(model) as sampler:
        for name in ("DDIMScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler"):
            sampler.run(RunSpec(name, name, None, {}, True, "a red apple", None, 1, 2, 7.5, 32, 32))
        assert len(real_calls) == 2  # the prompt and the empty negative prompt, once each
        assert sampler.encoding_seconds > 0


def test_table_format_prints_the_sheet_path_on_stdout(sd15_model, cli, tmp_path):
    result = cli(
        "run", "a horse", "--model", sd15_model, "--schedulers", "ddim,euler", "--steps", "2", "--out", tmp_path / "o"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "o" / "contact_sheet.png")
    assert "DDIM" in result.stderr and "2 runs" in result.stderr
    sheet = Image.open(result.stdout.strip())
    assert sheet.width > 2 * 192


@pytest.mark.parametrize("fmt, first_line", [("csv", "id,scheduler,steps"), ("markdown", "| id | scheduler |")])
def test_csv_and_markdown_go_to_stdout_alone(sd15_model, cli, tmp_path, fmt, first_line):
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--schedulers",
        "ddim",
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        fmt,
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(first_line) and "ddim-s2-seed0" in lines[-1 if fmt == "csv" else -2]
    assert ("total" in lines[-1]) == (fmt == "markdown")  # the CSV is data: no total row


def test_a_failing_scheduler_does_not_sink_the_run(sd15_model, cli, tmp_path):
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--schedulers",
        "ddim,DPMSolverMultistep(algorithm_type=bogus),euler",
    )
    assert result.exit_code == 1
    runs = result.json()["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    assert runs[1]["error"]["type"] == "NotImplementedError" and "bogus" in runs[1]["error"]["message"]
    assert runs[1]["image"] is None
    assert (tmp_path / "o" / "contact_sheet.png").is_file()


def test_edm_euler_on_an_epsilon_sd_config_is_suspect(sd15_model, cli, tmp_path):
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--schedulers",
        "EDMEuler",
    )
    assert result.exit_code == 0  # suspect does not fail the run ...
    run = result.json()["runs"][0]
    assert run["status"] == "suspect" and "outside its training range" in run["reason"] and run["timesteps"]["min"] < 0
    strict = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--out",
        tmp_path / "o2",
        "--schedulers",
        "EDMEuler",
        "--strict",
    )
    assert strict.exit_code == 1  # ... unless --strict


def test_incompatible_scheduler_needs_the_flag(sd15_model, cli, tmp_path):
    refused = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--out",
        tmp_path / "o",
        "--schedulers",
        "FlowMatchEulerDiscrete",
    )
    assert refused.exit_code == 2 and "--allow-incompatible" in refused.stderr
    allowed = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--out",
        tmp_path / "o2",
        "--format",
        "json",
        "--schedulers",
        "FlowMatchEulerDiscrete",
        "--allow-incompatible",
    )
    assert allowed.json()["runs"][0]["compatible"] is False


def test_call_args_reach_the_pipeline(sd15_model, cli, tmp_path):
    plain = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "3",
        "--out",
        tmp_path / "a",
        "--format",
        "json",
        "-s",
        "ddim",
    )
    eta = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "3",
        "--out",
        tmp_path / "b",
        "--format",
        "json",
        "-s",
        "ddim",
        "--call-arg",
        "eta=0.8",
    )
    assert plain.json()["runs"][0]["sha256"] != eta.json()["runs"][0]["sha256"]
    assert eta.json()["runs"][0]["call_args"] == {"eta": 0.8}


def test_overwrite(sd15_model, cli, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = cli("run", "a horse", "--model", sd15_model, "--steps", "2", "--out", out, "-s", "ddim")
    assert refused.exit_code == 2 and "not empty" in refused.stderr
    assert (out / "keep.txt").read_text() == "mine" and not (out / "results.json").exists()
    assert (
        cli(
            "run", "a horse", "--model", sd15_model, "--steps", "2", "--out", out, "-s", "ddim", "--overwrite"
        ).exit_code
        == 0
    )
    assert (out / "results.json").is_file()


def test_default_output_folder_is_timestamped_under_schedcmp_runs(sd15_model, cli, tmp_path):
    result = cli("run", "Astronaut on Mars!", "--model", sd15_model, "--steps", "2", "-s", "ddim")
    assert result.exit_code == 0
    folder = next((tmp_path / "schedcmp-runs").iterdir())
    assert folder.name.endswith("-astronaut-on-mars")
    assert (folder / "images" / "ddim-s2-seed0.png").is_file()


@pytest.mark.parametrize("family", ["sdxl_model", "sd3_model"])
@pytest.mark.parametrize("which", ["all", "all+"])
def test_all_and_all_plus_on_other_families(request, cli, tmp_path, family, which):
    model = request.getfixturevalue(family)
    result = cli(
        "run", "a horse", "--model", model, "--steps", "3", "--out", tmp_path / "o", "--format", "json", "-s", which
    )
    document = result.json()
    runs = document["runs"]
    assert len(runs) >= (1 if family == "sd3_model" else 10)
    for run in runs:
        if family == "sdxl_model" and run["scheduler"] == "EDMEulerScheduler":
            continue  # EDM on an epsilon SDXL config: failed or suspect, said on its tile; checked below
        assert run["status"] == "ok", (run["id"], run["reason"])
        assert np.isfinite(np.asarray(Image.open(tmp_path / "o" / run["image"]))).all()
    if family == "sd3_model" and which == "all+":
        flow_solvers = {(r["scheduler"], r["overrides"].get("use_flow_sigmas")) for r in runs}
        assert {
            ("FlowMatchHeunDiscreteScheduler", None),
            ("DPMSolverMultistepScheduler", True),
            ("UniPCMultistepScheduler", True),
        } <= flow_solvers
    if family == "sdxl_model":
        edm = next(r for r in runs if r["scheduler"] == "EDMEulerScheduler")
        assert edm["status"] in ("failed", "suspect") and edm["reason"]
    if which == "all+":
        assert any(r["overrides"].get("use_karras_sigmas") for r in runs) or family == "sd3_model"
