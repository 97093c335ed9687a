"""Input checked up front: values that were accepted without a word, or refused with the wrong words."""

from __future__ import annotations

import pytest


def refused(result, words: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("schedcmp: error:")]
    assert result.exit_code == 2 and len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--repeat", "0"], "--repeat must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--width", "0"], "--width must be a positive number of pixels, got 0"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--steps", "-5"], "--steps must be at least 1, got -5"),
        (["--guidance-scale", "-3"], "--guidance-scale must not be negative, got -3.0"),
        (["--seed", "99999999999999999999999"], "outside the generator's range"),
        (
            ["-s", "euler(use_karras_sigmas=maybe)"],
            "use_karras_sigmas='maybe' for EulerDiscrete: it takes true or false",
        ),
        (["-s", "dpm++ 2m(solver_order=2.5)"], "solver_order=2.5 for DPMSolverMultistep: it takes a whole number"),
        (["-s", "ddim(timestep_spacing=3)"], "it takes one of leading, trailing, linspace"),
    ],
)
def test_bad_values_are_refused_before_the_model_loads(cli, tmp_path, flags, words):
    result = cli("run", "a horse", "--model", tmp_path / "no-model-needed", *flags)
    refused(result, words)
    assert "loading" not in result.stderr  # refused before any model is looked at


def test_a_negative_seed_is_a_seed(cli, sd15_model, tmp_path):
    result = cli(
        "run",
        "a horse",
        "--model",
        sd15_model,
        "--seed",
        "-1",
        "--steps",
        "2",
        "-s",
        "ddim",
        "--out",
        tmp_path / "o",
        "--format",
        "json",
    )
    assert result.exit_code == 0 and result.json()["runs"][0]["seed"] == -1


def test_a_presets_switches_can_be_turned_off_on_the_command_line(cli, sd15_model, tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text(
        f'prompt = "a horse"\nmodel = "{sd15_model}"\nschedulers = "EDMEuler"\nsteps = 2\nstrict = true\n'
    )
    assert cli("run", "--config", preset, "--out", tmp_path / "a").exit_code == 1  # suspect fails under strict
    assert cli("run", "--config", preset, "--out", tmp_path / "b", "--no-strict").exit_code == 0
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    preset.write_text(preset.read_text() + "overwrite = true\n")
    refused(cli("run", "--config", preset, "--out", tmp_path / "c", "--no-strict", "--no-overwrite"), "not empty")


def test_version_and_short_help(cli):
    version = cli("--version")
    assert version.exit_code == 0 and version.stdout.strip().startswith("schedcmp ")
    assert cli("-h").exit_code == 0 and cli("run", "-h").exit_code == 0


def test_a_gpu_index_is_a_device(cli, tmp_path):
    refused(cli("run", "a horse", "--device", "cuda:1"), "--device cuda:1 asked for, but torch sees")
    refused(cli("run", "a horse", "--device", "mps:1"), "unknown --device 'mps:1'")


def test_an_empty_prompt_is_unconditional_generation(cli, sd15_model, tmp_path):
    result = cli(
        "run", "", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "o", "--format", "json"
    )
    assert result.exit_code == 0 and result.json()["runs"][0]["prompt"] == ""


def test_call_args_the_pipeline_does_not_take_are_refused(cli, sd15_model, tmp_path):
    base = ["run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2"]
    refused(cli(*base, "--call-arg", "foo=bar", "--out", tmp_path / "a"), "--call-arg foo: StableDiffusionPipeline")
    assert not (tmp_path / "a").exists()
    sent = cli(*base, "--call-arg", "foo=bar", "--allow-unknown-call-args", "--out", tmp_path / "b", "--format", "json")
    assert sent.exit_code == 0 and sent.json()["runs"][0]["call_args"] == {"foo": "bar"}


def test_long_messages_are_cut_between_words():
    from schedcmp.model.pipeline import clip

    text = "the model was not found in the local cache and nothing could be fetched " * 5
    cut = clip(text, 60)
    assert len(cut) <= 62 and cut.endswith(" …") and text.startswith(cut[:-2])
    assert cut[:-2].split()[-1] in text.split()  # the last word is whole


def test_a_size_far_from_native_and_a_cut_prompt_are_warned_about(cli, sd15_model, tmp_path):
    long_prompt = "a horse " * 20  # the tiny tokenizer spells letters: 160 characters, 77 tokens at most
    result = cli(
        "run",
        long_prompt,
        "--model",
        sd15_model,
        "-s",
        "ddim",
        "--steps",
        "2",
        "--width",
        "128",
        "--height",
        "128",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("128x128 is 16 times the area of this model's native 32x32" in line for line in warnings), warnings
    assert any("tokenizer (CLIPTokenizer) takes 77 tokens; a prompt has" in line for line in warnings), warnings
    quiet = cli("run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "q")
    assert "warning:" not in quiet.stderr
