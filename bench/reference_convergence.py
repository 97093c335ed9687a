"""Has the reference converged? Self-convergence of candidate references against the distances they judge.

    python bench/reference_convergence.py [--model M] [--prompt astronaut] [--seed 8]

Every run uses trailing spacing, the common interval `--reference` puts runs on. For each candidate
reference (a solver and a step count) it prints how far halving the step count moves the final latent
(its self-convergence) and how far it is from the most accurate run here; then the distance of every
deterministic scheduler at 20 steps to the default reference. A reference is good enough when halving its
steps moves it far less than the smallest 20-step distance it has to resolve.
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

    from schedcmp import convergence, metrics, pipeline
    from schedcmp.config import RunSpec
    from schedcmp.sample import Sampler
    from schedcmp.schedulers import ordered, parse_entry, resolve_entry, accepted_params_of, scheduler_classes, short_name

    pipeline.quiet_libraries()
    model = pipeline.load(args.model, "cpu", "fp32")
    classes = scheduler_classes()
    params = accepted_params_of(classes)

    def run(sampler, entry_text: str, steps: int):
        choice = resolve_entry(parse_entry(entry_text), params)
        spec = RunSpec("bench", choice.class_name, None, choice.overrides, True, args.prompt, None, args.seed, steps,
                       model.defaults.guidance_scale, model.defaults.width, model.defaults.height, interval="trailing")
        started = time.perf_counter()
        result, rgb, output, latent = sampler.run(spec)
        return latent, time.perf_counter() - started, result.nfe

    candidates = [("DPMSolverMultistep", [50, 100, 200, 400, 800]),
                  ("DPMSolverMultistep(use_karras_sigmas=true)", [50, 100, 200, 400, 800]),
                  ("Heun", [50, 100, 200, 400])]
    latents = {}
    with Sampler(model) as sampler:
        sampler.warm_up(RunSpec("w", "DDIMScheduler", None, {}, True, args.prompt, None, args.seed, 2, model.defaults.guidance_scale,
                                model.defaults.width, model.defaults.height))
        for name, step_counts in candidates:
            for steps in step_counts:
                latents[name, steps] = run(sampler, name, steps)
        best = latents["DPMSolverMultistep(use_karras_sigmas=true)", 800][0]
        print(f"model {model.name}, prompt {args.prompt!r}, seed {args.seed}, trailing spacing")
        print(f"{'candidate':45s} {'steps':>5s} {'NFE':>5s} {'seconds':>8s} {'halving moves it':>17s} {'to Karras 800':>15s}")
        for name, step_counts in candidates:
            for steps in step_counts:
                latent, seconds, nfe = latents[name, steps]
                half = latents.get((name, steps // 2))
                halving = f"{metrics.latent_rmse(latent, half[0]):.2e}" if half else "-"
                print(f"{name:45s} {steps:5d} {nfe:5d} {seconds:8.2f} {halving:>17s} {metrics.latent_rmse(latent, best):15.2e}")
        name, _, steps = convergence.DEFAULT_REFERENCE.rpartition(":")
        reference, half = latents[name, int(steps)][0], latents[name, int(steps) // 2][0]
        print(f"\ndistance of each deterministic scheduler at 20 steps to the default reference {convergence.DEFAULT_REFERENCE}:")
        smallest = None
        for class_name in ordered(model.compatible):
            label, reason = convergence.probe_determinism(classes[class_name], model.original_config, {"timestep_spacing": "trailing"}, {})
            if label != convergence.DETERMINISTIC:
                continue
            latent = run(sampler, class_name, 20)[0]
            distance = metrics.latent_rmse(latent, reference)
            smallest = distance if smallest is None else min(smallest, distance)
            print(f"  {short_name(class_name):25s} {distance:.4f}")
        self_change = metrics.latent_rmse(reference, half)
        print(f"\nsmallest 20-step distance {smallest:.4f}; halving the default reference moves it {self_change:.2e}: "
              f"ratio {smallest / self_change:.0f}x")


if __name__ == "__main__":
    main()
