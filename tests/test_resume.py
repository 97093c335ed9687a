"""`run --resume DIR` continues exactly the comparison DIR holds, or refuses before anything is written."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture
def made(sd15_model, cli, tmp_path):
    out = tmp_path / "o"
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "-s",
        "ddim,euler",
        "--steps",
        "2",
        "--seed",
        "1-2",
        "--out",
        out,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    return out


def test_resume_alone_is_the_whole_command(made, cli):
    (made / "images" / "ddim-s2-seed2.png").unlink()
    before = json.loads((made / "results.json").read_text())
    again = cli("run", "--resume", made, "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert "resuming: 3 of 4 cells already done and verified" in again.stderr
    document = again.json()
    # The missing one is made again in its batch as planned (with seed 1, which is kept): the same pixels.
    assert [r["sha256"] for r in document["runs"]] == [r["sha256"] for r in before["runs"]]
    assert [r["batch"] for r in document["runs"]] == [r["batch"] for r in before["runs"]]
    assert [r["status"] for r in document["runs"]] == ["ok"] * 4
    assert (made / "images" / "ddim-s2-seed2.png").is_file() and document["settings"] == before["settings"]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["a cat"], "prompts ('a horse',) there, ('a cat',) here"),
        (["-s", "ddim"], "schedulers 'ddim,euler' there, 'ddim' here"),
        (["--steps", "3"], "steps (2,) there, (3,) here"),
    ],
)
def test_resume_with_other_settings_is_refused_and_nothing_is_touched(made, cli, flags, words):
    before = {p: p.read_bytes() for p in made.rglob("*") if p.is_file()}
    refused = cli("run", *flags, "--resume", made)
    assert refused.exit_code == 2 and words in refused.stderr and "Traceback" not in refused.stderr
    assert {p: p.read_bytes() for p in made.rglob("*") if p.is_file()} == before


def test_resume_with_another_model_is_refused(made, cli, sd15_model, sdxl_model, tmp_path):
    """The trial: `--resume DIR --model OTHER` said every cell was done and renamed the model in results.json."""
    from safetensors.torch import load_file, save_file

    other = shutil.copytree(sd15_model, tmp_path / "other-weights")
    weights = next((other / "unet").glob("*.safetensors"))
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = tensors[first] * 1.02  # a 2% change of one tensor: the same configs, other weights
    save_file(tensors, weights)
    before = (made / "results.json").read_bytes()
    refused = cli("run", "--resume", made, "--model", other)
    assert refused.exit_code == 2 and "other weights" in refused.stderr
    architecture = cli("run", "--resume", made, "--model", sdxl_model)
    assert architecture.exit_code == 2 and "another model" in architecture.stderr
    assert "pipeline StableDiffusionXLPipeline != the folder's StableDiffusionPipeline" in architecture.stderr
    assert (made / "results.json").read_bytes() == before
    same = shutil.copytree(sd15_model, tmp_path / "same-copy")
    assert cli("run", "--resume", made, "--model", same).exit_code == 0  # a copy of the same model is fine
