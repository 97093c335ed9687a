"""Benchmark: the main job on a busy machine, with torch's default threads, with 1 thread and with --threads auto.

    python bench/bench_busy.py [--hogs 2] [--rounds 2] [--steps N] [--schedulers all]

Starts --hogs busy-loop processes (one core each, as other people's jobs on a shared machine), waits until the
1-minute load average has seen them, then runs `schedcmp run "astronaut on mars" --seed 8 --schedulers all`
(the README's main job; --steps N shortens it) with `--threads D` (D: torch's default here, what every run used
before --threads), `--threads 1` and `--threads auto`, in that order and then in reverse (--rounds 2), so that
a machine getting busier or quieter favours none; the faster of each configuration's runs counts. Prints what
else was running before the hogs started (CPU use per process over 2 s, from /proc), the load average before
each run, the threads every run recorded, and the wall times and ratios side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOG = "while True: pass"


def torch_default_threads() -> int:
    """What torch takes in a fresh process here, with OMP_NUM_THREADS unset."""
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return int(done.stdout)


def cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command, CPU ticks used so far), for every process /proc shows."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (command or stat.split("(", 1)[1].split(")")[0], int(fields[11]) + int(fields[12]))
    return found


def busy_processes(seconds: float = 2.0, least: float = 0.05) -> list[tuple[float, str]]:
    """(cores used, command) of every other process busier than `least` cores over the next `seconds`."""
    before = cpu_ticks()
    time.sleep(seconds)
    after = cpu_ticks()
    ticks = os.sysconf("SC_CLK_TCK")
    busy = [
        ((used - before[pid][1]) / ticks / seconds, command[:90])
        for pid, (command, used) in after.items()
        if pid in before and pid != os.getpid()
    ]
    return sorted((item for item in busy if item[0] >= least), reverse=True)


def run_once(threads: str, args, folder: Path) -> dict:
    """One `schedcmp run` with `--threads`: its wall seconds, the threads its runs recorded, the load at its start."""
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "schedcmp", "run", args.prompt, "--seed", "8", "--schedulers", args.schedulers]
    command += ["--steps", str(args.steps)] if args.steps else []
    command += ["--threads", threads, "--out", str(folder / f"threads-{threads}"), "--overwrite", "--format", "json"]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"--threads {threads} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    document = json.loads(done.stdout)
    notes = [line for line in done.stderr.splitlines() if line.startswith("busy machine")]
    return {
        "wall": wall,
        "load": load,
        "threads": sorted({run["threads"] for run in document["runs"]}),
        "note": notes[0] if notes else "",
    }


def wait_for_load(least: float, limit: float) -> float:
    """Wait until the 1-minute load average reaches `least`, or `limit` seconds pass; -> the load average."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] < least and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


def measure(args, configurations: list[str], folder: Path) -> dict[str, list[dict]]:
    """Every configuration, in order then in reverse for each further round, beside the hogs."""
    order = configurations
    found: dict[str, list[dict]] = {name: [] for name in configurations}
    for number in range(args.rounds):
        for threads in order:
            result = run_once(threads, args, folder)
            found[threads].append(result)
            print(
                f"  round {number + 1}: --threads {threads:>4}: {result['wall']:7.1f} s, threads {result['threads']}, "
                f"load at start {result['load']:.2f}",
                flush=True,
            )
        order = order[::-1]
    return found


def report(found: dict[str, list[dict]], default: int) -> None:
    """The faster run of each configuration, side by side, with its ratio to torch's default threads."""
    best = {name: min(runs, key=lambda run: run["wall"]) for name, runs in found.items()}
    base = best[str(default)]["wall"]
    print(f"\n{'--threads':>10} {'threads used':>13} {'wall s (best)':>14} {'all runs':>22} {'vs default':>11}")
    for name, run in best.items():
        walls = ", ".join(f"{r['wall']:.1f}" for r in found[name])
        print(f"{name:>10} {str(run['threads']):>13} {run['wall']:14.1f} {walls:>22} {run['wall'] / base:10.2f}×")
    notes = {run["note"] for run in found.get("auto", []) if run["note"]}
    for note in sorted(notes):
        print(f"auto said: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes beside the job (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="1: each configuration once; 2: then in reverse")
    parser.add_argument("--prompt", default="astronaut on mars")
    parser.add_argument("--schedulers", default="all")
    parser.add_argument("--steps", type=int, default=None, help="default: the pipeline's own (50)")
    args = parser.parse_args()
    default = torch_default_threads()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, torch's default {default} threads; load average before the hogs {os.getloadavg()}")
    print("what else was running (cores used over 2 s):")
    for used, command in busy_processes() or [(0.0, "nothing above 0.05 cores")]:
        print(f"  {used:4.2f}  {command}")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    try:
        if hogs:
            load = wait_for_load(least=cores, limit=90)
            print(f"{args.hogs} busy-loop processes started; 1-minute load average {load:.2f}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as folder:
            found = measure(args, [str(default), "1", "auto"], Path(folder))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    report(found, default)


if __name__ == "__main__":
    main()
