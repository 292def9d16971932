"""One HTTP server for both SageMaker APIs, plus a small admin API for the ``servekit local`` CLI.

* ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``: the control plane (JSON 1.1);
* ``POST /`` with ``X-Amz-Target: Logs_20140328.<Operation>``: CloudWatch Logs over the harness's own log
  streams (harness.cloudwatch_logs);
* ``POST /endpoints/{name}/invocations``: the runtime (rest-json);
* ``POST /endpoints/{name}/invocations-response-stream``: the same, answered as an event stream
  (harness.response_stream);
* ``GET /_servekit/endpoints``, ``.../{name}/logs``, ``.../{name}/metrics``, ``POST /_servekit/shutdown``.

Every route sits behind ``harness.security.RequestGuard`` (Host allow-list, Origin, admin header,
optional token). No GET changes anything.

The handlers are plain functions; what they share (platform, control plane, router) lives in
``app.state``, set once by ``create_app``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from harness.async_inference import AsyncQueue, parse_request
from harness.cloudwatch_logs import TARGET_PREFIX as LOGS_PREFIX
from harness.cloudwatch_logs import LogStore
from harness.control_plane import ControlPlane
from harness.core import Platform
from harness.errors import ACCOUNT_ID, ControlPlaneError, InternalFailure, RuntimeApiError, ValidationError
from harness.response_stream import EventStreamResponse, open_stream, parse_stream_invocation
from harness.running import Deployment
from harness.runtime import Router, parse_invocation
from harness.security import RequestGuard
from harness.state import EndpointRecord
from harness.validation import operation_model, validate_input

log = logging.getLogger("harness")
JSON_11 = "application/x-amz-json-1.1"


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _control_error(error: ControlPlaneError, request_id: str) -> Response:
    return Response(json.dumps(error.body()), status_code=error.status, media_type=JSON_11,
                    headers={"x-amzn-RequestId": request_id})


def _runtime_error(error: RuntimeApiError, request_id: str) -> Response:
    return JSONResponse(error.body(), status_code=error.status,
                        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id})


# -- control plane -------------------------------------------------------------------------------------------
# X-Amz-Target prefix -> botocore service name (each service's model gives its ``targetPrefix``).
SERVICES = {"SageMaker": "sagemaker", LOGS_PREFIX: "logs"}


def _operations(request: Request, prefix: str) -> dict[str, Any]:
    """The operations answered under ``prefix``: the control plane's or CloudWatch Logs'."""
    if prefix == LOGS_PREFIX:
        store: LogStore = request.app.state.logs
        return store.operations
    control: ControlPlane = request.app.state.control_plane
    return control.operations if prefix == "SageMaker" else {}


def _unknown_operation(target: str) -> ControlPlaneError:
    prefix, _, name = target.partition(".")
    known = prefix in SERVICES and operation_model(SERVICES[prefix], name) is not None
    message = f"Operation {name} is not supported by the local harness." if known else f"Unknown operation {target!r}."
    return ControlPlaneError(message, code="UnknownOperationException")


async def _run_operation(operations: dict[str, Any], service: str, name: str, raw: bytes) -> dict[str, Any]:
    """Parse, validate against botocore's model, run; ControlPlaneError for the client's mistakes."""
    try:
        params = json.loads(raw or b"{}")
    except ValueError:
        raise ControlPlaneError("The request body is not valid JSON.", code="SerializationException") from None
    model = operation_model(service, name)
    if model is not None:
        validate_input(model, params)
    result = operations[name](params)
    return await result if inspect.isawaitable(result) else result


async def control_plane(request: Request) -> Response:
    """``POST /``: one SageMaker or CloudWatch Logs operation, named by ``X-Amz-Target``."""
    request_id = str(uuid.uuid4())
    target = request.headers.get("x-amz-target", "")
    prefix, _, name = target.partition(".")
    operations = _operations(request, prefix)
    if name not in operations:
        return _control_error(_unknown_operation(target), request_id)
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != JSON_11:
        return _control_error(ControlPlaneError(f"Content-Type must be {JSON_11} (AWS JSON 1.1 protocol).",
                                                code="UnsupportedMediaTypeException", status=415), request_id)
    try:
        result = await _run_operation(operations, SERVICES[prefix], name, await request.body())
    except ControlPlaneError as error:
        return _control_error(error, request_id)
    except Exception as exc:  # never a traceback to the client; the log has it
        log.exception("control plane %s failed", name)
        return _control_error(ControlPlaneError(f"Internal error in the local harness: {exc}",
                                                code="InternalFailure", status=500), request_id)
    return Response(json.dumps(result), media_type=JSON_11, headers={"x-amzn-RequestId": request_id})


# -- runtime -------------------------------------------------------------------------------------------------
def _serving_record(platform: Platform, name: str) -> EndpointRecord:
    """The endpoint, when it exists and serves; ValidationError otherwise."""
    record = platform.store.endpoints.get(name.lower())
    if record is None or record.name != name:  # case is preserved and must be matched
        raise ValidationError(f"Endpoint {name} of account {ACCOUNT_ID} not found.")
    if record.deployment is None or record.status not in ("InService", "Updating"):
        raise ValidationError(
            f"Endpoint {name} of account {ACCOUNT_ID} is not in service: its status is {record.status}."
        )
    return record


def _serving_deployment(platform: Platform, name: str) -> Deployment:
    """The endpoint's running deployment; ValidationError when it does not exist or does not serve."""
    deployment: Deployment = _serving_record(platform, name).deployment
    return deployment


