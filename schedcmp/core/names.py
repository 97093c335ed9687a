"""Scheduler names: the --schedulers grammar, UI aliases, labels and the order of `all`. Pure, no diffusers.

The grammar of `--schedulers` (also in `schedcmp run --help`):

    ENTRIES := ENTRY ("," ENTRY)*
    ENTRY   := NAME ["(" KEY "=" VALUE ("," KEY "=" VALUE)* ")"] [":" STEPS]

Commas inside the parentheses belong to the overrides. VALUE is true/false, none, a number, or a bare
string. NAME is a diffusers class name with or without the `Scheduler` suffix, or a UI name from ALIASES;
case does not matter. `all` is the pipeline's compatibles, `all+` adds the well-known variants.

The classes themselves, and what their constructors take, are in schedcmp.model.schedulers.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from schedcmp.core.errors import UsageError

ALL = "all"
ALL_PLUS = "all+"

KARRAS = {"use_karras_sigmas": True}

# UI names (A1111 / k-diffusion) -> (diffusers class, overrides), after the diffusers scheduler overview
# table. One correction to that table: "DPM++ SDE" is k-diffusion's stochastic sampler, which diffusers
# ships as DPMSolverSDEScheduler, not DPMSolverSinglestepScheduler.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", KARRAS),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", **KARRAS}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", KARRAS),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", KARRAS),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", KARRAS),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", KARRAS),
    "DEIS": ("DEISMultistepScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}

# On flow-matching models (SD3, FLUX.1) a UI name is diffusers' native flow scheduler where there is one, set
# to flow sigmas with the model's shift, else the method of schedcmp's flow sampler (schedcmp.flow). Both stay
# reachable by an explicit name: `FlowSampler(method=heun)`, `DPMSolverMultistep(use_flow_sigmas=true,...)`.
FLOW_SAMPLER = "FlowSamplerScheduler"
NATIVE_FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}  # and flow_shift: the model's
METHOD_NAMES = {  # the flow sampler's methods by their UI names
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm2": "DPM2",
    "dpm2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "ipndm": "iPNDM",
    "deis": "DEIS",
}
METHOD_OF_NAME = {name: method for method, name in METHOD_NAMES.items()}  # the other way round
NATIVE_FLOW_ALIASES = {  # UI name -> (class, overrides besides flow_shift); FlowMatch classes need no flags
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", NATIVE_FLOW),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**NATIVE_FLOW, "algorithm_type": "sde-dpmsolver++"}),
    "UniPC": ("UniPCMultistepScheduler", NATIVE_FLOW),
    "DEIS": ("DEISMultistepScheduler", NATIVE_FLOW),
}
# `all` on a flow model: the native flow schedulers, then the flow sampler's methods (its Euler is
# FlowMatchEuler's own steps, so it is left out; it stays reachable as FlowSampler(method=euler)).
NATIVE_FLOW_ALL = [
    ("FlowMatchEulerDiscreteScheduler", {}),
    ("FlowMatchHeunDiscreteScheduler", {}),
    ("DPMSolverMultistepScheduler", NATIVE_FLOW),
    ("DPMSolverMultistepScheduler", {**NATIVE_FLOW, "algorithm_type": "sde-dpmsolver++"}),
    ("DPMSolverSinglestepScheduler", NATIVE_FLOW),
    ("UniPCMultistepScheduler", NATIVE_FLOW),
    ("DEISMultistepScheduler", NATIVE_FLOW),
    ("SASolverScheduler", NATIVE_FLOW),
]


def flow_aliases(flow_shift: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """The UI names on a flow model whose shift is `flow_shift`: native flow schedulers, else flow sampler methods."""
    aliases = {}
    for method, name in METHOD_NAMES.items():
        aliases[name] = (FLOW_SAMPLER, {"method": method})
    for name, (class_name, overrides) in NATIVE_FLOW_ALIASES.items():
        aliases[name] = (class_name, with_shift(overrides, flow_shift))
    # "DPM++ 2M Karras" and the like: the flow sampler's method on Karras sigmas (a native scheduler on flow sigmas
    # takes no Karras schedule), not the ε-model class, which a flow model does not list as compatible
    for name in ALIASES:
        base = name.removesuffix(" Karras")
        if base != name and base in METHOD_OF_NAME:
            aliases[name] = (FLOW_SAMPLER, {"method": METHOD_OF_NAME[base], "schedule": "karras"})
    return aliases


def flow_sampler_twin(class_name: str, overrides: dict[str, Any]) -> str | None:
    """The flow sampler's entry with the UI name of this native flow scheduler (DPMSolverMultistep on flow sigmas:
    `FlowSampler(method=dpmpp_2m)`), or None where it has none (UniPC) or is no native flow scheduler: what to
    run instead where the native one cannot take a schedule or a pipeline's sigmas."""
    own = {key: value for key, value in overrides.items() if key != "flow_shift"}
    for name, (native, flags) in NATIVE_FLOW_ALIASES.items():
        if native == class_name and own == flags and name in METHOD_OF_NAME:
            return f"FlowSampler(method={METHOD_OF_NAME[name]})"
    return None


