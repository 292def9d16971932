"""SERVE_MAX_DECODED_MB reaches the workers of both engines: a body under the payload limit whose
decoded array exceeds the cap is refused with 413 before it is allocated."""

from __future__ import annotations

import io

import httpx
import numpy as np

from tests.support.models import SklearnArtifact
from tests.support.server import run_server

#: 2 MiB of float64 rows: under the 6 MiB payload limit, over a 1 MiB decoded-size cap.
ROWS = np.zeros((65536, 4))


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_decoded_size_cap_reaches_the_workers(engine: str, iris: SklearnArtifact) -> None:
    env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(iris.path),
           "SERVE_MAX_DECODED_MB": "1"}
    headers = {"Content-Type": "application/x-npy", "Accept": "application/json"}
    with run_server(env) as server:
        refused = httpx.post(server.url + "/invocations", content=npy(ROWS), headers=headers, timeout=60)
        assert refused.status_code == 413, refused.text
        assert "1.0 MiB" in refused.text and "Traceback" not in refused.text
        small = httpx.post(server.url + "/invocations", content=npy(ROWS[:10]), headers=headers, timeout=60)
        assert small.status_code == 200, small.text


def test_bodies_up_to_the_payload_limit_round_trip(engine: str, iris: SklearnArtifact) -> None:
    """A request near SAGEMAKER_MAX_PAYLOAD_IN_MB (6 MiB) and its ~0.6 MB answer cross the worker pipe
    whole (both are larger than a socket buffer)."""
    rows = np.tile(np.asarray(iris.rows, dtype=float), (190000 // len(iris.rows) + 1, 1))[:190000]
    env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(iris.path)}
    with run_server(env) as server:
        for _ in range(3):  # the pipe must stay usable after each large message
            answer = httpx.post(server.url + "/invocations", content=npy(rows),
                                headers={"Content-Type": "application/x-npy", "Accept": "application/json"},
                                timeout=120)
            assert answer.status_code == 200, answer.text[:500]
            predictions = answer.json()
            assert len(predictions) == len(rows)
            assert [float(p) for p in predictions[: len(iris.expected)]] == [float(e) for e in iris.expected]
