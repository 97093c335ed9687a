"""What schedcmp leaves on disk: ordinary file modes, unique default folders, nothing for refused commands."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest


def test_files_get_the_umasks_mode(cli, sd15_model, tmp_path):
    old = os.umask(0o022)
    try:
        assert (
            cli(
                "run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "o"
            ).exit_code
            == 0
        )
    finally:
        os.umask(old)
    for name in ("results.json", "contact_sheet.png", "images/ddim-s2-seed0.png"):
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o644, name


def test_runs_started_in_the_same_second_get_their_own_folders(sd15_model, tmp_path):
    command = [
        sys.executable,
        "-m",
        "schedcmp",
        "run",
        "a horse",
        "--model",
        str(sd15_model),
        "-s",
        "ddim",
        "--steps",
        "2",
        "--format",
        "json",
    ]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)
    ]
    codes = [process.wait(timeout=600) for process in processes]
    assert codes == [0, 0, 0]
    folders = sorted((tmp_path / "schedcmp-runs").iterdir())
    assert len(folders) == 3 and all((folder / "results.json").is_file() for folder in folders)


@pytest.mark.parametrize(
    "flags",
    [["--model", "/nonexistent"], ["--device", "tpu"], ["--width", "63"], ["-s", "FlowMatchEulerDiscrete"]],
)
def test_a_refused_command_leaves_nothing_behind(cli, sd15_model, tmp_path, flags):
    result = cli("run", "a horse", "--model", sd15_model, "-s", "ddim", *flags)
    assert result.exit_code == 2
    assert not (tmp_path / "schedcmp-runs").exists()


def test_no_sheet_leaves_no_empty_images_folder(cli, sd15_model, tmp_path):
    assert (
        cli(
            "run", "a horse", "--model", sd15_model, "-s", "ddim", "--steps", "2", "--out", tmp_path / "o", "--no-sheet"
        ).exit_code
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["results.json"]


def test_overwrite_removes_the_previous_comparisons_files_and_nothing_else(cli, sd15_model, tmp_path):
    out = tmp_path / "o"
    first = cli("run", "a horse", "--model", sd15_model, "-s", "ddim,euler", "--steps", "2", "--out", out, "--html")
    assert first.exit_code == 0 and (out / "report.html").is_file()
    (out / "notes.txt").write_text("mine")
    second = cli("run", "a horse", "--model", sd15_model, "-s", "lms", "--steps", "2", "--out", out, "--overwrite")
    assert second.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "images", "notes.txt", "results.json"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["lmsdiscrete-s2-seed0.png"]
