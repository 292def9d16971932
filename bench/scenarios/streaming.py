"""Streamed answers (docs/handlers.md "Streaming"): for a script that generates its answer token by
token, the time to the first chunk against the time to the whole answer, per contender that streams.

Only servekit's native engine streams (default and front); multi-model-server (AWS's stack and
servekit mms) sends whole answers, so those contenders are not measured here (servekit mms refuses
the request with 501, docs/engines.md).
"""

from __future__ import annotations

import http.client
import json
import time

from bench import contenders
from bench.run import Run
from tests.support.models import sklearn_artifact

#: The contenders that can stream.
STREAMING = ("native", "front")
#: One token's generation, simulated: the script sleeps this long before each chunk.
SCRIPT = """
import json, time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    for index in range(data["tokens"]):
        time.sleep(data["token_ms"] / 1000)
        yield json.dumps({"token": index}) + "\\n"

def output_fn(stream, accept):
    return stream, "application/jsonlines"
"""


def timed_request(port: int, body: bytes, timeout_s: float = 60.0) -> tuple[float, float]:
    """(ms to the first chunk's bytes, ms to the answer's end) of one streamed request, from just
    before the request is sent; anything but a complete 200 chunked answer raises."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        started = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200 or response.getheader("Transfer-Encoding") != "chunked":
            raise RuntimeError(f"answered {response.status} {response.getheaders()}: {response.read()[:300]!r}")
        first = response.read1(65536)  # returns once the first chunk's bytes are in
        to_first = time.perf_counter() - started
        rest = response.read()
        to_whole = time.perf_counter() - started
    finally:
        conn.close()
    if not first:
        raise RuntimeError("the streamed answer had no chunk")
    if (first + rest).count(b"\n") != json.loads(body)["tokens"]:
        raise RuntimeError(f"incomplete answer: {(first + rest)[:300]!r}")
    return to_first * 1000, to_whole * 1000


def _one(run: Run, contender: str, launch: contenders.Launch, round_index: int) -> None:
    plan = run.plan
    body = json.dumps({"tokens": plan.stream_tokens, "token_ms": plan.stream_token_ms}).encode()
    server = contenders.start(contender, launch, run.workdir, plan.start_deadline_s)
    try:
        timed_request(server.port, body)  # warm-up
        times = [timed_request(server.port, body) for _ in range(plan.stream_requests)]
    finally:
        server.stop(plan.stop_grace_s)
    run.add("streaming", {"framework": launch.framework, "contender": contender, "round": round_index,
                          "tokens": plan.stream_tokens, "token_ms": plan.stream_token_ms,
                          "first_chunk_ms": [t[0] for t in times], "whole_ms": [t[1] for t in times]})


def measure(run: Run) -> None:
    skipped = [c for c in run.contenders() if c not in STREAMING and contenders.serves(c, multi_model=False)]
    if skipped:
        run.say(f"streaming: {', '.join(skipped)} cannot stream (multi-model-server sends whole answers); not measured")
    artifact = sklearn_artifact(run.workdir / "artifacts" / "sklearn" / "streaming" / "model", code=SCRIPT)
    launch = contenders.Launch("sklearn", artifact.path, 1)
    for round_index in range(run.plan.rounds):
        for contender in [c for c in run.order(round_index) if c in STREAMING]:
            run.say(f"streaming round {round_index + 1}: {contender}")
            try:
                _one(run, contender, launch, round_index)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                run.fail(f"streaming {contender}: {exc}")
