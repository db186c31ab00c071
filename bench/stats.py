"""Percentiles shared by the benchmarks."""

from __future__ import annotations


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of values in seconds, in milliseconds."""
    return round(percentile(values, q / 100) * 1000, 3)
