"""The human table: whole names at 80 columns, the axes a sweep varies, no column without content."""

from __future__ import annotations

from dataclasses import replace

from schedcmp.core.records import Distance, Run, Status
from schedcmp.output import console, report


def entry(id, scheduler, alias, seed=0, order=None) -> Run:
    return Run(
        id=id,
        scheduler=scheduler,
        alias=alias,
        steps=20,
        nfe=20,
        seconds=0.5,
        seconds_all=[0.5],
        ms_per_nfe=25.0,
        peak_memory_bytes=2**20,
        status=Status.OK,
        seed=seed,
        guidance_scale=7.5,
        prompt="a horse",
        order=order,
    )


def table(entries, width, monkeypatch, capsys) -> str:
    monkeypatch.setattr(console.error_console, "width", width)
    capsys.readouterr()
    console.print_table(report.table_rows(entries), "title")
    return capsys.readouterr().err


def test_at_80_columns_names_are_whole(monkeypatch, capsys):
    entries = [entry("a", "DPMSolverMultistepScheduler", "DPM++ 2M"), entry("b", "DPMSolverSinglestepScheduler", None)]
    text = table(entries, 80, monkeypatch, capsys)
    assert "DPM++ 2M" in text and "DPMSolverSinglestep" in text and "DPMSolverMulti\\n" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_seed_sweep_gets_a_seed_column_and_empty_columns_go(monkeypatch, capsys):
    entries = [
        entry("a1", "EulerDiscreteScheduler", "Euler", seed=1),
        entry("a2", "EulerDiscreteScheduler", "Euler", seed=2),
    ]
    text = table(entries, 160, monkeypatch, capsys)
    header = next(line for line in text.splitlines() if "scheduler" in line)
    assert "seed" in header and "guidance" not in header and "prompt" not in header
    measured = [replace(e, reference="r", distance=Distance(latent_rmse=0.1, psnr=30.0, ssim=0.9)) for e in entries]
    header = next(line for line in table(measured, 160, monkeypatch, capsys).splitlines() if "scheduler" in line)
    assert "RMSE" in header and "order" not in header and "Pareto" not in header  # no sweep, no front: no column


def test_piped_list_keeps_whole_names():
    import subprocess
    import sys

    code = "from schedcmp.output import console; print(console.console.width)"
    width = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}
    ).stdout
    assert int(width) == console.TABLE_WIDTH_OFF_TERMINAL
