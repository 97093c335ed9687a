"""`schedcmp.compare()` on a pipeline in memory: the CLI's images, a pipeline left as it was, errors as exceptions."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings

import numpy as np
import pytest
import schemas

CASES = "ddim,euler,euler a,dpm++ 2m karras"


@pytest.fixture(scope="module")
def pipe(sd15_model):
    import diffusers

    return diffusers.DiffusionPipeline.from_pretrained(str(sd15_model))


def library_state(pipe) -> dict:
    """Everything compare() might leave changed: the pipeline's parts and the process's global settings."""
    import huggingface_hub.utils as hub
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    return {
        "scheduler": pipe.scheduler,
        "hooks": (dict(pipe.unet._forward_hooks), dict(pipe.unet._forward_pre_hooks)),
        "encoder attributes": sorted(vars(pipe.text_encoder)),
        "progress bar": dict(vars(pipe).get("_progress_bar_config", {})),
        "has progress bar setting": "_progress_bar_config" in vars(pipe),
        "device": pipe.device,
        "dtype": pipe.dtype,
        "environment": dict(os.environ),
        "warning filters": list(warnings.filters),
        "log levels": (diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()),
        "logger levels": (logging.getLogger("diffusers").level, logging.getLogger("transformers").level),
        "library bars": (
            diffusers_logging.is_progress_bar_enabled(),
            transformers_logging.is_progress_bar_enabled(),
            hub.are_progress_bars_disabled(),
        ),
    }


@pytest.fixture(scope="module")
def compared(pipe, tmp_path_factory):
    import schedcmp

    state = library_state(pipe)
    out = tmp_path_factory.mktemp("api") / "out"
    comparison = schedcmp.compare(pipe, "a horse", seed=8, schedulers=CASES, steps=3, out=out, progress=False)
    return comparison, state, out, library_state(pipe)


def test_images_equal_the_clis_and_the_guides_plain_loop(compared, sd15_model, cli, tmp_path, pipe):
    import diffusers
    import torch

    comparison, *_ = compared
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--seed",
        "8",
        "--steps",
        "3",
        "-s",
        CASES,
        "--out",
        tmp_path / "cli",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    by_cli = {run["id"]: run["sha256"] for run in result.json()["runs"]}
    assert {run.id: run.sha256 for run in comparison.runs} == by_cli
    for run in comparison.runs:
        if run.determinism == "stochastic":
            continue
        pipe.scheduler = getattr(diffusers, run.scheduler).from_config(compared[1]["scheduler"].config, **run.overrides)
        generator = torch.Generator("cpu").manual_seed(8)
        image = pipe("a horse", generator=generator, num_inference_steps=3).images[0]
        assert np.array_equal(np.asarray(image), np.asarray(run.image)), run.id
    pipe.scheduler = compared[1]["scheduler"]


def test_the_pipeline_and_the_process_are_left_as_they_were(compared, pipe):
    _, before, _, after = compared
    assert after == before


def test_runs_are_records_of_results_json(compared):
    import schedcmp

    comparison, _, out, _ = compared
    document = comparison.to_dict()
    schemas.validate(document)
    assert json.loads((out / "results.json").read_text()) == document
    run = comparison.runs[0]
    assert isinstance(run, schedcmp.Run) and dataclasses.is_dataclass(run)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.steps = 4  # type: ignore[misc]
    assert set(document["runs"][0]) == {
        f.metadata.get("json", f.name) for f in dataclasses.fields(run) if not f.metadata.get("internal")
    }
    assert run.image_path == document["runs"][0]["image"] and run.image.size == (run.width, run.height)
    assert [r.id for r in comparison.runs] == [r["id"] for r in document["runs"]]
    assert comparison.sheet.size == comparison.sheets[0].size and comparison.sheet.width > 4 * run.width


def test_save_and_load_give_back_the_same_comparison(compared, tmp_path):
    import schedcmp

    comparison, *_ = compared
    saved = comparison.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["contact_sheet.png", "images", "results.json"]
    loaded = schedcmp.Comparison.load(saved)
    assert loaded.to_dict() == comparison.to_dict()
    assert [r.sha256 for r in loaded.runs] == [r.sha256 for r in comparison.runs]
    assert np.array_equal(np.asarray(loaded.runs[1].image), np.asarray(comparison.runs[1].image))
    with pytest.raises(schedcmp.OutputError, match="not empty"):
        comparison.save(saved)


def test_jupyter_shows_the_sheet_and_the_table(compared):
    comparison, *_ = compared
    page = comparison._repr_html_()
    assert page.count("data:image/png;base64,") == 1 and "<table" in page and "DPMSolverMultistep" in page


def test_without_out_the_files_live_in_a_temporary_folder(pipe):
    import gc

    import schedcmp

    comparison = schedcmp.compare(
        pipe, ["a horse", "a cat"], seed=range(1, 3), schedulers=[_ddim()], steps=2, progress=False
    )
    folder = comparison.folder
    assert [(r.prompt, r.seed) for r in comparison.runs] == [("a horse", 1), ("a horse", 2), ("a cat", 1), ("a cat", 2)]
    assert all(r.scheduler == "DDIMScheduler" for r in comparison.runs) and (folder / "results.json").is_file()
    del comparison
    gc.collect()
    assert not folder.exists()


def _ddim():
    import diffusers

    return diffusers.DDIMScheduler


@pytest.mark.parametrize(
    "arguments, error, words",
    [
        ({"steps": 0}, "UsageError", "--steps must be at least 1"),
        ({"schedulers": "eulr"}, "UsageError", "did you mean Euler"),
        ({"seed": "x"}, "UsageError", "not a number"),
        ({"width": 63}, "UsageError", "is not a multiple of"),
        ({"call_args": {"num_inference_steps": 3}}, "UsageError", "set by schedcmp"),
        ({"reference": 3}, "UsageError", "reference"),
        ({"target_psnr": 30}, "UsageError", "chooses each scheduler's steps itself"),
        ({"steps": None, "target_psnr": 30, "target_rmse": 0.1}, "UsageError", "both given"),
    ],
)
def test_bad_input_raises_a_schedcmp_error_never_systemexit(pipe, arguments, error, words, tmp_path):
    import schedcmp

    before = library_state(pipe)
    with pytest.raises(schedcmp.SchedcmpError) as raised:
        schedcmp.compare(pipe, "a horse", progress=False, out=tmp_path / "o", **{"steps": 2, **arguments})
    assert type(raised.value).__name__ == error and words in str(raised.value) and raised.value.exit_code == 2
    assert isinstance(raised.value, ValueError)
    assert library_state(pipe) == before


def test_a_target_gives_the_answer_and_each_entrys_steps(pipe, tmp_path, monkeypatch):
    import schedcmp

    monkeypatch.setenv("SCHEDCMP_CACHE_DIR", str(tmp_path / "cache"))
    comparison = schedcmp.compare(
        pipe,
        "a horse",
        schedulers="euler,euler a",
        target_rmse=0.5,
        max_steps=4,
        reference="DPMSolverMultistep:8",
        progress=False,
    )
    labels = [found.label for found in comparison.equal_quality]
    assert labels == ["Euler", "Euler a"] and comparison.equal_quality[1].status == "not ranked"
    assert comparison.answer[0].startswith("latent RMSE ≤ 0.5: ")
    assert comparison.to_dict()["target"] == {"metric": "latent_rmse", "value": 0.5, "max_steps": 4}


def test_output_and_model_errors(pipe, tmp_path):
    import schedcmp

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(OSError, match="not empty") as raised:
        schedcmp.compare(pipe, "a horse", steps=2, out=tmp_path / "full", progress=False)
    assert isinstance(raised.value, schedcmp.OutputError) and (tmp_path / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(schedcmp.ModelError, match="not found"):
        schedcmp.compare(str(tmp_path / "nowhere"), "a horse", progress=False)
    with pytest.raises(schedcmp.OutputError, match="cannot load"):
        schedcmp.Comparison.load(tmp_path / "full")


def test_a_failure_inside_a_run_restores_everything(pipe, monkeypatch, tmp_path):
    import schedcmp
    import schedcmp.model.sample

    before = library_state(pipe)

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(schedcmp.model.sample.Sampler, "warm_up", broken)
    with pytest.raises(RuntimeError, match="boom"):
        schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim", out=tmp_path / "o", progress=False)
    assert library_state(pipe) == before


def test_ctrl_c_is_reraised_after_writing_what_finished(pipe, monkeypatch, tmp_path):
    import schedcmp
    import schedcmp.model.sample

    before = library_state(pipe)
    real = schedcmp.model.sample.Sampler.run_batch
    calls = []

    def interrupted_second_time(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(schedcmp.model.sample.Sampler, "run_batch", interrupted_second_time)
    with pytest.raises(KeyboardInterrupt):
        schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim,euler,lms", out=tmp_path / "o", progress=False)
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    schemas.validate(document)
    assert document["interrupted"] is True and [r["id"] for r in document["runs"]] == ["ddim-s2-seed0"]
    assert (tmp_path / "o" / "contact_sheet.png").is_file()
    assert library_state(pipe) == before


def test_a_pipeline_keeps_its_device_dtype_and_own_progress_setting(pipe):
    import schedcmp

    pipe.set_progress_bar_config(desc="mine")
    try:
        before = library_state(pipe)
        comparison = schedcmp.compare(pipe, "a horse", steps=2, schedulers="euler", progress=False)
        assert library_state(pipe) == before and vars(pipe)["_progress_bar_config"] == {"desc": "mine"}
        assert comparison.to_dict()["device"] == "cpu" and comparison.to_dict()["dtype"] == "fp32"
    finally:
        del pipe._progress_bar_config


def test_importing_schedcmp_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, schedcmp; schedcmp.Run; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["False", "False"]


def test_the_embedded_model_by_default_and_a_model_path(sd15_model):
    import schedcmp

    embedded = schedcmp.compare(None, "astronaut", steps=2, schedulers="euler", progress=False)
    assert embedded.to_dict()["model"] == "schedcmp default (embedded)" and embedded.runs[0].status == "ok"
    from_disk = schedcmp.compare(str(sd15_model), "a horse", steps=2, schedulers="euler", device="cpu", progress=False)
    assert from_disk.to_dict()["model"] == str(sd15_model) and from_disk.runs[0].image is not None


def test_a_pipeline_loaded_from_a_path_object(sd15_model):
    """from_pretrained(Path) keeps the Path as the pipeline's name: it must still make a JSON document."""
    import diffusers

    import schedcmp

    pipe = diffusers.DiffusionPipeline.from_pretrained(sd15_model)
    comparison = schedcmp.compare(pipe, "a horse", steps=2, schedulers="euler", progress=False)
    assert comparison.to_dict()["model"] == str(sd15_model)


