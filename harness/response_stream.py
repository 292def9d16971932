"""InvokeEndpointWithResponseStream: a container's streamed answer as AWS's event stream.

The request is checked and routed as InvokeEndpoint's (harness.runtime): single model, or Direct
multi-container with TargetContainerHostname. The service model's request has no TargetModel member,
and SageMaker strips headers the API does not list (docs/sagemaker-contract.md §5.6), so a multi-model
endpoint answers as it does to InvokeEndpoint without TargetModel; a serial pipeline and inference
components are refused with one line (docs/harness.md "Streaming").

Until the container's status line is in, errors are ordinary rest-json errors (ModelError for its
4xx/5xx). From then on the answer is HTTP 200 ``application/vnd.amazon.eventstream``: each piece of
the container's body becomes a PayloadPart the moment it arrives, and a failure ends the stream with one
ModelStreamError (StreamBroken when the container's body ends early, ModelInvocationTimeExceeded past
a timeout) or InternalStreamFailure (the harness itself failed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING

import anyio
import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from harness import eventstream
from harness.container_client import ContainerStream
from harness.data_capture import DataCapture, Exchange
from harness.errors import ModelError, ValidationError
from harness.running import ContainerRuntime, Deployment, Instance, VariantDeployment
from harness.runtime import Invocation, Router
from harness.validation import format_errors, operation_model, validation_errors

if TYPE_CHECKING:
    from botocore.model import OperationModel

log = logging.getLogger("harness")
OPERATION = "InvokeEndpointWithResponseStream"
#: Request members the harness cannot honour; each is refused, naming it.
REFUSED_MEMBERS = {
    "SessionId": "stateful sessions are not emulated by the local harness",
}


def _operation() -> OperationModel:
    """botocore's model of the operation; RuntimeError when the installed botocore has none."""
    operation = operation_model("sagemaker-runtime", OPERATION)
    if operation is None or operation.input_shape is None or operation.output_shape is None:
        raise RuntimeError(f"the installed botocore's sagemaker-runtime model has no {OPERATION}")
    return operation


@lru_cache(maxsize=1)
def _request_headers() -> dict[str, str]:
    """Lower-cased request header name -> input member name, from botocore's model."""
    shape = _operation().input_shape
    assert shape is not None  # checked by _operation
    return {member.serialization["name"].lower(): name for name, member in shape.members.items()
            if member.serialization.get("location") == "header"}


def response_header(member: str) -> str:
    """The response header that carries output ``member`` (``ContentType`` -> X-Amzn-SageMaker-Content-Type)."""
    shape = _operation().output_shape
    assert shape is not None  # checked by _operation
    name: str = shape.members[member].serialization["name"]
    return name


def parse_stream_invocation(endpoint: str, request_id: str, headers: Mapping[str, str], body: bytes) -> Invocation:
    """The request's members, validated against botocore's model of the operation."""
    lowered = {name.lower(): value for name, value in headers.items()}
    members = {member: lowered[h] for h, member in _request_headers().items() if h in lowered}
    input_shape = _operation().input_shape
    assert input_shape is not None  # checked by _operation
    errors = validation_errors(input_shape, {"EndpointName": endpoint, "Body": b"", **members})
    if errors:
        raise ValidationError(format_errors(errors))
    for member, reason in REFUSED_MEMBERS.items():
        if member in members:
            raise ValidationError(f"{member} is not supported: {reason}.")
    return Invocation(
        endpoint=endpoint, request_id=request_id, body=body, content_type=members.get("ContentType"),
        accept=members.get("Accept"), custom_attributes=members.get("CustomAttributes"),
        target_variant=members.get("TargetVariant"), target_container=members.get("TargetContainerHostname"),
        inference_id=members.get("InferenceId"), inference_component=members.get("InferenceComponentName"),
    )


class StreamFailure(Exception):
    """The stream ended early; becomes one ModelStreamError event."""

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


