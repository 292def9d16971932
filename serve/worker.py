"""The model worker: the code that runs inside each per-model process.

A worker is forked from the framework-preloaded fork parent (or spawned, where forking is unsafe),
loads one model artifact, reports its memory, then answers requests arriving over its socket until
the front closes it. The messages are ``serve.channel``'s frames: header fields the front reads
without the framework, and the raw body.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.base import ChunkStream, HandlerOptions, Request, Response
from serve.channel import ANSWERS, BROKEN, CANCEL, CHUNK, END, STREAM, Frame, WorkerChannel, is_batch, pack, unpack
from serve.shared import unexpected_error

if TYPE_CHECKING:
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from serve.settings import Settings

log = logging.getLogger("serve.worker")


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker reports once its model is loaded."""

    pid: int
    uss_bytes: int
    pss_bytes: int
    load_seconds: float


@dataclass(frozen=True)
class PreforkServing:
    """What a prefork worker (SERVE_PREFORK=true) needs beyond its model: the port's listening
    socket, the settings, the model's default worker count (for /execution-parameters) and a cell
    shared with the front where it records since when (``time.monotonic``) it is busy, 0 when idle,
    so the front can kill it when a request outlives the timeout where SIGALRM cannot reach; and a
    flag the front sets once it has stopped accepting (``Engine.hand_over``): until then the front
    answers on the port, and a worker accepts nothing."""

    listener: socket.socket
    settings: Settings
    default_workers: int
    busy_since: Any  # a multiprocessing RawValue("d")
    handed_over: Any  # a multiprocessing RawValue("b"), shared by every worker


def request_fields(request: Request) -> list[Any]:
    """A request's header fields as the front sends them (the body follows raw)."""
    return [request.content_type, request.accept, request.custom_attributes, request.target_model,
            request.model_name]


def response_from(meta: list[Any], body: bytes) -> Response:
    """The ``Response`` of an ``["ok", ...]`` frame."""
    return Response(body, meta[1], meta[2], meta[3])


#: How a loaded worker answers until the front closes its socket: over the socket alone (``_serve``),
#: or over HTTP too (``serve.prefork.serve_http``).
Serve = Callable[[WorkerChannel, "ServedModel", str], None]


def worker_main(
    sock: socket.socket,
    framework: str,
    options: HandlerOptions,
    model: tuple[str, str] | None,
    forked: bool,
    log_level: int = 20,
) -> None:
    """Entry point of a worker process (a multiprocessing target) that answers over its socket.
    ``model`` is (artifact directory, model name); None starts a spare, which waits for a
    ``["load", directory, name]`` frame first. A prefork worker's entry point is
    ``serve.prefork.worker_main``."""
    run_worker(_serve, sock, framework, options, model, forked, log_level)


def run_worker(serve: Serve, sock: socket.socket, framework: str, options: HandlerOptions,
               model: tuple[str, str] | None, forked: bool, log_level: int) -> None:
    """Load the model, report it, then answer with ``serve`` until the front closes the socket."""
    from serve.memory import process_memory

    configure_worker(log_level)
    conn = WorkerChannel(sock)
    if model is None:
        try:
            (_, model_dir, model_name), _ = conn.receive()
        except (EOFError, OSError):  # the front closed the spare's socket (shutdown): stop
            return
    else:
        model_dir, model_name = model
    started = time.perf_counter()
    served = _load(conn, framework, options, model_dir, model_name, forked)
    if served is None:
        return
    uss, pss = process_memory()
    conn.send(["ready", *astuple(WorkerInfo(os.getpid(), uss, pss, time.perf_counter() - started))])
    try:
        serve(conn, served, model_name)
    finally:
        served.unload()


