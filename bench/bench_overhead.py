"""What a batched sweep spends outside its pipeline calls, part by part, on one loaded pipeline.

    python bench/bench_overhead.py [--model M] [--seeds 8] [--steps 10] [--schedulers ...] [--rounds 3]

The sweep (default: the embedded model, 8 seeds x Euler, DPM++ 2M, DDIM x 10 steps, batched, sheets drawn) runs
once on the freshly loaded pipeline (what `schedcmp run` pays, after the imports and the load), then --rounds
times on the same pipeline (what compare() pays in a notebook). Each round's wall time is set against its
pipeline calls (each batch's one call), and the time outside them is split into its parts: the warm-up call,
the determinism probes, the weights digest, PNG encoding and writing, the sheets, results.json rewrites, and
the rest. The target (issue 20): wall within 1.3x of the pipeline calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

PARTS = {  # part -> (module, function) whose time counts for it
    "warm-up call": ("schedcmp.model.sample", "Sampler.warm_up"),
    "determinism probes": ("schedcmp.quality.convergence", "probe_determinism"),
    "weights digest": ("schedcmp.model.weights", "weights_digest"),
    "PNG encode + write": ("schedcmp.output.render", "png_bytes"),
    "sheets": ("schedcmp.output.render", "write_sheets"),
    "results.json rewrites": ("schedcmp.sweep.results", "ResultsFile.save"),
    "pipeline calls": ("schedcmp.model.sample", "Sampler.call"),
}


@contextmanager
def timed_parts(totals: dict[str, float]):
    """Time each part's function while the block runs (the outermost call of each, so nesting counts once)."""
    import importlib

    patched = []
    for part, (module_name, qualified) in PARTS.items():
        owner = importlib.import_module(module_name)
        *path, name = qualified.split(".")
        for attribute in path:
            owner = getattr(owner, attribute)
        real = getattr(owner, name)
        depth = {"n": 0}

        def wrapper(*args, _real=real, _part=part, _depth=depth, **kwargs):
            _depth["n"] += 1
            started = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                _depth["n"] -= 1
                if _depth["n"] == 0:
                    totals[_part] += time.perf_counter() - started

        setattr(owner, name, wrapper)
        patched.append((owner, name, real))
    try:
        yield
    finally:
        for owner, name, real in patched:
            setattr(owner, name, real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--schedulers", default="Euler,DPM++ 2M,DDIM")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda: fp16, as schedcmp runs it by default)")
    args = parser.parse_args()

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline
    from schedcmp.output import console
    from schedcmp.sweep import engine

    pipeline.silence_libraries()
    started = time.perf_counter()
    model = pipeline.load(args.model, args.device, pipeline.resolve_dtype("auto", args.device))
    loaded = time.perf_counter() - started
    print(f"model {model.name} on {model.device} ({model.dtype}): loaded in {loaded:.1f} s (not counted)")
    request = Request(
        prompt=("astronaut",),
        schedulers=args.schedulers,
        seed=tuple(range(args.seeds)),
        steps=(args.steps,),
        progress=False,
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds + 1):
            totals: dict[str, float] = defaultdict(float)
            with timed_parts(totals):
                begun = time.perf_counter()
                engine.run_comparison(
                    replace(request, out=Path(scratch) / str(number)), loaded=model, progress=console.Progress(False)
                )
                wall = time.perf_counter() - begun
            rows.append((wall, dict(totals)))
    print(f"sweep: {args.seeds} seeds x {args.schedulers} x {args.steps} steps, batched, sheets drawn")
    report("first compare() on the freshly loaded pipeline (what `schedcmp run` pays)", rows[:1])
    report(f"the same pipeline again, {args.rounds} rounds (medians; what a notebook pays)", rows[1:])


def report(title: str, rows: list[tuple[float, dict[str, float]]]) -> None:
    walls = [wall for wall, _ in rows]
    calls = [parts["pipeline calls"] for _, parts in rows]
    print(title)
    print(f"  wall            {statistics.median(walls):7.3f} s")
    print(f"  pipeline calls  {statistics.median(calls):7.3f} s")
    outside = [wall - parts["pipeline calls"] for wall, parts in rows]
    print(f"  outside them    {statistics.median(outside):7.3f} s, of which:")
    for part in PARTS:
        if part != "pipeline calls":
            print(f"    {part:<24} {statistics.median(parts.get(part, 0.0) for _, parts in rows):7.3f} s")
    rest = [wall - sum(parts.values()) for wall, parts in rows]
    print(f"    {'the rest':<24} {statistics.median(rest):7.3f} s")
    ratios = [wall / call for wall, call in zip(walls, calls)]
    each = ", ".join(f"{ratio:.3f}" for ratio in ratios)
    print(f"  ratio wall / pipeline calls: {statistics.median(ratios):.3f} (rounds: {each})")


if __name__ == "__main__":
    main()
