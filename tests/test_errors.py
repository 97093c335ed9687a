"""Bad input: one line on stderr naming the problem, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("schedcmp: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert result.stdout == ""


MISSING_MODEL = "/nonexistent/model"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "x", "-s", "eulr"], ["unknown scheduler 'eulr'", "did you mean"]),
        (
            ["run", "x", "-s", "euler(use_karras_sigma=true)"],
            ["unknown override 'use_karras_sigma'", "use_karras_sigmas"],
        ),
        (["run", "x", "-s", "euler(karras"], ["malformed scheduler list"]),
        (["run", "x", "-s", "euler:0"], ["steps must be at least 1"]),
        (["run", "x", "--steps", "0"], ["--steps must be at least 1"]),
        (["run", "   "], ["prompt is empty"]),
        (["run", "x", "--seed", "eight"], ["--seed", "not a number"]),
        (["run", "x", "--format", "yaml"], ["unknown --format 'yaml'"]),
        (["run", "x", "--call-arg", "eta"], ["malformed --call-arg"]),
        (["run", "x", "--generator-device", "gpu"], ["--generator-device"]),
        (["run", "x", "--nonsense"], ["No such option: --nonsense"]),
    ],
)
def test_bad_flags_fail_before_the_model_is_loaded(cli, args, fragments):
    # The model does not exist: each error must be found before anything tries to load it.
    assert_one_line_error(cli(*args, "--model", MISSING_MODEL), *fragments)


def test_missing_model_folder(cli):
    assert_one_line_error(cli("run", "x", "--model", "./no-such-folder", "-s", "ddim"), "not found", "no-such-folder")


def test_folder_without_model_index(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("run", "x", "--model", tmp_path / "empty"), "model_index.json is missing")


def test_corrupt_model_index(cli, tmp_path, sd15_model):
    broken = tmp_path / "broken"
    shutil.copytree(sd15_model, broken)
    (broken / "model_index.json").write_text("{not json")
    assert_one_line_error(cli("run", "x", "--model", broken), "model_index.json is corrupt")


def test_corrupt_weights(cli, tmp_path, sd15_model):
    broken = tmp_path / "broken"
    shutil.copytree(sd15_model, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    assert_one_line_error(cli("run", "x", "--model", broken, "--out", tmp_path / "o"), "cannot load the model folder")


@pytest.fixture(scope="module")
def pickle_model(sd15_model, tmp_path_factory):
    """The tiny model with its UNet saved as a pickle (.bin) instead of safetensors."""
    from diffusers import UNet2DConditionModel

    folder = tmp_path_factory.mktemp("pickled") / "model"
    shutil.copytree(sd15_model, folder)
    shutil.rmtree(folder / "unet")
    UNet2DConditionModel.from_pretrained(sd15_model, subfolder="unet").save_pretrained(
        folder / "unet", safe_serialization=False
    )
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    return folder


def test_pickle_only_weights_are_refused(cli, pickle_model, tmp_path):
    assert_one_line_error(
        cli("run", "x", "--model", pickle_model, "--out", tmp_path / "o"), "only pickle weights", "--allow-pickle"
    )


def test_pickle_weights_load_with_the_opt_in(cli, pickle_model, tmp_path):
    result = cli(
        "run", "x", "--model", pickle_model, "--allow-pickle", "-s", "ddim", "--steps", "2", "--out", tmp_path / "o"
    )
    assert result.exit_code == 0, result.stderr


def test_pickle_single_file_is_refused(cli, tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not really")
    assert_one_line_error(cli("run", "x", "--model", checkpoint), "pickle checkpoint", "--allow-pickle")


def test_single_file_without_its_config_offline(cli, tmp_path):
    """A real safetensors file that diffusers reads as SD 1.x, but whose config is in no cache."""
    import torch
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, checkpoint)
    result = cli("run", "x", "--model", checkpoint, "--out", tmp_path / "o")
    assert_one_line_error(result, "needs the config of", "--model-config")


def test_hub_id_offline_and_not_cached(cli):
    assert_one_line_error(cli("run", "x", "--model", "someone/not-cached"), "not in the local cache", "HF_HUB_OFFLINE")


def test_hub_id_from_the_local_cache(cli, sd15_model, tmp_path):
    """A hub id loads offline from the cache, laid out as huggingface_hub lays it out."""
    from conftest import HF_HOME

    repo = HF_HOME / "hub" / "models--schedcmp--tiny-sd"
    revision = "0" * 40
    shutil.copytree(sd15_model, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    result = cli(
        "run",
        "x",
        "--model",
        "schedcmp/tiny-sd",
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
    assert result.json()["model"] == "schedcmp/tiny-sd"


def test_size_not_a_multiple_of_the_vae_factor(cli, sd15_model, tmp_path):
    assert_one_line_error(
        cli("run", "x", "--model", sd15_model, "--width", "33", "--out", tmp_path / "o"),
        "--width 33 is not a multiple of 2",
    )


def test_unwritable_output_folder(cli, sd15_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    assert_one_line_error(cli("run", "x", "--model", sd15_model, "--out", blocker / "sub"), "not writable")
    assert_one_line_error(cli("run", "x", "--model", sd15_model, "--out", blocker), "is a file")
    assert blocker.read_text() == "a file where a folder should go"


def test_device_that_is_not_there(cli, sd15_model, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(
        cli("run", "x", "--model", sd15_model, "--device", "cuda", "--out", tmp_path / "o"), "no CUDA device"
    )


def test_list_json(cli, sd15_model):
    result = cli("list", "--model", sd15_model, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["scheduler"]["class"] == "PNDMScheduler"
    config = document["scheduler"]["config"]
    assert config["beta_schedule"] == "scaled_linear" and config["skip_prk_steps"] is True
    names = [entry["class"] for entry in document["compatible"]]
    assert names[:6] == [
        "PNDMScheduler",
        "DDIMScheduler",
        "LMSDiscreteScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
    ]
    assert "DPMSolverSDEScheduler" in names and "UniPCMultistepScheduler" in names
    euler = next(entry for entry in document["compatible"] if entry["class"] == "EulerDiscreteScheduler")
    assert euler["aliases"] == ["Euler"] and "use_karras_sigmas" in euler["accepts"]
    assert {"name": "DPM++ SDE", "class": "DPMSolverSDEScheduler", "overrides": {}} in document["aliases"]


def test_list_table(cli, sd15_model):
    result = cli("list", "--model", sd15_model)
    assert result.exit_code == 0
    assert (
        "PNDMScheduler" in result.stdout and "DPM++ 2M Karras" in result.stdout and "use_karras_sigmas" in result.stdout
    )


def test_list_unknown_format(cli):
    assert_one_line_error(cli("list", "--format", "yaml", "--model", MISSING_MODEL), "unknown --format")