def configure_worker(log_level: int) -> None:
    """What every worker process does first: ignore Ctrl-C (a terminal sends it to the whole process
    group; the front decides when workers stop) and log with its pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(message)s")


def _load(conn: WorkerChannel, framework: str, options: HandlerOptions, model_dir: str, model_name: str,
          forked: bool) -> ServedModel | None:
    """The loaded ``ServedModel``, or None after telling the front why there is none."""
    from handlers.registry import handler_class

    hazard = handler_class(framework).fork_hazard() if forked else None
    if hazard:
        conn.send(["respawn", hazard])
        return None
    served = load_model(framework, options, model_dir, model_name)
    if isinstance(served, list):
        conn.send(served)
        return None
    return served


def load_model(framework: str, options: HandlerOptions, model_dir: str, model_name: str) -> ServedModel | list[Any]:
    """The loaded ``ServedModel``, or the ``["error", status, message]`` frame that says why not."""
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    try:
        if not Path(model_dir).is_dir():
            return ["error", 404, f"model directory {model_dir} does not exist"]
        return ServedModel.load(handler_class(framework)(options), model_dir, model_name)
    except HandlerError as exc:
        return ["error", exc.status, exc.message]
    except Exception as exc:  # user model_fn or framework failure: report, don't leak a traceback
        log.error("loading model %s failed:\n%s", model_name, traceback.format_exc())
        return ["error", 500, unexpected_error("loading the model", exc)]


def _serve(conn: WorkerChannel, served: ServedModel, model_name: str) -> None:
    """Answer requests from the socket until the front closes it."""
    while True:
        try:
            frame = conn.receive()
        except (EOFError, OSError):  # the front closed the socket or died: stop
            return
        answer_frame(conn, served, model_name, frame)


def predict(served: ServedModel, request: Request, model_name: str) -> Response:
    """The model's answer to ``request``; a ``HandlerError`` (with its status) when there is none.
    An unexpected exception is logged with its traceback and becomes a 500 without it."""
    try:
        return served.invoke(request)
    except Exception as exc:
        raise handler_error(exc, model_name) from None


def handler_error(exc: Exception, model_name: str) -> HandlerError:
    """``exc`` as the ``HandlerError`` the client is answered with (an unexpected one logged, 500)."""
    from handlers.errors import HandlerError

    if isinstance(exc, HandlerError):
        return exc
    log.error("invoking model %s failed:\n%s", model_name,
              "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return HandlerError(unexpected_error("prediction", exc), 500)


def answer_frame(conn: WorkerChannel, served: ServedModel, model_name: str, frame: Frame) -> None:
    """Answer one request frame from the front."""
    from handlers.errors import HandlerError

    meta, body = frame
    if meta == [CANCEL]:  # it crossed the end of the stream it was for: that stream is over
        return
    if is_batch(meta):
        conn.send(*answer_batch(served, model_name, frame))
        return
    content_type, accept, custom_attributes, target_model, name = meta
    request = Request(body, content_type, accept, custom_attributes, target_model, name)
    try:
        response = predict(served, request, model_name)
    except HandlerError as exc:
        conn.send(["error", exc.status, exc.message])
    else:
        if response.chunks is not None:
            send_stream(conn, response)
            return
        conn.send(["ok", response.content_type, response.custom_attributes, response.headers], response.body)


def answer_batch(served: ServedModel, model_name: str, frame: Frame) -> Frame:
    """The ANSWERS frame for a BATCH frame: every request's answer, in order, each an "ok" or "error"."""
    from handlers.errors import HandlerError

    requests = [Request(body, *fields) for fields, body in unpack(frame)]
    metas, bodies = [], []
    for result in batch_answers(served, model_name, requests):
        if isinstance(result, HandlerError):
            metas.append(["error", result.status, result.message])
            bodies.append(b"")
        else:
            metas.append(["ok", result.content_type, result.custom_attributes, result.headers])
            bodies.append(result.body)
    return pack(metas, bodies, ANSWERS)


def batch_answers(served: ServedModel, model_name: str, requests: list[Request]) -> list[Response | HandlerError]:
    """Each request's answer to ``requests`` predicted as one batch, in order, or the error it alone
    met (an unexpected one logged, 500). A streamed answer is refused: a batch's answers go out whole
    (docs/handlers.md, "Batching")."""
    from handlers.errors import HandlerError

    answers: list[Response | HandlerError] = []
    for result in served.invoke_batch(requests):
        if isinstance(result, Response) and result.chunks is not None:
            result.chunks.close()
            result = HandlerError(f"model {model_name!r}: a streamed answer cannot be batched; unset the "
                                  "batching settings (docs/handlers.md, \"Batching\")", 500)
        answers.append(handler_error(result, model_name) if isinstance(result, Exception) else result)
    return answers


def send_stream(conn: WorkerChannel, response: Response) -> None:
    """Send a streamed answer frame by frame, each chunk as soon as it is produced, until it ends, it
    fails (``["broken", message]``) or the front cancels it; the user's stream is closed before the
    last frame, so the worker is free once the front has it. The front bounds the wait for each chunk
    (SAGEMAKER_MODEL_SERVER_TIMEOUT) and replaces a worker that exceeds it."""
    chunks = response.chunks
    assert chunks is not None
    try:
        conn.send([STREAM, response.content_type, response.custom_attributes, response.headers], response.body)
        last = _send_chunks(conn, chunks)
        chunks.close()
        conn.send(last)
    except OSError:  # the front closed the socket (shutdown, or it replaced this worker): stop
        return
    finally:
        chunks.close()


def _send_chunks(conn: WorkerChannel, chunks: ChunkStream) -> list[Any]:
    """Send the chunks after the first until the stream ends or the front cancels it (then
    ``["end"]``), or producing one fails (then ``["broken", message]``): the frame to end with."""
    from handlers.errors import StreamError

    try:
        while not cancelled(conn):
            chunk = next(chunks, None)
            if chunk is None:
                break
            conn.send([CHUNK], chunk)
    except StreamError as exc:
        return [BROKEN, exc.message]
    return [END]


def cancelled(conn: WorkerChannel) -> bool:
    """Whether the front asked to stop the stream (or is gone), without waiting: one poll of the
    socket between chunks, as the front sends nothing else while a stream runs."""
    if not select.select([conn.sock], [], [], 0)[0]:
        return False
    try:
        return any(meta == [CANCEL] for meta, _ in conn.receive_available())
    except (EOFError, OSError):
        return True
