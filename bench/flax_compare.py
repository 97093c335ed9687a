"""The figures of docs/flax.md: every compatible Flax scheduler on a model, then PyTorch against Flax.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 .venv-flax/bin/python bench/flax_compare.py \\
        [--model FOLDER] [--prompt astronaut] [--seed 8] [--steps 20] [--cross-steps 10,20] [--out DIR]

Prints two markdown tables: (a) each Flax scheduler run the guide's way (one image per JAX device, replicated
params, sharded prompt ids, split keys, jit=True) with its first-call (compile) and compiled-run seconds, and
(b) each of DDIM, PNDM, Euler and DPM-Solver++ in PyTorch and in Flax from the same noise, with the distance
between the frameworks next to each framework's run-to-run distance. Writes the Flax runs' contact sheet to
OUT/flax-sheet.png (device 0's image of each run).
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

CROSS_SCHEDULERS = ["DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]


def seconds_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def flax_table(runs) -> list[str]:
    lines = [
        "| scheduler | status | steps | NFE | first call (compile) s | compiled run s | repeat max abs | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        status = run.status.value if run.status == "ok" else f"{run.status.value}: {run.error_type}: {run.reason}"
        repeat = "–" if run.repeat_max_abs is None else f"{run.repeat_max_abs:g}"
        lines.append(
            f"| {run.scheduler} | {status} | {run.steps} | {run.nfe or '–'} | {seconds_text(run.compile_seconds)} | "
            f"{seconds_text(run.seconds)} | {repeat} | {run.note or ''} |"
        )
    return lines


def cross_table(crosses) -> list[str]:
    lines = [
        "| scheduler | steps | NFE torch/flax | max abs (8-bit levels) | PSNR dB | torch repeat | flax repeat "
        "| agrees | aligned max abs (levels) | aligned PSNR dB | within |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for cross in crosses:
        aligned = ("–", "–")
        if cross.alignment is not None:
            aligned = (f"{cross.aligned_max_abs:.5f} ({cross.aligned_max_abs * 255:.2f})", f"{cross.aligned_psnr:.1f}")
        lines.append(
            f"| {cross.scheduler} | {cross.steps} | {cross.torch.nfe}/{cross.flax.nfe} | "
            f"{cross.max_abs:.5f} ({cross.max_abs * 255:.2f}) | {cross.psnr:.1f} | {cross.torch.repeat_max_abs:g} | "
            f"{cross.flax.repeat_max_abs:g} | {'yes' if cross.agrees else 'NO'} | {aligned[0]} | {aligned[1]} | "
            f"{'yes' if cross.within else 'NO'} |"
        )
    return lines


def contact_sheet(runs, header: list[str], path: Path) -> None:
    from schedcmp.output.render import Tile, png_bytes, render_contact_sheet

    tiles = []
    for run in runs:
        cost = f" · {run.seconds:.2f} s jitted" if run.seconds is not None else ""
        lines = [run.scheduler.removeprefix("Flax"), f"{run.steps} steps{cost}"]
        if run.compile_seconds is not None:
            lines.append(f"first call {run.compile_seconds:.1f} s")
        image = png_bytes(run.image) if run.image is not None else None
        tiles.append(Tile(image, lines, run.status.value, reason=run.reason))
    size = runs[0].images.shape[1] if runs[0].images is not None else 64
    path.write_bytes(render_contact_sheet(header, tiles, size, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a diffusers folder (default: the embedded default model)")
    parser.add_argument("--prompt", default="astronaut")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cross-steps", default="10,20")
    parser.add_argument("--out", type=Path, default=Path("/tmp/schedcmp-flax"))
    arguments = parser.parse_args()

    import jax

    from schedcmp.flax import crosscheck, runner

    model = runner.load(arguments.model)
    runs = [
        run
        for name in runner.compatible_schedulers(model)
        for run in runner.run_scheduler(model, name, arguments.prompt, arguments.steps, [arguments.seed])
    ]
    devices = f"{jax.device_count()} {jax.devices()[0].platform.upper()} devices"
    print(f"Flax runs: {arguments.prompt!r}, seed {arguments.seed}, {devices}, {platform.processor() or 'cpu'}\n")
    print("\n".join(flax_table(runs)))
    arguments.out.mkdir(parents=True, exist_ok=True)
    header = [f"Flax backend · {arguments.prompt!r} · seed {arguments.seed} · {devices} · float32"]
    contact_sheet(runs, header, arguments.out / "flax-sheet.png")
    pipe = crosscheck.load_torch_pipeline(arguments.model)
    crosses = [
        crosscheck.compare_scheduler(pipe, model, name, arguments.prompt, int(steps), arguments.seed)
        for steps in arguments.cross_steps.split(",")
        for name in CROSS_SCHEDULERS
    ]
    print(
        f"\nPyTorch against Flax (tolerance: max abs <= {crosscheck.TOLERANCE_MAX_ABS:.4f}, "
        f"PSNR >= {crosscheck.TOLERANCE_PSNR:g} dB)\n"
    )
    print("\n".join(cross_table(crosses)))
    print(f"\nsheet: {arguments.out / 'flax-sheet.png'}")


if __name__ == "__main__":
    main()
