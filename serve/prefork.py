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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from handlers.base import ChunkStream, HandlerOptions, Request, Response
from handlers.errors import HandlerError
from serve.app import create_worker_app
from serve.channel import WorkerChannel
from serve.engine import EngineError, timed_out_message
from serve.shared import unexpected_error
from serve.stream import AnswerStream, Streamed, StreamFailed
from serve.worker import PreforkServing, answer_frame, batch_answers, predict, run_worker

if TYPE_CHECKING:
    from handlers.model import ServedModel
    from serve.settings import Batching

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
        return self.answer(name, request)

    def answer(self, name: str, request: Request) -> Response | Streamed:
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


def in_process_model(served: ServedModel, serving: PreforkServing, stop: Callable[[], None]) -> InProcessModel:
    """How a process that answers HTTP itself invokes ``served``: batching when the settings ask for it."""
    batching = serving.settings.batching
    if batching is None:
        return InProcessModel(served, serving, stop)
    return GatheringModel(served, serving, stop, batching)


@dataclass(eq=False)
class Waiting:
    """A request read by a batching worker, waiting for its batch."""

    request: Request
    answer: asyncio.Future[Response | Streamed]
    since: float


class GatheringModel(InProcessModel):
    """Prefork with batching on (docs/engines.md, "Batching"): a request is predicted once a turn of
    the event loop has read no further request, so a request read alone is predicted at once, alone
    (a streamed answer allowed), and the requests a worker reads after its model was busy, which
    waited in their connections meanwhile (one per turn on new connections, since each accept takes
    one), are predicted together, up to the batch size. As in the front's queue, a partial batch
    waits for more only until its oldest request has waited the delay."""

    def __init__(self, served: ServedModel, serving: PreforkServing, stop: Callable[[], None],
                 batching: Batching) -> None:
        super().__init__(served, serving, stop)
        self.batching = batching
        self.waiting: deque[Waiting] = deque()
        self.due: asyncio.Handle | None = None  # the call that predicts the next batch, when one is due
        self.seen = 0  # how many were waiting when the due call last looked

    async def invoke(self, name: str, request: Request) -> Response | Streamed:
        loop = asyncio.get_running_loop()
        waiting = Waiting(request, loop.create_future(), time.monotonic())
        self.waiting.append(waiting)
        if self.due is None or (len(self.waiting) >= self.batching.max_size
                                and isinstance(self.due, asyncio.TimerHandle)):
            if self.due is not None:
                self.due.cancel()
            self.due = loop.call_soon(self.predict_waiting, name)
        return await waiting.answer

    def predict_waiting(self, name: str) -> None:
        """Answer the next batch of waiting requests, unless more may still join it."""
        self.due = None
        batch = self._next_batch(name)
        if len(batch) == 1:
            resolve(batch[0].answer, attempt(lambda: self.answer(name, batch[0].request)))
        elif batch:
            self._answer_batch(name, batch)

    def _next_batch(self, name: str) -> list[Waiting]:
        """The requests to predict now, in the order read; none while more may join (the next look is
        then due: a turn later, or when the oldest has waited the delay)."""
        loop = asyncio.get_running_loop()
        size, waiting = self.batching.max_size, self.waiting
        if self.seen < len(waiting) < size:  # more came in the last turn: one more turn for the rest
            self.seen = len(waiting)
            self.due = loop.call_soon(self.predict_waiting, name)
            return []
        wait = waiting[0].since + self.batching.max_delay_s - time.monotonic() if waiting else 0.0
        if 1 < len(waiting) < size and wait > 0:
            self.due = loop.call_later(wait, self.predict_waiting, name)
            return []
        batch = [w for w in (waiting.popleft() for _ in range(min(size, len(waiting)))) if not w.answer.done()]
        self.seen = len(waiting)
        if waiting:
            self.due = loop.call_soon(self.predict_waiting, name)
        return batch

    def _answer_batch(self, name: str, batch: list[Waiting]) -> None:
        """Predict ``batch`` as one call and settle each request with its own answer or error; past the
        timeout every request of it gets the 504."""
        answers = attempt(lambda: self.within_timeout(
            name, lambda: batch_answers(self.served, name, [w.request for w in batch])))
        for i, w in enumerate(batch):
            answer = answers if isinstance(answers, EngineError) else answers[i]
            if isinstance(answer, HandlerError):
                answer = EngineError(answer.status, answer.message)
            resolve(w.answer, answer)


def attempt(work: Callable[[], T]) -> T | EngineError:
    """``work()``, or the ``EngineError`` it raised (500 for any other exception, which would otherwise
    leave the requests waiting for it unanswered)."""
    try:
        return work()
    except EngineError as exc:
        return exc
    except Exception as exc:
        log.exception("answering a request failed")
        return EngineError(500, unexpected_error("prediction", exc))


def resolve(future: asyncio.Future[T], outcome: T | EngineError) -> None:
    """Answer the request waiting on ``future`` with ``outcome``: an answer, or the error it gets."""
    if isinstance(outcome, EngineError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
    model = in_process_model(served, serving, stop=lambda: setattr(server, "should_exit", True))
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
