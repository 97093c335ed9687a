"""Every record schedcmp writes to disk, declared once: results.json, baseline manifests, check results.

The dataclasses below are the schema. `to_json` turns a record into the document's plain JSON form (what the
renderers and reports read), `from_json` validates a document and fills the defaults of fields that older
files lack, and `json_schema` publishes the same declarations as JSON Schema (schedcmp/schema/*.json,
written by `schedcmp.core.records.write_schemas()`, checked by a test). Pure: no torch, no diffusers.

Versioning: a field added to a record does not change `schema_version`; a field removed or given another
meaning does. `from_json` reads every version ever written.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

SCHEMA_VERSION = 1
SCHEMA_DIR = Path(__file__).parents[1] / "schema"


class Status(enum.StrEnum):
    """How a run went."""

    OK = "ok"
    FAILED = "failed"  # raised, NaN/inf or a constant image
    SUSPECT = "suspect"  # ran, but likely garbage (timesteps out of range, repeats that differ)
    FILTERED = "filtered"  # the safety checker blacked it out
    UNSUPPORTED = "unsupported"  # not run: the scheduler cannot take this schedule or this pipeline's timesteps


class Backend(enum.StrEnum):
    """Which framework made a run: diffusers' PyTorch pipelines, or its Flax ones (schedcmp.flax, `--backend`)."""

    TORCH = "torch"
    FLAX = "flax"


class Determinism(enum.StrEnum):
    """What the empirical probe found (schedcmp.quality.convergence.probe_determinism): the one definition of
    stochastic."""

    DETERMINISTIC = "deterministic"
    STOCHASTIC = "stochastic"
    UNKNOWN = "unknown"


# What every record, table, sheet and page says of a stochastic run or scheduler entry, in these words: it converges
# to another sample, not to the ODE's solution, so it has no distance to the reference and is not ranked.
STOCHASTIC_NOT_RANKED = "stochastic: not ranked"


class TargetStatus(enum.StrEnum):
    """How an entry's equal-quality search (--target-psnr / --target-rmse) ended."""

    REACHED = "reached"
    NOT_REACHED = "not reached"  # not within --max-steps
    NOT_RANKED = "not ranked"  # stochastic, or its determinism unknown: no distance to search on
    NOT_MEASURED = "not measured"  # it starts outside the reference's range
    UNSUPPORTED = "unsupported"  # its scheduler cannot take the --schedule searched with ("DDIM: no karras schedule")


class Verdict(enum.StrEnum):
    """`schedcmp check`'s verdict on one case."""

    MATCH = "match"
    WITHIN = "within-tolerance"
    DRIFT = "drift"
    MISSING = "missing-baseline"
    ERROR = "error"
    NONDETERMINISTIC = "nondeterministic"


# One colour per status and verdict, for the sheet, the HTML reports and the console alike.
STATUS_COLOURS: dict[str, str] = {
    Status.OK: "#1a7f37",
    Status.FAILED: "#cf222e",
    Status.SUSPECT: "#bc4c00",
    Status.FILTERED: "#57606a",
    Status.UNSUPPORTED: "#6e7781",
    Verdict.MATCH: "#1a7f37",
    Verdict.WITHIN: "#4d7c0f",
    Verdict.DRIFT: "#cf222e",
    Verdict.MISSING: "#cf222e",
    Verdict.ERROR: "#8250df",
    Verdict.NONDETERMINISTIC: "#bc4c00",
}
UNKNOWN_COLOUR = "#57606a"


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, UNKNOWN_COLOUR)


def status_rgb(status: str) -> tuple[int, int, int]:
    """The status colour as Pillow wants it."""
    colour = status_colour(status).lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


FLAX_PACKAGES = ("jax", "jaxlib", "flax")


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found = {}
    for package in ("schedcmp", "diffusers", "torch", "transformers", *FLAX_PACKAGES):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if package not in FLAX_PACKAGES:  # the Flax backend's own: named only where they are installed
                found[package] = None
    return found


def json_name(name: str) -> dict[str, str]:
    """Field metadata: the key this field has in the JSON document, where it differs from the attribute."""
    return {"json": name}


INTERNAL = {"internal": True}  # field metadata: in memory only, never written


# -- results.json --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunError:
    type: str
    message: str


@dataclass(frozen=True)
class TimestepRange:
    """The smallest and largest timestep the denoiser was given."""

    min: float
    max: float


