"""A diffusers folder's safetensors -> Flax modules and params, converted in memory on every load.

Nothing is cached: the embedded default model converts in well under a second, and a cache would need an
identity check (hashes of the weight bytes) that costs about what the conversion does. The conversion is the
libraries' own: diffusers' `convert_pytorch_state_dict_to_flax` for the UNet and the VAE (diffusers' Flax
`from_pt=True` reads only .bin files), transformers' for the CLIP text encoder (transformers 5 saves
CLIPTextModel without its `text_model.` prefix, which transformers 4.x's own loader then misses).
Afterwards every Flax parameter must have come from the file with the right shape, or loading fails: the
converters keep random initial values for weights they did not find, and say so only in a log line.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict

from schedcmp.core.errors import ModelError

WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
}
# The blocks diffusers 0.39's Flax UNet and VAE build; any other name would silently become a plain block.
FLAX_BLOCKS = {
    "down_block_types": {"CrossAttnDownBlock2D", "DownBlock2D", "DownEncoderBlock2D"},
    "up_block_types": {"CrossAttnUpBlock2D", "UpBlock2D", "UpDecoderBlock2D"},
}
FLAX_MID_BLOCKS = {"UNetMidBlock2DCrossAttn", None}
FLAX_ADDITION_EMBEDS = {None, "text", "text_time"}  # "text" through schedcmp.flax.unet


def read_config(folder: Path, component: str, name: str = "config.json") -> dict[str, Any]:
    path = folder / component / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None


def read_state_dict(folder: Path, component: str) -> dict[str, Any]:
    """The component's safetensors as torch tensors (the form both converters take)."""
    from safetensors.torch import load_file

    path = folder / component / WEIGHT_FILES[component]
    if not path.is_file():
        raise ModelError(f"{path} not found: the Flax backend converts float safetensors weights only")
    return load_file(str(path))


def jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def ignored_settings(config: dict[str, Any], torch_class: type, flax_fields: set[str]) -> list[str]:
    """Settings of a PyTorch config that the Flax class has no field for and that differ from PyTorch's default:
    Flax would silently build another model."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(torch_class.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return sorted(
        f"{key}={value!r}"
        for key, value in config.items()
        if not key.startswith("_")
        and key not in flax_fields
        and key in defaults
        and jsonable(value) != jsonable(defaults[key])
    )


def unsupported_blocks(config: dict[str, Any]) -> list[str]:
    found = [
        f"{key}: {name}" for key, allowed in FLAX_BLOCKS.items() for name in config.get(key, ()) if name not in allowed
    ]
    if config.get("mid_block_type", "UNetMidBlock2DCrossAttn") not in FLAX_MID_BLOCKS:
        found.append(f"mid_block_type: {config['mid_block_type']}")
    if config.get("addition_embed_type") not in FLAX_ADDITION_EMBEDS:
        found.append(f"addition_embed_type: {config['addition_embed_type']}")
    return found


def check_supported(component: str, config: dict[str, Any], torch_class: type, flax_fields: set[str]) -> None:
    problems = unsupported_blocks(config) + ignored_settings(config, torch_class, flax_fields)
    if problems:
        raise ModelError(f"diffusers' Flax {component} cannot build this model: {', '.join(problems)}")


def check_complete(component: str, params: Any, expected: Any) -> None:
    """Every expected parameter converted, with its shape, and nothing left over."""
    have = {key: value.shape for key, value in flatten_dict(params).items()}
    want = {key: value.shape for key, value in flatten_dict(expected).items()}
    missing = sorted(".".join(key) for key in want.keys() - have.keys())
    extra = sorted(".".join(key) for key in have.keys() - want.keys())
    reshaped = sorted(".".join(key) for key in want.keys() & have.keys() if want[key] != have[key])
    for problem, keys in (("missing", missing), ("not used", extra), ("of another shape", reshaped)):
        if keys:
            raise ModelError(f"{component} weights {problem} in Flax: {', '.join(keys[:5])} ({len(keys)} in all)")


def cast(params: Any, dtype) -> Any:
    """Floating-point parameters in `dtype` (the guide keeps them in bfloat16); integer ones as they are."""
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


class ShapesOnly:
    """What diffusers' converter asks of a model, `init_weights(rng)`, answered with shapes only: it reads
    nothing else from the initial parameters, and a real initialisation runs the whole model eagerly (20 s for
    the default model's UNet on a 2-core CPU, against about 2 s to trace it)."""

    def __init__(self, model: Any):
        self.shapes = jax.eval_shape(model.init_weights, jax.random.PRNGKey(0))

    def init_weights(self, rng: jax.Array) -> Any:
        return self.shapes


def convert_diffusers_weights(folder: Path, component: str, model: Any) -> Any:
    """diffusers' PyTorch -> Flax conversion of one component, checked complete against the model's shapes."""
    from diffusers.models.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    shapes = ShapesOnly(model)
    params = convert_pytorch_state_dict_to_flax(read_state_dict(folder, component), shapes)
    check_complete(component, params, shapes.shapes)
    return params


def field_names(flax_class: type) -> set[str]:
    return set(flax_class.__dataclass_fields__) - {"parent", "name"}


def load_unet(folder: Path, dtype=jnp.float32) -> tuple[Any, Any]:
    """(FlaxUNetWithTextEmbedding, params) from unet/: PyTorch's UNet2DConditionModel, in Flax."""
    from diffusers import UNet2DConditionModel

    from schedcmp.flax.unet import FlaxUNetWithTextEmbedding

    config = read_config(folder, "unet")
    check_supported("UNet", config, UNet2DConditionModel, field_names(FlaxUNetWithTextEmbedding))
    model = FlaxUNetWithTextEmbedding.from_torch_config(config, dtype=dtype)
    params = convert_diffusers_weights(folder, "unet", model)
    return model, cast(params, dtype)


def load_vae(folder: Path, dtype=jnp.float32) -> tuple[Any, Any]:
    """(FlaxAutoencoderKL, params) from vae/."""
    from diffusers import AutoencoderKL, FlaxAutoencoderKL

    config = read_config(folder, "vae")
    check_supported("VAE", config, AutoencoderKL, field_names(FlaxAutoencoderKL))
    model = FlaxAutoencoderKL.from_config(config, dtype=dtype)
    params = convert_diffusers_weights(folder, "vae", model)
    return model, cast(params, dtype)


def text_encoder_state(folder: Path) -> dict[str, Any]:
    """The text encoder's weights under transformers 4.x's names, for its PyTorch and Flax CLIPTextModel alike:
    transformers 5 writes them without the `text_model.` level, and 4.x's loaders would then keep random weights."""
    state = read_state_dict(folder, "text_encoder")
    state = {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()}
    state.pop("text_model.embeddings.position_ids", None)  # a buffer in older files, not a weight
    return state


def load_text_encoder(folder: Path, dtype=jnp.float32) -> tuple[Any, Any]:
    """(FlaxCLIPTextModel, params) from text_encoder/, through transformers 4.x's PyTorch -> Flax conversion."""
    from transformers import CLIPTextConfig, FlaxCLIPTextModel
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    declared = read_config(folder, "text_encoder").get("architectures", ["CLIPTextModel"])
    if declared != ["CLIPTextModel"]:
        raise ModelError(f"the Flax backend loads a CLIPTextModel text encoder, not {', '.join(declared)}")
    model = FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"), dtype=dtype, _do_init=False)
    state = text_encoder_state(folder)
    # The converter reads only `params` (for names and shapes) and `base_model_prefix`: shapes will do.
    shapes = SimpleNamespace(params=model.params_shape_tree, base_model_prefix=model.base_model_prefix)
    params = convert_pytorch_state_dict_to_flax(state, shapes)
    check_complete("text_encoder", params, model.params_shape_tree)
    return model, cast(params, dtype)


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer: a transformers 5 folder holds only tokenizer.json, which 4.x reads as a fast tokenizer."""
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    tokenizer_folder = folder / "tokenizer"
    if (tokenizer_folder / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(tokenizer_folder)
    return CLIPTokenizerFast.from_pretrained(tokenizer_folder)
