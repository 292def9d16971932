"""HTTP routes of the container: SageMaker's /ping, /invocations and the multi-model /models API.

The routes only translate HTTP to engine calls and engine errors to status codes; the engine owns
processes and models. Error bodies are JSON ``{"code", "type", "message"}`` (multi-model-server's
shape), never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers.base import Request
from serve.engine import Engine, EngineError
from serve.settings import Settings

log = logging.getLogger("serve.access")

SINGLE_MODEL_NAME = "model"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
#: GET /models page size: multi-model-server's default and maximum.
PAGE_LIMIT = 100


def error_response(status: int, message: str) -> JSONResponse:
    """The one error shape every route answers with."""
    try:
        kind = HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        kind = "Error"
    return JSONResponse({"code": status, "type": kind, "message": message}, status_code=status)


class PayloadTooLarge(Exception):
    """The request body exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB."""


async def read_body(request: HTTPRequest, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything above ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> Starlette:
    """The ASGI app for ``settings``; ``on_fatal`` is called if the single model cannot load."""
    engine = Engine(settings)
    loading: dict[str, Any] = {"error": None}

    async def load_single_model() -> None:
        try:
            await engine.load(SINGLE_MODEL_NAME, settings.model_dir)
        except EngineError as exc:
            loading["error"] = exc.message
            log.error("cannot serve: the model in %s did not load (the reason is logged above)", settings.model_dir)
            if on_fatal is not None:
                on_fatal(exc.message)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        await engine.start()
        if not settings.multi_model:
            # Open the port at once and load in the background: /ping says 503 until the model is ready.
            task = asyncio.get_running_loop().create_task(load_single_model())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await engine.close()

    async def invoke(name: str, request: HTTPRequest) -> Response:
        try:
            body = await read_body(request, settings.max_payload_bytes)
        except PayloadTooLarge:
            return error_response(413, f"request body exceeds {settings.max_payload_mb:g} MiB "
                                       "(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        headers = request.headers
        result = await engine.invoke(name, Request(
            body=body,
            content_type=headers.get("content-type"),
            accept=headers.get("accept"),
            custom_attributes=headers.get(CUSTOM_ATTRIBUTES),
            target_model=headers.get(TARGET_MODEL),
            model_name=name,
        ))
        out_headers = dict(result.headers)
        if result.custom_attributes is not None:
            out_headers[CUSTOM_ATTRIBUTES] = result.custom_attributes
        return Response(result.body, media_type=result.content_type, headers=out_headers)

    async def ping(request: HTTPRequest) -> Response:
        if settings.multi_model or SINGLE_MODEL_NAME in {e.name for e in engine.ready_models()}:
            return Response(status_code=200)
        if loading["error"]:
            return error_response(500, f"the model failed to load: {loading['error']}")
        return error_response(503, "the model is still loading")

    async def invocations(request: HTTPRequest) -> Response:
        if settings.multi_model:
            return error_response(400, "this container runs in multi-model mode: invoke "
                                       "POST /models/{model_name}/invoke")
        return await invoke(SINGLE_MODEL_NAME, request)

    async def list_models(request: HTTPRequest) -> Response:
        token = request.query_params.get("next_page_token") or "0"
        limit_text = request.query_params.get("limit") or str(PAGE_LIMIT)
        if not token.isdigit() or not limit_text.isdigit() or not 0 < int(limit_text) <= PAGE_LIMIT:
            return error_response(400, f"next_page_token must be a token from a previous answer and limit "
                                       f"a number 1-{PAGE_LIMIT}")
        start, limit = int(token), int(limit_text)
        models = engine.ready_models()
        page = models[start:start + limit]
        body: dict[str, Any] = {"models": [{"modelName": e.name, "modelUrl": e.url} for e in page]}
        if start + limit < len(models):
            body["nextPageToken"] = str(start + limit)
        return JSONResponse(body)

    async def load_model(request: HTTPRequest) -> Response:
        try:
            spec = json.loads(await read_body(request, 64 * 1024) or b"{}")
        except (PayloadTooLarge, ValueError):
            return error_response(400, 'the body must be JSON: {"model_name": "...", "url": "/path/to/model"}')
        spec = {**dict(request.query_params), **(spec if isinstance(spec, dict) else {})}
        name, url = spec.get("model_name"), spec.get("url")
        if not isinstance(name, str) or not name or not isinstance(url, str) or not url:
            return error_response(400, 'both "model_name" and "url" are required strings')
        if "/" in name:
            return error_response(400, f"model_name {name!r} must not contain '/'")
        workers = spec.get("initial_workers")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            return error_response(400, '"initial_workers" must be a positive integer')
        entry = await engine.load(name, url, workers)
        return JSONResponse({"status": f"Model \"{name}\" loaded", "model": entry.describe()})

    async def describe_model(request: HTTPRequest) -> Response:
        name = request.path_params["name"]
        entry = engine.models.get(name)
        if entry is None or entry.state != "ready":
            return error_response(404, f"model {name!r} is not loaded")
        return JSONResponse(entry.describe())

    async def unload_model(request: HTTPRequest) -> Response:
        name = request.path_params["name"]
        await engine.unload(name)
        return JSONResponse({"status": f"Model \"{name}\" unloaded"})

    async def invoke_model(request: HTTPRequest) -> Response:
        return await invoke(request.path_params["name"], request)

    def multi_model_only(endpoint: Callable[[HTTPRequest], Any]) -> Callable[[HTTPRequest], Any]:
        async def guarded(request: HTTPRequest) -> Response:
            if not settings.multi_model:
                return error_response(404, "the /models API is served only in multi-model mode "
                                           "(SAGEMAKER_MULTI_MODEL=true)")
            result: Response = await endpoint(request)
            return result
        return guarded

    async def engine_error(request: HTTPRequest, exc: Exception) -> Response:
        assert isinstance(exc, EngineError)
        return error_response(exc.status, exc.message)

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/models", multi_model_only(list_models), methods=["GET"]),
        Route("/models", multi_model_only(load_model), methods=["POST"]),
        Route("/models/{name}", multi_model_only(describe_model), methods=["GET"]),
        Route("/models/{name}", multi_model_only(unload_model), methods=["DELETE"]),
        Route("/models/{name}/invoke", multi_model_only(invoke_model), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={EngineError: engine_error})
    app.state.engine = engine
    return AccessLog(app)  # type: ignore[return-value]


class AccessLog:
    """ASGI middleware: one INFO line per request with method, path, status and latency."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope["path"]
            if path != "/ping" or status["code"] != 200:
                log.info("%s %s model=%s %d %.2f ms", scope["method"], path, model_of(path), status["code"],
                         (time.perf_counter() - started) * 1000)


def model_of(path: str) -> str:
    """The model a request path addresses, for the access log ("-" for none)."""
    if path == "/invocations":
        return SINGLE_MODEL_NAME
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "models" else "-"