@dataclass(frozen=True)
class Distance:
    """A run's distance to its reference: final-latent RMSE (the ranking metric), image PSNR and SSIM."""

    latent_rmse: float
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Order:
    """The fitted order of convergence of a steps sweep (None with the reason where there is no fit)."""

    order: float | None = None
    steps: list[int] | None = None
    nfe: list[int] | None = None
    r_squared: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Pareto:
    """On the front of distance against seconds, and against NFE, among its reference's runs."""

    seconds: bool = False
    nfe: bool = False


@dataclass(frozen=True)
class Shard:
    """One of `count` independent parts of a sweep (`--shard INDEX/COUNT`)."""

    index: int
    count: int


@dataclass(frozen=True)
class CrossFramework:
    """A Flax run against the same scheduler in PyTorch (`--backend torch,flax`): both from the same initial latents,
    weights, prompt and guidance. Distances are between the float images in [0, 1] (PSNR None: identical); each
    framework's repeat is the distance between two identical calls of its own. Where diffusers' Flax side is known
    to compute something other than PyTorch's default, PyTorch runs again set to do the same (`alignment` says what
    and why), and `aligned_*` compare against that: `agrees` judges the defaults, `within` the same computation."""

    torch_run: str  # the id of the PyTorch run
    max_abs: float
    psnr: float | None
    torch_repeat_max_abs: float
    flax_repeat_max_abs: float  # between two calls, and between the devices (all given the same latents)
    tolerance_max_abs: float
    tolerance_psnr: float
    agrees: bool
    within: bool
    alignment: str | None = None
    aligned_max_abs: float | None = None
    aligned_psnr: float | None = None


@dataclass(frozen=True)
class Run:
    """One cell of a comparison: its settings, what it cost and made, and how close it came to the reference."""

    id: str
    scheduler: str
    prompt: str
    seed: int
    steps: int
    status: Status
    alias: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    compatible: bool = True
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # --schedule: the σ schedule the scheduler was given; None: its own (default)
    # Written before 2026-12 only: the spacing a --reference run was moved onto. Runs now keep their schedule.
    interval: str | None = None
    reason: str | None = None
    error: RunError | None = None
    nfe: int | None = None
    seconds: float | None = None
    seconds_all: list[float] = field(default_factory=list)
    denoiser_seconds: float | None = None
    ms_per_nfe: float | None = None
    peak_memory_bytes: int | None = None
    timesteps: TimestepRange | None = None
    image_path: str | None = field(default=None, metadata=json_name("image"))  # relative to the run folder
    sha256: str | None = None  # of the decoded RGB pixels
    batch: str | None = None
    batch_size: int = 1
    batch_seconds: float | None = None
    determinism: Determinism | None = None
    reference: str | None = None
    distance: Distance | None = None
    distance_note: str | None = None  # why it has no distance
    schedule_note: str | None = None  # what of its distance its own schedule explains: a late start, an early end
    sigmas: list[float] | None = None  # the noise level at each model call, then the last (0): what the schedule is
    order: Order | None = None
    pareto: Pareto | None = None
    # Where it ran: the process of a sweep spread over several (torchrun rank, or 0; and the --shard part it was
    # made in, so that a merged folder still says), the machine, the device and the CPU threads torch used there.
    rank: int | None = None
    shard: Shard | None = None
    host: str | None = None
    device_name: str | None = None
    threads: int | None = None
    # Which framework made it (--backend flax or torch,flax; None: the PyTorch engine, as every run before them);
    # a Flax run's first call (tracing, XLA compilation and one run), recorded on the first cell of each
    # scheduler × steps, which the others reuse; what explains it beyond the scheduler's maths (a fix schedcmp
    # applied, updates the Flax pipeline never runs); with torch,flax, its distance to the other framework's run.
    backend: Backend | None = None
    compile_seconds: float | None = None
    backend_note: str | None = None
    cross: CrossFramework | None = None
    folder: Path | None = field(default=None, metadata=INTERNAL, compare=False, repr=False)
    keep: Any = field(default=None, metadata=INTERNAL, compare=False, repr=False)  # keeps a temporary folder alive

    @functools.cached_property
    def image(self):
        """The run's image as a PIL.Image, read from its folder; None where it made none."""
        if self.image_path is None or self.folder is None:
            return None
        from PIL import Image

        with Image.open(self.folder / self.image_path) as image:
            image.load()
            return image.copy()

    @property
    def label(self) -> str:
        from schedcmp.core.names import display_label

        return display_label(self.scheduler, self.alias, self.overrides)


