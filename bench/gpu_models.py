"""Models for bench/gpu_check.py, built from written configs with random weights: nothing is downloaded.

This mirrors tests/tiny.py (a character-level CLIPTokenizer, so any prompt encodes offline; SD 1.5's own
scheduler config; random weights saved as safetensors), copied rather than imported so that the GPU check
needs nothing from tests/. Two models:

- `tiny_sd15(folder)`: tests/tiny.py's tiny Stable Diffusion 1.x (32×32 images), saved as a diffusers folder
  for the CLI and `schedcmp.compare(path, ...)`.
- `sd15_sized(device, dtype, quick)`: SD 1.5's real UNet (860 M parameters), VAE and CLIP ViT-L/14 text
  encoder configs (the vocabulary is the character tokenizer's), built in memory on the device for timing;
  with quick=True the same block layout at tiny widths and 32×32 images, so that it takes seconds on a CPU.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# Stable Diffusion 1.5's own scheduler_config.json, key for key (as tests/tiny.py keeps it).
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
}

# stable-diffusion-v1-5's unet/config.json (the keys that shape the model).
SD15_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# stable-diffusion-v1-5's vae/config.json.
SD15_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# CLIP ViT-L/14's text tower, as SD 1.5's text_encoder/config.json has it (hidden size 768 = cross_attention_dim).
SD15_TEXT_CONFIG = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

# The same layouts at tiny widths (--quick, or a CPU): 32×32 images, seconds on two cores.
QUICK_UNET_CONFIG = {
    **SD15_UNET_CONFIG,
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "sample_size": 16,
}
QUICK_VAE_CONFIG = {
    **SD15_VAE_CONFIG,
    "block_out_channels": [32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "layers_per_block": 1,
    "sample_size": 32,
}
QUICK_TEXT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
}

SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def tokenizer():
    """A character-level CLIPTokenizer: every letter is a token, so any prompt encodes."""
    from transformers import CLIPTokenizer

    characters = [chr(c) for c in range(33, 127)]
    vocab = {token: index for index, token in enumerate(characters + [c + "</w>" for c in characters] + SPECIALS)}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(
            f"{folder}/vocab.json", f"{folder}/merges.txt", pad_token="<|endoftext|>", model_max_length=77
        )


def clip_config(vocab_size: int, **sizes):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        **(sizes or QUICK_TEXT_CONFIG),
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 32],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=32,
        sample_size=32,
    )


def tiny_sd15(folder: Path) -> Path:
    """tests/tiny.py's sd15: Stable Diffusion 1.x architecture, 32×32 images, SD 1.5's scheduler config; saved."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    words = tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(clip_config(len(words))),
        tokenizer=words,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    # A saved scheduler writes every default; SD 1.5's own file does not, and every swap inherits what it says.
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER_CONFIG, indent=2))
    return folder


def sd15_sized(device: str, dtype, quick: bool):
    """An SD 1.5-sized StableDiffusionPipeline with random weights, built on `device` in `dtype` (in memory).

    -> (pipe, description). Built under `torch.device(device)`, so the weights are initialised on the GPU there.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    words = tokenizer()
    unet_config = QUICK_UNET_CONFIG if quick else SD15_UNET_CONFIG
    vae_config = QUICK_VAE_CONFIG if quick else SD15_VAE_CONFIG
    text_config = QUICK_TEXT_CONFIG if quick else SD15_TEXT_CONFIG
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_config)
        vae = AutoencoderKL(**vae_config)
        text_encoder = CLIPTextModel(clip_config(len(words), **text_config))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=words,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe = pipe.to(device=device, dtype=dtype)
    parameters = sum(p.numel() for p in unet.parameters())
    size = unet_config["sample_size"] * pipe.vae_scale_factor
    kind = "tiny widths, SD 1.5 block layout" if quick else "SD 1.5 configs"
    return pipe, f"{kind}: UNet {parameters / 1e6:.1f} M parameters, {size}x{size} images, random weights"
