"""The Flax backend (schedcmp.flax), in the Flax environment: `make test-flax`, or

    XLA_FLAGS=--xla_force_host_platform_device_count=2 .venv-flax/bin/python -m pytest -q tests/test_flax.py

Elsewhere (the main environment, with diffusers >= 0.40 and no jax) every test but the first skips, saying so.
"""

from __future__ import annotations

import functools
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
        expected = torch_pipe.unet(torch.from_numpy(sample), torch.from_numpy(timesteps.astype(np.int64)),
                                   torch.from_numpy(text)).sample.numpy()
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
def test_every_compatible_flax_scheduler_runs_on_a_tiny_model(sd15_model):
    """All six: four make images on every device, deterministically; LMS and DDPM fail with their reason."""
    import jax
    import numpy as np

    from schedcmp.flax import runner

    model = runner.load(sd15_model)
    names = runner.compatible_schedulers(model)
    assert names[0] == "FlaxPNDMScheduler" and len(names) == 6
    runs = {name: runner.run_scheduler(model, name, PROMPT, steps=4, seeds=[0, 1]) for name in names}
    failing = {"FlaxLMSDiscreteScheduler": "TracerBoolConversionError", "FlaxDDPMScheduler": "TypeError"}
    for name, (first, second) in runs.items():
        if name in failing:
            assert first.status == "failed" and first.error_type == failing[name] and first.reason
            continue
        assert first.status == "ok" and second.status == "ok", (name, first.reason)
        assert first.images.shape == (jax.device_count(), 32, 32, 3) and first.nfe == 4
        assert first.repeat_max_abs == 0.0 and first.compile_seconds > first.seconds > 0
        assert second.compile_seconds is None and first.sha256 != second.sha256
        if jax.device_count() > 1:  # split keys: each device draws its own noise
            assert not np.array_equal(first.images[0], first.images[1])
    assert "never applied" in runs["FlaxPNDMScheduler"][0].note


@needs_flax
@pytest.mark.parametrize(
    "scheduler", ["DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]
)
def test_pytorch_and_flax_agree_on_the_default_model(default_model, torch_pipe, scheduler):
    """From the same noise and weights, within the stated tolerance; PNDM and DPM-Solver++ only once PyTorch
    does what the Flax side does (their defaults disagree, and are flagged as disagreeing)."""
    from schedcmp.flax import crosscheck

    cross = crosscheck.compare_scheduler(torch_pipe, default_model, scheduler, PROMPT, steps=10, seed=8)
    assert cross.torch.repeat_max_abs == 0.0 and cross.flax.repeat_max_abs == 0.0
    assert cross.within, (cross.max_abs, cross.psnr, cross.aligned_max_abs, cross.aligned_psnr)
    assert cross.agrees == (cross.alignment is None)