@dataclass(frozen=True)
class SharedSeconds:
    """Costs paid once per comparison, not by any one scheduler."""

    model_load: float | None = None
    prompt_encoding: float | None = None
    warmup: float | None = None


@dataclass(frozen=True)
class SelfConvergence:
    """How far halving the reference's steps moves it."""

    half_steps: int
    latent_rmse: float
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Reference:
    """A converged run the others are measured against."""

    id: str
    spec: str
    scheduler: str
    steps: int
    status: Status
    label: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    interval: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    nfe: int | None = None
    seconds: float | None = None
    cached: bool = False
    image: str | None = None
    self_convergence: SelfConvergence | None = None
    warning: str | None = None  # it has not converged enough to rank its runs


@dataclass(frozen=True)
class Interval:
    """Where the runs measured against a reference start, and which were moved there."""

    spacing: str | None = None
    forced: bool = False
    moved: list[str] = field(default_factory=list)
    start_timestep: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class Spread:
    """A distribution over a comparison's (prompt, seed) pairs: its median and quartiles."""

    median: float | None = None
    q1: float | None = None
    q3: float | None = None


@dataclass(frozen=True)
class EntrySummary:
    """One scheduler entry at one step count, over the pairs where it was measured."""

    label: str
    scheduler: str
    pairs: int
    distance: Spread
    seconds: Spread
    overrides: dict[str, Any] = field(default_factory=dict)
    nfe: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # reference id (one pair) -> its distance
    rank: int | None = None  # 1 + the entries significantly better (sign test); None: too few pairs


@dataclass(frozen=True)
class StepSummary:
    steps: int
    entries: list[EntrySummary] = field(default_factory=list)
    wins: dict[str, dict[str, int]] = field(default_factory=dict)  # A -> B -> pairs where A came strictly closer


@dataclass(frozen=True)
class Summary:
    """The comparison across prompts and seeds (schedcmp.quality.summary says how it is computed)."""

    metric: str
    pairs: int
    ranked: bool
    note: str | None = None
    step_counts: list[StepSummary] = field(default_factory=list)


@dataclass(frozen=True)
class TargetSpec:
    """--target-psnr / --target-rmse: the distance every entry's step count is searched for."""

    metric: str  # psnr or latent_rmse
    value: float
    max_steps: int


@dataclass(frozen=True)
class Probe:
    steps: int
    distance: float | None  # the median over the pairs; None where a run had none


