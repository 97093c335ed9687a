"""Tiny random pipelines of real diffusers classes, saved as real safetensors folders.

Three families, so that schedcmp is not tied to one: Stable Diffusion 1.x, SDXL, and a flow-matching
model (SD3, with the two CLIP encoders and no T5).
"""

from __future__ import annotations

import json
from pathlib import Path

# Stable Diffusion 1.5's own scheduler_config.json, key for key: a saved scheduler would also write every
# default (timestep_spacing, ...), which every swapped scheduler would then inherit.
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

SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def tokenizer():
    """A character-level CLIPTokenizer: every letter is a token, so any prompt encodes."""
    import tempfile

    from transformers import CLIPTokenizer

    characters = [chr(c) for c in range(33, 127)]
    vocab = {token: index for index, token in enumerate(characters + [c + "</w>" for c in characters] + SPECIALS)}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(
            f"{folder}/vocab.json", f"{folder}/merges.txt", pad_token="<|endoftext|>", model_max_length=77
        )


def clip_config(vocab_size: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        **extra,
    )


def vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 32],
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=32,
        sample_size=32,
        **extra,
    )


def save(pipe, folder: Path, scheduler_config: dict | None = None) -> Path:
    pipe.save_pretrained(folder, safe_serialization=True)
    if scheduler_config is not None:
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
    return folder


def sd15(folder: Path) -> Path:
    """Stable Diffusion 1.x architecture, 32×32 images, with SD1.5's own scheduler config."""
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
        vae=vae(),
        text_encoder=CLIPTextModel(clip_config(len(words))),
        tokenizer=words,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save(pipe, folder, SD15_SCHEDULER_CONFIG)


def sdxl(folder: Path) -> Path:
    """SDXL architecture (two text encoders, size conditioning), 32×32 images, SDXL's Euler config."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

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
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=32,
    )
    scheduler_config = {
        "_class_name": "EulerDiscreteScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "interpolation_type": "linear",
        "prediction_type": "epsilon",
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "use_karras_sigmas": False,
        "clip_sample": False,
    }
    pipe = StableDiffusionXLPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(clip_config(len(words))),
        text_encoder_2=CLIPTextModelWithProjection(clip_config(len(words), projection_dim=32)),
        tokenizer=words,
        tokenizer_2=words,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(scheduler_config),
    )
    return save(pipe, folder, scheduler_config)


def t5_tokenizer():
    """A T5 tokenizer built offline: a Unigram vocabulary of single characters, with and without the word-start
    mark, so any lower-case prompt encodes; no sentinel tokens."""
    from transformers import T5TokenizerFast

    characters = [chr(c) for c in range(33, 127)]
    vocabulary = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocabulary += [(c, -3.0) for c in characters] + [("▁" + c, -3.5) for c in characters]
    return T5TokenizerFast(vocab=vocabulary, extra_ids=0)


def t5_encoder(vocab_size: int, d_model: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config)


def sd3(folder: Path, t5: bool = False) -> Path:
    """A flow-matching model: SD3 architecture with two CLIP encoders, and with `t5` a random T5 as the third;
    32×32 images, SD3's shift 3."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    words = tokenizer()
    t5_words = t5_tokenizer() if t5 else None
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,  # the T5 width; the two CLIP widths (32 + 32) are padded to it
        pooled_projection_dim=64,
        out_channels=4,
    )
    scheduler_config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=vae(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(clip_config(len(words), projection_dim=32)),
        text_encoder_2=CLIPTextModelWithProjection(clip_config(len(words), projection_dim=32)),
        text_encoder_3=t5_encoder(len(t5_words), d_model=64) if t5 else None,
        tokenizer=words,
        tokenizer_2=words,
        tokenizer_3=t5_words,
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
    )
    save(pipe, folder, scheduler_config)
    if not t5:  # save_pretrained leaves absent components out; model_index.json says "none here" with [null, null]
        index = json.loads((folder / "model_index.json").read_text())
        index.update({"text_encoder_3": [None, None], "tokenizer_3": [None, None]})
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def sd3_t5(folder: Path) -> Path:
    """SD3 with all three text encoders (two CLIP and a random T5)."""
    return sd3(folder, t5=True)


# FLUX.1-dev's scheduler_config.json, key for key.
FLUX_SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.30.0.dev0",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def flux(folder: Path) -> Path:
    """FLUX.1 architecture (CLIP + T5, guidance embedding, 16-channel latents packed 2×2), 32×32 images, with
    FLUX.1-dev's scheduler config (dynamic shifting: μ from the image's token count)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    words, t5_words = tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels, packed 2×2
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # the T5 width
        pooled_projection_dim=32,  # CLIP's pooled output
        guidance_embeds=True,
        axes_dims_rope=[4, 4, 8],  # sums to attention_head_dim
    )
    pipe = FluxPipeline(
        transformer=transformer,
        vae=vae(
            latent_channels=16,
            shift_factor=0.1159,
            scaling_factor=0.3611,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=CLIPTextModel(clip_config(len(words))),
        text_encoder_2=t5_encoder(len(t5_words), d_model=32),
        tokenizer=words,
        tokenizer_2=t5_words,
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX_SCHEDULER_CONFIG),
    )
    return save(pipe, folder, FLUX_SCHEDULER_CONFIG)


if __name__ == "__main__":  # python tests/tiny.py FOLDER: a random-weights SD1.x model to try the CLI on
    import sys

    sd15(Path(sys.argv[1]))
