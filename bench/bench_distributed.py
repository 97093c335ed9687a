"""Benchmark: one sweep run by 1 process and by N torchrun ranks, side by side; speed-up and scaling efficiency.

    python bench/bench_distributed.py [--ranks 1,2] [--model M] [--seeds 1-4] [--steps 8] [--threads N]

Each entry of --ranks runs the same `schedcmp run` (1: a plain process; more: `torchrun --standalone
--nproc-per-node N`), in that order and then once more in reverse, so that a machine getting busier or
quieter does not favour one; the faster of the two counts. On CPU the cores are split evenly: each rank gets
OMP_NUM_THREADS = cores / ranks, and one process all of them (--threads N gives every process N). Prints,
per rank count, the wall seconds of the whole command (start-up and model load included, once per rank),
the seconds the busiest rank spent on its batches, and the speed-up and efficiency (speed-up / ranks) of
both against 1 process, and whether every run made the same pixels (on CPU, only at equal thread counts).
At the end it prints the command for a machine with more cores or GPUs.
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


def sweep(ranks: int, args, folder: Path) -> tuple[float, float, dict]:
    """-> (wall seconds, the busiest rank's busy seconds, results.json) of one run of the sweep."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // ranks)
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), SCHEDCMP_CACHE_DIR=str(folder / "cache"))
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "schedcmp"]
    if ranks > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        command += ["-m", "schedcmp"]
    command += ["run", args.prompt, "-s", args.schedulers, "--seed", args.seeds, "--steps", str(args.steps)]
    command += ["--batch-size", str(args.batch_size), "--device", args.device, "--out", str(folder / f"r{ranks}")]
    command += ["--overwrite", "--format", "json"] + (["--model", args.model] if args.model else [])
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{ranks} rank(s) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    document = json.loads(done.stdout)
    return wall, max(worker["busy_seconds"] for worker in document["workers"]), document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default="1,2", help="rank counts to compare; the first is the baseline")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--prompt", default="a red apple on a wooden table")
    parser.add_argument("--schedulers", default="euler,euler a,ddim,heun,dpm++ 2m,unipc")
    parser.add_argument("--seeds", default="1-4")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of every process (default: the cores / ranks)"
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--device", default="auto", help="auto|cpu|cuda: under torchrun each rank takes cuda:LOCAL_RANK"
    )
    args = parser.parse_args()
    counts = [int(count) for count in args.ranks.split(",")]

    best: dict[int, tuple[float, float, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="schedcmp-bench-") as scratch:
        for count in counts + counts[::-1]:
            measured = sweep(count, args, Path(scratch))
            if count not in best or measured[0] < best[count][0]:
                best[count] = measured
    first = counts[0]
    pixels = [run["sha256"] for run in best[first][2]["runs"]]
    cells = len(pixels)
    print(
        f"sweep: {cells} cells ({args.schedulers} × seeds {args.seeds} × {args.steps} steps, "
        f"batches of {args.batch_size})"
    )
    threads = sorted({run["threads"] for count in counts for run in best[count][2]["runs"]})
    print(
        f"on {best[first][2]['device']}, {os.cpu_count()} cores, threads per process {threads}; the faster of two runs"
    )
    print(
        f"{'ranks':>5} {'wall s':>8} {'speed-up':>9} {'efficiency':>10} {'busiest s':>10} {'speed-up':>9} "
        f"{'effic.':>7} pixels"
    )
    for count in counts:
        wall, busy, document = best[count]
        same = [run["sha256"] for run in document["runs"]] == pixels
        speedup, work = best[first][0] / wall, best[first][1] / busy
        print(
            f"{count:>5} {wall:>8.1f} {speedup:>8.2f}x {speedup / count * first:>10.0%} {busy:>10.1f} {work:>8.2f}x "
            f"{work / count * first:>7.0%} {'yes' if same else 'NO'}"
        )
    print("wall: the whole command, each rank loading the model; busiest: the seconds the busiest rank ran batches")
    print("pixels: the same sha256 as the first; on CPU other thread counts may round differently (the tests")
    print("compare at OMP_NUM_THREADS=1)")
    print("\non a machine with more cores or GPUs (each rank on cuda:LOCAL_RANK):")
    print(
        "  python bench/bench_distributed.py --ranks 1,2,4,8 --device cuda --schedulers all --seeds 1-8 --steps 30 \\\n"
        "    --batch-size 4 --model stable-diffusion-v1-5/stable-diffusion-v1-5"
    )


if __name__ == "__main__":
    main()
