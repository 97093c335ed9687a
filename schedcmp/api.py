"""schedcmp from Python: `schedcmp.compare()` on a pipeline already in memory, and the Comparison it returns.

The same engine as `schedcmp run` (schedcmp.sweep.engine): the same plan, images, results.json and sheets. Bad
input raises a schedcmp.SchedcmpError (never SystemExit); Ctrl-C is re-raised once what finished is written.
"""

from __future__ import annotations

import base64
import html
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from schedcmp.core.errors import OutputError, UsageError
from schedcmp.core.records import Results, Run, dumps, to_json
from schedcmp.core.request import api_help, api_signature, api_values, declared, default_of, flag_of, merge


def api_name(name: str) -> str:
    """How a message names a setting given to compare(): by its flag, as the CLI's messages do; the prompt, which
    the CLI takes as its argument PROMPT, by its own name."""
    return name if name == "prompt" else flag_of(name)


def compare(pipe: Any = None, prompt: str | Iterable[str] | None = None, **settings: Any) -> "Comparison":
    """Run every chosen scheduler on the same prompt and seed, as `schedcmp run` does; -> a Comparison.

    `pipe` is a loaded DiffusionPipeline (used as it is: its device and dtype, nothing moved, and left exactly
    as it was), a model folder, hub id or .safetensors path, or None for the embedded default model. Every other
    argument is a setting of `schedcmp run`, by its flag's name (--guidance-scale is guidance_scale), taking the
    same values: number axes also take an int, a list or a range; `schedulers` also a list of entries (strings or
    scheduler classes); `call_arg` a dict; `reference` also a reference spec string (as reference_spec).
    `device`, `dtype`, `model_config` and `allow_pickle` apply when schedcmp loads the model itself. Without
    `out`, the files live in a temporary folder as long as the Comparison does.

    The arguments, from schedcmp.core.request's declaration:
    """
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.scale import launch

    values, called = api_values(settings)
    if isinstance(values.get("reference"), str):  # reference="SPEC" is the reference spec, as before
        values["reference_spec"], values["reference"] = values["reference"], True
    loaded = None
    if isinstance(pipe, (str, Path)):
        values["model"] = str(pipe)
    elif pipe is not None:
        if not hasattr(pipe, "scheduler") or not callable(pipe):
            raise UsageError(
                f"pipe must be a diffusers pipeline, a model path or hub id, or None; got {type(pipe).__name__}"
            )
        defaults = {f.name: default_of(f) for f in declared() if f.name in LOADING}
        loading = [name for name in LOADING if values.get(name) not in (None, defaults[name])]
        if loading:
            raise UsageError(
                f"{', '.join(loading)} apply when schedcmp loads the model; {type(pipe).__name__} is loaded already "
                "and runs where it is: move or cast it yourself (pipe.to(...)), or pass a path instead"
            )
        loaded = pipeline.from_pipeline(pipe)
    # Messages name a setting by its flag, as the CLI's do (or by the old name the caller used).
    request = merge({"prompt": prompt, **values}, names=lambda name: called.get(name) or api_name(name))
    temporary = None
    if request.out is None:
        temporary = tempfile.TemporaryDirectory(prefix="schedcmp-")
        request = replace(request, out=Path(temporary.name), overwrite=True)
    try:
        outcome = launch.run(request, loaded, progress=console.Progress(request.progress))
    except BaseException:
        if temporary is not None:
            temporary.cleanup()
        raise
    comparison = Comparison(outcome.results, outcome.out_dir, temporary)
    if outcome.stopped is not None:
        raise outcome.stopped  # what finished is in `out`
    return comparison


# Settings that only say how to load a model: with a pipeline object they would be ignored, so they are refused.
LOADING = ("device", "dtype", "model_config", "allow_pickle")


# The signature and the argument list come from the declaration, so that help(schedcmp.compare) and IDEs show
# every setting and no setting can be missing here.
compare.__signature__ = api_signature()  # type: ignore[attr-defined]
compare.__doc__ = (compare.__doc__ or "") + api_help() + "\n"


