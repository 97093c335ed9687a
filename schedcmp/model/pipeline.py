"""Load a pipeline once: a local diffusers folder, a hub id, a single-file checkpoint, or the embedded default.

torch and diffusers are imported inside the functions, so that importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from schedcmp.core.errors import ModelError, UsageError
from schedcmp.core.plan import PipelineDefaults

DEFAULT_MODEL_DIR = Path(__file__).parents[1] / "default_model"
DEFAULT_MODEL_NAME = "schedcmp default (embedded)"

SAFE_WEIGHTS = (".safetensors",)
PICKLE_WEIGHTS = (".bin", ".ckpt", ".pt", ".pth", ".pkl")

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "fp16", "bf16")

# The denoiser is the module every scheduler step calls; its name differs between pipeline families.
DENOISER_ATTRIBUTES = ("unet", "transformer", "prior", "decoder")
TEXT_ENCODER_ATTRIBUTES = ("text_encoder", "text_encoder_2", "text_encoder_3")

# Single-file checkpoints carry no config: the architecture diffusers infers picks the pipeline class.
SINGLE_FILE_PIPELINES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "playground-v2-5": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "sd35_large": "StableDiffusion3Pipeline",
    "sd35_medium": "StableDiffusion3Pipeline",
    "flux-dev": "FluxPipeline",
    "flux-schnell": "FluxPipeline",
}


@dataclass
class LoadedModel:
    """A loaded pipeline and what schedcmp needs to know about it."""

    pipe: Any
    name: str
    device: str
    dtype: str
    denoiser: Any
    text_encoders: list[Any]
    original_scheduler_class: str
    original_config: Any
    compatible: list[str]
    defaults: PipelineDefaults
    size_multiple: int
    num_train_timesteps: int
    flow_shift: float | None
    call_parameters: Mapping[str, inspect.Parameter]  # what the pipeline's __call__ takes, and its defaults
    load_seconds: float | None  # None for a pipeline schedcmp was handed, not loaded


TORCHSDE_ROUNDING = r"Should have t[ab](>=t0|<=t1)"  # its four "query outside the interval" warnings


def silence_libraries() -> None:
    """Keep the libraries' advice and progress bars off our stderr; our own progress reports instead.

    For a whole process (the benchmark scripts); quiet_libraries() does it for a while and undoes it.
    """
    import warnings

    import huggingface_hub.utils as hub
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # diffusers renamed torch_dtype to dtype; the old name works in every version we support.
    warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated")
    # torchsde's Brownian interval warns when float rounding puts a query a hair before its start or after its
    # end (SDXL's sigmas reach past the end: "Should have tb<=t1").
    warnings.filterwarnings("ignore", message=TORCHSDE_ROUNDING)
    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    hub.disable_progress_bars()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """silence_libraries() while the block runs; then every setting it touched is as it was before.

    A notebook that calls schedcmp.compare() keeps its own warning filters, log levels and progress bars.
    """
    import warnings

    import huggingface_hub.utils as hub
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    levels = [library.get_verbosity() for library in libraries]
    bars = [library.is_progress_bar_enabled() for library in libraries]
    hub_bars_off = hub.are_progress_bars_disabled()
    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
    with warnings.catch_warnings():
        try:
            silence_libraries()
            yield
        finally:
            for library, level, bar in zip(libraries, levels, bars):
                library.set_verbosity(level)
                library.enable_progress_bar() if bar else library.disable_progress_bar()
            if not hub_bars_off:
                hub.enable_progress_bars()
            if parallelism is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = parallelism


def device_type(device: str) -> str:
    """`cuda` for `cuda:1`: what decides how to synchronise and measure memory."""
    return str(device).split(":")[0]


def resolve_device(requested: str) -> str:
    """`auto` is cuda, then mps, then cpu; `cuda:N` picks a GPU; an explicit device that is not there is an error."""
    import torch

    match = re.fullmatch(r"(auto|cpu|cuda|mps)(?::(\d+))?", requested)
    if match is None or (match[2] is not None and match[1] != "cuda"):
        raise UsageError(f"unknown --device {requested!r}; choose from {', '.join(DEVICES)} (or cuda:N)")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if match[1] == "cuda" and not cuda:
        raise UsageError(
            f"--device {requested} asked for, but torch sees no CUDA device (is this a CPU build of torch?)"
        )
    if match[2] is not None and int(match[2]) >= torch.cuda.device_count():
        raise UsageError(f"--device {requested} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    if requested == "mps" and not mps:
        raise UsageError("--device mps asked for, but torch sees no MPS device")
    return requested


def resolve_dtype(requested: str, device: str) -> str:
    """`auto` is fp16 on cuda (as the guide loads it) and fp32 elsewhere."""
    if requested not in DTYPES:
        raise UsageError(f"unknown --dtype {requested!r}; choose from {', '.join(DTYPES)}")
    if requested == "auto":
        return "fp16" if device_type(device) == "cuda" else "fp32"
    return requested


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def classify_source(model: str | None) -> tuple[str, str]:
    """-> (kind, where): kind is `folder`, `file` or `hub`."""
    if model is None:
        return "folder", str(DEFAULT_MODEL_DIR)
    path = Path(model).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if path.is_file():
        return "file", str(path)
    looks_like_path = (
        model.startswith((".", "/", "~")) or model.count("/") != 1 or model.endswith(SAFE_WEIGHTS + PICKLE_WEIGHTS)
    )
    if looks_like_path:
        raise ModelError(f"model {model!r} not found: no such folder or file (a hub id looks like owner/name)")
    return "hub", model


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) directly in a component folder."""
    files = [p for p in folder.iterdir() if p.is_file()]
    return [p for p in files if p.name.endswith(SAFE_WEIGHTS)], [p for p in files if p.name.endswith(PICKLE_WEIGHTS)]


