"""Shared fixtures: isolated paths, tiny models built once per session, and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Before anything imports huggingface_hub: no network, and a cache nobody else uses.
HF_HOME = Path(tempfile.mkdtemp(prefix="schedcmp-test-hf-"))
os.environ["HF_HOME"] = str(HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).parent))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def check_documents(result: CliResult, folder: Path) -> None:
    """Every document a command printed or wrote fits the published JSON Schema."""
    import schemas

    schemas.validate_tree(folder)
    try:
        document = result.json()
    except ValueError:  # not one JSON document: a table, a path, NDJSON events
        return
    if isinstance(document, dict) and document.get("kind") in schemas.FILES:
        schemas.validate(document)


@pytest.fixture(autouse=True, scope="session")
def steady_threads():
    """`--threads auto` measures how busy the machine is, which other jobs change from one test to the next: in
    this process it sees nothing (torch's threads stay as they are), so that two runs in a test, or in a module's
    fixture and a test, make the same pixels. Tests of `auto` give it a machine of their own, or take the real
    measurement this fixture yields; subprocesses see the real machine."""
    import torch

    from schedcmp.model import threads

    def quiet() -> threads.Machine:
        return threads.Machine(cores=os.cpu_count() or 1, default=torch.get_num_threads(), load=None, own=0.0)

    real = threads.this_machine
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads, "this_machine", quiet)
        yield real


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `schedcmp ARGS` in this process, from a fresh working folder; returns exit code and streams."""
    from schedcmp.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        captured = capsys.readouterr()
        result = CliResult(code, captured.out, captured.err)
        check_documents(result, tmp_path)
        return result

    return run


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def sd15_model(models_dir) -> Path:
    import tiny

    return tiny.sd15(models_dir / "sd15")


@pytest.fixture(scope="session")
def sdxl_model(models_dir) -> Path:
    import tiny

    return tiny.sdxl(models_dir / "sdxl")


@pytest.fixture(scope="session")
def sd3_model(models_dir) -> Path:
    import tiny

    return tiny.sd3(models_dir / "sd3")


@pytest.fixture(scope="session")
def sd3_t5_model(models_dir) -> Path:
    """SD3 with its third text encoder, a random T5 (FLUX.1 and SD3 as people run them have one)."""
    import tiny

    return tiny.sd3_t5(models_dir / "sd3-t5")


@pytest.fixture(scope="session")
def flux_model(models_dir) -> Path:
    import tiny

    return tiny.flux(models_dir / "flux")
