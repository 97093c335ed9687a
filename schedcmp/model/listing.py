"""What `schedcmp list` shows: the model's scheduler and its config, the compatible classes, the UI names and the
keyword arguments each class takes."""

from __future__ import annotations

from typing import Any

from schedcmp.core.names import ALIASES, ordered
from schedcmp.core.request import Request
from schedcmp.model import pipeline
from schedcmp.model.schedulers import init_params, scheduler_classes


def list_document(request: Request) -> dict[str, Any]:
    """The scheduler, its config, the compatibles, the aliases, the flags."""
    with pipeline.quiet_libraries():
        device = pipeline.resolve_device(request.device if request.device != "auto" else "cpu")
        model = pipeline.load(request.model, device, "fp32", request.allow_pickle, request.model_config)
        classes = scheduler_classes()
        config = {key: value for key, value in dict(model.original_config).items()}
        return {
            "model": model.name,
            "pipeline": type(model.pipe).__name__,
            "scheduler": {"class": model.original_scheduler_class, "config": pipeline.jsonable(config)},
            "compatible": [
                {
                    "class": name,
                    "aliases": [alias for alias, (cls, _) in ALIASES.items() if cls == name],
                    "accepts": sorted(init_params(classes[name])) if name in classes else [],
                }
                for name in ordered(model.compatible)
            ],
            "aliases": [
                {"name": alias, "class": cls, "overrides": overrides} for alias, (cls, overrides) in ALIASES.items()
            ],
        }
