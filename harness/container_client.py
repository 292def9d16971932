"""The one HTTP client the harness talks to containers with: ping, invoke, load, unload.

It owns the timeouts (docs/sagemaker-contract.md §1.3: answer within 60 s; §2.3 for loads) and the
errors a container that cannot be reached turns into: a ModelError with status 0 naming ``primary``
or the container's hostname, "it exited with code N" when it died (§1.6). Only the headers SageMaker
forwards reach a container (§1.4): Content-Type, Accept, Custom-Attributes and, for MME,
Target-Model.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from harness.backends.base import RunningContainer
from harness.config import HarnessConfig
from harness.errors import ModelError, model_error

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"


class ContainerTarget(Protocol):
    """What the client needs to know about a container: where it runs and how errors name it."""

    @property
    def endpoint(self) -> str: ...

    @property
    def label(self) -> str: ...  # 'primary' or the hostname, as SageMaker's messages name it

    @property
    def running(self) -> RunningContainer: ...


@dataclass(frozen=True)
class OutgoingRequest:
    """One request to a container: the body and the headers SageMaker forwards."""

    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_model: str | None = None  # MME containers only
    #: Seconds the container may take; None: HarnessConfig.invocation_timeout_s (batch transform sets
    #: ModelClientConfig.InvocationsTimeoutInSeconds).
    timeout_s: float | None = None

    def headers(self) -> dict[str, str]:
        """The HTTP headers; an absent value sends no header at all."""
        pairs = (("Content-Type", self.content_type), ("Accept", self.accept),
                 (CUSTOM_ATTRIBUTES, self.custom_attributes), (TARGET_MODEL, self.target_model))
        return {name: value for name, value in pairs if value is not None}


@dataclass(frozen=True)
class ContainerReply:
    """A container's answer to one request, whatever its status."""

    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    latency_us: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class ContainerStream:
    """A container's answer whose body is still arriving (InvokeEndpointWithResponseStream)."""

    def __init__(self, response: httpx.Response, started: float) -> None:
        self.response = response
        self.started = started

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str | None:
        return self.response.headers.get("content-type")

    @property
    def custom_attributes(self) -> str | None:
        return self.response.headers.get(CUSTOM_ATTRIBUTES)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (raw: no content decoding is negotiated with containers).
        httpx.RemoteProtocolError: the container closed the connection before the body's end (a chunked
        body without its last, empty chunk); httpx.ReadTimeout: no bytes within the read timeout."""
        return self.response.aiter_raw()

    async def whole(self) -> ContainerReply:
        """Read the rest at once (an error answer, which is short) and close."""
        try:
            await self.response.aread()
        finally:
            await self.response.aclose()
        return _reply(self.response, self.started)

    async def close(self) -> None:
        """Close the connection to the container (it stops a container that is still sending)."""
        await self.response.aclose()


class ResetAsOpened(httpx.AsyncBaseTransport):
    """httpcore asks a new connection for its socket's details at once; when the container has already
    reset it (a container dying as it starts), anyio finds no socket and raises AttributeError
    ("'NoneType' object has no attribute 'getpeername'") instead of a connection error, the race of
    encode/httpcore#239. This transport raises the ConnectError it means, for every call below."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except AttributeError as exc:
            raise httpx.ConnectError("connection reset as it opened", request=request) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


