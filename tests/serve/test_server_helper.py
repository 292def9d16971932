"""The test helper's answer to the free-port race: a server whose port was taken starts again."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support import server as helper
from tests.support.models import SklearnArtifact


def test_a_server_whose_port_was_taken_starts_again_on_another(
        iris: SklearnArtifact, monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = helper.free_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(helper, "free_port", lambda: next(ports, None) or real_free_port())
        env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(iris.path)}
        with helper.run_server(env) as server:
            assert server.port != taken and server.attempts == 2
            assert httpx.get(server.url + "/ping", timeout=5).status_code == 200
