"""What `schedcmp list` shows: the model's scheduler and its config, the compatible classes, the UI names and the
keyword arguments each class takes."""

from __future__ import annotations

from typing import Any

from schedcmp.core.names import FLOW_SAMPLER, SchedulerChoice, aliases_for, expand_all, ordered, short_name, ui_label
from schedcmp.core.request import Request
from schedcmp.model import pipeline
from schedcmp.model.schedulers import accepted_params_of, init_params, scheduler_classes


def list_document(request: Request) -> dict[str, Any]:
    """The scheduler, its config, the compatibles, the aliases, the flags."""
    with pipeline.quiet_libraries():
        device = pipeline.resolve_device(request.device if request.device != "auto" else "cpu")
        model = pipeline.load(request.model, device, "fp32", request.allow_pickle, request.model_config)
        classes = scheduler_classes()
        config = {key: value for key, value in dict(model.original_config).items()}
        aliases = aliases_for(model.flow_shift)  # a flow model's own where it is one: what -s resolves the names to
        return {
            "model": model.name,
            "pipeline": type(model.pipe).__name__,
            "scheduler": {"class": model.original_scheduler_class, "config": pipeline.jsonable(config)},
            "compatible": [
                {
                    "class": name,
                    "aliases": [alias for alias, (cls, _) in aliases.items() if cls == name],
                    "accepts": sorted(init_params(classes[name])) if name in classes else [],
                }
                for name in ordered(model.compatible)
            ],
            "aliases": [
                {"name": alias, "class": cls, "overrides": overrides} for alias, (cls, overrides) in aliases.items()
            ],
            "flow": flow_entries(model, classes),
        }


def flow_entries(model: pipeline.LoadedModel, classes: dict[str, type]) -> list[dict[str, Any]] | None:
    """On a flow-matching model, what `--schedulers all` runs, each natively or through the flow sampler."""
    if model.flow_shift is None:
        return None
    choices = expand_all(model.compatible, accepted_params_of(classes), False, model.flow_shift)
    return [
        {
            "name": ui_label(choice.class_name, choice.alias, choice.overrides),
            "class": choice.class_name,
            "overrides": choice.overrides,
            "via": runs_as(choice),
        }
        for choice in choices
    ]


def runs_as(choice: SchedulerChoice) -> str:
    if choice.class_name == FLOW_SAMPLER:
        return f"flow sampler ({choice.overrides['method']})"
    flow = " on flow sigmas" if choice.overrides.get("use_flow_sigmas") else ""
    return f"native: {short_name(choice.class_name)}{flow}"