async def invocations(request: Request) -> Response:
    """``POST /endpoints/{name}/invocations``: InvokeEndpoint."""
    name = request.path_params["name"]
    request_id = str(uuid.uuid4())
    router: Router = request.app.state.router
    try:
        deployment = _serving_deployment(_platform(request), name)
        invocation = parse_invocation(name, request_id, request.headers, await request.body())
        answer = await router.invoke(deployment, invocation)
    except RuntimeApiError as error:
        return _runtime_error(error, request_id)
    except Exception as exc:
        log.exception("invocation of %s failed", name)
        return _runtime_error(InternalFailure(f"Internal error in the local harness: {exc}"), request_id)
    headers = {"x-Amzn-Invoked-Production-Variant": answer.variant, "x-amzn-RequestId": request_id}
    if answer.custom_attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = answer.custom_attributes
    return Response(answer.body, media_type=answer.content_type, headers=headers)


async def async_invocations(request: Request) -> Response:
    """``POST /endpoints/{name}/async-invocations``: InvokeEndpointAsync (harness.async_inference)."""
    name = request.path_params["name"]
    request_id = str(uuid.uuid4())
    try:
        record = _serving_record(_platform(request), name)
        queue: AsyncQueue | None = record.async_queue
        if queue is None:
            raise ValidationError(f"Endpoint {name} of account {ACCOUNT_ID} is not configured for asynchronous "
                                  "inference (its endpoint configuration has no AsyncInferenceConfig).")
        accepted = parse_request(name, request.headers, await request.body(), queue.config)
        queue.submit(accepted)
    except RuntimeApiError as error:
        return _runtime_error(error, request_id)
    headers = {"X-Amzn-SageMaker-OutputLocation": accepted.output_location, "x-amzn-RequestId": request_id}
    if accepted.failure_location is not None:
        headers["X-Amzn-SageMaker-FailureLocation"] = accepted.failure_location
    return JSONResponse({"InferenceId": accepted.inference_id}, status_code=202, headers=headers)


async def invocations_response_stream(request: Request) -> Response:
    """``POST /endpoints/{name}/invocations-response-stream``: InvokeEndpointWithResponseStream."""
    name = request.path_params["name"]
    request_id = str(uuid.uuid4())
    try:
        deployment = _serving_deployment(_platform(request), name)
        invocation = parse_stream_invocation(name, request_id, request.headers, await request.body())
        stream = await open_stream(request.app.state.router, deployment, invocation)
    except RuntimeApiError as error:
        return _runtime_error(error, request_id)
    except Exception as exc:
        log.exception("streaming invocation of %s failed", name)
        return _runtime_error(InternalFailure(f"Internal error in the local harness: {exc}"), request_id)
    return EventStreamResponse(stream, request_id)