@dataclass(frozen=True)
class EqualQuality:
    """One scheduler entry's step count at the target, found by doubling and bisection, or why there is none."""

    label: str
    scheduler: str
    status: TargetStatus
    overrides: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None
    steps: int | None = None
    nfe: float | None = None
    seconds: Spread | None = None  # measured at `steps`, over the pairs
    # [fastest, slowest] of every timing of this cost: the runs at `steps` (each repeat) and those one step either
    # side, scaled to its NFE; a speed claim must clear it. None from one timing, which cannot be told from noise.
    seconds_range: list[float] | None = None
    distance: Spread | None = None  # at `steps`, over the pairs
    runs: list[str] = field(default_factory=list)  # the run ids at `steps`
    below_steps: int | None = None  # steps - 1, also run: it does not meet the target
    below_distance: float | None = None
    below_runs: list[str] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    non_monotone: bool = False  # two probes out of order: the answer is the first crossing found
    reason: str | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What makes parts of one sweep mergeable: a fingerprint of the plan (settings, model, reference, every cell
    and how the cells are batched), and every cell it holds, in plan order."""

    fingerprint: str
    cells: list[str]
    images: bool = True  # False: --no-sheet, no image files


@dataclass(frozen=True)
class Worker:
    """One process of a sweep: where it ran, how many cells it made and how long it was busy making them."""

    rank: int
    cells: int
    busy_seconds: float
    host: str | None = None
    device: str | None = None
    device_name: str | None = None
    threads: int | None = None
    shard: Shard | None = None


@dataclass
class Results:
    """results.json of `schedcmp run`: the comparison's header, then one entry per finished cell."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "run"
    model: str | None = None
    pipeline: str | None = None
    device: str | None = None
    dtype: str | None = None
    original_scheduler: str | None = None
    generator_device: str | None = None
    repeat: int = 1
    seed_mode: str = "same"
    versions: dict[str, str | None] = field(default_factory=dict)
    shared_seconds: SharedSeconds = field(default_factory=SharedSeconds)
    started: str | None = None
    finished: str | None = None
    interrupted: bool = False
    sheets: list[str] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    interval: Interval | None = None
    charts: list[str] = field(default_factory=list)
    report: str | None = None
    # What --resume needs to continue exactly this comparison: the cell settings it was asked for
    # (schedcmp.core.request.stored), where the model came from, and what the model is (configs and weights).
    settings: dict[str, Any] | None = None
    model_source: str | None = None
    model_config: str | None = None
    model_identity: dict[str, Any] | None = None
    weights_fingerprint: str | None = None
    reference_spec: str | None = None
    target: TargetSpec | None = None
    equal_quality: list[EqualQuality] | None = None  # with a target: each entry's steps there
    summary: Summary | None = None  # with a reference: across the prompts and seeds
    answer: list[str] | None = None  # with a reference: the comparison's conclusion in words
    # A sweep spread over processes (schedcmp.sweep.placement): its plan, this part's shard, and every process's
    # share of the work; imbalance is the busiest process's seconds over the mean.
    plan: SweepPlan | None = None
    shard: Shard | None = None
    world_size: int | None = None
    workers: list[Worker] | None = None
    imbalance: float | None = None
    exit_code: int | None = None  # what `schedcmp run` (or merge) exited with; under torchrun, rank 0's own code
    # --backend flax: the JAX devices each call spreads over, one image per device (the guide's pmap)
    devices: int | None = None
    runs: list[Run] = field(default_factory=list)

    def files(self) -> list[str]:
        """Every file this document names, relative to its folder: images, sheets, references, charts, page."""
        named = [run.image_path for run in self.runs] + self.sheets + self.charts + [self.report]
        named += [reference.image for reference in self.references] + ["results.json"]
        return [name for name in dict.fromkeys(named) if name]


# -- baseline manifests and check results -----------------------------------------------------------------


@dataclass(frozen=True)
class BaselineModel:
    source: str | None
    name: str
    identity: dict[str, Any]  # the pipeline class and each component's class and config (schedcmp.model.pipeline)


@dataclass(frozen=True)
class Case:
    """One stored image of a baseline, with everything needed to regenerate it exactly."""

    id: str
    scheduler: str
    prompt: str
    seed: int
    steps: int
    image: str
    array: str
    pixel_sha256: str
    array_sha256: str
    alias: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    compatible: bool = True
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    batch: str | None = None  # cells made by one pipeline call are regenerated together, in this order
    batch_size: int = 1
    status: Status = Status.OK
    shape: list[int] = field(default_factory=list)
    dtype: str | None = None
    determinism: Determinism | None = None  # None in manifests written before it was stored: probed at check


@dataclass
class Manifest:
    """manifest.json of a baseline's device-class folder."""

    model: BaselineModel
    environment: dict[str, Any]
    cases: list[Case]
    kind: str = "baseline"
    schema_version: int = SCHEMA_VERSION
    created: str | None = None
    updated: str | None = None


@dataclass(frozen=True)
class ToleranceRecord:
    max_abs: float
    cosine: float


@dataclass(frozen=True)
class CheckCase:
    """One case's verdict, and where its images are (--results)."""

    id: str
    scheduler: str
    status: Verdict
    alias: str | None = None
    updated: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    tolerance: ToleranceRecord | None = None
    error: str | None = None
    seconds: float | None = None
    result_image: str | None = None
    baseline_image: str | None = None
    diff_image: str | None = None


@dataclass
class CheckResults:
    """results.json of `schedcmp check --results`, and what `--format json` prints."""

    baseline: str
    tolerance_profile: str
    model: str
    exit_code: int
    schema_version: int = SCHEMA_VERSION
    kind: str = "check"
    baseline_device_class: str | None = None
    device_class: str | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    finished: str | None = None
    cases: list[CheckCase] = field(default_factory=list)


DOCUMENTS: dict[str, type] = {"run": Results, "baseline": Manifest, "check": CheckResults}
SCHEMA_FILES = {"run": "results.schema.json", "baseline": "manifest.schema.json", "check": "check.schema.json"}


# -- to JSON, from JSON, JSON Schema: one walk over the declarations above -----------------------------------