def check_folder(folder: Path, allow_pickle: bool) -> dict[str, Any]:
    """A diffusers folder: model_index.json readable, and no component whose only weights are pickles."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelError(f"{folder} is not a diffusers model folder: model_index.json is missing")
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{index_path} is corrupt: {error}") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise ModelError(f"{index_path} is corrupt: no _class_name")
    for component in index:
        sub = folder / component
        if component.startswith("_") or not sub.is_dir():
            continue
        safe, pickled = weight_files(sub)
        if pickled and not safe and not allow_pickle:
            raise ModelError(
                f"{sub} has only pickle weights ({pickled[0].name}); pickle files can run code when loaded: "
                "convert them to safetensors, or pass --allow-pickle if you trust this model"
            )
    return index


def load_pipeline_from_folder(folder: str, dtype, allow_pickle: bool):
    from diffusers import DiffusionPipeline

    index = check_folder(Path(folder), allow_pickle)
    # A component recorded as [null, null] is absent on purpose (e.g. SD3 without its T5 encoder);
    # diffusers wants that said again at load time.
    absent = {name: None for name, value in index.items() if not name.startswith("_") and value in ([None, None], None)}
    try:
        return DiffusionPipeline.from_pretrained(
            folder, torch_dtype=dtype, use_safetensors=None if allow_pickle else True, local_files_only=True, **absent
        )
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot load the model folder {folder}: {one_line(error)}") from None


def load_pipeline_from_hub(repo_id: str, dtype, allow_pickle: bool):
    from diffusers import DiffusionPipeline
    from huggingface_hub import constants

    use_safetensors = None if allow_pickle else True
    try:  # the local cache first: no network, and no waiting on one that is not there
        return DiffusionPipeline.from_pretrained(
            repo_id, torch_dtype=dtype, use_safetensors=use_safetensors, local_files_only=True
        )
    except (OSError, ValueError) as cached_error:
        cache_miss = cached_error
    if constants.HF_HUB_OFFLINE:
        raise ModelError(
            f"model {repo_id!r} is not in the local cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: "
            "download it once with network access, or point --model at a local folder"
        ) from None
    try:
        return DiffusionPipeline.from_pretrained(repo_id, torch_dtype=dtype, use_safetensors=use_safetensors)
    except (OSError, ValueError) as error:
        text = one_line(error)
        if "safetensors" in text.lower() and not allow_pickle:
            raise ModelError(
                f"model {repo_id!r} has no safetensors weights; pass --allow-pickle if you trust its pickle files"
            ) from None
        raise ModelError(
            f"cannot load {repo_id!r}: no network access to the model hub and not in the local cache "
            f"({constants.HF_HUB_CACHE}) ({clip(one_line(cache_miss), 160)}; {clip(text, 160)})"
        ) from None


def load_pipeline_from_file(path: str, dtype, allow_pickle: bool, model_config: str | None):
    import diffusers
    from diffusers.loaders.single_file_utils import (
        DIFFUSERS_DEFAULT_PIPELINE_PATHS,
        infer_diffusers_model_type,
        load_single_file_checkpoint,
    )

    if path.endswith(PICKLE_WEIGHTS) and not allow_pickle:
        raise ModelError(
            f"{path} is a pickle checkpoint; pickle files can run code when loaded: "
            "convert it to safetensors, or pass --allow-pickle if you trust it"
        )
    if not path.endswith(SAFE_WEIGHTS + PICKLE_WEIGHTS):
        raise ModelError(f"{path} is not a checkpoint file (.safetensors) nor a diffusers folder")
    component = Path(path).parent
    if (component / "config.json").is_file() and (component.parent / "model_index.json").is_file():
        raise ModelError(
            f"{path} holds the weights of one component ({component.name}) of the diffusers folder "
            f"{component.parent}, not a whole checkpoint: pass --model {component.parent}"
        )
    try:
        checkpoint = load_single_file_checkpoint(path, local_files_only=True)
        model_type = infer_diffusers_model_type(checkpoint)
    except Exception as error:  # a truncated or foreign file: say so in one line
        raise ModelError(f"cannot read the checkpoint {path}: {one_line(error)}") from None
    pipeline_name = SINGLE_FILE_PIPELINES.get(model_type)
    if pipeline_name is None:
        raise ModelError(f"{path}: checkpoint type {model_type!r} is not a text-to-image model schedcmp can run")
    config = model_config or DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
    pipeline_class = getattr(diffusers, pipeline_name)
    try:
        return pipeline_class.from_single_file(path, config=config, torch_dtype=dtype, local_files_only=True)
    except Exception as error:
        if not isinstance(error, (OSError, ValueError)):  # diffusers' SingleFileComponentError and the like
            raise ModelError(f"cannot load {path} as a {model_type} checkpoint: {clip(one_line(error), 200)}") from None
        raise ModelError(
            f"{path} ({model_type}) needs the config of {config!r}, which is not available offline: "
            "pass --model-config DIR (a diffusers folder or cached hub id of the same architecture) "
            f"({clip(one_line(error), 160)})"
        ) from None


def load(
    model: str | None, device: str, dtype_name: str, allow_pickle: bool = False, model_config: str | None = None
) -> LoadedModel:
    """Load the pipeline once, move it to the device, and collect what the runs need."""
    kind, where = classify_source(model)
    started = time.perf_counter()
    dtype = torch_dtype(dtype_name)
    if kind == "folder":
        pipe = load_pipeline_from_folder(where, dtype, allow_pickle)
    elif kind == "file":
        pipe = load_pipeline_from_file(where, dtype, allow_pickle, model_config)
    else:
        pipe = load_pipeline_from_hub(where, dtype, allow_pickle)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return describe(pipe, model, device, dtype_name, time.perf_counter() - started)


def from_pipeline(pipe: Any) -> LoadedModel:
    """A pipeline already in memory, as it is: its execution device and dtype, nothing moved or changed."""
    import torch

    device = torch.device(getattr(pipe, "_execution_device", None) or pipe.device)
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    dtype = names.get(pipe.dtype)
    if dtype is None:
        raise ModelError(f"{type(pipe).__name__} runs in {pipe.dtype}; schedcmp measures fp32, fp16 and bf16")
    name = str(getattr(getattr(pipe, "config", None), "_name_or_path", None) or f"{type(pipe).__name__} (in memory)")
    return describe(pipe, name, str(device), dtype, None)


def describe(pipe: Any, model: str | None, device: str, dtype_name: str, load_seconds: float | None) -> LoadedModel:
    """What schedcmp needs to know about a loaded pipeline."""
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None:
        raise ModelError(f"{type(pipe).__name__} has no scheduler to swap")
    denoiser = next(
        (getattr(pipe, name) for name in DENOISER_ATTRIBUTES if getattr(pipe, name, None) is not None), None
    )
    if denoiser is None:
        raise ModelError(f"{type(pipe).__name__} has no denoiser (unet or transformer) schedcmp can count calls of")
    config = scheduler.config
    compatible = list(dict.fromkeys(cls.__name__ for cls in scheduler.compatibles))
    flow = type(scheduler).__name__.startswith("FlowMatch")
    parameters = inspect.signature(pipe.__call__).parameters
    return LoadedModel(
        pipe=pipe,
        name=model or DEFAULT_MODEL_NAME,
        device=device,
        dtype=dtype_name,
        denoiser=denoiser,
        text_encoders=[getattr(pipe, n) for n in TEXT_ENCODER_ATTRIBUTES if getattr(pipe, n, None) is not None],
        original_scheduler_class=type(scheduler).__name__,
        original_config=config,
        compatible=compatible,
        defaults=call_defaults(parameters, pipe),
        size_multiple=size_multiple(pipe),
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
        flow_shift=float(config.get("shift", 1.0)) if flow else None,
        call_parameters=parameters,
        load_seconds=load_seconds,
    )


def call_defaults(parameters: Mapping[str, inspect.Parameter], pipe: Any) -> PipelineDefaults:
    """What the pipeline's __call__ (whose `parameters` these are) does when a setting is not passed."""

    def default(name, fallback):
        parameter = parameters.get(name)
        if parameter is None or parameter.default is inspect.Parameter.empty or parameter.default is None:
            return fallback
        return parameter.default

    native = native_size(pipe)
    return PipelineDefaults(
        steps=int(default("num_inference_steps", 50)),
        guidance_scale=default("guidance_scale", None),
        width=int(default("width", native)),
        height=int(default("height", native)),
    )


