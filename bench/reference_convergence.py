"""Has the reference converged? Self-convergence of candidate references against the distances they judge.

    python bench/reference_convergence.py [--model M] [--prompt astronaut] [--seed 8]

For each candidate reference (a solver and a step count, on the model's own spacing, as `--reference`
runs it) it prints how far halving the step count moves the final latent (its self-convergence) and how far
it is from the most accurate run here; then the distance of every deterministic scheduler at 20 steps to
the default reference, each placed on the reference's interval as `--reference` places it. A reference is
good enough when halving its steps moves it far less than the smallest 20-step distance it has to resolve.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompt", default="astronaut")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    from schedcmp.core.names import ordered, parse_entry, resolve_entry, short_name
    from schedcmp.core.plan import RunSpec
    from schedcmp.core.request import DEFAULT_REFERENCE
    from schedcmp.model import pipeline
    from schedcmp.model.sample import Sampler
    from schedcmp.model.schedulers import accepted_params_of, scheduler_classes
    from schedcmp.quality import convergence, metrics

    pipeline.silence_libraries()
    model = pipeline.load(args.model, "cpu", "fp32")
    classes = scheduler_classes()
    params = accepted_params_of(classes)

    def spec_of(entry_text: str, steps: int) -> RunSpec:
        choice = resolve_entry(parse_entry(entry_text), params)
        return RunSpec(
            f"bench-{entry_text}-{steps}",
            choice.class_name,
            None,
            choice.overrides,
            True,
            args.prompt,
            None,
            args.seed,
            steps,
            model.defaults.guidance_scale,
            model.defaults.width,
            model.defaults.height,
        )

    def run(sampler, spec: RunSpec):
        started = time.perf_counter()
        sample = sampler.run(spec)
        return sample.latent, time.perf_counter() - started, sample.result.nfe

    candidates = [
        ("DPMSolverMultistep", [50, 100, 200, 400, 800]),
        ("DPMSolverMultistep(use_karras_sigmas=true)", [50, 100, 200, 400, 800]),
        ("Heun", [50, 100, 200, 400]),
    ]
    latents = {}
    with Sampler(model) as sampler:
        sampler.warm_up(
            RunSpec(
                "w",
                "DDIMScheduler",
                None,
                {},
                True,
                args.prompt,
                None,
                args.seed,
                2,
                model.defaults.guidance_scale,
                model.defaults.width,
                model.defaults.height,
            )
        )
        for name, step_counts in candidates:
            for steps in step_counts:
                latents[name, steps] = run(sampler, spec_of(name, steps))
        best = latents["DPMSolverMultistep(use_karras_sigmas=true)", 800][0]
        print(f"model {model.name}, prompt {args.prompt!r}, seed {args.seed}")
        print(
            f"{'candidate':45s} {'steps':>5s} {'NFE':>5s} {'seconds':>8s} "
            f"{'halving moves it':>17s} {'to Karras 800':>15s}"
        )
        for name, step_counts in candidates:
            for steps in step_counts:
                latent, seconds, nfe = latents[name, steps]
                half = latents.get((name, steps // 2))
                halving = f"{metrics.latent_rmse(latent, half[0]):.2e}" if half else "-"
                print(
                    f"{name:45s} {steps:5d} {nfe:5d} {seconds:8.2f} "
                    f"{halving:>17s} {metrics.latent_rmse(latent, best):15.2e}"
                )
        name, _, steps = DEFAULT_REFERENCE.rpartition(":")
        reference, half = latents[name, int(steps)][0], latents[name, int(steps) // 2][0]
        print(f"\ndistance of each deterministic scheduler at 20 steps to the default reference {DEFAULT_REFERENCE}:")
        runs = [spec_of(class_name, 20) for class_name in ordered(model.compatible)]
        plan = convergence.plan_references(
            runs, resolve_entry(parse_entry(DEFAULT_REFERENCE), params), model.original_config, classes
        )
        smallest = None
        for spec in runs:
            label, reason = convergence.probe_determinism(
                classes[spec.scheduler], model.original_config, spec.overrides, {}
            )
            if label != convergence.DETERMINISTIC or spec.id in plan.off_interval:
                print(
                    f"  {short_name(spec.scheduler):25s} not compared: "
                    f"{label if spec.id not in plan.off_interval else plan.off_interval[spec.id]}"
                )
                continue
            distance = metrics.latent_rmse(run(sampler, spec)[0], reference)
            smallest = distance if smallest is None else min(smallest, distance)
            note = plan.schedule_notes.get(spec.id)
            print(f"  {short_name(spec.scheduler):25s} {distance:.4f}" + (f"   ({note})" if note else ""))
        self_change = metrics.latent_rmse(reference, half)
        print(
            f"\nsmallest 20-step distance {smallest:.4f}; halving the default reference moves it {self_change:.2e}: "
            f"ratio {smallest / self_change:.0f}x"
        )


if __name__ == "__main__":
    main()
