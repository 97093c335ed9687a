"""Benchmark: schedcmp's run against the diffusers guide's plain loop, in one process, on one loaded model.

    python bench/bench_run.py [--model M] [--steps 20] [--rounds 5] [--schedulers all]

Prints (a) the guide's plain loop (fresh scheduler, fresh CPU generator, `pipe(prompt, ...)` per
scheduler), (b) schedcmp's run of the same schedulers (images, results.json and the sheet written), and
(c) the denoiser's own time summed over its calls; then the ratio b/a and the share of b spent outside
the denoiser and the VAE decode. Rounds alternate a and b so that a busy machine slows both alike; the
medians are compared. Also times `schedcmp --help` in a fresh process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_decode(vae, totals: dict):
    """Wrap vae.decode so its time is summed into totals['decode']."""
    original = vae.decode

    def decode(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        totals["decode"] += time.perf_counter() - started
        return result

    vae.decode = decode


def plain_loop(pipe, scheduler_classes, original_config, prompt: str, seed: int, steps: int) -> float:
    """The guide's loop, as written there: swap, re-seed, generate."""
    import torch

    started = time.perf_counter()
    for cls, overrides in scheduler_classes:
        pipe.scheduler = cls.from_config(original_config, **overrides)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        pipe(prompt, generator=generator, num_inference_steps=steps).images[0]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--schedulers", default="all")
    parser.add_argument("--prompt", default="astronaut on mars")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    help_started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "schedcmp", "--help"], check=True, capture_output=True)
    help_seconds = time.perf_counter() - help_started

    from dataclasses import replace

    from schedcmp.core.request import Request
    from schedcmp.model import pipeline
    from schedcmp.sweep import engine

    pipeline.silence_libraries()
    model = pipeline.load(args.model, "cpu", "fp32")
    pipe = model.pipe
    decode_totals = {"decode": 0.0}
    timed_decode(pipe.vae, decode_totals)
    settings = Request(prompt=(args.prompt,), schedulers=args.schedulers, seed=(args.seed,), steps=(args.steps,))

    plain_times, schedcmp_times, denoiser_times, decode_times, outside_shares = [], [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds + 1):  # round 0 warms both paths up and is not counted
            decode_totals["decode"] = 0.0
            started = time.perf_counter()
            outcome = engine.run_comparison(
                replace(settings, out=Path(scratch) / f"run{round_number}", format="json"), loaded=model
            )
            total_schedcmp = time.perf_counter() - started  # everything but the load: warm-up, files, sheet
            runs = outcome.document["runs"]
            schedcmp_seconds = sum(r["seconds"] or 0.0 for r in runs)
            denoiser = sum(r["denoiser_seconds"] or 0.0 for r in runs)
            decode = decode_totals["decode"]
            import diffusers

            classes = []
            for r in runs:
                overrides = dict(r["overrides"])
                if r["scheduler"] == "DPMSolverSDEScheduler":
                    overrides.setdefault("noise_sampler_seed", args.seed)
                classes.append((getattr(diffusers, r["scheduler"]), overrides))
            plain = plain_loop(pipe, classes, model.original_config, args.prompt, args.seed, args.steps)
            if round_number == 0:
                continue
            plain_times.append(plain)
            schedcmp_times.append(total_schedcmp)
            denoiser_times.append(denoiser)
            decode_times.append(decode)
            outside_shares.append(1 - (denoiser + decode) / schedcmp_seconds)
            print(
                f"round {round_number}: plain loop {plain:.2f} s, schedcmp {total_schedcmp:.2f} s "
                f"(pipeline calls {schedcmp_seconds:.2f} s), denoiser {denoiser:.2f} s, decode {decode:.2f} s",
                flush=True,
            )

    plain, ours = statistics.median(plain_times), statistics.median(schedcmp_times)
    print()
    print(
        f"model: {model.name} ({type(pipe).__name__}), "
        f"{len(runs)} schedulers x {args.steps} steps, {args.rounds} rounds, CPU"
    )
    print(f"(a) guide's plain loop        median {plain:.2f} s")
    print(
        f"(b) schedcmp run              median {ours:.2f} s  "
        "(wall time of the whole run but the model load: warm-up, images, results.json, sheet)"
    )
    print(
        f"(c) denoiser time in (b)      median {statistics.median(denoiser_times):.2f} s; "
        f"VAE decode {statistics.median(decode_times):.2f} s"
    )
    print(f"schedcmp / plain loop         {ours / plain:.3f}  (target: <= 1)")
    print(
        "share of schedcmp's pipeline-call time outside denoiser and decode: "
        f"{100 * statistics.median(outside_shares):.1f} %"
    )
    print(f"schedcmp --help               {help_seconds:.3f} s  (target: < 0.3 s, fresh process)")


if __name__ == "__main__":
    main()
