"""A process of the MME pool (``SERVE_MME_POOL=true``): it holds every loaded model and answers HTTP.

The front (``serve.pool.PoolEngine``) starts one such process per worker, each holding the port's
listening socket, and tells each over its socketpair which models to load or unload; once told to
accept, the process answers the connections it accepts itself, as a prefork worker does for one
model (``serve.prefork``): an invocation runs here, in this process, with no hop
(docs/engines.md, "MME pool"). Every other request (the ``/models`` API, ``/execution-parameters``)
is handed to the front, which owns the registry, and its answer relayed: one route table, one
access line per request, written by the front. ``GET /ping`` is answered here (200: the pool
serves).

Frames on the socketpair (``serve.channel``'s encoding), besides those of ``serve.channel``:

    front -> process: ["load", artifact_directory, model_name] | ["unload", model_name] | ["accept"]
                      | ["answer", id, status, headers] + body (a handed-over request's answer)
    process -> front: ["started"] | ["respawn", reason] (first, once: whether forking was safe)
                      | ["ready", pid, bytes, 0, load_seconds] | ["error", status, message] | ["unloaded"]
                      | ["http", id, method, path, query_string, headers] + body (a handed-over request)

Loads run in a thread, so the process goes on answering while a model loads; a request runs in the
event loop's thread under ``serve.prefork``'s SIGALRM timeout. A process whose request timed out
stops after answering, and the front starts a replacement that loads every model before it accepts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from starlette.responses import Response as HTTPResponse
from starlette.types import Receive, Scope, Send

from handlers.base import HandlerOptions, Request, Response
from serve.app import HotPath, PayloadTooLarge, error_response, first_headers, payload_too_large, receive_body
from serve.channel import Frame, WorkerChannel
from serve.engine import EngineError
from serve.prefork import InProcessModel, in_process_model, raise_timed_out
from serve.stream import Streamed
from serve.worker import PreforkServing, configure_worker, load_model

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("serve.worker")

#: The frame kinds this module adds to ``serve.channel``'s (see the module docstring).
LOAD, UNLOAD, ACCEPT, ANSWER, HTTP, UNLOADED, STARTED = (
    "load", "unload", "accept", "answer", "http", "unloaded", "started")


def pool_main(sock: socket.socket, framework: str, options: HandlerOptions, forked: bool, log_level: int,
              serving: PreforkServing) -> None:
    """Entry point of a pool process (a multiprocessing target)."""
    configure_worker(log_level)
    conn = WorkerChannel(sock)
    if forked:
        from handlers.registry import handler_class

        hazard = handler_class(framework).fork_hazard()
        if hazard:
            conn.send(["respawn", hazard])
            return
    conn.send([STARTED])
    PoolServer(conn, framework, options, serving).run()


class PoolServer:
    """The models this process holds, its HTTP server and its end of the front's socketpair."""

    def __init__(self, conn: WorkerChannel, framework: str, options: HandlerOptions, serving: PreforkServing) -> None:
        self.conn = conn
        self.framework = framework
        self.options = options
        self.serving = serving
        self.models: dict[str, InProcessModel] = {}
        self.told = asyncio.Event()  # the front said accept, or the server is to stop
        self.handed: dict[int, asyncio.Future[Frame]] = {}  # answers awaited from the front
        self.ids = itertools.count()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: uvicorn.Server | None = None

    def run(self) -> None:
        import signal

        import uvicorn

        from serve.http import uvicorn_config

        settings = self.serving.settings
        app = HotPath(self.answer_here_or_in_front, settings, self.invoke)
        config = uvicorn_config(app, settings, lifespan="off")
        self.server = uvicorn.Server(config)
        signal.signal(signal.SIGALRM, raise_timed_out)
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(self.main())
        finally:
            for model in self.models.values():
                model.served.unload()

    async def main(self) -> None:
        assert self.server is not None
        asyncio.get_running_loop().add_reader(self.conn.sock.fileno(), self.on_readable)
        await self.told.wait()
        if not self.server.should_exit:  # the front said accept, rather than closing the socket
            await self.server.serve(sockets=[self.serving.listener])

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.told.set()  # before the front said accept: nothing to serve

    # -- the front's frames ---------------------------------------------------------------------

    def on_readable(self) -> None:
        try:
            frames = self.conn.receive_available()
        except (EOFError, OSError):  # the front closed the socket: finish what is in flight, stop
            asyncio.get_running_loop().remove_reader(self.conn.sock.fileno())
            for handed in self.handed.values():
                if not handed.done():
                    handed.set_exception(EOFError())
            self.stop()
            return
        for meta, body in frames:
            kind = meta[0]
            if kind == ANSWER:
                waiting = self.handed.pop(meta[1], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result((meta, body))
            elif kind == LOAD:
                self.in_background(self.load(meta[1], meta[2]))
            elif kind == UNLOAD:
                self.in_background(self.unload(meta[1]))
            elif kind == ACCEPT:
                self.told.set()

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task, held until it is done (the event loop keeps only a weak reference)."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def load(self, model_dir: str, name: str) -> None:
        import psutil

        started = time.perf_counter()
        before = psutil.Process().memory_info().rss
        result = await asyncio.to_thread(load_model, self.framework, self.options, model_dir, name)
        if isinstance(result, list):  # the reason it did not load, as an "error" frame
            self.send(result)
            return
        self.models[name] = in_process_model(result, self.serving, self.stop)
        grown = max(0, psutil.Process().memory_info().rss - before)
        self.send(["ready", os.getpid(), grown, 0, time.perf_counter() - started])

    async def unload(self, name: str) -> None:
        """Forget the model at once (its requests get 404 from now on), then release it in a thread:
        a handler's release may take a while (scikit-learn's collects garbage: tens of ms)."""
        model = self.models.pop(name, None)
        if model is not None:
            await asyncio.to_thread(model.served.unload)
        self.send([UNLOADED])

    def send(self, meta: list[Any], body: bytes = b"") -> None:
        try:
            self.conn.send(meta, body)
        except OSError:  # the front is gone: the reader sees EOF and stops the server
            pass

    # -- requests -------------------------------------------------------------------------------

    async def invoke(self, name: str, request: Request) -> Response | Streamed:
        model = self.models.get(name)
        if model is None:
            raise EngineError(404, f"model {name!r} is not loaded")
        return await model.invoke(name, request)

    async def answer_here_or_in_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request but an invocation (``HotPath`` answers those): ``GET /ping`` here (200: the pool
        serves), the rest in the front."""
        if scope["type"] != "http":
            return  # lifespan is off; uvicorn sends nothing else
        if scope["method"] == "GET" and scope["path"] == "/ping":
            await HTTPResponse(status_code=200)(scope, receive, send)
            return
        await self.hand_to_front(scope, receive, send)

    async def hand_to_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The front answers the request (its routes, its registry, its access line); this process
        relays the answer."""
        headers = first_headers(scope["headers"])
        try:
            body = await receive_body(receive, headers.get("content-length"), self.serving.settings.max_payload_bytes)
        except PayloadTooLarge:
            await payload_too_large(self.serving.settings)(scope, receive, send)
            return
        request_id = next(self.ids)
        answer = self.handed[request_id] = asyncio.get_running_loop().create_future()
        raw_headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        self.send([HTTP, request_id, scope["method"], scope["path"], scope["query_string"].decode("latin-1"),
                   raw_headers], body)
        try:
            (_, _, status, answer_headers), answer_body = await answer
        except EOFError:
            await error_response(503, "the server is shutting down")(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers]})
        await send({"type": "http.response.body", "body": answer_body})
