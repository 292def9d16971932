"""HTTP routes of the container: SageMaker's /ping, /invocations and the multi-model /models API.

The routes only translate HTTP to engine calls and engine errors to status codes; the engine owns
processes and models. Each route is a module-level function that finds the server's state in
``request.app.state.server``. Error bodies are JSON ``{"code", "type", "message"}``
(``serve.shared.error_body``), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.base import Request
from handlers.base import Response as ModelResponse
from serve.engine import STOP_GRACE_S, Engine, EngineError
from serve.http import CLOSE_CONNECTION
from serve.settings import Settings
from serve.shared import (
    CUSTOM_ATTRIBUTES_HEADER,
    SINGLE_MODEL_NAME,
    TARGET_MODEL_HEADER,
    error_json,
    error_message,
    reason_field,
    workers_per_model,
)
from serve.stream import AnswerStream, Streamed, StreamFailed

#: The SageMaker headers as ASGI spells header names (lower case).
CUSTOM_ATTRIBUTES_HEADER_KEY = CUSTOM_ATTRIBUTES_HEADER.lower()
TARGET_MODEL_HEADER_KEY = TARGET_MODEL_HEADER.lower()

log = logging.getLogger("serve.access")

#: GET /models page size: multi-model-server's default and maximum.
PAGE_LIMIT = 100
#: Largest POST /models body: a model name and a path.
LOAD_REQUEST_LIMIT = 64 * 1024
#: Most worker processes POST /models may ask for one model (``initial_workers``).
MAX_INITIAL_WORKERS = 64
#: Longest ``model_name`` (SageMaker's model names are at most 63 characters; MME names are
#: TargetModel paths' hashes).
MAX_NAME_LENGTH = 256
#: Longest ``url`` (Linux's PATH_MAX).
MAX_URL_LENGTH = 4096
#: Most digits a number in a query parameter or header may have (more is never a valid value, and
#: ``int`` refuses over 4300).
MAX_DIGITS = 18

Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


@dataclass
class ServerState:
    """What the routes share: the settings, the engine, and how the single model's load went."""

    settings: Settings
    engine: Engine
    #: Called with the reason when the single model cannot load (the server then exits 1).
    on_fatal: Callable[[str], None] | None = None
    load_error: str | None = None
    single_model_load: asyncio.Task[None] | None = None
    #: Called once the single model is loaded (with SERVE_PREFORK the front then stops accepting).
    on_ready: Callable[[], None] | None = None


def server_state(request: HTTPRequest) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def error_response(status: int, message: str) -> Response:
    """The one error shape every route answers with."""
    return Response(error_json(status, message), status_code=status, media_type="application/json")


class BadArgument(ValueError):
    """A query parameter or /models field is invalid; the message (one line) names it."""


def ascii_number(text: str) -> int | None:
    """``text`` as a non-negative integer when it is ASCII digits only, else None (``str.isdigit``
    alone also accepts digits such as "²" that ``int`` refuses)."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        return None
    return int(text)


def count_argument(field: str, value: object, low: int, high: int) -> int:
    """``value`` (an int, not a bool, or a string of ASCII digits) when it lies in [low, high]."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else (
        ascii_number(value) if isinstance(value, str) else None)
    if number is None or not low <= number <= high:
        raise BadArgument(f"{field} must be an integer {low}-{high}")
    return number