class ContainerClient:
    """Every call from the harness to a container goes through here."""

    def __init__(self, config: HarnessConfig) -> None:
        self.config = config
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """Created on first use, so that it belongs to the server's event loop."""
        if self._http is None:
            # No connection pool limit worth hitting locally; keep-alive makes small calls cheap.
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._http = httpx.AsyncClient(
                transport=ResetAsOpened(httpx.AsyncHTTPTransport(limits=limits)), trust_env=False
            )
            # Containers get only the headers SageMaker forwards: no default "Accept: */*" (a pipeline's
            # intermediate containers must see no Accept at all) and no compression negotiation.
            for default in ("Accept", "Accept-Encoding"):
                self._http.headers.pop(default, None)
        return self._http

    async def close(self) -> None:
        """Close the connections (when the harness stops)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _timeout(self, read_s: float) -> httpx.Timeout:
        return httpx.Timeout(read_s, connect=self.config.connect_timeout_s)

    # -- health ------------------------------------------------------------------------------------------
    async def healthy(self, running: RunningContainer, *, multi_model: bool) -> bool:
        """``GET /ping`` answers 200 within the ping timeout (and ``GET /models`` too for MME)."""
        paths = ["/ping", "/models"] if multi_model else ["/ping"]
        try:
            for path in paths:
                answer = await self.http.get(f"{running.base_url}{path}", timeout=self.config.ping_timeout_s)
                if answer.status_code != 200:
                    return False
        except httpx.HTTPError:
            return False
        return True

    # -- invocations ---------------------------------------------------------------------------------------
    async def invoke(self, container: ContainerTarget, path: str, request: OutgoingRequest) -> ContainerReply:
        """POST ``request`` to ``path``; a timeout or an unreachable container raises ModelError."""
        started = time.perf_counter()
        with self._reaching(container):
            response = await self.http.post(
                f"{container.running.base_url}{path}", content=request.body, headers=request.headers(),
                timeout=self._timeout(request.timeout_s or self.config.invocation_timeout_s),
            )
        return _reply(response, started)

    async def open_stream(self, container: ContainerTarget, path: str, request: OutgoingRequest) -> ContainerStream:
        """POST ``request`` to ``path`` and return once the status and headers are in; the body is read
        chunk by chunk from the result. The read timeout applies to the headers and to each chunk."""
        started = time.perf_counter()
        outgoing = self.http.build_request(
            "POST", f"{container.running.base_url}{path}", content=request.body, headers=request.headers(),
            timeout=self._timeout(request.timeout_s or self.config.invocation_timeout_s),
        )
        with self._reaching(container):
            response = await self.http.send(outgoing, stream=True)
        return ContainerStream(response, started)

    @contextlib.contextmanager
    def _reaching(self, container: ContainerTarget) -> Iterator[None]:
        """Until a container's status line is in: a timeout or an unreachable container is a ModelError."""
        try:
            yield
        except httpx.ConnectTimeout as exc:
            raise self.unreachable(container, exc) from None
        except httpx.TimeoutException:
            raise self._timed_out(container) from None
        except httpx.HTTPError as exc:
            raise self.unreachable(container, exc) from None

    async def execution_parameters(self, running: RunningContainer) -> dict[str, object] | None:
        """``GET /execution-parameters`` (batch transform): the container's JSON object, or None when it
        answers 404 or not at all; ValueError for any other answer."""
        try:
            answer = await self.http.get(f"{running.base_url}/execution-parameters",
                                         timeout=self.config.ping_timeout_s)
        except httpx.HTTPError:
            return None
        if answer.status_code == 404:
            return None
        try:
            parsed = answer.json() if answer.status_code == 200 else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError(f"GET /execution-parameters answered {answer.status_code} "
                             f"{answer.text[:200]!r}; expected 200 with a JSON object, or 404")
        return parsed

    # -- MME model management -----------------------------------------------------------------------------
    async def load(self, container: ContainerTarget, name: str, model_dir: Path,
                   target_model: str) -> ContainerReply:
        """``POST /models``, whatever its answer; an unreachable container raises ModelError."""
        body = {"model_name": name, "url": container.running.model_url(model_dir)}
        started = time.perf_counter()
        try:
            response = await self.http.post(f"{container.running.base_url}/models", json=body,
                                            headers={TARGET_MODEL: target_model},
                                            timeout=self._timeout(self.config.model_load_timeout_s))
        except httpx.HTTPError as exc:
            raise self.unreachable(container, exc) from None
        return _reply(response, started)

    async def unload(self, container: ContainerTarget, name: str) -> None:
        """``DELETE /models/<name>``; a container that cannot be reached has unloaded everything anyway."""
        try:
            await self.http.delete(f"{container.running.base_url}/models/{name}",
                                   timeout=self.config.model_load_timeout_s)
        except httpx.HTTPError:
            pass

    # -- errors --------------------------------------------------------------------------------------------
    def rejected(self, container: ContainerTarget, status: int, text: str) -> ModelError:
        """The ModelError for a container's 4xx/5xx answer."""
        return model_error(self.config.region, container.endpoint, container.label, status, text)

    def unreachable(self, container: ContainerTarget, exc: Exception) -> ModelError:
        """The ModelError for a container that did not take the request: dead, or not accepting."""
        code = container.running.exit_code()
        detail = f"it exited with code {code}" if code is not None else (str(exc) or type(exc).__name__)
        return model_error(self.config.region, container.endpoint, container.label, 0,
                           f"Could not reach container {container.label}: {detail}")

    def _timed_out(self, container: ContainerTarget) -> ModelError:
        return model_error(
            self.config.region, container.endpoint, container.label, 0,
            f"Your invocation timed out while waiting for a response from container {container.label}. "
            "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, "
            "and try again.",
        )


def _reply(response: httpx.Response, started: float) -> ContainerReply:
    return ContainerReply(
        status=response.status_code,
        body=response.content,
        content_type=response.headers.get("content-type"),
        custom_attributes=response.headers.get(CUSTOM_ATTRIBUTES),
        latency_us=(time.perf_counter() - started) * 1e6,
    )
