"""Asynchronous inference: InvokeEndpointAsync, a bounded queue per endpoint, results written to S3.

An endpoint whose configuration has ``AsyncInferenceConfig`` gets an ``AsyncQueue`` (SageMaker
Developer Guide "Asynchronous inference"; InvokeEndpointAsync API reference):

* ``InvokeEndpointAsync`` answers 202 at once with ``InferenceId`` (the caller's, else a new UUID),
  ``OutputLocation`` (``<S3OutputPath>/<uuid>.out``) and, when ``S3FailurePath`` is set,
  ``FailureLocation`` (``<S3FailurePath>/<uuid>-error.out``); the request waits in the queue;
* workers (``ClientConfig.MaxConcurrentInvocationsPerInstance`` per instance) read ``InputLocation``
  (or the inline ``Body``; without ``ContentType`` the object's own Content-Type is sent), post it to
  ``/invocations`` through every container of the model, and write
  the container's answer to OutputLocation, or the error to FailureLocation;
* the queue holds at most ``HarnessConfig.async_queue_limit`` requests (beyond: ServiceUnavailable);
  its depth plus the requests being processed is the ``ApproximateBacklogSize`` metric;
* a request still queued after ``RequestTTLSeconds`` (default 6 hours) fails as expired;
  ``InvocationTimeoutSeconds`` (default 15 minutes) bounds each container call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.cloudwatch_logs import ASYNC_ERRORS_STREAM, stream_file
from harness.core import Platform
from harness.errors import ModelError, ServiceUnavailable, ValidationError
from harness.runtime import Invocation, Router
from harness.s3_objects import S3InputError, S3Objects
from harness.state import EndpointRecord
from harness.validation import format_errors, operation_model, validation_errors

log = logging.getLogger("harness")

#: InvokeEndpointAsync request headers -> input members (botocore's sagemaker-runtime model).
HEADER_MEMBERS = {
    "x-amzn-sagemaker-content-type": "ContentType",
    "x-amzn-sagemaker-accept": "Accept",
    "x-amzn-sagemaker-custom-attributes": "CustomAttributes",
    "x-amzn-sagemaker-inference-id": "InferenceId",
    "x-amzn-sagemaker-inputlocation": "InputLocation",
    "x-amzn-sagemaker-s3outputpathextension": "S3OutputPathExtension",
    "x-amzn-sagemaker-filename": "Filename",
    "x-amzn-sagemaker-requestttlseconds": "RequestTTLSeconds",
    "x-amzn-sagemaker-invocationtimeoutseconds": "InvocationTimeoutSeconds",
}
INTEGER_MEMBERS = ("RequestTTLSeconds", "InvocationTimeoutSeconds")
#: InvokeEndpointAsync defaults (API reference): 6 hours in the queue, 15 minutes per invocation.
DEFAULT_TTL_S = 21600
DEFAULT_INVOCATION_TIMEOUT_S = 900


@dataclass(frozen=True)
class AsyncRequest:
    """One accepted InvokeEndpointAsync request."""

    inference_id: str
    output_location: str
    failure_location: str | None
    input_location: str | None
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    ttl_s: float
    timeout_s: float
    enqueued: float


def check_config(config: dict[str, Any]) -> None:
    """AsyncInferenceConfig of CreateEndpointConfig; ValueError naming what the harness cannot honour."""
    output = config.get("OutputConfig") or {}
    if not output.get("S3OutputPath"):
        raise ValueError("AsyncInferenceConfig.OutputConfig.S3OutputPath must be specified")
    if output.get("NotificationConfig"):
        raise ValueError("AsyncInferenceConfig.OutputConfig.NotificationConfig (SNS topics) is not supported by "
                         "the local harness (no notification would be sent); leave it out for local runs")


def _members(headers: Mapping[str, str]) -> dict[str, Any]:
    lowered = {name.lower(): value for name, value in headers.items()}
    members: dict[str, Any] = {m: lowered[h] for h, m in HEADER_MEMBERS.items() if h in lowered}
    for name in INTEGER_MEMBERS:
        if name in members:
            try:
                members[name] = int(members[name])
            except ValueError:
                raise ValidationError(f"{name} must be an integer, not {members[name]!r}.") from None
    return members


def parse_request(endpoint: str, headers: Mapping[str, str], body: bytes,
                  config: dict[str, Any]) -> AsyncRequest:
    """The InvokeEndpointAsync members, validated against botocore's model and the endpoint's config."""
    members = _members(headers)
    operation = operation_model("sagemaker-runtime", "InvokeEndpointAsync")
    if operation is not None and operation.input_shape is not None:
        errors = validation_errors(operation.input_shape, {"EndpointName": endpoint, **members, "Body": body})
        if errors:
            raise ValidationError(format_errors(errors))
    for unsupported in ("S3OutputPathExtension", "Filename"):
        if unsupported in members:
            raise ValidationError(f"{unsupported} is not supported by the local harness; leave it out and read "
                                  "the answer's OutputLocation.")
    if not members.get("InputLocation") and not body:
        raise ValidationError("InputLocation must be specified (the S3 object holding the request).")
    output = config["OutputConfig"]
    name = str(uuid.uuid4())
    failure_path = output.get("S3FailurePath")
    return AsyncRequest(
        inference_id=members.get("InferenceId") or str(uuid.uuid4()),
        output_location=f"{output['S3OutputPath'].rstrip('/')}/{name}.out",
        failure_location=f"{failure_path.rstrip('/')}/{name}-error.out" if failure_path else None,
        input_location=members.get("InputLocation"), body=body,
        content_type=members.get("ContentType"), accept=members.get("Accept"),
        custom_attributes=members.get("CustomAttributes"),
        ttl_s=float(members.get("RequestTTLSeconds") or DEFAULT_TTL_S),
        timeout_s=float(members.get("InvocationTimeoutSeconds") or DEFAULT_INVOCATION_TIMEOUT_S),
        enqueued=time.monotonic(),
    )


class AsyncQueue:
    """One endpoint's asynchronous requests: a bounded queue and its workers."""

    def __init__(self, platform: Platform, router: Router, record: EndpointRecord, config: dict[str, Any]) -> None:
        self.platform, self.router, self.record = platform, router, record
        self.config = config  # AsyncInferenceConfig; UpdateEndpoint may replace it
        self.queue: asyncio.Queue[AsyncRequest] = asyncio.Queue(maxsize=platform.config.async_queue_limit)
        self.in_flight = 0
        self.s3 = S3Objects(platform.config.region, platform.config.s3_endpoint_url)
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the workers: MaxConcurrentInvocationsPerInstance for each instance of the deployment."""
        per_instance = int((self.config.get("ClientConfig") or {}).get("MaxConcurrentInvocationsPerInstance")
                           or self.platform.config.async_concurrency_per_instance)
        instances = sum(len(v.instances) for v in self.record.deployment.variants)
        self._workers = [asyncio.create_task(self._work()) for _ in range(per_instance * max(instances, 1))]

    async def stop(self) -> None:
        """Stop the workers; requests still queued are dropped, as when an endpoint is deleted."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def submit(self, request: AsyncRequest) -> None:
        """Queue ``request``; ServiceUnavailable when the queue is full."""
        try:
            self.queue.put_nowait(request)
        except asyncio.QueueFull:
            raise ServiceUnavailable(
                f"The asynchronous inference queue of endpoint {self.record.name} is full "
                f"({self.queue.maxsize} requests); retry later."
            ) from None
        self._record_backlog()

    @property
    def backlog(self) -> int:
        """Requests queued or being processed (ApproximateBacklogSize)."""
        return self.queue.qsize() + self.in_flight

    def _record_backlog(self) -> None:
        deployment = self.record.deployment
        variant = deployment.variants[0].name if deployment is not None and deployment.variants else "AllTraffic"
        self.platform.metrics.record(self.record.name, variant, "ApproximateBacklogSize", float(self.backlog))

    async def _work(self) -> None:
        while True:
            request = await self.queue.get()
            self.in_flight += 1
            try:
                await self._process(request)
            except Exception:  # one request's defect must not stop the worker
                log.exception("asynchronous inference %s failed", request.inference_id)
            finally:
                self.in_flight -= 1
                self._record_backlog()

    async def _process(self, request: AsyncRequest) -> None:
        waited = time.monotonic() - request.enqueued
        if waited > request.ttl_s:
            await self._fail(request, f"Request {request.inference_id} expired after waiting {waited:.0f} s in the "
                             f"queue (RequestTTLSeconds {request.ttl_s:g}).")
            return
        try:
            body, content_type = request.body, request.content_type
            if request.input_location:
                body, stored_type = await asyncio.to_thread(self.s3.read_bytes, request.input_location,
                                                            self.platform.config.async_max_input_bytes)
                # Without ContentType the input object's own Content-Type is used: the SageMaker Python
                # SDK's AsyncPredictor uploads with ContentType and invokes without one.
                content_type = content_type or stored_type
            reply = await self._invoke(dataclasses.replace(request, content_type=content_type), body)
            await asyncio.to_thread(self.s3.put_bytes, request.output_location, reply[0], reply[1])
        except (ModelError, ValidationError) as error:
            await self._fail(request, error.message)
        except S3InputError as exc:
            await self._fail(request, str(exc))

    async def _invoke(self, request: AsyncRequest, body: bytes) -> tuple[bytes, str | None]:
        deployment = self.record.deployment
        if deployment is None:
            raise ValidationError(f"Endpoint {self.record.name} has no running containers "
                                  f"(status {self.record.status}).")
        variant = deployment.pick_variant()
        invocation = Invocation(endpoint=self.record.name, request_id=request.inference_id, body=body,
                                content_type=request.content_type, accept=request.accept,
                                custom_attributes=request.custom_attributes, timeout_s=request.timeout_s)
        with variant.pick_instance(None).serving() as instance:
            reply = await self.router.run_model(invocation, variant, instance)
        return reply.body, reply.content_type

    async def _fail(self, request: AsyncRequest, message: str) -> None:
        """Write the error to FailureLocation (when configured) and to the endpoint's log."""
        line = f"[harness] asynchronous inference {request.inference_id} failed: {message}\n"
        with contextlib.suppress(OSError):
            with open(stream_file(self.platform.log_dir(self.record.name), ASYNC_ERRORS_STREAM), "a") as out:
                out.write(line)
        if request.failure_location is not None:
            try:
                await asyncio.to_thread(self.s3.put_bytes, request.failure_location, message.encode(), "text/plain")
            except Exception as exc:
                log.warning("cannot write %s: %s", request.failure_location, exc)
