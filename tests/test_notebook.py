"""docs/compare.ipynb runs top to bottom in a real Jupyter kernel, on this interpreter, and shows what it says.

The notebook is executed with nbclient in a python3 kernel whose kernelspec (written to a temporary JUPYTER_PATH,
which Jupyter searches first) starts exactly this test's Python, from a temporary working folder, offline. The test
then checks what a reader would see: the comparison displayed as its contact sheet and timing table, a run's image
shown as a PNG, and the pipeline's own scheduler unchanged at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "compare.ipynb"

# Appended to the in-memory copy only: which interpreter the kernel runs.
WHICH_PYTHON = "import json, sys\nprint(json.dumps({'executable': sys.executable, 'prefix': sys.prefix}))"


def python3_kernelspec(folder: Path) -> Path:
    """A JUPYTER_PATH folder whose python3 kernel runs sys.executable (so never another Python's ipykernel)."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (schedcmp tests)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return folder


def cell_by_id(nb, cell_id: str):
    for cell in nb.cells:
        if cell.get("id") == cell_id:
            return cell
    raise AssertionError(f"docs/compare.ipynb has no cell {cell_id!r}; ids: {[cell.get('id') for cell in nb.cells]}")


def outputs_with(cell, mime: str) -> list[str]:
    """The `mime` data of a cell's execute_result and display_data outputs."""
    return [
        output["data"][mime]
        for output in cell.outputs
        if output["output_type"] in ("execute_result", "display_data") and mime in output.get("data", {})
    ]


def test_compare_notebook_runs_in_a_kernel(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), "stored outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"

    monkeypatch.chdir(tmp_path)  # whatever the kernel writes lands here, never in the repository
    monkeypatch.setenv("JUPYTER_PATH", str(python3_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # history database
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as conftest already does; the kernel inherits the environment
    nb.cells.append(nbformat.v4.new_code_cell(WHICH_PYTHON))

    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()  # raises CellExecutionError if any cell raises

    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output["output_type"] == "error"]

    kernel_python = json.loads(nb.cells[-1].outputs[0]["text"])
    assert kernel_python == {"executable": sys.executable, "prefix": sys.prefix}

    (page,) = outputs_with(cell_by_id(nb, "display"), "text/html")
    assert "data:image/png;base64," in page and '<table class="schedcmp">' in page
    for name in ("PNDM", "DDIM", "LMS", "Euler a", "DPM++ 2M"):
        assert name in page, name

    assert len(outputs_with(cell_by_id(nb, "image"), "image/png")) == 1
    assert outputs_with(cell_by_id(nb, "after"), "text/plain") == ["'PNDMScheduler'"]
