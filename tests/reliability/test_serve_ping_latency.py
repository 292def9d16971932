"""/ping stays fast while the native engine is busy: its p99 is under 1 s while a huge artifact loads
(an MME model whose directory is 1 GiB in 2 000 files and whose ``model_fn`` reads all of it) and
while hundreds of large requests (1 MiB each) queue for one worker.

/ping is measured from a separate process (``PING_POLLER``), so the test's own load generator cannot
delay the measurement; it polls back to back, 20 ms apart, until told to stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.reliability.conftest import report
from tests.reliability.mme_traffic import ROW, constant_models, constant_of
from tests.support.models import write_script
from tests.support.server import RunningServer, run_server

P99_LIMIT_S = 1.0
HUGE_BYTES = 2**30  # 1 GiB, sparse on disk
SMALL_FILES = 2000
QUEUED_REQUESTS = 200
REQUEST_BYTES = 2**20

PING_POLLER = """
import http.client, json, os, sys, time
port, stop_file, out_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
latencies, statuses = [], {}
while not os.path.exists(stop_file):
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/ping")
        status = conn.getresponse().status
        conn.close()
    except OSError as exc:
        status = type(exc).__name__
    latencies.append(time.perf_counter() - started)
    statuses[str(status)] = statuses.get(str(status), 0) + 1
    time.sleep(0.02)
with open(out_file, "w") as out:
    json.dump({"latencies": latencies, "statuses": statuses}, out)
"""


class PingPoller:
    """``PING_POLLER`` in its own process for the duration of a ``with`` block."""

    def __init__(self, server: RunningServer, work: Path) -> None:
        self.server = server
        self.stop_file = work / "stop-ping"
        self.out_file = work / "ping.json"
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}

    def __enter__(self) -> PingPoller:
        script = self.stop_file.parent / "ping_poller.py"
        script.write_text(PING_POLLER)
        self.process = subprocess.Popen([sys.executable, str(script), str(self.server.port), str(self.stop_file),
                                         str(self.out_file)])
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_file.write_text("")
        try:
            self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        if self.out_file.exists():
            result = json.loads(self.out_file.read_text())
            self.latencies, self.statuses = sorted(result["latencies"]), result["statuses"]

    def p99(self) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * 0.99))]

    def line(self) -> str:
        lat = self.latencies
        return (f"/ping x{len(lat)}: p50 {lat[len(lat) // 2] * 1000:.1f} ms, p99 {self.p99() * 1000:.1f} ms, "
                f"max {lat[-1] * 1000:.1f} ms, statuses {self.statuses}")


#: model_fn reads every byte of the artifact (hashing it), then loads the joblib model.
HUGE_MODEL_SCRIPT = """
import hashlib, os
import joblib

def model_fn(model_dir):
    digest = hashlib.sha256()
    for root, _, files in os.walk(model_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                for chunk in iter(lambda: handle.read(8 << 20), b""):
                    digest.update(chunk)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


def huge_artifact(directory: Path) -> Path:
    constant_models(directory.parent, 1)  # m00: answers 0.0
    source = directory.parent / "m00"
    source.rename(directory)
    with open(directory / "weights.bin", "wb") as weights:
        weights.truncate(HUGE_BYTES)  # sparse: costs no disk, reads as zeros
    for index in range(SMALL_FILES):
        shard = directory / "shards" / f"{index // 100:02d}"
        shard.mkdir(parents=True, exist_ok=True)
        (shard / f"{index}.bin").write_bytes(b"w" * 512)
    write_script(directory, HUGE_MODEL_SCRIPT)
    return directory


def test_ping_p99_under_1s_while_a_huge_artifact_loads(tmp_path: Path) -> None:
    small = constant_models(tmp_path / "small", 2)
    huge = huge_artifact(tmp_path / "huge")
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        answer = client.post("/models", json={"model_name": "m01", "url": str(small["m01"])})
        assert answer.status_code == 200, answer.text
        invoked = []
        with PingPoller(server, tmp_path) as poller:
            started = time.monotonic()
            loading = subprocess.Popen([sys.executable, "-c", (
                "import sys, httpx; r = httpx.post(sys.argv[1] + '/models', timeout=600, "
                "json={'model_name': 'huge', 'url': sys.argv[2]}); print(r.status_code, r.text)")
                , server.url, str(huge)], stdout=subprocess.PIPE, text=True)
            while loading.poll() is None:  # the already-loaded model keeps answering meanwhile
                answer = client.post("/models/m01/invoke", json=ROW)
                invoked.append(answer.status_code == 200 and answer.json() == [constant_of("m01")])
                time.sleep(0.05)  # request spacing, not synchronisation
            load_s = time.monotonic() - started
            load_answer = (loading.stdout.read() if loading.stdout else "").strip()
        assert load_answer.startswith("200"), load_answer
        assert client.post("/models/huge/invoke", json=ROW).json() == [0.0]
    report("/ping latency under load (native engine)",
           f"while a {HUGE_BYTES / 2**30:.1f} GiB artifact in {SMALL_FILES} files loaded ({load_s:.1f} s): "
           f"{poller.line()}; {sum(invoked)}/{len(invoked)} invocations of another model answered meanwhile")
    assert poller.latencies and set(poller.statuses) == {"200"}, poller.statuses
    assert all(invoked) and len(invoked) >= 3
    assert poller.p99() < P99_LIMIT_S, poller.line()


#: input_fn keeps only the body's length; predict takes 5 ms, so the queue drains at ~200 requests/s.
QUEUE_SCRIPT = """
import json, time

def model_fn(model_dir):
    return "queue"

def input_fn(body, content_type):
    return len(body)

def predict_fn(size, model):
    time.sleep(0.005)
    return size

def output_fn(size, accept):
    return json.dumps({"bytes": size}), "application/json"
"""


async def _send_all(url: str, count: int, body: bytes) -> list[int]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def one() -> int:
            try:
                answer = await client.post(url + "/invocations", content=body,
                                           headers={"Content-Type": "application/octet-stream"})
            except httpx.HTTPError:
                return 0
            return answer.status_code if answer.json() == {"bytes": len(body)} else -answer.status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


def test_ping_p99_under_1s_while_hundreds_of_large_requests_queue(tmp_path: Path) -> None:
    model = tmp_path / "model"
    write_script(model, QUEUE_SCRIPT)
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(model),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SERVE_MAX_IN_FLIGHT_PER_MODEL": str(QUEUED_REQUESTS * 2)}
    body = os.urandom(REQUEST_BYTES)
    with run_server(env) as server:
        with PingPoller(server, tmp_path) as poller:
            started = time.monotonic()
            statuses = asyncio.run(_send_all(server.url, QUEUED_REQUESTS, body))
            elapsed = time.monotonic() - started
        assert httpx.get(server.url + "/ping").status_code == 200
    report("/ping latency under load (native engine)",
           f"while {QUEUED_REQUESTS} requests of {REQUEST_BYTES // 2**20} MiB queued for one worker ({elapsed:.1f} s, "
           f"{statuses.count(200)} answered 200): {poller.line()}")
    assert statuses == [200] * QUEUED_REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    assert poller.latencies and set(poller.statuses) == {"200"}, poller.statuses
    assert poller.p99() < P99_LIMIT_S, poller.line()