# -- admin API for the CLI -----------------------------------------------------------------------------------
def _endpoint_summary(record: EndpointRecord) -> dict[str, Any]:
    """One endpoint for ``servekit local ls``: status and every container."""
    containers: list[dict[str, Any]] = []
    if record.deployment is not None:
        deployment = record.deployment
        for variant in deployment.variants + deployment.shadows + list(deployment.components.values()):
            for instance in variant.instances:  # an inference component's copies are listed under its name
                containers += [{
                    "variant": variant.name, "instance": instance.instance_id,
                    "hostname": c.hostname, "image": c.definition.image,
                    "url": c.running.base_url, "process": c.running.ident,
                    "log_stream": c.log_stream,
                } for c in instance.containers]
    return {"name": record.name, "status": record.status, "config": record.config_name,
            "failure_reason": record.failure_reason, "containers": containers}


async def list_endpoints(request: Request) -> Response:
    """``GET /_servekit/endpoints``."""
    platform = _platform(request)
    endpoints = [_endpoint_summary(record) for record in platform.store.endpoints.values()]
    return JSONResponse({"endpoints": endpoints, "backend": platform.backend.name})


def _wanted(stream: str, container: str | None) -> bool:
    """Whether log stream ``variant/instance[/hostname]`` belongs to ``container`` (None: all)."""
    if not container:
        return True
    return stream.endswith("/" + container) or (container == "primary" and stream.count("/") == 1)


def _read_streams(directory: Path, container: str | None) -> str:
    files = sorted(directory.glob("*.log")) if directory.is_dir() else []
    streams = [(path.stem.replace("__", "/"), path) for path in files]
    return "\n".join(f"==> {stream} <==\n{path.read_text(errors='replace')}"
                     for stream, path in streams if _wanted(stream, container))


async def logs(request: Request) -> Response:
    """``GET /_servekit/endpoints/{name}/logs[?container=HOST]``: the container log streams."""
    platform = _platform(request)
    name = request.path_params["name"]
    if not re.fullmatch(r"[A-Za-z0-9-]{1,63}", name):  # endpoint names only: no path tricks
        return PlainTextResponse(f"no endpoint named {name}\n", status_code=404)
    directory = platform.config.state_dir / "logs" / name
    if platform.store.endpoints.get(name.lower()) is None and not directory.is_dir():
        return PlainTextResponse(f"no endpoint named {name}\n", status_code=404)
    return PlainTextResponse(_read_streams(directory, request.query_params.get("container")))


async def metrics(request: Request) -> Response:
    """``GET /_servekit/endpoints/{name}/metrics``."""
    name = request.path_params["name"]
    return JSONResponse({"endpoint": name, "variants": _platform(request).metrics.snapshot(name)})


async def shutdown(request: Request) -> Response:
    """``POST /_servekit/shutdown``: ``servekit local down``."""
    request_exit: Callable[[], None] | None = request.app.state.request_exit
    if request_exit is None:
        return PlainTextResponse("this harness cannot be stopped over HTTP\n", status_code=400)
    request_exit()
    return PlainTextResponse("stopping\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """On the way out: stop every endpoint's containers (the control plane), then the client."""
    yield
    await app.state.control_plane.shutdown()
    await app.state.platform.container_client.close()


ROUTES = [
    Route("/", control_plane, methods=["POST"]),
    Route("/endpoints/{name}/invocations", invocations, methods=["POST"]),
    Route("/endpoints/{name}/async-invocations", async_invocations, methods=["POST"]),
    Route("/endpoints/{name}/invocations-response-stream", invocations_response_stream, methods=["POST"]),
    Route("/_servekit/endpoints", list_endpoints, methods=["GET"]),
    Route("/_servekit/endpoints/{name}/logs", logs, methods=["GET"]),
    Route("/_servekit/endpoints/{name}/metrics", metrics, methods=["GET"]),
    Route("/_servekit/shutdown", shutdown, methods=["POST"]),
]


def create_app(platform: Platform, request_exit: Callable[[], None] | None = None) -> Starlette:
    """The ASGI app of one local SageMaker; ``request_exit`` lets ``POST /_servekit/shutdown`` stop it."""
    guard = Middleware(RequestGuard, allowed_hosts=platform.config.allowed_hosts, token=platform.config.token)
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=[guard])
    app.state.platform = platform
    app.state.control_plane = ControlPlane(platform)
    app.state.router = Router(platform)
    app.state.logs = LogStore(platform.config.state_dir, platform.config.region)
    app.state.request_exit = request_exit
    return app
