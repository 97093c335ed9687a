"""The Flax backend (schedcmp.flax), in the Flax environment: `make test-flax`, or

    XLA_FLAGS=--xla_force_host_platform_device_count=2 .venv-flax/bin/python -m pytest -q tests/test_flax.py

Elsewhere (the main environment, with diffusers >= 0.40 and no jax) every test but the first skips, saying so.
"""

from __future__ import annotations

import functools
import json
import types
from pathlib import Path

import pytest

from schedcmp.core.errors import EXIT_USAGE, ModelError
from schedcmp.flax import FlaxUnavailable, missing_dependency, require

PROBLEM = missing_dependency()
needs_flax = pytest.mark.skipif(PROBLEM is not None, reason=f"the Flax environment is not this one: {PROBLEM}")
DEFAULT_MODEL = Path(__file__).parent.parent / "schedcmp" / "default_model"
PROMPT = "astronaut"


def test_without_jax_a_flax_run_names_make_flax(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "jax" else real_find_spec(name))
    with pytest.raises(FlaxUnavailable, match="make flax") as raised:
        require()
    assert raised.value.exit_code == EXIT_USAGE
    assert "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def default_model():
    from schedcmp.flax import runner

    return runner.load(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def torch_pipe():
    from schedcmp.flax import crosscheck

    return crosscheck.load_torch_pipeline(DEFAULT_MODEL)


def unet_inputs():
    import numpy as np

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    text = rng.standard_normal((2, 32, 128)).astype(np.float32)  # the default model: 32 tokens of width 128
    return sample, np.array([999, 10], np.int32), text


def exact_gelu_namespace():
    """flax.linen as diffusers' attention_flax sees it, but with PyTorch's exact (erf) GELU in GEGLU."""
    import flax.linen as nn

    patched = types.SimpleNamespace(**{name: getattr(nn, name) for name in dir(nn) if not name.startswith("__")})
    patched.gelu = functools.partial(nn.gelu, approximate=False)
    return patched


@needs_flax
def test_text_embedding_unet_converts_to_what_pytorch_computes(default_model, torch_pipe, monkeypatch):
    """Same weights, same inputs: the text-time embedding to float32 rounding, the whole UNet to what diffusers'
    Flax blocks allow (their GEGLU's tanh GELU), and to float32 rounding once that GELU is PyTorch's."""
    import diffusers.models.attention_flax as attention_flax
    import numpy as np
    import torch

    sample, timesteps, text = unet_inputs()
    unet, params = default_model.unet, {"params": default_model.params["unet"]}
    with torch.no_grad():
        expected = torch_pipe.unet(
            torch.from_numpy(sample), torch.from_numpy(timesteps.astype(np.int64)), torch.from_numpy(text)
        ).sample.numpy()
        expected_text = torch_pipe.unet.add_embedding(torch.from_numpy(text)).numpy()
    text_embedding = unet.apply(params, text, method=lambda module, states: module.add_embedding(states))
    assert np.abs(np.asarray(text_embedding) - expected_text).max() < 1e-5
    assert np.abs(np.asarray(unet.apply(params, sample, timesteps, text).sample) - expected).max() < 1e-3
    monkeypatch.setattr(attention_flax, "nn", exact_gelu_namespace())
    assert np.abs(np.asarray(unet.apply(params, sample, timesteps, text).sample) - expected).max() < 5e-5


@needs_flax
def test_a_setting_flax_would_ignore_is_refused():
    from diffusers import UNet2DConditionModel

    from schedcmp.flax import weights
    from schedcmp.flax.unet import FlaxUNetWithTextEmbedding

    config = {"resnet_time_scale_shift": "scale_shift", "down_block_types": ["SimpleCrossAttnDownBlock2D"]}
    with pytest.raises(ModelError, match="resnet_time_scale_shift='scale_shift'.*|SimpleCrossAttnDownBlock2D"):
        weights.check_supported("UNet", config, UNet2DConditionModel, weights.field_names(FlaxUNetWithTextEmbedding))


@needs_flax
def test_the_guides_recipe_on_a_tiny_model(sd15_model):
    """One image per device from one jitted call: split keys give each device its own noise; the first call
    compiles, the second reuses it and makes the same images."""
    import jax
    import numpy as np

    from schedcmp.flax import runner

    model = runner.load(sd15_model)
    assert runner.compatible_schedulers(model)[0] == "FlaxPNDMScheduler"
    first, second = runner.run_scheduler(model, "FlaxDDIMScheduler", PROMPT, steps=3, seeds=[0, 1])
    assert first.status == "ok" and second.status == "ok", first.reason
    assert first.images.shape == (jax.device_count(), 32, 32, 3) and first.nfe == 3
    assert first.repeat_max_abs == 0.0 and first.compile_seconds > first.seconds > 0
    assert second.compile_seconds is None and first.sha256 != second.sha256
    if jax.device_count() > 1:
        assert not np.array_equal(first.images[0], first.images[1])


@needs_flax
def test_run_backend_flax_on_a_tiny_model_runs_every_compatible_scheduler(cli, sd15_model):
    """`all` is the six Flax classes PNDM lists, in the guide's order; four make images, LMS and DDPM fail with
    their reason; each scheduler compiles once for its two seeds; --format csv carries the compile column."""
    import jax

    result = cli(
        "run",
        PROMPT,
        "--backend",
        "flax",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "--seed",
        "0,1",
        "--out",
        "out",
        "--format",
        "csv",
        "--html",
    )
    assert result.exit_code == 1, result.stderr  # LMS and DDPM failed
    document = json.loads(Path("out/results.json").read_text())
    runs = document["runs"]
    assert [run["scheduler"] for run in runs[::2]] == [
        "FlaxPNDMScheduler",
        "FlaxDDIMScheduler",
        "FlaxLMSDiscreteScheduler",
        "FlaxEulerDiscreteScheduler",
        "FlaxDPMSolverMultistepScheduler",
        "FlaxDDPMScheduler",
    ]
    assert document["devices"] == jax.device_count() and document["settings"]["backend"] == "flax"
    assert "jax" in document["versions"] and document["sheets"] == ["contact_sheet.png"] and document["report"]
    failing = {"FlaxLMSDiscreteScheduler": "TracerBoolConversionError", "FlaxDDPMScheduler": "TypeError"}
    for first, second in zip(runs[::2], runs[1::2]):
        assert first["backend"] == "flax" and (first["seed"], second["seed"]) == (0, 1)
        if first["scheduler"] in failing:
            assert first["status"] == second["status"] == "failed"
            assert first["reason"].startswith(failing[first["scheduler"]]) and first["error"]["message"]
            continue
        assert first["status"] == second["status"] == "ok" and Path("out", first["image"]).is_file()
        assert first["compile_seconds"] > first["seconds"] > 0 and second["compile_seconds"] is None
    assert "never applied" in runs[0]["backend_note"]
    header, *rows = result.stdout.splitlines()
    assert "compile_seconds" in header.split(",") and len(rows) == 12


@needs_flax
def test_compare_takes_the_backend_too(sd15_model):
    import schedcmp

    comparison = schedcmp.compare(sd15_model, PROMPT, backend="flax", schedulers="Euler", steps=2, progress=False)
    (run,) = comparison.runs
    assert run.scheduler == "FlaxEulerDiscreteScheduler" and run.alias == "Euler" and run.backend == "flax"
    assert run.status == "ok" and run.compile_seconds and run.image.size == (32, 32)
    assert "rounded" in run.backend_note and comparison.sheet is not None


@needs_flax
def test_run_backend_flax_on_the_default_model(cli):
    """The issue's command: the table with compile seconds, results.json (validated by the cli fixture), the
    contact sheet; LMS and DDPM failed with the reason."""
    schedulers = "ddim,pndm,lms,ddpm"
    result = cli("run", PROMPT, "--seed", "8", "--backend", "flax", "-s", schedulers, "--steps", "3", "-o", "out")
    assert result.exit_code == 1, result.stderr
    assert "FlaxStableDiffusionPipeline" in result.stderr and "compile s" in result.stderr
    assert "TracerBoolConversionError" in result.stderr and "TypeError: clip()" in result.stderr
    document = json.loads(Path("out/results.json").read_text())
    statuses = {run["scheduler"]: run["status"] for run in document["runs"]}
    assert statuses == {
        "FlaxDDIMScheduler": "ok",
        "FlaxPNDMScheduler": "ok",
        "FlaxLMSDiscreteScheduler": "failed",
        "FlaxDDPMScheduler": "failed",
    }
    assert result.stdout.strip() == "out/contact_sheet.png" and Path("out/contact_sheet.png").stat().st_size > 0


@needs_flax
def test_pytorch_and_flax_agree_on_the_default_model(cli):
    """--backend torch,flax: from the same latents and weights, DDIM and Euler agree within the stated tolerance;
    PNDM and DPM-Solver++ differ by diffusers' defaults and are flagged, and agree once PyTorch does what the Flax
    side does; each framework repeats itself exactly."""
    from schedcmp.flax.crosscheck import TOLERANCE_MAX_ABS, TOLERANCE_PSNR

    schedulers = "ddim,pndm,euler,DPM++ 2M"
    flags = ["--backend", "torch,flax", "-s", schedulers, "--steps", "10", "--repeat", "2", "-o", "out"]
    result = cli("run", PROMPT, "--seed", "8", *flags)
    assert result.exit_code == 0, result.stderr
    document = json.loads(Path("out/results.json").read_text())
    torch_runs = [run for run in document["runs"] if run["backend"] == "torch"]
    flax_runs = {run["scheduler"]: run for run in document["runs"] if run["backend"] == "flax"}
    assert len(torch_runs) == 4 and all(run["status"] == "ok" for run in torch_runs)
    # --repeat 2 times both sides twice (PyTorch's were timed once, whatever --repeat said)
    assert all(len(run["seconds_all"]) == 2 for run in document["runs"])
    for name, run in flax_runs.items():
        cross = run["cross"]
        assert run["status"] == "ok" and cross["torch_repeat_max_abs"] == cross["flax_repeat_max_abs"] == 0.0
        assert (cross["tolerance_max_abs"], cross["tolerance_psnr"]) == (TOLERANCE_MAX_ABS, TOLERANCE_PSNR)
        assert cross["within"], (name, cross)
        assert cross["agrees"] == (name in ("FlaxDDIMScheduler", "FlaxEulerDiscreteScheduler")), (name, cross)
        assert cross["agrees"] == (cross["alignment"] is None)
    answers = [line for line in result.stderr.splitlines() if line.startswith("answer: ")]
    assert answers[0].endswith("as diffusers' defaults compute them: DDIM, Euler") and "0.00392" in answers[0]
    assert answers[1].startswith("answer: PNDM, DPM++ 2M: beyond it by diffusers' defaults; within once")


@needs_flax
@pytest.mark.parametrize(
    "schedulers, refusal",
    [
        ("ddim,Eulr", "unknown scheduler 'Eulr'"),
        ("UniPC", "'UniPC' (UniPCMultistep) has no Flax version in diffusers 0.39.0"),
        ("DPM++ 2M Karras", "'DPM++ 2M Karras': FlaxDPMSolverMultistepScheduler takes no use_karras_sigmas"),
        ("DDIM(timestep_spacing=trailing)", "FlaxDDIMScheduler takes no timestep_spacing"),
    ],
)
def test_names_without_a_flax_class_are_refused_before_anything_loads(cli, schedulers, refusal):
    result = cli("run", PROMPT, "--backend", "flax", "-s", schedulers)
    assert result.exit_code == EXIT_USAGE and refusal in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not Path("schedcmp-runs").exists()


@needs_flax
def test_the_flax_package_and_driver_import_no_jax():
    """`schedcmp --help` stays instant, and the main environment can import the driver: jax loads inside runs."""
    import subprocess
    import sys

    code = "import sys, schedcmp.flax.comparison; print(sorted({'jax', 'flax', 'torch'} & set(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "jax" not in found.stdout and "flax" not in found.stdout


@needs_flax
def test_a_flow_model_folder_is_refused_naming_its_pipeline(cli, tmp_path):
    """FLUX.1 and SD3 folders said only "diffusers 0.39.0 has no FlaxFlowMatchEulerDiscreteScheduler"."""
    import shutil

    folder = Path(shutil.copytree(DEFAULT_MODEL, tmp_path / "flux"))
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    result = cli("run", PROMPT, "--backend", "flax", "--model", folder, "-o", "out")
    assert result.exit_code == EXIT_USAGE and len(result.stderr.strip().splitlines()) == 1
    assert f"{folder} is a FluxPipeline folder: the Flax backend runs Stable Diffusion folders" in result.stderr
    assert not Path("out").exists()