@dataclass
class OpenStream:
    """A stream whose container has answered 200: the response headers, then the events."""

    router: Router
    invocation: Invocation
    variant: VariantDeployment
    container: ContainerRuntime
    upstream: ContainerStream
    opened: float  # perf_counter() when the request arrived at the router
    #: The endpoint's data capture when this request is sampled: the whole answer is captured once it is complete.
    capture: DataCapture | None = None
    #: The instance answering: counted in flight until ``close`` (LEAST_OUTSTANDING_REQUESTS routing).
    instance: Instance | None = None
    _answer: list[bytes] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        # An inference component's copies answer for the variant hosting them (harness.runtime.component_copies).
        values = {"InvokedProductionVariant": self.variant.host or self.variant.name,
                  "ContentType": self.upstream.content_type, "CustomAttributes": self.upstream.custom_attributes}
        return {response_header(member): value for member, value in values.items() if value is not None}

    async def events(self) -> AsyncIterator[bytes]:
        """PayloadPart events as the container's bytes arrive; one error event ends a failed stream."""
        failed = False  # a client that goes away is no error of the endpoint's
        try:
            async for piece in self._pieces():
                if self.capture is not None:
                    self._answer.append(piece)
                yield eventstream.payload_part(piece)
            self._captured()
        except StreamFailure as failure:
            failed = True
            yield eventstream.model_stream_error(failure.message, failure.error_code)
        except Exception as exc:  # the client gets a modeled event, the log the traceback
            failed = True
            log.exception("streaming from %s failed", self.container.label)
            yield eventstream.internal_stream_failure(f"Internal error in the local harness: {exc}")
        finally:
            self._record(failed)

    async def _pieces(self) -> AsyncIterator[bytes]:
        config = self.router.config
        resplit = eventstream.Resplitter(config.stream_resplit_seed) if config.stream_resplit else None
        async for chunk in self._chunks(self.upstream.started + config.stream_timeout_s):
            for piece in resplit.feed(chunk) if resplit else (chunk,):
                yield piece
        for piece in resplit.finish() if resplit else ():
            yield piece

    async def _chunks(self, deadline: float) -> AsyncIterator[bytes]:
        """The container's chunks until ``deadline``; StreamFailure for a broken or late body."""
        chunks = self.upstream.chunks()
        try:
            while True:
                with anyio.fail_after(max(deadline - time.perf_counter(), 0.0)):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                if chunk:
                    yield chunk
        except (TimeoutError, httpx.TimeoutException):
            raise StreamFailure(f"Your model {self.container.label} did not complete sending the inference "
                                "response in the allotted time.", eventstream.TIME_EXCEEDED) from None
        except httpx.HTTPError as exc:
            raise StreamFailure(f"The response stream from {self.container.label} was broken before it was "
                                f"complete: {exc}", eventstream.STREAM_BROKEN) from None

    def _captured(self) -> None:
        """A complete answer, captured as one record like an InvokeEndpoint's (docs/harness.md "Data capture")."""
        if self.capture is not None:
            self.capture.add(Exchange(variant=self.variant.name, request_type=self.invocation.content_type,
                                      request=self.invocation.body, response_type=self.upstream.content_type,
                                      response=b"".join(self._answer), inference_id=self.invocation.inference_id))

    def _record(self, failed: bool) -> None:
        endpoint, variant = self.invocation.endpoint, self.variant.name
        now = time.perf_counter()
        model_latency = (now - self.upstream.started) * 1e6  # to the stream's last byte
        metrics = self.router.metrics
        metrics.record(endpoint, variant, "ModelLatency", model_latency)
        metrics.record(endpoint, variant, "OverheadLatency", max((now - self.opened) * 1e6 - model_latency, 0.0))
        metrics.record(endpoint, variant, "ContainerLatency", model_latency, self.container.hostname)
        self.router.record_outcome(endpoint, variant, client_error=False, server_error=failed)

    async def close(self) -> None:
        if self.instance is not None:
            self.instance.in_flight -= 1
            self.instance = None
        await self.upstream.close()


async def open_stream(router: Router, deployment: Deployment, invocation: Invocation) -> OpenStream:
    """Route ``invocation`` and send it; returns once the container answered 200 (RuntimeApiError else)."""
    opened = time.perf_counter()
    variant = router.target(deployment, invocation)
    if variant.serverless is not None:
        raise ValidationError(f"Endpoint {invocation.endpoint} is a serverless endpoint; {OPERATION} to a serverless "
                              "endpoint is not emulated by the local harness.")
    instance = variant.pick_instance(None)
    with instance.serving():  # while the stream opens; OpenStream counts it from then until close()
        try:
            container = _container(router, invocation, variant, instance)
            upstream = await router.client.open_stream(container, "/invocations", invocation.outgoing())
            if upstream.status >= 400:
                raise await _rejected(router, container, upstream)
        except ModelError as error:
            router.record_model_error(invocation.endpoint, variant.name, error)
            raise
    instance.in_flight += 1
    capture = deployment.capture if deployment.capture is not None and deployment.capture.sampled() else None
    return OpenStream(router, invocation, variant, container, upstream, opened, capture, instance)


def _container(router: Router, invocation: Invocation, variant: VariantDeployment,
               instance: Instance) -> ContainerRuntime:
    """The one container that streams: a single model's, or Direct's TargetContainerHostname."""
    if variant.model.mode == "Direct":
        return router.direct_container(invocation, instance)
    if len(instance.containers) > 1:
        raise ValidationError(f"Endpoint {invocation.endpoint} is a serial inference pipeline; {OPERATION} "
                              "through a pipeline is not emulated by the local harness.")
    return instance.containers[0]


async def _rejected(router: Router, container: ContainerRuntime, upstream: ContainerStream) -> ModelError:
    """The ModelError for a container that answered 4xx/5xx before streaming anything."""
    try:
        reply = await upstream.whole()
    except httpx.HTTPError as exc:
        return router.client.unreachable(container, exc)
    return router.client.rejected(container, reply.status, reply.text)


class EventStreamResponse(StreamingResponse):
    """Sends the events as they come, and closes the container's connection when the stream ends or the
    client goes away (whichever is first), so a container never streams to nobody."""

    def __init__(self, stream: OpenStream, request_id: str) -> None:
        super().__init__(stream.events(), media_type=eventstream.CONTENT_TYPE,
                         headers={**stream.headers(), "x-amzn-RequestId": request_id})
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def first_to_end(work: Callable[[], Awaitable[None]]) -> None:
                    await work()
                    group.cancel_scope.cancel()

                group.start_soon(first_to_end, partial(self.stream_response, send))
                group.start_soon(first_to_end, partial(self.listen_for_disconnect, receive))
        except* OSError:
            log.info("the client of a response stream went away")  # the container is closed below all the same
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.close()