def test_runs_keep_their_images_after_the_comparison_is_gone(pipe):
    import gc

    import schedcmp

    runs = schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim,euler", progress=False).runs
    gc.collect()
    assert [r.image.size for r in runs] == [(r.width, r.height) for r in runs]


def test_api_values_become_what_the_cli_parses(pipe, cli, sd15_model, tmp_path):
    import numpy as np

    import schedcmp

    comparison = schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim", guidance_scale=[5, 7], progress=False)
    by_cli = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "-s",
        "ddim",
        "--guidance-scale",
        "5,7",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert [r.id for r in comparison.runs] == [r["id"] for r in by_cli.json()["runs"]]
    with pytest.raises(schedcmp.UsageError, match="call_args eta: ndarray values cannot be recorded"):
        schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim", call_args={"eta": np.zeros(2)}, progress=False)


def test_a_sampler_that_fails_to_set_up_undoes_what_it_did(pipe, monkeypatch):
    from schedcmp.model import pipeline
    from schedcmp.model.sample import Sampler

    before = library_state(pipe)
    model = pipeline.from_pipeline(pipe)
    monkeypatch.setattr(
        type(pipe), "set_progress_bar_config", lambda self, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        with Sampler(model):
            pass
    monkeypatch.undo()
    assert library_state(pipe) == before
