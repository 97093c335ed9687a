"""Every document the tests produce is checked against the published JSON Schema (schedcmp/schema/*.json), made
strict: the published schema lets a reader meet fields it does not know (a newer schedcmp may add them), but a
document a test writes or schedcmp makes must hold only declared fields, so that a misspelt key fails."""

from __future__ import annotations

import functools
import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent.parent / "schedcmp" / "schema"
FILES = {"run": "results.schema.json", "baseline": "manifest.schema.json", "check": "check.schema.json"}


def strict(schema):
    """`schema` with every record's unknown fields refused (maps of free keys, such as `settings`, stay free)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    made = {key: strict(value) for key, value in schema.items()}
    if "properties" in made and made.get("additionalProperties") is True:
        made["additionalProperties"] = False
    return made


@functools.cache
def validator(kind: str, published: bool = False):
    """The published schema of `kind`, strict unless `published`."""
    import jsonschema

    schema = json.loads((SCHEMA_DIR / FILES[kind]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema if published else strict(schema))


def validate(document: dict, published: bool = False) -> None:
    """Raise jsonschema.ValidationError unless `document` fits the schema of its kind (strict: no unknown fields;
    `published`: as a reader takes it, unknown fields allowed)."""
    validator(document["kind"], published).validate(document)


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