def native_size(pipe: Any) -> int:
    """The pixel size the pipeline generates when none is given (its denoiser's sample size)."""
    denoiser_config = next(getattr(pipe, n).config for n in DENOISER_ATTRIBUTES if getattr(pipe, n, None) is not None)
    sample_size = denoiser_config.get("sample_size", 64)
    if isinstance(sample_size, (list, tuple)):
        sample_size = sample_size[0]
    return int(sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


def size_multiple(pipe: Any) -> int:
    """Width and height must be multiples of this (VAE factor, times the patch size of a transformer)."""
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None:
        factor *= int(transformer.config.get("patch_size", 1) or 1)
    return factor


def memory_needed(model: LoadedModel, width: int, height: int, images: int, guidance: float | None) -> int:
    """A lower bound on the bytes one pipeline call at this size needs beyond the weights: the denoiser's first
    block (input, hidden state, skip, output at full latent size and width, twice over with classifier-free
    guidance), or the VAE decoder's last block (three tensors at full image size and width), whichever is more."""
    bytes_per = 2 if model.dtype in ("fp16", "bf16") else 4
    factor = int(getattr(model.pipe, "vae_scale_factor", 8))
    latent_pixels = (width // factor) * (height // factor)
    config = model.denoiser.config
    channels = config.get("block_out_channels", [None])[0] or (
        config.get("num_attention_heads", 1) * config.get("attention_head_dim", 64)
    )
    copies = 2 if guidance is not None and guidance > 1 else 1
    denoiser = 4 * copies * images * latent_pixels * int(channels) * bytes_per
    vae = getattr(model.pipe, "vae", None)
    vae_channels = vae.config.get("block_out_channels", [128])[0] if vae is not None else 0
    decoder = 3 * images * width * height * int(vae_channels) * bytes_per
    return max(denoiser, decoder)


def free_memory(device: str) -> int | None:
    """Bytes free on the device now: CUDA's own count, the kernel's MemAvailable for the CPU; None elsewhere."""
    if device_type(device) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device_type(device) == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut between words (a message cut mid-word reads as a typo)."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"


def one_line(error: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


# Config keys that say where or when a component was saved, not what it is.
VOLATILE_CONFIG_KEYS = {
    "_name_or_path",
    "_diffusers_version",
    "transformers_version",
    "_commit_hash",
    "torch_dtype",
    "dtype",
    "_use_default_values",
}


def jsonable(value: Any) -> Any:
    """Configs hold tuples, numpy arrays and the like: turn them into JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def component_config(component: Any) -> dict[str, Any] | None:
    config = getattr(component, "config", None)
    if config is None:
        return None
    as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in jsonable(as_dict).items() if k not in VOLATILE_CONFIG_KEYS}


def model_identity(pipe: Any) -> dict[str, Any]:
    """The pipeline class and its components' classes and configs: what the model is, not its weights."""
    components = {}
    for name, component in sorted(pipe.components.items()):
        if component is None:
            components[name] = None
        else:
            components[name] = {"class": type(component).__name__, "config": component_config(component)}
    return {"pipeline": type(pipe).__name__, "components": components}


def identity_difference(expected: dict[str, Any], actual: dict[str, Any], whose: str = "baseline's") -> str | None:
    """The first way two identities differ, in words; None when they are the same."""
    if expected["pipeline"] != actual["pipeline"]:
        return f"pipeline {actual['pipeline']} != {whose} {expected['pipeline']}"
    for name in sorted(set(expected["components"]) | set(actual["components"])):
        old, new = expected["components"].get(name), actual["components"].get(name)
        if old == new:
            continue
        if old is None or new is None or old["class"] != new["class"]:
            return f"component {name}: {new and new['class']} != {whose} {old and old['class']}"
        keys = sorted(
            k
            for k in set(old["config"] or {}) | set(new["config"] or {})
            if (old["config"] or {}).get(k) != (new["config"] or {}).get(k)
        )
        return f"component {name}: config differs in {', '.join(keys[:5])}"
    return None
