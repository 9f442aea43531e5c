"""Percentiles and medians: plain Python, no numpy."""

import math
import statistics

PERCENTILES = (50, 95, 99)


def percentile(sorted_values, q):
    """The q-th percentile (0..100) of already sorted values, interpolated linearly between
    the closest ranks (numpy's default method); None for no values."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(values):
    """count, p50, p95, p99 and max of values (milliseconds, say), rounded to 0.001."""
    ordered = sorted(values)
    summary = {"count": len(ordered)}
    for q in PERCENTILES:
        summary[f"p{q}"] = _round(percentile(ordered, q))
    summary["max"] = _round(ordered[-1] if ordered else None)
    return summary


def median(values):
    """The median of the values that are not None; None when there are none."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _round(value):
    return None if value is None else round(value, 3)
