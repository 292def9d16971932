"""A serial inference pipeline (scikit-learn scaler -> classifier, two servers), chained by a small
client the way the harness does (the first container's answer and its Content-Type become the
second's request), against the same two containers called alone: the difference is the hop."""

from __future__ import annotations

import http.client
import time
from contextlib import ExitStack
from pathlib import Path

from bench import artifacts, aws_stack, contenders
from bench.run import Run
from bench.stats import summarize


class KeepAlive:
    """One keep-alive connection to one server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: bytes, content_type: str) -> tuple[bytes, str]:
        self.conn.request("POST", "/invocations", body=body,
                          headers={"Content-Type": content_type, "Accept": "application/json"})
        response = self.conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"pipeline step answered {response.status}: {answer[:300]!r}")
        return answer, (response.getheader("Content-Type") or "application/json").split(";")[0]


def _timed(count: int, call: object) -> list[float]:
    assert callable(call)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def _measure(run: Run, first: KeepAlive, second: KeepAlive) -> dict[str, object]:
    body = artifacts.body("sklearn", "json")
    scaled, scaled_type = first.post(body, "application/json")
    count = run.plan.pipeline_requests

    def chain() -> None:
        answer, answer_type = first.post(body, "application/json")
        second.post(answer, answer_type)

    _timed(min(50, count), chain)  # warm-up
    alone_first = summarize(_timed(count, lambda: first.post(body, "application/json")))
    alone_second = summarize(_timed(count, lambda: second.post(scaled, scaled_type)))
    chained = summarize(_timed(count, chain))
    parts = alone_first["p50_ms"] + alone_second["p50_ms"]
    return {"scaler": alone_first, "classifier": alone_second, "chain": chained,
            "sum_of_parts_p50_ms": parts, "hop_overhead_p50_ms": chained["p50_ms"] - parts}


def _one(run: Run, contender: str, paths: tuple[Path, Path], round_index: int) -> None:
    scripts = (aws_stack.user_script("sklearn", transform=True), aws_stack.user_script("sklearn"))
    with ExitStack() as stack:
        ports = []
        for path, script in zip(paths, scripts, strict=True):
            launch = contenders.Launch("sklearn", path, 1, script)
            server = contenders.start(contender, launch, run.workdir, run.plan.start_deadline_s, run.aws_python)
            stack.callback(server.stop, run.plan.stop_grace_s)
            contenders.wait_invocation(server, "/invocations", artifacts.body("sklearn", "json"),
                                       "application/json", 120)
            ports.append(server.port)
        clients = [KeepAlive(port) for port in ports]
        try:
            result = _measure(run, clients[0], clients[1])
        finally:
            for client in clients:
                client.conn.close()
    run.add("pipeline", {"contender": contender, "round": round_index, **result})


def measure(run: Run) -> None:
    paths = artifacts.pipeline_pair(run.workdir / "artifacts" / "pipeline")
    for round_index in range(run.plan.mme_rounds):
        for contender in [c for c in run.order(round_index) if contenders.serves(c, multi_model=False)]:
            run.say(f"pipeline round {round_index + 1}: {contender}")
            try:
                _one(run, contender, paths, round_index)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                run.fail(f"pipeline {contender}: {exc}")
