"""The Flax UNet block diffusers 0.39 lacks: `addition_embed_type="text"` (pooled text added to the time embedding).

diffusers' PyTorch UNet2DConditionModel with addition_embed_type="text" builds
`add_embedding = TextTimeEmbedding(cross_attention_dim, time_embed_dim, num_heads=addition_embed_type_num_heads)`
(diffusers/models/embeddings.py) and, in `get_aug_embed`, adds `add_embedding(encoder_hidden_states)` to the
time embedding before any block sees it. FlaxUNet2DConditionModel knows only None and "text_time" and raises on
"text". The modules below are that block in Flax, named so that the PyTorch weights convert key for key
(`add_embedding.norm1`, `.pool.{q,k,v}_proj`, `.pool.positional_embedding`, `.proj`, `.norm2`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from diffusers import FlaxUNet2DConditionModel
from diffusers.configuration_utils import flax_register_to_config
from diffusers.models.unets.unet_2d_blocks_flax import FlaxCrossAttnDownBlock2D, FlaxCrossAttnUpBlock2D
from diffusers.models.unets.unet_2d_condition_flax import FlaxUNet2DConditionOutput

TORCH_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which TextTimeEmbedding keeps; flax's is 1e-6


class FlaxAttentionPooling(nn.Module):
    """diffusers' AttentionPooling (from DeepFloyd IF): one query, the mean token plus a learnt position, attends
    over [query; tokens] with `num_heads` heads; no output projection. (batch, length, width) -> (batch, width)."""

    num_heads: int
    width: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.positional_embedding = self.param(
            "positional_embedding", nn.initializers.normal(self.width**-0.5), (1, self.width)
        )
        self.q_proj = nn.Dense(self.width, dtype=self.dtype)
        self.k_proj = nn.Dense(self.width, dtype=self.dtype)
        self.v_proj = nn.Dense(self.width, dtype=self.dtype)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        batch, _, width = tokens.shape
        head_width = width // self.num_heads
        query_token = tokens.mean(axis=1, keepdims=True) + self.positional_embedding.astype(tokens.dtype)
        keyed_tokens = jnp.concatenate([query_token, tokens], axis=1)  # (batch, length + 1, width)

        def split_heads(x):  # (batch, n, width) -> (batch, n, heads, head_width)
            return x.reshape(batch, x.shape[1], self.num_heads, head_width)

        query = split_heads(self.q_proj(query_token))
        key = split_heads(self.k_proj(keyed_tokens))
        value = split_heads(self.v_proj(keyed_tokens))
        # The PyTorch block scales both sides by head_width ** -0.25 before the product (steadier in float16)
        # and takes the softmax in float32: the same here, so that bfloat16 runs round alike.
        scale = head_width**-0.25
        logits = jnp.einsum("bqhc,bkhc->bhqk", query * scale, key * scale)  # (batch, heads, 1, length + 1)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)
        pooled = jnp.einsum("bhqk,bkhc->bqhc", weights, value)  # (batch, 1, heads, head_width)
        return pooled.reshape(batch, width)


class FlaxTextTimeEmbedding(nn.Module):
    """diffusers' TextTimeEmbedding: LayerNorm, attention pooling over the text tokens, Linear, LayerNorm."""

    encoder_width: int
    time_embed_dim: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.norm1 = nn.LayerNorm(epsilon=TORCH_LAYER_NORM_EPS, dtype=self.dtype)
        self.pool = FlaxAttentionPooling(self.num_heads, self.encoder_width, dtype=self.dtype)
        self.proj = nn.Dense(self.time_embed_dim, dtype=self.dtype)
        self.norm2 = nn.LayerNorm(epsilon=TORCH_LAYER_NORM_EPS, dtype=self.dtype)

    def __call__(self, encoder_hidden_states: jax.Array) -> jax.Array:  # (batch, length, width) -> (batch, time)
        return self.norm2(self.proj(self.pool(self.norm1(encoder_hidden_states))))


