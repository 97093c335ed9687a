"""bench/gpu_check.py, the script prepared for a GPU machine, runs here as a CPU smoke test so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def test_gpu_check_quick_on_cpu(tmp_path):
    summary = tmp_path / "summary.txt"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--summary", str(summary)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = summary.read_text()
    for key in "abcdef":
        assert re.search(rf"^\[{key}\] \S", text, re.M), f"no block for section {key}:\n{text}"
        assert re.search(rf"^\[{key}\] done in ", text, re.M), f"section {key} did not finish:\n{text}"
    assert "cpu->cpu: every case matches" in text, text
    assert "PROBLEM" not in text and "CRASH" not in text and "skipped, the budget" not in text, text
    # [e] ran torchrun's two ranks against one process: on one CPU thread count each, the same images.
    assert "images identical to one process: True" in text and "busy by rank 0:" in text
    # [f] ran every sampler with a flow form on a tiny FLUX.1-style pipeline.
    assert re.search(r"--schedulers all x \d+ steps: 19 runs, 17 ok, 2 unsupported", text), text
    assert all(len(line) <= 120 for line in text.splitlines()), text
    assert f"summary: {summary}" in done.stdout
