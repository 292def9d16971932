"""How much a run measures: the full plan (results meant to be committed) and ``--quick`` (CI)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

FRAMEWORKS = ("sklearn", "pytorch", "tensorflow")
FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run; every load loop is bounded by these."""

    quick: bool
    frameworks: tuple[str, ...] = FRAMEWORKS
    formats: tuple[str, ...] = FORMATS
    concurrency: tuple[int, ...] = (1, 4, 16)
    wrk_seconds: float = 10.0
    warmup_seconds: float = 2.0
    rounds: int = 2  # round 1 runs the contenders A B C, round 2 C B A
    mme_levels: tuple[int, ...] = (1, 10, 50)
    mme_rounds: int = 2
    round_robin_models: int = 10
    pipeline_requests: int = 1000
    #: Streaming: requests per contender and round, each generating this many chunks, one per
    #: ``stream_token_ms`` (the script sleeps that long before each).
    stream_requests: int = 50
    stream_tokens: int = 32
    stream_token_ms: float = 10.0
    floor_seconds: float = 3.0
    start_deadline_s: float = 180.0
    stop_grace_s: float = 30.0
    #: Stop loading MME models when the machine has less than this much memory available.
    min_available_mb: int = 3000
    contenders: tuple[str, ...] = ("aws", "native", "front", "pool", "mms")
    scenarios: tuple[str, ...] = field(default=("single", "mme", "startup", "pipeline", "images", "streaming",
                                                "batching"))

    @property
    def mme_models(self) -> int:
        return max(max(self.mme_levels), self.round_robin_models)


def full_plan() -> Plan:
    return Plan(quick=False)


def quick_plan() -> Plan:
    """About 2-3 minutes on 2 cores (CI runs it: every contender and scenario must work; the figures
    are not the point): scikit-learn only, CSV only, one round, concurrency 1 and 16, 2 s per wrk
    point, 5 MME models."""
    return replace(full_plan(), quick=True, frameworks=("sklearn",), formats=("csv",), wrk_seconds=2.0,
                   concurrency=(1, 16), rounds=1,
                   warmup_seconds=0.5, mme_levels=(1, 5), mme_rounds=1, round_robin_models=5,
                   pipeline_requests=200, floor_seconds=1.0, stop_grace_s=20.0, stream_requests=10)
