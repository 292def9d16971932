"""Endpoint metrics under SageMaker's CloudWatch names, per endpoint and production variant.

Names and units follow SageMaker (docs/sagemaker-contract.md §2.4, §3.3): latencies in microseconds; ``Invocations``,
``Invocation4XXErrors``, ``Invocation5XXErrors`` and ``ModelCacheHit`` are per-request samples whose
Sum counts and whose Average is a rate; ``LoadedModelCount`` is the latest value per instance summed.
Each metric keeps CloudWatch's statistics: SampleCount, Sum, Minimum, Maximum, Average.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

#: Every metric's unit as SageMaker publishes it to CloudWatch. Counts and rates are unit "None", not
#: "Count": https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html and
#: https://docs.aws.amazon.com/sagemaker/latest/dg/multi-container-metrics.html ("Units: None").
UNITS = {
    "Invocations": "None",
    "Invocation4XXErrors": "None",
    "Invocation5XXErrors": "None",
    "ModelLatency": "Microseconds",
    "OverheadLatency": "Microseconds",
    "ContainerLatency": "Microseconds",
    "ModelLoadingWaitTime": "Microseconds",
    "ModelDownloadingTime": "Microseconds",
    "ModelLoadingTime": "Microseconds",
    "ModelUnloadingTime": "Microseconds",
    "ModelCacheHit": "None",
    "LoadedModelCount": "None",
    # Asynchronous inference: requests queued or being processed, sampled at every change.
    "ApproximateBacklogSize": "None",
    # Serverless: the time a cold start took (monitoring-cloudwatch.html, serverless endpoints).
    "ModelSetupTime": "Microseconds",
    # The harness's own, not SageMaker's: copies for a shadow variant not sent because it already had
    # HarnessConfig.shadow_max_in_flight running (docs/harness.md "Shadow variants").
    "ShadowCopiesDropped": "None",
}


@dataclass
class Statistic:
    """CloudWatch-style statistics of one metric."""

    count: int = 0
    total: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0

    def add(self, value: float) -> None:
        """Record one sample."""
        if self.count == 0:
            self.minimum = self.maximum = value
        else:
            self.minimum = min(self.minimum, value)
            self.maximum = max(self.maximum, value)
        self.count += 1
        self.total += value

    def as_dict(self) -> dict[str, float]:
        """SampleCount, Sum, Minimum, Maximum, Average."""
        return {
            "SampleCount": self.count,
            "Sum": self.total,
            "Minimum": self.minimum,
            "Maximum": self.maximum,
            "Average": self.total / self.count if self.count else 0.0,
        }


class Metrics:
    """Thread-safe metric store keyed by (endpoint, variant, container or None, metric name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str, str | None, str], Statistic] = {}
        self._gauges: dict[tuple[str, str, str], int] = {}  # (endpoint, variant, instance) -> loaded models

    def record(self, endpoint: str, variant: str, name: str, value: float, container: str | None = None) -> None:
        """Add one sample of metric ``name``."""
        key = (endpoint, variant, container, name)
        with self._lock:
            self._stats.setdefault(key, Statistic()).add(value)

    def set_loaded_models(self, endpoint: str, variant: str, instance: str, count: int) -> None:
        """Record the number of models loaded in one instance (the LoadedModelCount gauge)."""
        with self._lock:
            self._gauges[(endpoint, variant, instance)] = count
        self.record(endpoint, variant, "LoadedModelCount", float(self.loaded_models(endpoint, variant)))

    def loaded_models(self, endpoint: str, variant: str) -> int:
        """Models loaded across all instances of a variant right now."""
        with self._lock:
            return sum(v for (e, var, _), v in self._gauges.items() if e == endpoint and var == variant)

    def forget(self, endpoint: str) -> None:
        """Drop an endpoint's metrics (after DeleteEndpoint)."""
        with self._lock:
            for key in [k for k in self._stats if k[0] == endpoint]:
                del self._stats[key]
            for gkey in [k for k in self._gauges if k[0] == endpoint]:
                del self._gauges[gkey]

    def snapshot(self, endpoint: str) -> dict[str, Any]:
        """``{variant: {"metrics": {name: stats}, "containers": {host: {name: stats}}}}`` for one endpoint."""
        out: dict[str, Any] = {}
        with self._lock:
            for (ep, variant, container, name), stat in sorted(
                self._stats.items(), key=lambda kv: (kv[0][1], kv[0][2] or "", kv[0][3])
            ):
                if ep != endpoint:
                    continue
                entry = out.setdefault(variant, {"metrics": {}, "containers": {}})
                values = {**stat.as_dict(), "Unit": UNITS[name]}
                if container is None:
                    entry["metrics"][name] = values
                else:
                    entry["containers"].setdefault(container, {})[name] = values
            for (ep, variant, _instance), _count in self._gauges.items():
                if ep == endpoint:
                    entry = out.setdefault(variant, {"metrics": {}, "containers": {}})
                    entry["LoadedModelCountNow"] = sum(
                        v for (e, var, _), v in self._gauges.items() if e == endpoint and var == variant
                    )
        return out
