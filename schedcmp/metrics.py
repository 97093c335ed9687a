"""Distances between two images or float outputs, and the tiered verdict of `schedcmp check`. numpy only."""

from __future__ import annotations

from dataclasses import dataclass

MATCH = "match"
WITHIN = "within-tolerance"
DRIFT = "drift"
MISSING = "missing-baseline"
ERROR = "error"
NONDETERMINISTIC = "nondeterministic"

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


def compare(baseline_output, result_output, baseline_rgb, result_rgb, same_hashes: bool, tolerance: Tolerance) -> tuple[str, dict]:
    """The verdict and the metrics: identical hashes match; else the tolerance decides; shape or dtype drifts."""
    import numpy as np

    baseline_output, result_output = np.asarray(baseline_output), np.asarray(result_output)
    if same_hashes:
        return MATCH, {"max_abs": 0.0, "cosine": 0.0, "ssim": 1.0, "changed_pixels": 0.0}
    if baseline_output.shape != result_output.shape or baseline_output.dtype != result_output.dtype:
        return DRIFT, {"reason": f"shape/dtype {result_output.shape} {result_output.dtype} != baseline {baseline_output.shape} {baseline_output.dtype}"}
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
