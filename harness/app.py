"""One HTTP server for both SageMaker APIs, plus a small admin API for the ``servekit local`` CLI.

* ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``: the control plane (JSON 1.1);
* ``POST /endpoints/{name}/invocations``: the runtime (rest-json);
* ``GET /_servekit/endpoints``, ``.../{name}/logs``, ``.../{name}/metrics``, ``POST /_servekit/shutdown``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from harness.control_plane import ControlPlane
from harness.core import Platform
from harness.errors import ACCOUNT_ID, ControlPlaneError, InternalFailure, RuntimeApiError, ValidationError
from harness.runtime import Router, parse_invocation
from harness.validation import operation_model, validate_input

log = logging.getLogger("harness")
JSON_11 = "application/x-amz-json-1.1"


def _control_error(error: ControlPlaneError, request_id: str) -> Response:
    return Response(json.dumps(error.body()), status_code=error.status, media_type=JSON_11,
                    headers={"x-amzn-RequestId": request_id})


def _runtime_error(error: RuntimeApiError, request_id: str) -> Response:
    return JSONResponse(error.body(), status_code=error.status,
                        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id})


def create_app(platform: Platform, request_exit: Callable[[], None] | None = None) -> Starlette:
    """The ASGI app of one local SageMaker."""
    control = ControlPlane(platform)
    router = Router(platform)

    async def control_plane(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if prefix != "SageMaker" or name not in control.operations:
            known = operation_model("sagemaker", name) is not None if prefix == "SageMaker" else False
            message = (f"Operation {name} is not supported by the local harness." if known
                       else f"Unknown operation {target!r}.")
            return _control_error(ControlPlaneError(message, code="UnknownOperationException"), request_id)
        try:
            raw = await request.body()
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                raise ControlPlaneError("The request body is not valid JSON.", code="SerializationException") from None
            model = operation_model("sagemaker", name)
            if model is not None:
                validate_input(model, params)
            result = await control.operations[name](params)
        except ControlPlaneError as error:
            return _control_error(error, request_id)
        except Exception as exc:  # never a traceback to the client; the log has it
            log.exception("control plane %s failed", name)
            return _control_error(ControlPlaneError(f"Internal error in the local harness: {exc}",
                                                    code="InternalFailure", status=500), request_id)
        return Response(json.dumps(result), media_type=JSON_11, headers={"x-amzn-RequestId": request_id})

    async def invocations(request: Request) -> Response:
        name = request.path_params["name"]
        request_id = str(uuid.uuid4())
        try:
            record = platform.store.endpoints.get(name.lower())
            if record is None or record.name != name:  # case is preserved and must be matched
                raise ValidationError(f"Endpoint {name} of account {ACCOUNT_ID} not found.")
            if record.deployment is None or record.status not in ("InService", "Updating"):
                raise ValidationError(
                    f"Endpoint {name} of account {ACCOUNT_ID} is not in service: its status is {record.status}."
                )
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            invocation = parse_invocation(name, headers, body)
            invocation.request_id = request_id
            answer = await router.invoke(record.deployment, invocation)
        except RuntimeApiError as error:
            return _runtime_error(error, request_id)
        except Exception as exc:
            log.exception("invocation of %s failed", name)
            return _runtime_error(InternalFailure(f"Internal error in the local harness: {exc}"), request_id)
        headers_out = {"x-Amzn-Invoked-Production-Variant": answer.variant, "x-amzn-RequestId": request_id}
        if answer.custom_attributes is not None:
            headers_out["X-Amzn-SageMaker-Custom-Attributes"] = answer.custom_attributes
        return Response(answer.body, media_type=answer.content_type, headers=headers_out)

    async def unsupported_invocation(request: Request) -> Response:
        return _runtime_error(
            ValidationError("Asynchronous and streaming invocations are not supported by the local harness."),
            str(uuid.uuid4()),
        )

    # -- admin API for the CLI ---------------------------------------------------------------------------
    async def list_endpoints(request: Request) -> Response:
        out = []
        for record in platform.store.endpoints.values():
            containers: list[dict[str, Any]] = []
            if record.deployment is not None:
                for variant in record.deployment.variants:
                    for instance in variant.instances:
                        for c in instance.containers:
                            containers.append({
                                "variant": variant.name, "instance": instance.instance_id,
                                "hostname": c.hostname, "image": c.definition.image,
                                "url": c.running.base_url, "process": c.running.ident,
                                "log_stream": c.log_stream,
                            })
            out.append({"name": record.name, "status": record.status, "config": record.config_name,
                        "failure_reason": record.failure_reason, "containers": containers})
        return JSONResponse({"endpoints": out, "backend": platform.backend.name})

    async def logs(request: Request) -> Response:
        name = request.path_params["name"]
        wanted = request.query_params.get("container")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,63}", name):  # endpoint names only: no path tricks
            return PlainTextResponse(f"no endpoint named {name}\n", status_code=404)
        directory = platform.config.state_dir / "logs"
        record = platform.store.endpoints.get(name.lower())
        if record is None and not (directory / name).is_dir():
            return PlainTextResponse(f"no endpoint named {name}\n", status_code=404)
        parts = []
        for path in sorted((directory / name).glob("*.log")) if (directory / name).is_dir() else []:
            stream = path.stem.replace("__", "/")
            if wanted and not (stream.endswith("/" + wanted) or (wanted == "primary" and stream.count("/") == 1)):
                continue
            parts.append(f"==> {stream} <==\n{path.read_text(errors='replace')}")
        return PlainTextResponse("\n".join(parts))

    async def metrics(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"endpoint": name, "variants": platform.metrics.snapshot(name)})

    async def shutdown(request: Request) -> Response:
        if request_exit is None:
            return PlainTextResponse("this harness cannot be stopped over HTTP\n", status_code=400)
        request_exit()
        return PlainTextResponse("stopping\n")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await platform.shutdown()

    routes = [
        Route("/", control_plane, methods=["POST"]),
        Route("/endpoints/{name}/invocations", invocations, methods=["POST"]),
        Route("/endpoints/{name}/async-invocations", unsupported_invocation, methods=["POST"]),
        Route("/endpoints/{name}/invocations-response-stream", unsupported_invocation, methods=["POST"]),
        Route("/_servekit/endpoints", list_endpoints, methods=["GET"]),
        Route("/_servekit/endpoints/{name}/logs", logs, methods=["GET"]),
        Route("/_servekit/endpoints/{name}/metrics", metrics, methods=["GET"]),
        Route("/_servekit/shutdown", shutdown, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
