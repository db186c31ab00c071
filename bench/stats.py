"""Percentiles shared by the benchmarks."""

from __future__ import annotations


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of values in seconds, in milliseconds."""
    return round(percentile(values, q / 100) * 1000, 3)


# Two-sided 95% t quantiles by sample size (n - 1 degrees of freedom); beyond the table 1.96 is close enough.
T95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}


def quantile_interval(values: list[float], q: float) -> tuple[float, float, float]:
    """A percentile of values in seconds, in ms, with a distribution-free 95% interval (binomial order statistics)."""
    ordered = sorted(values)
    n = len(ordered)
    spread = 1.96 * (n * q * (1 - q)) ** 0.5
    low, high = max(0, int(n * q - spread)), min(n - 1, int(n * q + spread + 1))
    return tuple(round(value * 1000, 3) for value in (percentile(ordered, q), ordered[low], ordered[high]))  # type: ignore[return-value]


def mean_interval(values: list[float]) -> list[float]:
    """A 95% t interval of the mean of a few runs."""
    if len(values) < 2:
        return [round(values[0], 1)] * 2 if values else []
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    half = T95.get(len(values), 1.96) * sd / len(values) ** 0.5
    return [round(mean - half, 1), round(mean + half, 1)]
