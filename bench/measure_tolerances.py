"""Measure what `schedcmp check`'s tolerances must separate: numeric noise versus real drift.

    python bench/measure_tolerances.py [--model M] [--steps 20]

For every compatible scheduler, generates the same case under conditions that should NOT count as drift
(a rerun; another CPU thread count, which changes the order of floating-point sums like another device
does) and under changes that MUST (Karras sigmas, "trailing" timestep spacing, another seed), and prints
max_abs and cosine distance of the float outputs, as `check` computes them.
"""

from __future__ import annotations

import argparse
import inspect
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompt", default="astronaut")
    args = parser.parse_args()

    import torch

    from schedcmp.ci.baseline import compact
    from schedcmp.core.names import ordered
    from schedcmp.core.plan import RunSpec
    from schedcmp.model import pipeline
    from schedcmp.model.sample import Sampler
    from schedcmp.quality import metrics

    pipeline.silence_libraries()
    model = pipeline.load(args.model, "cpu", "fp32")
    width, height = model.defaults.width, model.defaults.height

    def spec(name, overrides=None, seed=8):
        return RunSpec(
            "m",
            name,
            None,
            overrides or {},
            True,
            args.prompt,
            None,
            seed,
            args.steps,
            model.defaults.guidance_scale,
            width,
            height,
        )

    def distance(a, b):
        a, b = compact(a), compact(b)
        return metrics.max_abs_difference(a, b), metrics.cosine_distance(a, b)

    rows = []
    with Sampler(model) as sampler:
        for name in ordered(model.compatible):
            base = sampler.run(spec(name)).output
            if base is None:
                print(f"{name}: failed, skipped")
                continue
            torch.set_num_threads(1)
            one_thread = sampler.run(spec(name)).output
            torch.set_num_threads(2)
            found = {
                "rerun": distance(base, sampler.run(spec(name)).output),
                "threads 1 vs 2": distance(base, one_thread),
            }
            accepted = inspect.signature(sampler.classes[name].__init__).parameters
            if "use_karras_sigmas" in accepted:
                found["karras"] = distance(base, sampler.run(spec(name, {"use_karras_sigmas": True})).output)
            if "timestep_spacing" in accepted:
                trailing = sampler.run(spec(name, {"timestep_spacing": "trailing"})).output
                if trailing is not None:
                    found["trailing"] = distance(base, trailing)
            found["seed 9"] = distance(base, sampler.run(spec(name, seed=9)).output)
            rows.append((name, found))
            print(name, "  ".join(f"{k}: {v[0]:.4g}/{v[1]:.3g}" for k, v in found.items()), flush=True)

    print("\nmax_abs / cosine over all schedulers (min .. median .. max):")
    for condition in ("rerun", "threads 1 vs 2", "karras", "trailing", "seed 9"):
        values = [found[condition] for _, found in rows if condition in found]
        if not values:
            continue
        for index, label in ((0, "max_abs"), (1, "cosine")):
            column = [v[index] for v in values]
            print(
                f"  {condition:15s} {label:8s} "
                f"{min(column):.4g} .. {statistics.median(column):.4g} .. {max(column):.4g}"
            )


if __name__ == "__main__":
    main()
