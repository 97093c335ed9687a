"""schedcmp: which diffusers scheduler should I use for this model and prompt?

    import schedcmp
    comparison = schedcmp.compare(pipe, "astronaut on mars", seed=8)

Importing schedcmp costs nothing: torch and diffusers load when a comparison runs.
"""

from schedcmp.core.errors import ModelError, OutputError, SchedcmpError, UsageError

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
    """The API's names load on first use, so that `schedcmp --help` imports none of it."""
    if name in ("compare", "Comparison"):
        from schedcmp import api

        return getattr(api, name)
    if name in ("Run", "Status", "Determinism"):
        from schedcmp.core import records

        return getattr(records, name)
    raise AttributeError(f"module 'schedcmp' has no attribute {name!r}")
