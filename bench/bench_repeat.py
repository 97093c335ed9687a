"""What a repeated `schedcmp.compare()` on one loaded pipeline costs outside its pipeline calls, on an SD 1.5-sized
random model (UNet 320/640/1280/1280 channels, 2 layers per block: 860 M parameters, fp32) on the CPU.

    python bench/bench_repeat.py [--rounds 3] [--device cpu|cuda]

Each call runs Euler for 1 step at 64x64, so that the pipeline call is short and what is paid around it shows:
the weights digest, the warm-up, probes, files. Target (issue 20): from the second call on, at most 1 s more
than the pipeline calls. Only the public API is used, so the same script measures an older checkout too
(PYTHONPATH=that-checkout python bench/bench_repeat.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="calls after the first")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import gpu_models
    import torch

    import schedcmp

    started = time.perf_counter()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    pipe, description = gpu_models.sd15_sized(args.device, dtype, quick=False)
    pipe.set_progress_bar_config(disable=True)
    built = time.perf_counter() - started
    print(f"{description}; {args.device} {str(dtype).removeprefix('torch.')}; built in {built:.1f} s")
    print(f"schedcmp from {Path(schedcmp.__file__).parent}")
    outside = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds + 1):
            begun = time.perf_counter()
            comparison = schedcmp.compare(
                pipe,
                "astronaut riding a horse",
                seed=8,
                schedulers="euler",
                steps=1,
                width=64,
                height=64,
                out=Path(scratch) / str(number),
                progress=False,
            )
            wall = time.perf_counter() - begun
            calls = sum(run.batch_seconds or 0.0 for run in comparison.runs)
            outside.append(wall - calls)
            print(
                f"  call {number + 1}: wall {wall:6.2f} s, pipeline calls {calls:5.2f} s, outside {wall - calls:6.2f} s"
            )
    later = statistics.median(outside[1:]) if len(outside) > 1 else float("nan")
    print(
        f"outside the pipeline calls: first call {outside[0]:.2f} s; later calls, median {later:.2f} s (target <= 1 s)"
    )


if __name__ == "__main__":
    main()