# -- the result --------------------------------------------------------------------------------------------------


class Comparison:
    """A finished comparison: its runs, sheets and results document, and the folder that holds its files."""

    def __init__(self, results: Results, folder: Path, temporary: tempfile.TemporaryDirectory | None = None):
        self.results = results
        self.folder = Path(folder)
        self.temporary = temporary  # the files live as long as this, or a run taken from it, is referenced

    @classmethod
    def load(cls, folder: str | Path) -> "Comparison":
        """A finished run folder (of `schedcmp run` or `compare(out=...)`), back as a Comparison."""
        from schedcmp.sweep.results import read_results

        return cls(read_results(Path(folder), "load"), Path(folder))

    @property
    def runs(self) -> list[Run]:
        """Every cell, in plan order; each run's `image` is its PIL.Image (None where it made none)."""
        return [replace(run, folder=self.folder, keep=self.temporary) for run in self.results.runs]

    @property
    def sheet_paths(self) -> list[Path]:
        return [self.folder / name for name in self.results.sheets]

    @property
    def sheets(self) -> list[Any]:
        """The contact sheet, or a sweep's grids, as PIL.Images."""
        from PIL import Image

        images = []
        for path in self.sheet_paths:
            with Image.open(path) as image:
                image.load()
                images.append(image.copy())
        return images

    @property
    def sheet(self) -> Any:
        """The contact sheet (or the first grid) as a PIL.Image; None with no images."""
        sheets = self.sheets
        return sheets[0] if sheets else None

    @property
    def answer(self) -> list[str]:
        """With a reference: what the comparison concludes, in words (as stderr and report.html end)."""
        return list(self.results.answer or [])

    @property
    def equal_quality(self) -> list[Any]:
        """With a target: each scheduler entry's fewest steps at it, cheapest first (records.EqualQuality)."""
        return list(self.results.equal_quality or [])

    def to_dict(self) -> dict[str, Any]:
        """The results.json document, in the CLI's schema."""
        return to_json(self.results)

    def files(self) -> list[str]:
        """Every file the results name that is there, relative to the folder."""
        return [name for name in self.results.files() if (self.folder / name).is_file()]

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """The CLI's folder layout in `folder`: results.json, images/, the sheets (and report, charts)."""
        from schedcmp.output.report import write_atomic
        from schedcmp.sweep.results import remove_previous_files

        target = Path(folder)
        if target.resolve() == self.folder.resolve():
            return target
        if target.exists() and not target.is_dir():
            raise OutputError(f"{target} is a file, not a folder")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise OutputError(f"output folder {target} is not empty; pass overwrite=True or choose another folder")
        try:
            if overwrite:
                remove_previous_files(target)  # as `run --overwrite` does: the previous comparison's, nothing else
            for name in self.files():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.folder / name, target / name)
            write_atomic(target / "results.json", dumps(self.results))  # last: it names the files only once there
        except OSError as error:
            raise OutputError(f"cannot save into {target}: {error.strerror or error}") from None
        return target

    @property
    def exit_code(self) -> int:
        """What `schedcmp run` would exit with for this comparison."""
        from schedcmp.sweep.results import exit_code

        return exit_code(self.results, strict=False)

    def table_html(self) -> str:
        from schedcmp.output import report

        return report.to_html(report.table_rows(self.results.runs))

    def _repr_html_(self) -> str:
        """In Jupyter: the sheet, then the table."""
        parts = []
        for path in self.sheet_paths:
            encoded = base64.b64encode(path.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{encoded}">')
        parts.append(self.table_html())
        return "\n".join(parts)

    def __repr__(self) -> str:
        done = len(self.results.runs)
        runs = f"{done} run{'s' * (done != 1)}"
        return f"<schedcmp.Comparison of {runs} on {self.results.pipeline} ({self.results.device}) in {self.folder}>"