@flax_register_to_config
class FlaxUNetWithTextEmbedding(FlaxUNet2DConditionModel):
    """FlaxUNet2DConditionModel plus PyTorch's addition_embed_type="text".

    The parent's `setup` raises on "text", so the model is built with addition_embed_type=None and
    `text_embedding_heads` set (`from_torch_config` does the translation); with text_embedding_heads=0 it is
    exactly the parent. Only the forward pass of the "text" case is written here: the time embedding plus
    `add_embedding(encoder_hidden_states)`, as `UNet2DConditionModel.get_aug_embed` does, then the parent's own
    blocks in the parent's order. diffusers 0.39 is the last release with Flax code, so the parent cannot drift.
    """

    text_embedding_heads: int = 0  # PyTorch's addition_embed_type_num_heads when addition_embed_type="text"

    @classmethod
    def from_torch_config(cls, config: dict[str, Any], dtype=jnp.float32) -> "FlaxUNetWithTextEmbedding":
        """The Flax model of a PyTorch UNet config (unet/config.json); keys Flax has no field for are dropped."""
        fields = {name for name in cls.__dataclass_fields__ if name not in ("parent", "name", "dtype")}
        kwargs = {key: value for key, value in config.items() if key in fields}
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            kwargs[key] = tuple(kwargs[key])  # hashable, as a jit-static module must be
        if config.get("addition_embed_type") == "text":
            kwargs.update(addition_embed_type=None, text_embedding_heads=config["addition_embed_type_num_heads"])
        return cls(**kwargs, dtype=dtype)

    def setup(self) -> None:
        super().setup()
        if self.text_embedding_heads:
            time_embed_dim = self.block_out_channels[0] * 4  # as the parent's (and PyTorch's) time embedding
            self.add_embedding = FlaxTextTimeEmbedding(
                self.cross_attention_dim, time_embed_dim, self.text_embedding_heads, dtype=self.dtype
            )

    def __call__(self, sample, timesteps, encoder_hidden_states, added_cond_kwargs=None, *extra, **keywords):
        if not self.text_embedding_heads:
            return super().__call__(sample, timesteps, encoder_hidden_states, added_cond_kwargs, *extra, **keywords)
        unsupported = [name for name in keywords if name not in ("return_dict", "train")] + list(extra)
        if unsupported or added_cond_kwargs:
            raise ValueError("the text-embedding Flax UNet takes no added_cond_kwargs or ControlNet residuals")
        timesteps = jnp.atleast_1d(jnp.asarray(timesteps))
        time_embedding = self.time_embedding(self.time_proj(timesteps)) + self.add_embedding(encoder_hidden_states)
        output = self.denoise(sample, time_embedding, encoder_hidden_states, train=keywords.get("train", False))
        return FlaxUNet2DConditionOutput(sample=output) if keywords.get("return_dict", True) else (output,)

    def denoise(self, sample, time_embedding, encoder_hidden_states, train: bool) -> jax.Array:
        """The parent's blocks on an NCHW sample with a given time embedding (Flax convolutions are NHWC)."""
        deterministic = not train
        hidden = self.conv_in(jnp.transpose(sample, (0, 2, 3, 1)))
        skips = (hidden,)
        for block in self.down_blocks:
            if isinstance(block, FlaxCrossAttnDownBlock2D):
                hidden, block_skips = block(hidden, time_embedding, encoder_hidden_states, deterministic=deterministic)
            else:
                hidden, block_skips = block(hidden, time_embedding, deterministic=deterministic)
            skips += block_skips
        if self.mid_block is not None:
            hidden = self.mid_block(hidden, time_embedding, encoder_hidden_states, deterministic=deterministic)
        per_block = self.layers_per_block + 1
        for block in self.up_blocks:
            block_skips, skips = skips[-per_block:], skips[:-per_block]
            if isinstance(block, FlaxCrossAttnUpBlock2D):
                hidden = block(
                    hidden,
                    temb=time_embedding,
                    encoder_hidden_states=encoder_hidden_states,
                    res_hidden_states_tuple=block_skips,
                    deterministic=deterministic,
                )
            else:
                hidden = block(
                    hidden, temb=time_embedding, res_hidden_states_tuple=block_skips, deterministic=deterministic
                )
        hidden = self.conv_out(nn.silu(self.conv_norm_out(hidden)))
        return jnp.transpose(hidden, (0, 3, 1, 2))
