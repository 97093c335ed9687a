"""The default model's architecture: a tiny Stable Diffusion, and the scheduler it is trained for."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from schedcmp.training.tokenizer import MAX_LENGTH

# Stable Diffusion 1.5's noise schedule. The UNet is trained with it, so every scheduler compatible with
# Stable Diffusion samples it correctly.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
TEXT_HIDDEN_SIZE = 128
LATENT_CHANNELS = 4
# 64x64 RGB images -> 16x16x4 latents: two downsamplings in the VAE.
VAE_CHANNELS = (16, 32, 64)


def scheduler_config() -> dict:
    """The PNDM configuration of Stable Diffusion 1.5, the key set every SD scheduler swap starts from."""
    return {
        "_class_name": "PNDMScheduler",
        "_diffusers_version": diffusers.__version__,
        **NOISE_SCHEDULE,
        "trained_betas": None,
        "skip_prk_steps": True,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "clip_sample": False,
    }


def write_scheduler_config(folder: Path) -> None:
    """Written by hand, not by save_pretrained, so it holds exactly the SD 1.5 keys and nothing more."""
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    text = json.dumps(scheduler_config(), indent=2) + "\n"
    (folder / "scheduler" / "scheduler_config.json").write_text(text)


def training_noise_scheduler() -> DDPMScheduler:
    """Adds noise during training (epsilon prediction, same betas as the shipped scheduler)."""
    return DDPMScheduler(**NOISE_SCHEDULE, prediction_type="epsilon", clip_sample=False)


def build_vae(image_size: int) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=image_size,
    )


def build_unet(latent_size: int) -> UNet2DConditionModel:
    """Cross-attention only at the 4x4 level, where it is cheap; the caption also reaches every ResNet
    through the pooled text embedding added to the time embedding (`addition_embed_type="text"`), which
    computes from `encoder_hidden_states` alone, so the ordinary SD pipelines drive it unchanged."""
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=(64, 128, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        attention_head_dim=8,
        norm_num_groups=32,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def build_text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=4 * TEXT_HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
