"""schedcmp: which diffusers scheduler should I use for this model and prompt?

    import schedcmp
    comparison = schedcmp.compare(pipe, "astronaut on mars", seed=8)

Importing schedcmp costs nothing: torch and diffusers load when a comparison runs.
"""

from schedcmp.errors import ModelError, OutputError, SchedcmpError, UsageError
from schedcmp.records import Determinism, Run, Status

__version__ = "0.1.0"

__all__ = [
    "compare",
    "Comparison",
    "Run",
    "Status",
    "Determinism",
    "SchedcmpError",
    "UsageError",
    "ModelError",
    "OutputError",
    "__version__",
]


def __getattr__(name: str):
    if name in ("compare", "Comparison"):
        from schedcmp import api

        return getattr(api, name)
    raise AttributeError(f"module 'schedcmp' has no attribute {name!r}")
