"""Interrupted for real: Ctrl-C finishes the sheet and results.json; kill -9 leaves a valid results.json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(model: Path, out: Path) -> subprocess.Popen:
    # Many steps, so that runs are long enough to be caught in the middle of the comparison.
    command = [
        sys.executable,
        "-m",
        "schedcmp",
        "run",
        "a horse",
        "--model",
        str(model),
        "--steps",
        "150",
        "--out",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_runs(process: subprocess.Popen, results: Path, count: int, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            document = json.loads(results.read_text())
            if len(document["runs"]) >= count:
                return document
        except (FileNotFoundError, json.JSONDecodeError) as error:
            # The file is replaced atomically: it is absent before the first write, never half-written.
            assert not isinstance(error, json.JSONDecodeError), "results.json was half-written"
        time.sleep(0.05)
    raise AssertionError("no run finished in time")


def test_ctrl_c_writes_the_sheet_and_results_for_the_runs_done(sd15_model, tmp_path):
    out = tmp_path / "out"
    process = start(sd15_model, out)
    wait_for_runs(process, out / "results.json", 1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    document = json.loads((out / "results.json").read_text())
    assert document["interrupted"] is True and document["finished"]
    assert 1 <= len(document["runs"]) < 15
    for run in document["runs"]:
        assert (out / run["image"]).is_file()
    assert (out / "contact_sheet.png").is_file()


def test_kill_9_leaves_a_valid_results_json(sd15_model, tmp_path):
    out = tmp_path / "out"
    process = start(sd15_model, out)
    wait_for_runs(process, out / "results.json", 2)
    process.kill()
    process.communicate(timeout=600)
    document = json.loads((out / "results.json").read_text())
    assert document["finished"] is None and len(document["runs"]) >= 2
    assert all((out / run["image"]).is_file() for run in document["runs"])


def test_sigterm_is_handled_like_ctrl_c(sd15_model, tmp_path):
    """A CI timeout, `timeout` or a cluster's preemption sends SIGTERM: the same as Ctrl-C, exit 143."""
    out = tmp_path / "out"
    process = start(sd15_model, out)
    wait_for_runs(process, out / "results.json", 1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    document = json.loads((out / "results.json").read_text())
    assert document["interrupted"] is True and document["finished"]
    assert 1 <= len(document["runs"]) < 15 and all((out / run["image"]).is_file() for run in document["runs"])
    assert (out / "contact_sheet.png").is_file()


def test_sigterm_while_the_model_loads_exits_143_and_leaves_nothing(sd15_model, tmp_path):
    out = tmp_path / "out"
    process = start(sd15_model, out)
    for line in process.stderr:  # "loading ..." is said once the libraries are imported, before the load
        if line.startswith("loading"):
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 143 and "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not out.exists()
