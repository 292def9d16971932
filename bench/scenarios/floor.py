"""The in-process floor: ServedModel.invoke (decode + predict + encode) with no server at all."""

from __future__ import annotations

import time

from bench import artifacts
from bench.run import Run
from bench.stats import summarize


def measure(run: Run, framework: str, artifact: artifacts.Artifact, fmt: str) -> None:
    from handlers.base import Request
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    served = ServedModel.load(handler_class(framework)(), str(artifact.path))
    request = Request(body=artifacts.body(framework, fmt), content_type=artifacts.CONTENT_TYPES[fmt],
                      accept="application/json")
    try:
        for _ in range(20):
            served.invoke(request)
        samples = []
        deadline = time.perf_counter() + run.plan.floor_seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            served.invoke(request)
            samples.append(time.perf_counter() - started)
    finally:
        served.unload()
    run.add("floor", {"framework": framework, "format": fmt, **summarize(samples)})
