"""The one entry point of a comparison, for the CLI and `schedcmp.compare()` alike: this process runs it, or,
started by torchrun, this process runs its rank of it; `--backend flax` (or torch,flax) goes to the Flax driver."""

from __future__ import annotations

from typing import Any, Callable

from schedcmp.core.records import Results
from schedcmp.core.request import Request
from schedcmp.output import console
from schedcmp.sweep import engine
from schedcmp.sweep.placement import launched
from schedcmp.sweep.results import Outcome


def run(
    request: Request,
    loaded: Any = None,
    resumed: Results | None = None,
    keep_output: Callable[[Any], None] | None = None,
    progress: console.Progress | None = None,
) -> Outcome:
    """Run a request. `loaded`: a LoadedModel to use instead of loading `request.model`; `resumed`: the results.json
    of `request.resume` where the caller read it already; `keep_output`: each cell's Sample (baselines)."""
    progress = progress or console.Progress()
    if request.backend != "torch":
        from schedcmp.flax import comparison

        return comparison.run(request, loaded, resumed, keep_output, progress)
    if not launched():
        return engine.run_comparison(request, loaded, resumed, keep_output, progress)
    from schedcmp.scale import torchrun

    return torchrun.run_ranked(request, torchrun.Team.join(), progress, loaded, resumed)
