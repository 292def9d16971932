"""Percentiles and ranges of latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import statistics


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "p50_ms": percentile(ordered, 0.5) * 1000,
            "p99_ms": percentile(ordered, 0.99) * 1000, "mean_ms": statistics.fmean(ordered) * 1000}
