"""harness/container_client.py: a connection the container resets as it opens.

httpcore then raises AttributeError from anyio instead of a connection error (encode/httpcore#239);
seen in CI on a container dying at start. The harness must read it as an unreachable container: the
endpoint fails its ping health check with SageMaker's reason, and an invocation is a ModelError.
The race cannot be provoked on demand, so the transport under the harness's ResetAsOpened raises
what httpcore raised then.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from harness.config import HarnessConfig
from harness.container_client import ContainerClient, OutgoingRequest, ResetAsOpened
from harness.errors import ModelError


def reset_as_opened(request: httpx.Request) -> httpx.Response:
    raise AttributeError("'NoneType' object has no attribute 'getpeername'")


def client(tmp_path: Path) -> ContainerClient:
    containers = ContainerClient(HarnessConfig(state_dir=tmp_path))
    containers._http = httpx.AsyncClient(transport=ResetAsOpened(httpx.MockTransport(reset_as_opened)))
    return containers


def running() -> SimpleNamespace:
    return SimpleNamespace(base_url="http://127.0.0.1:9", exit_code=lambda: None)


def test_a_reset_connection_is_an_unhealthy_container(tmp_path: Path) -> None:
    containers = client(tmp_path)
    assert asyncio.run(containers.healthy(running(), multi_model=False)) is False  # type: ignore[arg-type]
    assert asyncio.run(containers.execution_parameters(running())) is None  # type: ignore[arg-type]


def test_a_reset_connection_is_an_unreachable_container_for_an_invocation(tmp_path: Path) -> None:
    target = SimpleNamespace(endpoint="ep", label="primary", running=running())
    request = OutgoingRequest(body=b"1", content_type="text/csv")
    with pytest.raises(ModelError, match="Could not reach container primary: connection reset as it opened"):
        asyncio.run(client(tmp_path).invoke(target, "/invocations", request))  # type: ignore[arg-type]


def test_a_reset_connection_is_an_unreachable_container_for_model_management(tmp_path: Path) -> None:
    target = SimpleNamespace(endpoint="ep", label="primary", running=running())
    target.running.model_url = lambda model_dir: "file:///opt/ml/models/m"
    with pytest.raises(ModelError, match="Could not reach container primary: connection reset as it opened"):
        asyncio.run(client(tmp_path).load(target, "m", tmp_path, "m.tar.gz"))  # type: ignore[arg-type]
    asyncio.run(client(tmp_path).unload(target, "m"))  # type: ignore[arg-type]  # unloaded with the container