def model_name_argument(value: object) -> str:
    """``value`` when it is a usable model name: 1-256 printable characters, no '/'."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise BadArgument(f'"model_name" must be a string of 1-{MAX_NAME_LENGTH} characters')
    if not value.isprintable() or "/" in value:
        raise BadArgument('"model_name" must not contain control characters or \'/\'')
    return value


def url_argument(value: object) -> str:
    """``value`` when it can name a directory (whether it exists is the engine's 404)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_LENGTH or not value.isprintable():
        raise BadArgument(f'"url" must be a path of 1-{MAX_URL_LENGTH} printable characters')
    return value


def load_arguments(spec: dict[str, Any]) -> tuple[str, str, int | None]:
    """POST /models' model name, url and worker count, each validated."""
    if not isinstance(spec.get("model_name"), str) or not isinstance(spec.get("url"), str):
        raise BadArgument('both "model_name" and "url" are required strings')
    workers = spec.get("initial_workers")
    if workers is not None:
        workers = count_argument('"initial_workers"', workers, 1, MAX_INITIAL_WORKERS)
    return model_name_argument(spec["model_name"]), url_argument(spec["url"]), workers


class PayloadTooLarge(Exception):
    """The request body exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB."""


# -- single model ---------------------------------------------------------------------------------


async def load_single_model(state: ServerState) -> None:
    """Load the single model; on failure remember why (for /ping) and report it as fatal."""
    try:
        await state.engine.load(SINGLE_MODEL_NAME, state.settings.model_dir)
    except EngineError as exc:
        state.load_error = exc.message
        # The engine logs a failed load (5xx); a refusal (4xx) is left to its request's access line,
        # and this load has no request, so its reason is written here.
        reason = exc.message if exc.status < 500 else "the reason is logged above"
        log.error("cannot serve: the model in %s did not load (%s)", state.settings.model_dir, reason)
        if state.on_fatal is not None:
            state.on_fatal(exc.message)
        return
    if state.on_ready is not None:
        state.on_ready()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state: ServerState = app.state.server
    await state.engine.start()
    if not state.settings.multi_model:
        # Open the port at once and load in the background: /ping says 503 until the model is ready.
        state.single_model_load = asyncio.get_running_loop().create_task(load_single_model(state))
    try:
        yield
    finally:
        if state.single_model_load is not None:
            state.single_model_load.cancel()
        await state.engine.close()


# -- routes ---------------------------------------------------------------------------------------


#: What answers a model's request: the engine's ``invoke`` in the front, the model itself in a
#: prefork worker (``serve.prefork``). Raises ``EngineError`` for an answer other than 200.
ModelInvoker = Callable[[str, Request], Awaitable[ModelResponse | Streamed]]


async def invoke(invoke_model: ModelInvoker, name: str, headers: dict[str, str], body: bytes) -> Response | Streamed:
    """Send a request's body and SageMaker headers to model ``name``; its answer as HTTP, or the
    streamed answer to write chunk by chunk (``send_streamed``)."""
    result = await invoke_model(name, Request(
        body=body,
        content_type=headers.get("content-type"),
        accept=headers.get("accept"),
        custom_attributes=headers.get(CUSTOM_ATTRIBUTES_HEADER_KEY),
        target_model=headers.get(TARGET_MODEL_HEADER_KEY),
        model_name=name,
    ))
    if isinstance(result, Streamed):
        return result
    return Response(result.body, media_type=result.content_type, headers=answer_headers(result))


def answer_headers(result: ModelResponse) -> dict[str, str]:
    """The headers a model's answer sets, its custom attributes among them (not its Content-Type)."""
    out_headers = dict(result.headers)
    if result.custom_attributes is not None:
        out_headers[CUSTOM_ATTRIBUTES_HEADER] = result.custom_attributes
    return out_headers


def payload_too_large(settings: Settings) -> Response:
    return error_response(413, f"request body exceeds {settings.max_payload_mb:g} MiB (SAGEMAKER_MAX_PAYLOAD_IN_MB)")


async def ping(request: HTTPRequest) -> Response:
    """200 when the container can serve: always in multi-model mode, else while the model is loaded
    and at least one of its workers is alive (a dead worker is replaced at once, see the engine)."""
    state = server_state(request)
    if state.settings.multi_model:
        return Response(status_code=200)
    entry = state.engine.models.get(SINGLE_MODEL_NAME)
    if entry is not None and entry.state == "ready":
        if entry.workers:
            return Response(status_code=200)
        return error_response(503, "no worker of the model is alive; replacements are starting")
    if state.load_error:
        return error_response(500, f"the model failed to load: {state.load_error}")
    if state.single_model_load is not None and state.single_model_load.done():
        return error_response(503, "the model's workers died and could not be replaced; see the log")
    return error_response(503, "the model is still loading")


async def invocations(request: HTTPRequest) -> Response:
    """POST /invocations in multi-model mode (in single-model mode ``HotPath`` answers it)."""
    return error_response(400, "this container runs in multi-model mode: invoke POST /models/{model_name}/invoke")


def execution_parameters_body(settings: Settings, handler_default_workers: int) -> dict[str, Any]:
    """Batch transform's execution parameters (docs/sagemaker-contract.md §9): the job's values where
    SageMaker passed them, else one transform per worker, MULTI_RECORD and the payload limit (whole
    MiB, at least 1: SageMaker reads 0 as "any size")."""
    return {
        "MaxConcurrentTransforms": (settings.max_concurrent_transforms
                                    or workers_per_model(settings, handler_default_workers)),
        "BatchStrategy": settings.batch_strategy or "MULTI_RECORD",
        "MaxPayloadInMB": max(1, int(settings.max_payload_mb)),
    }


async def execution_parameters(request: HTTPRequest) -> Response:
    return JSONResponse(request.app.state.execution_parameters)


async def list_models(request: HTTPRequest) -> Response:
    query = request.query_params
    try:
        start = count_argument("next_page_token", query.get("next_page_token") or "0", 0, 10 ** MAX_DIGITS)
        limit = count_argument("limit", query.get("limit") or str(PAGE_LIMIT), 1, PAGE_LIMIT)
    except BadArgument as exc:
        return error_response(400, str(exc))
    models = server_state(request).engine.ready_models()
    page = models[start:start + limit]
    body: dict[str, Any] = {"models": [{"modelName": e.name, "modelUrl": e.url} for e in page]}
    if start + limit < len(models):
        body["nextPageToken"] = str(start + limit)
    return JSONResponse(body)


async def load_model(request: HTTPRequest) -> Response:
    try:
        body = await receive_body(request.receive, request.headers.get("content-length"), LOAD_REQUEST_LIMIT)
        spec = json.loads(body or b"{}")
    except (PayloadTooLarge, ValueError, RecursionError):  # RecursionError: nesting too deep
        return error_response(400, 'the body must be JSON: {"model_name": "...", "url": "/path/to/model"}')
    try:
        name, url, workers = load_arguments({**dict(request.query_params),
                                             **(spec if isinstance(spec, dict) else {})})
    except BadArgument as exc:
        return error_response(400, str(exc))
    entry = await server_state(request).engine.load(name, url, workers)
    return JSONResponse({"status": f"Model \"{name}\" loaded", "model": entry.describe()})


async def describe_model(request: HTTPRequest) -> Response:
    name = request.path_params["name"]
    entry = server_state(request).engine.models.get(name)
    if entry is None or entry.state != "ready":
        return error_response(404, f"model {name!r} is not loaded")
    return JSONResponse(entry.describe())


async def unload_model(request: HTTPRequest) -> Response:
    name = request.path_params["name"]
    await server_state(request).engine.unload(name)
    return JSONResponse({"status": f"Model \"{name}\" unloaded"})


async def models_api_absent(request: HTTPRequest) -> Response:
    return error_response(404, "the /models API is served only in multi-model mode (SAGEMAKER_MULTI_MODEL=true)")


def multi_model_only(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` in multi-model mode; 404 in single-model mode, where the /models API is absent."""
    async def guarded(request: HTTPRequest) -> Response:
        if not server_state(request).settings.multi_model:
            return await models_api_absent(request)
        return await endpoint(request)
    return guarded


def single_model_only(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` in single-model mode; 404 in multi-model mode (batch transform runs one model)."""
    async def guarded(request: HTTPRequest) -> Response:
        if server_state(request).settings.multi_model:
            return error_response(404, f"{request.url.path} is served only in single-model mode")
        return await endpoint(request)
    return guarded


async def engine_error(request: HTTPRequest, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    return error_response(exc.status, exc.message)


ROUTES = [
    Route("/ping", ping, methods=["GET"]),
    # In single-model mode HotPath answers POST /invocations before routing.
    Route("/invocations", invocations, methods=["POST"]),
    Route("/execution-parameters", single_model_only(execution_parameters), methods=["GET"]),
    Route("/models", multi_model_only(list_models), methods=["GET"]),
    Route("/models", multi_model_only(load_model), methods=["POST"]),
    Route("/models/{name}", multi_model_only(describe_model), methods=["GET"]),
    Route("/models/{name}", multi_model_only(unload_model), methods=["DELETE"]),
    # In multi-model mode HotPath answers POST /models/{name}/invoke before routing; here only the 404.
    Route("/models/{name}/invoke", models_api_absent, methods=["POST"]),
]


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None,
               engine: Engine | None = None, on_ready: Callable[[], None] | None = None) -> HotPath:
    """The front's ASGI app for ``settings``; ``on_fatal`` is called if the single model cannot load,
    ``on_ready`` once it has. ``engine`` defaults to ``Engine(settings)``."""
    engine = engine or Engine(settings)
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=[Middleware(AccessLog)],
                    exception_handlers={EngineError: engine_error})
    app.state.server = ServerState(settings, engine, on_fatal, on_ready=on_ready)
    app.state.execution_parameters = execution_parameters_body(settings, engine.handler.default_workers)
    return HotPath(app, settings, engine.invoke)


async def worker_ping(request: HTTPRequest) -> Response:
    """A prefork worker answers only once its model is loaded and while it is alive: 200."""
    return Response(status_code=200)


#: A prefork worker's routes (single-model mode only): the front's answers, without its state.
WORKER_ROUTES = [
    Route("/ping", worker_ping, methods=["GET"]),
    Route("/invocations", invocations, methods=["POST"]),  # HotPath answers it first
    Route("/execution-parameters", execution_parameters, methods=["GET"]),
    Route("/models", models_api_absent, methods=["GET", "POST"]),
    Route("/models/{name}", models_api_absent, methods=["GET", "DELETE"]),
    Route("/models/{name}/invoke", models_api_absent, methods=["POST"]),
]


def create_worker_app(settings: Settings, default_workers: int, invoke_model: ModelInvoker) -> HotPath:
    """The ASGI app a prefork worker serves: its own model through ``invoke_model``."""
    app = Starlette(routes=WORKER_ROUTES, middleware=[Middleware(AccessLog)],
                    exception_handlers={EngineError: engine_error})
    app.state.execution_parameters = execution_parameters_body(settings, default_workers)
    return HotPath(app, settings, invoke_model)


# -- the invocation path --------------------------------------------------------------------------


class HotPath:
    """ASGI entry point: answers the invocation route itself (POST /invocations in single-model mode,
    POST /models/{name}/invoke in multi-model mode) and hands everything else to the Starlette app.

    The invocation path is the one a served model's throughput depends on; here it costs no routing
    table, no middleware stack and no Request object (docs/engines.md, "Where a request's time
    goes"). The answers are Starlette's ``Response`` objects, so they are byte for byte the same."""

    def __init__(self, app: ASGIApp, settings: Settings, invoke_model: ModelInvoker) -> None:
        self.app = app
        self.settings = settings
        self.invoke_model = invoke_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            name = self.invocation_target(scope["path"])
            if name is not None:
                await self.invoke(name, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def invocation_target(self, path: str) -> str | None:
        """The model ``path`` invokes in this mode, else None (then Starlette routes it)."""
        if not self.settings.multi_model:
            return SINGLE_MODEL_NAME if path == "/invocations" else None
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "models" and parts[2] and parts[3] == "invoke":
            return parts[2]
        return None

    async def invoke(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = first_headers(scope["headers"])
        try:
            body = await receive_body(receive, headers.get("content-length"), self.settings.max_payload_bytes)
            response = await invoke(self.invoke_model, name, headers, body)
        except ClientDisconnect:
            return  # nobody is left to answer
        except PayloadTooLarge:
            response = payload_too_large(self.settings)
        except EngineError as exc:
            response = error_response(exc.status, exc.message)
        if isinstance(response, Streamed):
            await self.stream(name, response, scope, receive, send, started)
            return
        try:
            await response(scope, receive, send)
        finally:
            # The answer's bytes leave in a callback queued by its write (serve/http.py,
            # CoalescingTransport); queued behind it, the log line costs the client no latency.
            asyncio.get_running_loop().call_soon(
                log_request, "POST", scope["path"], name, response.status_code, (time.perf_counter() - started) * 1000,
                error_message(bytes(response.body)) if refused(response.status_code) else None)

    async def stream(self, name: str, streamed: Streamed, scope: Scope, receive: Receive, send: Send,
                     started: float) -> None:
        """Write a streamed answer, then its access line (total time; a broken stream has its own line)."""
        try:
            await send_streamed(name, streamed, scope, receive, send)
        finally:
            asyncio.get_running_loop().call_soon(
                log_request, "POST", scope["path"], name, 200, (time.perf_counter() - started) * 1000)


# -- streamed answers (docs/sagemaker-contract.md §10) ------------------------------------------------


class ClientGone(Exception):
    """The client closed its connection while its answer was being streamed."""


async def send_streamed(name: str, streamed: Streamed, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 with HTTP/1.1 chunked transfer encoding (uvicorn's, as the head has no
    Content-Length), writing each chunk as it comes. A stream that breaks ends without the
    terminating zero-length chunk; a client that goes away stops it. Either way the stream is ended,
    so its worker is free again."""
    gone = asyncio.ensure_future(disconnected(receive))
    sent = 0
    try:
        await send({"type": "http.response.start", "status": 200, "headers": streamed_head(streamed.head)})
        chunk: bytes | None = streamed.head.body
        while chunk is not None:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += 1
            chunk = await next_chunk(streamed.rest, gone)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except StreamFailed as exc:
        log.error("the streamed answer of model %s broke after %d chunk(s); its connection is closed without "
                  "the last chunk: %s", printable(name), sent, exc.reason)
        await break_connection(scope, gone)
    except ClientGone:
        log.info("the client of model %s went away after %d chunk(s) of a streamed answer; the stream was "
                 "stopped", printable(name), sent)
    finally:
        gone.cancel()
        await streamed.rest.cancel()


def streamed_head(head: ModelResponse) -> list[tuple[bytes, bytes]]:
    """A streamed answer's headers: an ordinary answer's (Starlette spells the Content-Type), with no
    Content-Length."""
    return StreamingResponse(iter(()), media_type=head.content_type, headers=answer_headers(head)).raw_headers


async def next_chunk(rest: AnswerStream, gone: asyncio.Future[None]) -> bytes | None:
    """The stream's next chunk, or ``ClientGone`` once the client disconnected (checked while waiting)."""
    # First let the last chunk leave: serve/http.py's CoalescingTransport writes in a later loop step,
    # and a prefork worker produces the next chunk in this thread.
    await asyncio.sleep(0)
    if gone.done():
        raise ClientGone
    pending = asyncio.ensure_future(rest.next_chunk())
    waiting: list[asyncio.Future[Any]] = [pending, gone]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not pending.done():
        pending.cancel()
        await asyncio.wait({pending})  # its read of the worker's socket is over before the stream is cancelled
        raise ClientGone
    return pending.result()


async def disconnected(receive: Receive) -> None:
    """Returns once the client has closed the connection (the request body was read before)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def break_connection(scope: Scope, gone: asyncio.Future[None]) -> None:
    """Close the connection in the middle of the chunked answer, so the client sees it end without the
    terminating chunk (SageMaker: ModelStreamError StreamBroken, docs/sagemaker-contract.md §10).
    serve/http.py's protocol offers the close; once uvicorn has seen the connection go, it logs no line
    of its own. Under uvicorn's h11 protocol there is no such offer: uvicorn closes the connection
    itself when the app returns with the answer unfinished, and logs that it did."""
    close = scope.get("extensions", {}).get(CLOSE_CONNECTION, {}).get("close")
    if close is None:
        return
    close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(gone), STOP_GRACE_S)


def refused(status: int) -> bool:
    """A 4xx: the client's request was refused, and only the access line can say why. A failure (5xx)
    is logged where it happens, with its traceback, so its access line stays short."""
    return 400 <= status < 500


def log_request(method: str, path: str, model: str, status: int, elapsed_ms: float,
                reason: str | None = None) -> None:
    """The access log's one line per request (the invocation route's and every other route's). A 4xx's
    line ends with its ``reason`` (what the client was told): the container log's only line about it,
    so no other layer logs one."""
    if reason is None:
        log.info("%s %s model=%s %d %.2f ms", method, printable(path), printable(model), status, elapsed_ms)
        return
    log.info("%s %s model=%s %d %.2f ms %s", method, printable(path), printable(model), status, elapsed_ms,
             reason_field(reason))


def first_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by lower-case name, the first of repeated ones (as Starlette's ``get``)."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1")
        if name not in headers:
            headers[name] = value.decode("latin-1")
    return headers


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body from ASGI ``receive``, refusing (before reading it all) anything above ``limit``."""
    size_declared = ascii_number(declared) if declared is not None else None
    if size_declared is not None and size_declared > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# -- access log -----------------------------------------------------------------------------------


#: Most bytes of a 4xx's body the access log keeps to find its reason (error bodies are one
#: short JSON object; the rest of a longer body is not needed for one log line).
ERROR_BODY_KEPT = 4096


class AccessLog:
    """ASGI middleware: one INFO line per request with method, path, status and latency, and for a 4xx
    its reason (read from the error body as it is sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        error_body: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and refused(status["code"]):
                error_body.append(message.get("body", b"")[:ERROR_BODY_KEPT])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope["path"]
            if path != "/ping" or status["code"] != 200:
                elapsed_ms = (time.perf_counter() - started) * 1000
                reason = error_message(b"".join(error_body)[:ERROR_BODY_KEPT]) if refused(status["code"]) else None
                log_request(scope["method"], path, model_of(path), status["code"], elapsed_ms, reason)


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped, so a client cannot forge log lines."""
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


def model_of(path: str) -> str:
    """The model a request path addresses, for the access log ("-" for none)."""
    if path == "/invocations":
        return SINGLE_MODEL_NAME
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "models" else "-"
