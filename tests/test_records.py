"""The records declared once in schedcmp.core.records: the published JSON Schema, and every version ever written."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import schemas

from schedcmp.core import records

V1 = Path(__file__).parent / "data" / "v1"  # written by schedcmp before the records were declared


def test_the_published_schemas_are_the_declarations(tmp_path):
    written = records.write_schemas(tmp_path)
    for path in written:
        assert path.read_text() == (records.SCHEMA_DIR / path.name).read_text(), (
            f"{path.name} is stale: run python -c 'from schedcmp.core.records import write_schemas; write_schemas()'"
        )


@pytest.mark.parametrize(
    "name, kind", [("results.json", "run"), ("check.json", "check"), ("baseline/cpu/manifest.json", "baseline")]
)
def test_version_1_documents_load_and_fit_the_schema(name, kind):
    document = json.loads((V1 / name).read_text())
    schemas.validate(document)
    record = records.load_document(document, kind)
    again = records.to_json(record)
    schemas.validate(again)
    if kind == "baseline":  # a field added since: filled with its default, the probe runs at check time
        assert all(case["determinism"] is None for case in again["cases"])
    else:
        assert only_known(again, document) == document  # nothing lost, nothing re-meant


def only_known(value, original):
    """`value` without the keys `original` lacks that hold None: declared optional fields, at their default."""
    if isinstance(value, dict) and isinstance(original, dict):
        return {
            key: only_known(item, original.get(key))
            for key, item in value.items()
            if key in original or item is not None
        }
    if isinstance(value, list) and isinstance(original, list) and len(value) == len(original):
        return [only_known(item, before) for item, before in zip(value, original)]
    return value


def test_unknown_fields_are_read_but_refused_in_what_tests_make():
    """A newer schedcmp may add fields: readers take them; the tests' strict schema refuses a misspelt one."""
    import jsonschema

    document = json.loads((V1 / "results.json").read_text())
    document["shared_seconds"] = {"load": 1.5}  # `model_load` misspelt
    schemas.validate(document, published=True)
    assert records.load_document(document, "run").shared_seconds.model_load is None
    with pytest.raises(jsonschema.ValidationError, match="'load' was unexpected"):
        schemas.validate(document)


def test_runs_round_trip_with_their_nested_records():
    document = json.loads((V1 / "results.json").read_text())
    results = records.load_document(document, "run")
    measured = [run for run in results.runs if run.distance is not None]
    assert measured and isinstance(measured[0].distance, records.Distance)
    assert isinstance(results.runs[0].status, records.Status) and results.runs[0].status == "ok"
    assert isinstance(results.references[0], records.Reference) and results.references[0].self_convergence


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.update(kind="check"), "kind is 'check'"),
        (lambda d: d.update(schema_version=2), "schema_version 2"),
        (lambda d: d["runs"][0].update(status="great"), "runs[0].status: 'great' is not one of ok, failed"),
        (lambda d: d["runs"][0].update(seed="8"), "runs[0].seed: expected int"),
        (lambda d: d["runs"][0].pop("id"), "runs[0]: lacks id"),
        (lambda d: d["runs"][0].update(distance=[1]), "runs[0].distance"),
    ],
)
def test_the_loader_names_what_is_wrong(change, words):
    document = json.loads((V1 / "results.json").read_text())
    change(document)
    with pytest.raises(records.DocumentError) as raised:
        records.load_document(document, "run")
    assert words in str(raised.value)


def test_one_vocabulary_and_one_colour_map():
    from schedcmp.model import sample
    from schedcmp.output import html_report, render
    from schedcmp.quality import metrics

    assert sample.FAILED is records.Status.FAILED and metrics.DRIFT is records.Verdict.DRIFT
    for status in list(records.Status) + list(records.Verdict):
        assert records.status_colour(status).startswith("#")
    assert render.label_colour("failed") == records.status_rgb("failed")
    entry = records.read_document(V1 / "results.json", "run")
    entry.runs[0] = replace(entry.runs[0], status=records.Status.FAILED, reason="boom")
    assert records.status_colour("failed") in html_report.page(entry, V1)


def test_a_version_1_baseline_is_still_checked(cli, sd15_model, tmp_path):
    """A committed baseline made before the probe's result was stored: the probe runs at check time instead of
    the class-name rule, and Euler a (stochastic) gets the doubled tolerance."""
    baseline = Path(shutil.copytree(V1 / "baseline", tmp_path / "baseline"))
    result = cli("check", baseline, "--model", sd15_model, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = result.json()
    schemas.validate(document)
    verdicts = {case["id"]: case["status"] for case in document["cases"]}
    # Made on one machine: another CPU may round its kernels otherwise, so within-tolerance passes too.
    assert set(verdicts) == {"ddim-s2-seed0", "eulerancestraldiscrete-s2-seed0"}
    assert set(verdicts.values()) <= PASSING, verdicts
    tolerances = {case["id"]: case["tolerance"]["max_abs"] for case in document["cases"]}
    assert tolerances["eulerancestraldiscrete-s2-seed0"] == pytest.approx(2 * tolerances["ddim-s2-seed0"])


PASSING = {"match", "within-tolerance"}  # the verdicts a machine other than the data's maker may give


def perturbed_baseline(folder: Path, by: float) -> Path:
    """The committed v1 baseline as another machine would have made it: every stored float output moved by `by`
    on a few pixels, the image and hashes left as they were."""
    from schedcmp.ci import baseline

    made = Path(shutil.copytree(V1 / "baseline", folder))
    manifest = json.loads((made / "cpu" / "manifest.json").read_text())
    for case in manifest["cases"]:
        array = baseline.load_array(made / "cpu" / case["array"]).astype("float32")
        array[:2, :2] = (array[:2, :2] + by).clip(0, 1)
        baseline.save_array(made / "cpu" / case["array"], array.astype(baseline.ARRAY_DTYPE))
    return made


@pytest.mark.parametrize("by, verdicts, code", [(0.002, {"within-tolerance"}, 0), (0.2, {"drift"}, 1)])
def test_a_baseline_from_another_machine(cli, sd15_model, tmp_path, by, verdicts, code):
    """Playing the other machine: outputs moved within the same-device tolerance (1/255) pass as
    within-tolerance; moved far beyond it, they drift. This machine's own kernels cannot make it pass or fail."""
    made = perturbed_baseline(tmp_path / "baseline", by)
    result = cli("check", made, "--model", sd15_model, "--format", "json")
    assert result.exit_code == code, result.stderr
    assert {case["status"] for case in result.json()["cases"]} == verdicts


def test_check_takes_stochastic_from_the_probe_not_the_class_name(cli, sd15_model, tmp_path):
    """DDIM with eta > 0 injects noise: the probe says so, the manifest stores it, check doubles its tolerance."""
    made = cli(
        "baseline",
        "create",
        tmp_path / "b",
        "a horse",
        "--model",
        sd15_model,
        "--steps",
        "2",
        "-s",
        "ddim,euler",
        "--call-arg",
        "eta=0.5",
    )
    assert made.exit_code == 0, made.stderr
    manifest = json.loads((tmp_path / "b" / "cpu" / "manifest.json").read_text())
    assert {c["scheduler"]: c["determinism"] for c in manifest["cases"]} == {
        "DDIMScheduler": "stochastic",
        "EulerDiscreteScheduler": "deterministic",
    }
    checked = cli("check", tmp_path / "b", "--format", "json")
    tolerances = {case["scheduler"]: case["tolerance"]["max_abs"] for case in checked.json()["cases"]}
    assert tolerances["DDIMScheduler"] == pytest.approx(2 * tolerances["EulerDiscreteScheduler"])