def with_shift(overrides: dict[str, Any], flow_shift: float) -> dict[str, Any]:
    """Native flow flags get the model's shift; a FlowMatch class reads it from the config itself."""
    return {**overrides, "flow_shift": flow_shift} if overrides.get("use_flow_sigmas") else dict(overrides)


def aliases_for(flow_shift: float | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The UI names in force: flow models' where `flow_shift` says the model is one, over the others."""
    return ALIASES if flow_shift is None else {**ALIASES, **flow_aliases(flow_shift)}


# The order of `all`: the guide's comparison first (PNDM, DDIM, LMS, Euler, Euler a, DPM++ 2M), then the
# other Stable Diffusion compatibles from cheap to exotic; classes not named here follow alphabetically.
PREFERRED_ORDER = [
    "PNDMScheduler",
    "DDIMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DPMSolverSDEScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DDPMScheduler",
    "EDMEulerScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "FlowMatchHeunDiscreteScheduler",
]

# Short tags for run ids, so `use_karras_sigmas=true` reads `karras`.
OVERRIDE_TAGS = {
    "use_karras_sigmas": "karras",
    "use_exponential_sigmas": "exponential",
    "use_beta_sigmas": "beta",
    "use_lu_lambdas": "lu",
    "use_flow_sigmas": "flow",
}


@dataclass(frozen=True)
class Entry:
    """One parsed `--schedulers` entry, before its name is looked up."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None


@dataclass(frozen=True)
class SchedulerChoice:
    """A resolved entry: which class, with which overrides, under which UI alias."""

    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None
    steps: int | None = None
    known_to_work: bool = False  # an `all+` flow solver: runs without --allow-incompatible


def normalise(name: str) -> str:
    """Case-, underscore- and spacing-insensitive form of a scheduler name."""
    return " ".join(name.lower().replace("_", " ").split())


def short_name(class_name: str) -> str:
    """`EulerDiscreteScheduler` -> `EulerDiscrete`."""
    return class_name[: -len("Scheduler")] if class_name.endswith("Scheduler") else class_name


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
            if depth > 1:
                raise UsageError(f"malformed scheduler list {text!r}: nested parentheses")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise UsageError(f"malformed scheduler list {text!r}: ')' without '('")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise UsageError(f"malformed scheduler list {text!r}: '(' without ')'")
    parts.append("".join(current))
    return parts


def parse_value(text: str) -> Any:
    """`true`/`false` -> bool, `none` -> None, numbers -> int/float, anything else -> the bare string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


ENTRY_PATTERN = re.compile(r"^(?P<name>[^():=]+?)\s*(?:\((?P<overrides>[^()]*)\))?\s*(?::\s*(?P<steps>[^:]*))?$")
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_steps(text: str, where: str) -> int:
    """A step count: a whole number of at least 1."""
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise UsageError(f"{where}: steps must be a whole number, got {text.strip()!r}")
    steps = int(text)
    if steps < 1:
        raise UsageError(f"{where}: steps must be at least 1, got {steps}")
    return steps


def parse_entry(text: str) -> Entry:
    """Parse one `NAME(key=value,...):STEPS` entry."""
    stripped = text.strip()
    if not stripped:
        raise UsageError("malformed scheduler list: empty entry (two commas in a row, or a trailing comma?)")
    match = ENTRY_PATTERN.match(stripped)
    if match is None:
        raise UsageError(f"malformed scheduler entry {stripped!r}: expected NAME, NAME(key=value,...) or NAME:STEPS")
    overrides: dict[str, Any] = {}
    if match["overrides"] is not None:
        for item in match["overrides"].split(","):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not KEY_PATTERN.match(key) or not value:
                raise UsageError(f"malformed override {item.strip()!r} in {stripped!r}: expected key=value")
            overrides[key] = parse_value(value)
    steps = None if match["steps"] is None else parse_steps(match["steps"], f"scheduler entry {stripped!r}")
    return Entry(name=match["name"].strip(), overrides=overrides, steps=steps)


def parse_entries(text: str) -> list[Entry]:
    """Parse a whole `--schedulers` value into entries (names not yet looked up)."""
    if not text.strip():
        raise UsageError("--schedulers is empty: give 'all', 'all+' or a list of names")
    return [parse_entry(part) for part in split_top_level(text)]


def lookup_table(
    class_names: list[str], flow_shift: float | None = None
) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """Every accepted spelling (normalised) -> (class name, overrides, UI alias or None)."""
    table: dict[str, tuple[str, dict[str, Any], str | None]] = {}
    for class_name in class_names:
        table[normalise(class_name)] = (class_name, {}, None)
        table[normalise(short_name(class_name))] = (class_name, {}, None)
        # "FlowMatchEuler", as the docs' lists print it, names FlowMatchEulerDiscrete
        table.setdefault(normalise(short_name(class_name).replace("Discrete", "")), (class_name, {}, None))
    for alias, (class_name, overrides) in aliases_for(flow_shift).items():
        table[normalise(alias)] = (class_name, overrides, alias)
    return table


def resolve_entry(
    entry: Entry, accepted_params: dict[str, set[str]], flow_shift: float | None = None
) -> SchedulerChoice:
    """Look an entry's name up and check its override keys.

    `accepted_params` maps every known scheduler class name to the keyword arguments its constructor takes;
    `flow_shift` is the model's shift on a flow-matching model, whose UI names differ (flow_aliases).
    """
    table = lookup_table(sorted(accepted_params), flow_shift)
    found = table.get(normalise(entry.name))
    if found is None and flow_shift is None and normalise(entry.name) in map(normalise, flow_aliases(1.0)):
        raise UsageError(f"{entry.name!r} names a flow-matching model's sampler (FLUX.1, SD3); this model is not one")
    if found is None:
        suggestions = difflib.get_close_matches(normalise(entry.name), list(table), n=3, cutoff=0.5)
        spelled = [display_name(table[s]) for s in suggestions]
        hint = f"; did you mean {', '.join(dict.fromkeys(spelled))}?" if spelled else "; see `schedcmp list`"
        raise UsageError(f"unknown scheduler {entry.name!r}{hint}")
    class_name, alias_overrides, alias = found
    params = accepted_params[class_name]
    for key in entry.overrides:
        if key not in params:
            close = difflib.get_close_matches(key, sorted(params), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; it takes: {', '.join(sorted(params))}"
            raise UsageError(f"unknown override {key!r} for {class_name}{hint}")
    overrides = {**alias_overrides, **entry.overrides}
    if entry.overrides:  # "LMS(timestep_spacing=trailing)" is no longer what the UI calls LMS
        alias = alias_for(class_name, overrides, flow_shift)
    # A flow-matching model's native flow schedulers and the flow sampler run without --allow-incompatible.
    flow = flow_shift is not None and (
        class_name in (FLOW_SAMPLER, *(name for name, _ in NATIVE_FLOW_ALL if name.startswith("FlowMatch")))
        or overrides.get("use_flow_sigmas") is True
    )
    return SchedulerChoice(class_name, overrides, alias, entry.steps, known_to_work=flow)


def display_name(found: tuple[str, dict[str, Any], str | None]) -> str:
    class_name, _, alias = found
    return alias if alias else short_name(class_name)


def display_label(class_name: str, alias: str | None, overrides: dict[str, Any]) -> str:
    """`EulerDiscrete (Euler)`, `FlowSampler (Heun)`, or the class and its overrides when no UI name fits."""
    name = short_name(class_name)
    shown = {k: v for k, v in overrides.items() if k != "noise_sampler_seed"}
    if not alias and all(shown.get(key) == value for key, value in NATIVE_FLOW.items()):
        # a native scheduler set to flow sigmas: "SASolver (flow sigmas)", its shift in results.json
        rest = {k: v for k, v in shown.items() if k not in NATIVE_FLOW and k != "flow_shift"}
        return f"{name} (flow sigmas" + "".join(f", {k}={v}" for k, v in rest.items()) + ")"
    if not alias and class_name == FLOW_SAMPLER and shown.get("method") in METHOD_NAMES:
        alias = METHOD_NAMES[shown.pop("method")]  # the flow sampler's method by its UI name
        if shown:
            return f"{name} ({alias}, " + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
    if alias:
        return f"{name} ({alias})"
    if shown:
        return name + "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
    return name


def ui_label(class_name: str, alias: str | None, overrides: dict[str, Any]) -> str:
    """The shortest name that says which entry: `Euler`, `DPM++ 2M Karras`, else `DDIM`, `LMSDiscrete(...)`;
    a flow sampler method no UI name points at: `Heun (flow sampler)`."""
    if alias:
        return alias
    if class_name == FLOW_SAMPLER and overrides.get("method") in METHOD_NAMES and len(overrides) == 1:
        return f"{METHOD_NAMES[overrides['method']]} (flow sampler)"
    return display_label(class_name, None, overrides)


def alias_for(class_name: str, overrides: dict[str, Any], flow_shift: float | None = None) -> str | None:
    """The UI name that means exactly this class with exactly these overrides, if there is one."""
    for alias, (alias_class, alias_overrides) in aliases_for(flow_shift).items():
        if alias_class == class_name and alias_overrides == overrides:
            return alias
    return None


def ordered(class_names: list[str]) -> list[str]:
    """Deduplicate and put into the documented order of `all`."""
    unique = list(dict.fromkeys(class_names))
    known = [name for name in PREFERRED_ORDER if name in unique]
    return known + sorted(name for name in unique if name not in PREFERRED_ORDER)


def expand_all(
    compatible: list[str], accepted_params: dict[str, set[str]], plus: bool, flow_shift: float | None
) -> list[SchedulerChoice]:
    """`all`: each compatible class with its defaults. `all+`: also the well-known variants.

    The variants are Karras sigmas for every class that takes them and, for flow-matching pipelines
    (`flow_shift` is the original scheduler's `shift`), the solvers known to work on flow models.
    """
    if flow_shift is not None:
        choices = flow_all(compatible, accepted_params, flow_shift)
    else:
        choices = [SchedulerChoice(name, {}, alias_for(name, {})) for name in ordered(compatible)]
    if not plus:
        return choices
    variants = []
    for name in ordered(compatible):
        if "use_karras_sigmas" in accepted_params.get(name, set()):
            variants.append(SchedulerChoice(name, dict(KARRAS), alias_for(name, KARRAS, flow_shift)))
    return choices + variants


def flow_all(compatible: list[str], accepted_params: dict[str, set[str]], flow_shift: float) -> list[SchedulerChoice]:
    """`all` on a flow-matching model: every sampler with a flow form (the native flow schedulers set to the
    model's shift, then the flow sampler's methods), and any other compatible class."""
    entries = [(name, with_shift(overrides, flow_shift)) for name, overrides in NATIVE_FLOW_ALL]
    entries += [(FLOW_SAMPLER, {"method": method}) for method in METHOD_NAMES if method != "euler"]
    entries += [(name, {}) for name in ordered(compatible) if (name, {}) not in entries]
    return [
        SchedulerChoice(name, overrides, alias_for(name, overrides, flow_shift), known_to_work=True)
        for name, overrides in entries
        if name in accepted_params
    ]


def choose(
    text: str, compatible: list[str], accepted_params: dict[str, set[str]], flow_shift: float | None
) -> list[SchedulerChoice]:
    """The schedulers a `--schedulers` value asks for, in order."""
    entries = parse_entries(text)
    choices: list[tuple[str, SchedulerChoice]] = []  # (as the user spelt it, the choice)
    for entry in entries:
        keyword = normalise(entry.name)
        if keyword in (ALL, ALL_PLUS) and not entry.overrides:
            for choice in expand_all(compatible, accepted_params, keyword == ALL_PLUS, flow_shift):
                choices.append(
                    (
                        entry.name,
                        SchedulerChoice(
                            choice.class_name, choice.overrides, choice.alias, entry.steps, choice.known_to_work
                        ),
                    )
                )
        else:
            choices.append((entry.name, resolve_entry(entry, accepted_params, flow_shift)))
    refuse_repeats(choices)
    return [choice for _, choice in choices]


def refuse_repeats(choices: list[tuple[str, SchedulerChoice]]) -> None:
    """The same scheduler, overrides and steps named twice would run twice and draw two equal tiles."""
    seen: dict[tuple, list[str]] = {}
    for spelt, choice in choices:
        seen.setdefault((choice.class_name, repr(sorted(choice.overrides.items())), choice.steps), []).append(spelt)
    for (class_name, _, _), spellings in seen.items():
        if len(spellings) > 1:
            raise UsageError(
                f"--schedulers names {short_name(class_name)} more than once ({', '.join(spellings)}): "
                "list each scheduler once"
            )


def override_tag(overrides: dict[str, Any]) -> str:
    """A filename-safe tag for a set of overrides, for run ids."""
    parts = []
    flow = overrides.get("use_flow_sigmas") is True
    for key, value in overrides.items():
        if key == "noise_sampler_seed":
            continue  # set from --seed, which the id already says
        if flow and (key, value) in (("prediction_type", "flow_prediction"),) or flow and key == "flow_shift":
            continue  # "flow" says them: the flow flags, with the model's own shift
        if value is True and key in OVERRIDE_TAGS:
            parts.append(OVERRIDE_TAGS[key])
        elif key == "method":  # the flow sampler's method: `flowsampler-heun`
            parts.append(str(value))
        else:
            parts.append(f"{key}-{value}")
    return "-".join(parts)