class DocumentError(ValueError):
    """A document that does not fit its declaration; the message names the field."""


def written_fields(cls: type) -> list[tuple[dataclasses.Field, str]]:
    """(field, its JSON key) for every field a record writes."""
    return [(f, f.metadata.get("json", f.name)) for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def to_json(value: Any) -> Any:
    """A record (or anything holding records) as plain JSON values, in declaration order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key: to_json(getattr(value, f.name)) for f, key in written_fields(type(value))}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def union_members(tp: Any) -> tuple | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def from_json(tp: Any, value: Any, where: str = "document") -> Any:
    """`value` checked against the type `tp` and turned into records; missing fields take their defaults."""
    members = union_members(tp)
    if members is not None:
        if value is None and type(None) in members:
            return None
        candidates = [member for member in members if member is not type(None)]
        errors = []
        for member in candidates:
            try:
                return from_json(member, value, where)
            except DocumentError as error:
                errors.append(str(error))
        raise DocumentError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of its types")
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise DocumentError(f"{where}: expected a list, got {type(value).__name__}")
        return [from_json(item, element, f"{where}[{index}]") for index, element in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise DocumentError(f"{where}: expected an object, got {type(value).__name__}")
        return {key: from_json(item, element, f"{where}.{key}") for key, element in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise DocumentError(f"{where}: a {tp.__name__.lower()} is not an object (got {type(value).__name__})")
        found = {}
        for f, key in written_fields(tp):
            if key in value:
                found[f.name] = from_json(hints(tp)[f.name], value[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DocumentError(f"{where}: lacks {key}")
        return tp(**found)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(member.value for member in tp)
            raise DocumentError(f"{where}: {value!r} is not one of {choices}") from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise DocumentError(f"{where}: expected a number, got {value!r}")
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise DocumentError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise DocumentError(f"{where}: expected null, got {value!r}")
    raise TypeError(f"records: no rule for the type {tp!r}")  # a declaration this walker does not know


def load_document(document: Any, kind: str) -> Any:
    """A parsed JSON document of `kind` ("run", "baseline", "check") as its record; DocumentError when it is not one."""
    if not isinstance(document, dict):
        raise DocumentError("not a JSON object")
    if document.get("kind") != kind:
        raise DocumentError(f"kind is {document.get('kind')!r}, not {kind!r}")
    version = document.get("schema_version", 1)  # the earliest files may lack it
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise DocumentError(f"schema_version {version!r}; this schedcmp reads 1 to {SCHEMA_VERSION}")
    return from_json(DOCUMENTS[kind], document)


def read_document(path: Path, kind: str) -> Any:
    """A file of `kind` as its record; DocumentError (also for an unreadable file or bad JSON) when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DocumentError(f"cannot read it: {getattr(error, 'strerror', None) or error}") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise DocumentError(f"not valid JSON: {error}") from None
    return load_document(parsed, kind)


def dumps(record: Any) -> str:
    return json.dumps(to_json(record), indent=2, ensure_ascii=False) + "\n"


def type_schema(tp: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    members = union_members(tp)
    if members is not None:
        return {"anyOf": [type_schema(member, definitions) for member in members]}
    if tp is Any:
        return {}
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return {"type": "array", "items": type_schema(item, definitions)}
    if origin is dict:
        _, item = typing.get_args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": type_schema(item, definitions)}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder first: records may nest
            definitions[name] = record_schema(tp, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"records: no schema for the type {tp!r}")


def record_schema(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    properties, required = {}, []
    for f, key in written_fields(cls):
        properties[key] = type_schema(hints(cls)[f.name], definitions)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(key)
    # Added fields keep the schema_version, so a reader must accept fields it does not know.
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": True}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def json_schema(kind: str) -> dict[str, Any]:
    """The published JSON Schema of a document kind."""
    definitions: dict[str, Any] = {}
    top = record_schema(DOCUMENTS[kind], definitions)
    top["properties"]["kind"] = {"const": kind}
    top["properties"]["schema_version"] = {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://schedcmp.invalid/schema/{SCHEMA_FILES[kind]}",
        "title": f"schedcmp {kind} document",
        **top,
        "$defs": definitions,
    }


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(exist_ok=True)
    written = []
    for kind, name in SCHEMA_FILES.items():
        path = folder / name
        path.write_text(json.dumps(json_schema(kind), indent=2) + "\n")
        written.append(path)
    return written
