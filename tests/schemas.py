"""Every document the tests produce is checked against the published JSON Schema (schedcmp/schema/*.json)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent.parent / "schedcmp" / "schema"
FILES = {"run": "results.schema.json", "baseline": "manifest.schema.json", "check": "check.schema.json"}


@functools.cache
def validator(kind: str):
    import jsonschema

    schema = json.loads((SCHEMA_DIR / FILES[kind]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(document: dict) -> None:
    """Raise jsonschema.ValidationError unless `document` fits the schema of its kind."""
    validator(document["kind"]).validate(document)


def validate_tree(folder: Path) -> int:
    """Validate every results.json and manifest.json below `folder` that is a schedcmp document. -> how many."""
    count = 0
    for path in list(folder.rglob("results.json")) + list(folder.rglob("manifest.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # tests write broken files on purpose
        if isinstance(document, dict) and document.get("kind") in FILES and document.get("schema_version"):
            if isinstance(document.get("runs", []), list) and all(
                isinstance(r, dict) for r in document.get("runs", [])
            ):
                validate(document)
                count += 1
    return count
