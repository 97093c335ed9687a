"""Distances between two images or float outputs, and the tiered verdict of `schedcmp check`. numpy only."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from schedcmp.core.records import Verdict

# The verdict vocabulary is declared once, in schedcmp.core.records.
MATCH, WITHIN, DRIFT = Verdict.MATCH, Verdict.WITHIN, Verdict.DRIFT
MISSING, ERROR, NONDETERMINISTIC = Verdict.MISSING, Verdict.ERROR, Verdict.NONDETERMINISTIC

# A pixel counts as changed when one of its channels moved by more than this many 8-bit levels.
CHANGED_PIXEL_LEVELS = 2


@dataclass(frozen=True)
class Tolerance:
    """How far a regenerated float output (H×W×C in [0, 1]) may be from the baseline's and still pass."""

    max_abs: float
    cosine: float

    def admits(self, max_abs: float, cosine: float) -> bool:
        return max_abs <= self.max_abs and cosine <= self.cosine


def max_abs_difference(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def cosine_distance(a, b) -> float:
    """1 − cosine similarity of the outputs centred on mid-grey (so that a brightness change counts)."""
    import numpy as np

    x = np.asarray(a, np.float64).ravel() * 2 - 1
    y = np.asarray(b, np.float64).ravel() * 2 - 1
    norms = np.linalg.norm(x) * np.linalg.norm(y)
    if norms == 0:
        return 0.0 if np.array_equal(x, y) else 1.0
    return float(max(0.0, 1.0 - np.dot(x, y) / norms))


def changed_pixel_ratio(rgb_a, rgb_b, levels: int = CHANGED_PIXEL_LEVELS) -> float:
    """Share of pixels where some channel differs by more than `levels` (uint8 images)."""
    import numpy as np

    difference = np.abs(np.asarray(rgb_a, np.int16) - np.asarray(rgb_b, np.int16)).max(axis=-1)
    return float(np.mean(difference > levels))


def ssim(rgb_a, rgb_b, window: int = 7) -> float:
    """Mean structural similarity of the luma of two uint8 images (Wang et al. 2004, uniform window)."""
    import numpy as np
    from scipy.ndimage import uniform_filter

    def luma(rgb):
        rgb = np.asarray(rgb, np.float64)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114

    x, y = luma(rgb_a), luma(rgb_b)
    window = min(window, *x.shape)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean_x, mean_y = uniform_filter(x, window), uniform_filter(y, window)
    var_x = uniform_filter(x * x, window) - mean_x**2
    var_y = uniform_filter(y * y, window) - mean_y**2
    covariance = uniform_filter(x * y, window) - mean_x * mean_y
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def compare(
    baseline_output, result_output, baseline_rgb, result_rgb, same_hashes: bool, tolerance: Tolerance
) -> tuple[str, dict]:
    """The verdict and the metrics: identical hashes match; else the tolerance decides; shape or dtype drifts."""
    import numpy as np

    baseline_output, result_output = np.asarray(baseline_output), np.asarray(result_output)
    if same_hashes:
        return MATCH, {"max_abs": 0.0, "cosine": 0.0, "ssim": 1.0, "changed_pixels": 0.0}
    if baseline_output.shape != result_output.shape or baseline_output.dtype != result_output.dtype:
        return DRIFT, {
            "reason": f"shape/dtype {result_output.shape} {result_output.dtype} "
            f"!= baseline {baseline_output.shape} {baseline_output.dtype}"
        }
    metrics = {
        "max_abs": max_abs_difference(baseline_output, result_output),
        "cosine": cosine_distance(baseline_output, result_output),
        "ssim": ssim(baseline_rgb, result_rgb),
        "changed_pixels": changed_pixel_ratio(baseline_rgb, result_rgb),
    }
    verdict = WITHIN if tolerance.admits(metrics["max_abs"], metrics["cosine"]) else DRIFT
    return verdict, metrics


def diff_heatmap(rgb_a, rgb_b):
    """A heat map of |a − b| (max over channels), black = same, through red to yellow = most changed.

    Scaled so that the largest difference is full brightness, with a floor so that a one-level change is
    still visible; returns an H×W×3 uint8 array.
    """
    import numpy as np

    difference = np.abs(np.asarray(rgb_a, np.int16) - np.asarray(rgb_b, np.int16)).max(axis=-1).astype(np.float64)
    scale = max(float(difference.max()), 8.0)
    level = np.clip(difference / scale, 0, 1)
    red = np.clip(level * 2, 0, 1)
    green = np.clip(level * 2 - 1, 0, 1)
    return (np.stack([red, green, np.zeros_like(level)], axis=-1) * 255).round().astype(np.uint8)


# -- convergence to a reference ------------------------------------------------------------------------


def latent_rmse(latent, reference) -> float:
    """Root-mean-square difference of two final latents (any shape, same size)."""
    import numpy as np

    difference = np.asarray(latent, np.float64) - np.asarray(reference, np.float64)
    return float(np.sqrt(np.mean(difference**2)))


def psnr(output, reference) -> float:
    """Peak signal-to-noise ratio in dB of two float images in [0, 1]; inf when they are equal."""
    import math

    import numpy as np

    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


class Better(enum.StrEnum):
    """Which way a distance to the reference gets closer."""

    LOWER = "lower"
    HIGHER = "higher"


# Every distance to a reference (the fields of schedcmp.core.records.Distance) and the way it gets closer: the one
# definition the step search, the summary and the report read.
METRICS: dict[str, Better] = {"latent_rmse": Better.LOWER, "psnr": Better.HIGHER, "ssim": Better.HIGHER}


def closer(metric: str, a: float, b: float) -> bool:
    """`a` is strictly closer to the reference than `b`."""
    return a > b if METRICS[metric] is Better.HIGHER else a < b


def as_close(metric: str, value: float, target: float) -> bool:
    """`value` is at least as close to the reference as `target`."""
    return value >= target if METRICS[metric] is Better.HIGHER else value <= target


def closest_first(metric: str, value: float) -> float:
    """A sort key that puts the closest value first."""
    return -value if METRICS[metric] is Better.HIGHER else value


@dataclass(frozen=True)
class OrderFit:
    """The empirical order of convergence: error ∝ NFE^(−order) over the points from `first` to `last`."""

    order: float | None
    first: int | None = None  # index of the first point of the fitted range (points sorted by NFE)
    last: int | None = None
    r_squared: float | None = None
    reason: str | None = None  # why there is no fit


# A straight line in log-log must explain this much of the variance, over at least this many points.
FIT_MIN_R_SQUARED = 0.98
FIT_MIN_POINTS = 3
# Errors that fall slower than NFE^-0.25 do not count as converging.
FIT_MIN_ORDER = 0.25


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and R² of y against x."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    syy = sum((y - mean_y) ** 2 for y in ys)
    slope = sxy / sxx
    r_squared = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return slope, r_squared


def fit_order(nfes: list[int], errors: list[float]) -> OrderFit:
    """Fit log(error) against log(NFE) over the widest run of consecutive step counts where a line holds.

    Points must be sorted by NFE. Small step counts are often not yet in the asymptotic regime and large ones
    can flatten at the reference's own error, so the fit looks for the longest window (at least
    FIT_MIN_POINTS) with R² ≥ FIT_MIN_R_SQUARED and a falling error; among equally long ones, the one at the
    most NFE. No such window: no fit, with the reason.
    """
    import math

    if len(nfes) < FIT_MIN_POINTS:
        return OrderFit(None, reason=f"needs at least {FIT_MIN_POINTS} step counts")
    if any(e is None or not math.isfinite(e) for e in errors):
        return OrderFit(None, reason="an error is missing")
    if any(e <= 0 for e in errors):
        return OrderFit(None, reason="an error is zero (the run equals the reference)")
    xs, ys = [math.log(n) for n in nfes], [math.log(e) for e in errors]
    if len(set(xs)) < len(xs):
        return OrderFit(None, reason="two step counts gave the same NFE")
    for width in range(len(xs), FIT_MIN_POINTS - 1, -1):
        for first in range(len(xs) - width, -1, -1):
            slope, r_squared = line_fit(xs[first : first + width], ys[first : first + width])
            if -slope >= FIT_MIN_ORDER and r_squared >= FIT_MIN_R_SQUARED:
                return OrderFit(-slope, first, first + width - 1, r_squared)
    slope, _ = line_fit(xs, ys)
    if -slope < FIT_MIN_ORDER:
        return OrderFit(None, reason="errors do not fall with more steps")
    return OrderFit(None, reason="no straight stretch in log(error) against log(NFE)")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: (cost, error), both lower is better.

    A point is dominated when another costs no more and errs no more, and is better in one. Equal points
    are all kept.
    """
    front = []
    for index, (cost, error) in enumerate(points):
        dominated = any(
            other_cost <= cost and other_error <= error and (other_cost < cost or other_error < error)
            for other_cost, other_error in points
        )
        if not dominated:
            front.append(index)
    return front
