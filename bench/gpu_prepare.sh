#!/usr/bin/env bash
# Fetch, HERE (where pip reaches PyPI), the wheels a GPU machine without network lacks to run schedcmp, into
# .whl/ (git-ignored), for CPython 3.12 on manylinux x86_64; then print the command to run there.
#
#     bash bench/gpu_prepare.sh            # from anywhere in the checkout
#
# The GPU machine has torch, transformers, accelerate, safetensors, scipy, typer, rich, pillow, numpy,
# huggingface-hub, regex, requests, filelock, tqdm and zipp, but no diffusers, torchsde or trampoline, and no
# importlib_metadata (diffusers requires it) nor lazy-importer (importlib_metadata requires it on 3.12). Each
# wheel is pinned to the version in .venv, so the GPU runs what the tests here ran. schedcmp itself comes from
# the working tree (PYTHONPATH), not from a wheel.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}
# Fetched into a fresh folder, which then replaces .whl/*.whl: one version of each project only (an older
# wheel left by an earlier run would make the install there fail).
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
PYTHON_VERSION=3.12
# What the GPU machine already has (normalised names): the fetched wheels' requirements are checked against it.
PRESENT="accelerate huggingface-hub safetensors numpy pillow regex requests filelock tqdm typer rich scipy
transformers torch zipp"

version_of() {
    "$VENV_PYTHON" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"
}

download() {
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version "$PYTHON_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$WHEELS" "$@"
}

fetch() {  # NAME...: each at .venv's version
    local name pins=()
    for name in "$@"; do
        pins+=("$name==$(version_of "$name")")
    done
    download "${pins[@]}"
}

# The fetched wheels' requirements (markers evaluated for CPython 3.12 on Linux x86_64) that neither the GPU
# machine nor .whl/ has, e.g. importlib_metadata's lazy-importer.
missing_requirements() {
    python3 - "$WHEELS" "$PRESENT" <<'PY'
import glob
import re
import sys
import zipfile

from pip._vendor.packaging.requirements import Requirement

folder, present = sys.argv[1], set(sys.argv[2].split())
environment = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}


def normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


wheels = glob.glob(f"{folder}/*.whl")
have = present | {normal(w.split("/")[-1].split("-")[0]) for w in wheels}
missing = set()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            wanted = requirement.marker is None or requirement.marker.evaluate(environment)
            if wanted and normal(requirement.name) not in have:
                missing.add(requirement.name)
print(" ".join(sorted(missing)))
PY
}

# diffusers; torchsde (DPMSolverSDE's Brownian tree) and trampoline (torchsde's one requirement the GPU lacks);
# importlib_metadata (diffusers requires it) and zipp at the version importlib_metadata was tested with here.
fetch diffusers torchsde trampoline importlib_metadata zipp
for _ in 1 2 3 4 5; do
    missing=$(missing_requirements)
    [ -n "$missing" ] || break
    echo "the fetched wheels also require: $missing (not on the GPU machine): fetching"
    # shellcheck disable=SC2086
    fetch $missing
done
missing=$(missing_requirements)
if [ -n "$missing" ]; then
    echo "still missing: $missing" >&2
    exit 1
fi

mkdir -p .whl
rm -f .whl/*.whl
mv "$WHEELS"/*.whl .whl/
echo
echo "wheels in .whl/:"
ls -l .whl/*.whl | awk '{printf "  %8.1f kB  %s\n", $5 / 1024, $NF}'
echo "  total: $(du -ch .whl/*.whl | tail -1 | cut -f1)"
echo
echo "on the GPU machine (carry .whl; one run with timeout_s 330, the script's own budget is 270 s):"
echo "  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site" \
    ".whl/*.whl && export PYTHONPATH=/tmp/site:\$PWD && PYTHONUNBUFFERED=1 timeout 300" \
    "python3 bench/gpu_check.py --device cuda"
