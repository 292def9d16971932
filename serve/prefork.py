"""Prefork (``SERVE_PREFORK=true``, single-model mode): each worker answers HTTP itself.

The front binds the port and answers on it while the model loads (``/ping`` says 503); once the
model is loaded it stops accepting, and from then on the model's workers, each holding the same
listening socket, accept and answer connections themselves, as gunicorn's and uvicorn's own
multi-process workers do: a request crosses no process boundary (docs/engines.md, "Prefork").

The front stays the supervisor: it replaces a worker that exits, kills one whose request outlives
the timeout where this module's SIGALRM cannot reach (code inside a C call), and on SIGTERM closes
each worker's socket, upon which the worker stops accepting, finishes its in-flight requests and
exits. A connection the front accepted before the hand-over keeps being answered through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from handlers.base import ChunkStream, HandlerOptions, Request, Response
from handlers.errors import HandlerError
from serve.app import create_worker_app
from serve.channel import WorkerChannel
from serve.engine import EngineError, timed_out_message
from serve.stream import AnswerStream, Streamed, StreamFailed
from serve.worker import PreforkServing, answer_frame, predict, run_worker

if TYPE_CHECKING:
    from handlers.model import ServedModel

log = logging.getLogger("serve.worker")

T = TypeVar("T")
#: How often a worker started before the hand-over looks whether the front has stopped accepting
#: (only while the model's workers load: seconds at most, so a poll costs nothing that matters).
HAND_OVER_POLL_S = 0.005


class RequestTimedOut(BaseException):
    """Raised in the worker's main thread by SIGALRM when a request reaches the timeout.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that a user script's ``except Exception``
    does not swallow it."""


def raise_timed_out(signum: int, frame: FrameType | None) -> None:
    """SIGALRM's handler in a process that answers with ``InProcessModel``."""
    raise RequestTimedOut


class InProcessModel:
    """Answers the worker's HTTP requests with its own model, within the request timeout."""

    def __init__(self, served: ServedModel, serving: PreforkServing, stop: Callable[[], None]) -> None:
        self.served = served
        self.serving = serving
        self.stop = stop

    async def invoke(self, name: str, request: Request) -> Response | Streamed:
        """The model's answer, or ``EngineError`` with the status the front would have answered."""
        response = self.within_timeout(name, lambda: predict(self.served, request, name))
        if response.chunks is not None:
            return Streamed(response, InProcessStream(self, name, response.chunks))
        return response

    def within_timeout(self, name: str, work: Callable[[], T]) -> T:
        """``work()`` interrupted at the timeout (504, and this worker stops), marked busy meanwhile."""
        timeout = self.serving.settings.timeout_s
        self.serving.busy_since.value = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                return work()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except RequestTimedOut:
            # The model's state is unknown after an interrupted call: answer, then let the front
            # start a fresh worker in place of this one.
            self.stop()
            raise EngineError(504, timed_out_message(name, timeout)) from None
        except HandlerError as exc:
            raise EngineError(exc.status, exc.message) from None
        finally:
            self.serving.busy_since.value = 0.0


class InProcessStream(AnswerStream):
    """The rest of a streamed answer, each chunk produced in this process when asked for, within the
    timeout (docs/handlers.md, "Streaming")."""

    def __init__(self, model: InProcessModel, name: str, chunks: ChunkStream) -> None:
        self.model = model
        self.name = name
        self.chunks = chunks

    async def next_chunk(self) -> bytes | None:
        try:
            return self.model.within_timeout(self.name, lambda: next(self.chunks, None))
        except EngineError as exc:  # StreamError, or the timeout (then this worker stops after the answer)
            raise StreamFailed(exc.message) from None

    async def cancel(self) -> None:
        with contextlib.suppress(EngineError):  # a close past the timeout: this worker stops
            self.model.within_timeout(self.name, self.chunks.close)


def worker_main(sock: socket.socket, framework: str, options: HandlerOptions, model: tuple[str, str] | None,
                forked: bool, log_level: int, serving: PreforkServing) -> None:
    """Entry point of a prefork worker process: ``serve.worker.worker_main``'s, then HTTP on
    ``serving.listener``. The engine is handed it (``serve.engine.Prefork``): this module serves the
    front's routes, which import the engine (docs/architecture.md, "serve/: the container")."""
    run_worker(lambda conn, served, name: serve_http(conn, served, name, serving),
               sock, framework, options, model, forked, log_level)


def serve_http(conn: WorkerChannel, served: ServedModel, model_name: str, serving: PreforkServing) -> None:
    """Serve HTTP on ``serving.listener`` until the front closes ``conn`` (or SIGTERM/SIGINT);
    frames the front still sends over ``conn`` are answered too."""
    import uvicorn

    from serve.http import uvicorn_config

    settings = serving.settings
    model = InProcessModel(served, serving, stop=lambda: setattr(server, "should_exit", True))
    config = uvicorn_config(create_worker_app(settings, serving.default_workers, model.invoke), settings,
                            lifespan="off")
    server = uvicorn.Server(config)

    def on_channel_readable() -> None:
        try:
            frames = conn.receive_available()
        except (EOFError, OSError):  # the front closed the socket: finish what is in flight, stop
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
            server.should_exit = True
            return
        for frame in frames:
            answer_frame(conn, served, model_name, frame)

    async def main() -> None:
        asyncio.get_running_loop().add_reader(conn.sock.fileno(), on_channel_readable)
        while not serving.handed_over.value:  # the front answers on the port until every worker is up
            if server.should_exit:
                return
            await asyncio.sleep(HAND_OVER_POLL_S)
        await server.serve(sockets=[serving.listener])

    signal.signal(signal.SIGALRM, raise_timed_out)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
