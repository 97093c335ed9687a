"""Scheduler classes from diffusers: which exist, what their constructors take, and a fresh instance from
the pipeline's original config. The names, aliases and grammar are in schedcmp.core.names."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any

from schedcmp.core.errors import UsageError
from schedcmp.core.names import FLOW_SAMPLER, SchedulerChoice, flow_sampler_twin, short_name


@functools.cache
def scheduler_classes() -> dict[str, type]:
    """Every scheduler class diffusers exports, by name, and schedcmp's own flow sampler (looked up once: it
    imports every scheduler module)."""
    import diffusers

    from schedcmp.flow.scheduler import FlowSamplerScheduler

    found = {}
    for name in dir(diffusers):
        if name.endswith("Scheduler") and not name.startswith("Flax"):
            try:
                cls = getattr(diffusers, name)
            except Exception:  # an optional backend is missing for this class: it cannot be used anyway
                continue
            if isinstance(cls, type):
                found[name] = cls
    found[FlowSamplerScheduler.__name__] = FlowSamplerScheduler
    return found


# --schedule through each scheduler's own flag; the flow sampler takes every schedule as its `schedule` option.
SCHEDULE_FLAGS = {
    "karras": "use_karras_sigmas",
    "exponential": "use_exponential_sigmas",
    "beta": "use_beta_sigmas",
}


def schedule_overrides(cls: type, schedule: str | None, overrides: dict[str, Any]) -> dict[str, Any] | str:
    """The constructor arguments that give `cls` this schedule, or why it cannot have it (a labelled cell, never
    a silent default): a class without the flag, a ComfyUI schedule on anything but the flow sampler, or an
    entry that sets a schedule of its own."""
    if schedule in (None, "default"):
        return {}
    found = schedule_flags(cls, schedule, overrides)
    twin = flow_sampler_twin(cls.__name__, overrides)
    return found if isinstance(found, dict) or twin is None else f"{found}; {twin} takes it"


def schedule_flags(cls: type, schedule: str, overrides: dict[str, Any]) -> dict[str, Any] | str:
    """schedule_overrides for a schedule other than the scheduler's own."""
    name = short_name(cls.__name__)
    own = [key for key in (*SCHEDULE_FLAGS.values(), "schedule") if overrides.get(key) not in (None, False, "default")]
    if own and overrides[own[0]] in (True, schedule) and own[0] in (SCHEDULE_FLAGS.get(schedule), "schedule"):
        setting = f"{own[0]}={overrides[own[0]]}"
        return f"{name}: its entry has the {schedule} schedule already ({setting}): its default cell is that run"
    if own:
        return f"{name}: sets its own schedule ({own[0]}={overrides[own[0]]}), not --schedule {schedule}"
    params = init_params(cls)
    if "schedule" in params and "method" in params:  # schedcmp.flow.FlowSamplerScheduler
        return {"schedule": schedule}
    flag = SCHEDULE_FLAGS.get(schedule)
    if flag is None or flag not in params:
        return f"{name}: no {schedule} schedule"
    if overrides.get("use_flow_sigmas"):  # diffusers takes its Karras/exponential/beta sigmas instead of flow's
        return f"{name} on flow sigmas: no {schedule} schedule (diffusers uses one or the other, not both)"
    return {flag: True}


def effective_overrides(cls: type, overrides: dict[str, Any], schedule: str | None) -> dict[str, Any]:
    """A cell's constructor arguments: its entry's overrides and its schedule's (schedule_overrides must allow it)."""
    extra = schedule_overrides(cls, schedule, overrides)
    return {**overrides, **(extra if isinstance(extra, dict) else {})}


def init_params(cls: type) -> set[str]:
    """The keyword arguments a scheduler class's constructor takes."""
    return {name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "kwargs", "args")}


def accepted_params_of(classes: dict[str, type]) -> dict[str, set[str]]:
    return {name: init_params(cls) for name, cls in classes.items()}


def build(cls: type, original_config: Any, overrides: dict[str, Any]):
    """A fresh scheduler from the pipeline's original config: never from a previous swap."""
    return cls.from_config(config_for(cls, original_config), **overrides)


def config_for(cls: type, original_config: Any) -> dict[str, Any]:
    """The original config as `cls` should read it. A key the original class left unset (None) that `cls` gives
    a default of its own is left out, so that the default applies: a saved EulerDiscrete config holds
    `sigma_min: null` (Euler: "the model's own"), which EDMEuler would take as its sigma_min and fail on."""
    parameters = inspect.signature(cls.__init__).parameters
    unset = {
        key
        for key, value in dict(original_config).items()
        if value is None and key in parameters and parameters[key].default not in (None, inspect.Parameter.empty)
    }
    return {key: value for key, value in dict(original_config).items() if key not in unset}


def expected_type(cls: type, key: str) -> Any:
    """What `cls.__init__` says `key` takes: its annotation, else (older diffusers) its default's type; None when
    it says nothing."""
    parameter = inspect.signature(cls.__init__).parameters[key]
    try:
        annotation = typing.get_type_hints(cls.__init__).get(key)
    except Exception:  # an annotation that cannot be evaluated here
        annotation = None
    if annotation is not None:
        return annotation
    if parameter.default is inspect.Parameter.empty or parameter.default is None:
        return None
    return type(parameter.default)


def fits(value: Any, expected: Any) -> bool:
    """Does an override value have the type a constructor wants? Only plain types are judged: a Literal's choices,
    lists, arrays and tensors are left to the scheduler, which reports a bad one on that run's tile."""
    if expected is None or expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, member) for member in typing.get_args(expected))
    if origin is typing.Literal:
        return all(fits(value, type(choice)) for choice in typing.get_args(expected)[:1])
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    return True


def type_name(expected: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", type(None): "none"}
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(type_name(member) for member in typing.get_args(expected)))
    if typing.get_origin(expected) is typing.Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(expected))
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def check_override_types(choices: list[SchedulerChoice], classes: dict[str, type]) -> None:
    """Refuse, before any model loads, an override whose value the constructor cannot take."""
    for choice in choices:
        cls = classes.get(choice.class_name)
        for key, value in choice.overrides.items():
            if cls is None or key not in init_params(cls):
                continue
            expected = expected_type(cls, key)
            if not fits(value, expected):
                raise UsageError(
                    f"override {key}={value!r} for {short_name(choice.class_name)}: it takes {type_name(expected)}"
                )
        if cls is not None and cls.__name__ == FLOW_SAMPLER:
            check_flow_sampler(choice, cls)


def check_flow_sampler(choice: SchedulerChoice, cls: type) -> None:
    """The flow sampler's own checks of its method, schedule and noise (ours, so its Literals are complete), before
    the model loads rather than as a failed run after it."""
    from schedcmp.flow.scheduler import check_options

    params = inspect.signature(cls.__init__).parameters
    names = ("method", "schedule", "eta", "s_noise", "invert_sigmas")
    try:
        check_options(**{name: choice.overrides.get(name, params[name].default) for name in names})
    except ValueError as error:
        raise UsageError(f"{short_name(cls.__name__)}: {error}") from None
