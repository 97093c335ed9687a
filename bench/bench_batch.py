"""Benchmark: a sweep of 8 seeds × all schedulers, batched versus one pipeline call per image, in one process.

    python bench/bench_batch.py [--model M] [--seeds 8] [--steps 20] [--batch-size 8]

Both sweeps run on the same loaded model (batched first, then unbatched, then batched again, so that
a machine getting busier or quieter does not favour one); prints the times, the ratio, and the peak
memory of each (the CUDA allocator's peak, or the process's resident high-water mark on CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def sweep(model, settings, folder: Path) -> tuple[float, int | None]:
    from dataclasses import replace

    from schedcmp.sweep import engine

    started = time.perf_counter()
    outcome = engine.run_comparison(replace(settings, out=folder, format="json", no_sheet=True), loaded=model)
    seconds = time.perf_counter() - started
    peaks = [r["peak_memory_bytes"] for r in outcome.document["runs"] if r["peak_memory_bytes"]]
    return seconds, max(peaks) if peaks else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--schedulers", default="all")
    args = parser.parse_args()

    from dataclasses import replace

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline

    pipeline.silence_libraries()
    model = pipeline.load(
        args.model, pipeline.resolve_device("auto"), pipeline.resolve_dtype("auto", pipeline.resolve_device("auto"))
    )
    batched = Request(
        prompt=("astronaut",),
        schedulers=args.schedulers,
        seed=tuple(range(args.seeds)),
        steps=(args.steps,),
        batch_size=args.batch_size,
    )
    single = replace(batched, batch_size=1)
    times: dict[str, list[float]] = {"batched": [], "single": []}
    peaks: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, settings) in enumerate([("batched", batched), ("single", single), ("batched", batched)]):
            seconds, peak = sweep(model, settings, Path(scratch) / str(number))
            times[name].append(seconds)
            peaks[name] = max(peaks.get(name) or 0, peak or 0) or None
            print(
                f"{name:8s} {seconds:7.2f} s  peak memory {peak / 2**20 if peak else float('nan'):.0f} MiB", flush=True
            )
    batched_seconds = min(times["batched"])
    single_seconds = times["single"][0]
    print()
    print(
        f"model: {model.name} on {model.device} {model.dtype}; {args.seeds} seeds x all schedulers, {args.steps} steps"
    )
    print(
        f"one call per image   {single_seconds:7.2f} s  "
        f"peak {peaks['single'] / 2**20 if peaks['single'] else float('nan'):.0f} MiB"
    )
    print(
        f"batched (<= {args.batch_size})      {batched_seconds:7.2f} s  "
        f"peak {peaks['batched'] / 2**20 if peaks['batched'] else float('nan'):.0f} MiB  (faster of two runs)"
    )
    print(f"speed-up             {single_seconds / batched_seconds:.2f}x  (target: >= 1.5x on CPU)")


if __name__ == "__main__":
    main()
