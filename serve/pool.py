"""The MME pool (``SERVE_MME_POOL=true``): processes that each hold every loaded model.

In multi-model mode the native engine runs a worker process per model behind the front, and every
request crosses from the front to its model's worker; that hop costs more CPU than the model's own
work for a small model (docs/engines.md, "MME round robin, ≥ 3×"). The pool removes it: a fixed
number of processes (``SAGEMAKER_MODEL_SERVER_WORKERS``, else the framework's single-model default), each holding
the port's listening socket and every loaded model, accept and answer connections themselves
(``serve.pool_worker``), as prefork's workers do for a single model.

The front never listens. It owns the registry and the memory admission: a ``POST /models`` or
``DELETE /models/NAME`` that reaches any process is handed to the front's routes over that
process's socketpair, and the front loads or unloads the model in every process before it answers.
A process that dies or stops (a request past the timeout) is replaced by one that loads every
registered model before it accepts, while the others go on answering. Registry changes (loads,
unloads, a replacement's catch-up) happen one at a time, so every process holds the same models.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from starlette.types import ASGIApp, Message

from handlers.base import HandlerOptions, Request, Response
from serve.channel import Frame, FrontChannel
from serve.engine import (
    LOAD_TIMEOUT_S,
    MB,
    STUCK_CHECK_PERIOD_S,
    STUCK_GRACE_S,
    Engine,
    EngineError,
    ModelEntry,
    Prefork,
    Worker,
)
from serve.settings import Settings
from serve.shared import error_json
from serve.stream import Streamed
from serve.worker import PreforkServing, WorkerInfo

log = logging.getLogger("serve.engine")

#: A pool process's entry point (``serve.pool_worker.pool_main``), handed over by ``serve.__main__``.
PoolMain = Callable[[socket.socket, str, HandlerOptions, bool, int, PreforkServing], None]
#: How long the front's reader of a pool process's socket waits before it waits again.
READ_WAIT_S = 3600.0
#: Seconds between tries to replace a pool process that could not start, the last repeated.
REPLACE_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class PoolProcessLost(EngineError):
    """A pool process exited, or did not answer a command in time."""


@dataclass(eq=False)
class PoolProcess:
    """One process of the pool and the front's end of its socketpair."""

    process: BaseProcess
    channel: FrontChannel
    busy_since: Any  # the RawValue("d") shared with it (PreforkServing)
    commands: asyncio.Lock = field(default_factory=asyncio.Lock)  # one load or unload at a time
    answer: asyncio.Future[Frame] | None = None  # the answer to the command in progress
    retired: bool = False  # stopped or replaced: its exit is expected

    @property
    def pid(self) -> int:
        return self.process.pid or 0


def pool_size(settings: Settings, handler_default: int) -> int:
    """SAGEMAKER_MODEL_SERVER_WORKERS, else the framework's single-model default (one process per CPU
    would oversubscribe a framework that runs each call on several threads, as prefork would)."""
    return settings.workers if settings.workers is not None else max(1, int(handler_default))


class PoolEngine(Engine):
    """``Engine``'s registry and admission over a pool of processes that each hold every model."""

    def __init__(self, settings: Settings, listener: socket.socket, main: PoolMain) -> None:
        super().__init__(settings, Prefork(listener, main))  # type: ignore[arg-type]  # another entry point
        self.pool: list[PoolProcess] = []
        self.size = pool_size(settings, self.handler.default_workers)
        self.control_app: ASGIApp | None = None  # the front's routes, set by serve.__main__
        self._registry = asyncio.Lock()  # loads, unloads and a replacement's catch-up, one at a time

    async def start(self) -> None:
        if self._forked:
            await asyncio.to_thread(self._fork_once)
        for _ in range(self.size):
            self.pool.append(await self._start_pool_process())
        self._in_background(self._kill_stuck_processes())
        log.info("MME pool: %d processes, each holding every model, answer on the port", self.size)

    # -- processes ------------------------------------------------------------------------------

    async def _start_pool_process(self) -> PoolProcess:
        """A new pool process that holds every registered model and accepts."""
        member = await self._spawn_member()
        try:
            for entry in self.ready_models():
                try:
                    info = await self._command(member, ["load", entry.url, entry.name])
                except PoolProcessLost as exc:
                    await self._drop_model(entry, exc)  # its load may be what ended the process
                    raise
                except EngineError as exc:
                    await self._drop_model(entry, exc)
                    continue
                entry.workers.append(Worker(member.process, member.channel, info, member.busy_since))
            member.channel.send(["accept"])
        except BaseException:
            self._forget(member)
            await self._stop_member(member, graceful=False)
            raise
        asyncio.get_running_loop().add_reader(member.process.sentinel, self._on_member_exit, member)
        return member

    async def _spawn_member(self) -> PoolProcess:
        """A started pool process holding no model yet; forked, unless it finds forking unsafe
        (``Handler.fork_hazard``), upon which processes are spawned from then on."""
        for _attempt in range(2):
            process, channel, busy_since = await self._start_pool_os_process()
            try:
                (kind, *reason), _ = await channel.receive(LOAD_TIMEOUT_S)
            except (TimeoutError, EOFError):
                await self._stop_process(process, channel, graceful=False)
                raise EngineError(500, f"a pool process exited as it started (exit code {process.exitcode}); "
                                       "see the container log") from None
            if kind == "respawn":
                await self._stop_process(process, channel, graceful=True)
                self._use_spawn(reason[0])
                continue
            member = PoolProcess(process, channel, busy_since)
            self._in_background(self._read(member))
            return member
        raise EngineError(500, "could not start a pool process")

    async def _start_pool_os_process(self) -> tuple[BaseProcess, FrontChannel, Any]:
        assert self.prefork is not None
        front_end, worker_end = socket.socketpair()
        serving = self._prefork_serving()
        args = (worker_end, self.settings.framework, self.options, self._forked, self.settings.log_level, serving)
        process, channel = await self._launch(self.prefork.main, args, "serve-pool", front_end, worker_end)
        return process, channel, serving.busy_since

    async def _read(self, member: PoolProcess) -> None:
        """Every frame from ``member``: a handed-over request (answered by the front's routes) or the
        answer to the command in progress."""
        while True:
            try:
                meta, body = await member.channel.receive(READ_WAIT_S)
            except TimeoutError:
                continue
            except EOFError:
                if member.answer is not None and not member.answer.done():
                    member.answer.set_exception(EOFError())
                return
            if meta[0] == "http":
                self._in_background(self._answer_http(member, meta, body))
            elif member.answer is not None and not member.answer.done():
                member.answer.set_result((meta, body))

    async def _command(self, member: PoolProcess, meta: list[Any]) -> WorkerInfo:
        """Send a load or unload to ``member`` and wait for its answer (a load's report)."""
        async with member.commands:
            member.answer = asyncio.get_running_loop().create_future()
            try:
                member.channel.send(meta)
                answer, _ = await asyncio.wait_for(member.answer, LOAD_TIMEOUT_S)
            except (EOFError, OSError, TimeoutError):
                raise PoolProcessLost(500, f"pool process {member.pid} exited or did not answer while handling "
                                       f"{meta[0]} of model {meta[-1]!r}; see the container log") from None
            finally:
                member.answer = None
        if answer[0] == "error":
            raise EngineError(answer[1], answer[2])
        return WorkerInfo(*answer[1:]) if answer[0] == "ready" else WorkerInfo(member.pid, 0, 0, 0.0)

    def _on_member_exit(self, member: PoolProcess) -> None:
        """A pool process ended: forget it and start one in its place with every model."""
        asyncio.get_running_loop().remove_reader(member.process.sentinel)
        if member.retired:
            return
        log.warning("pool process %d exited (exit code %s); starting a replacement that loads every model",
                    member.pid, member.process.exitcode)
        self._retire(member)
        self._in_background(self._replace())

    def _retire(self, member: PoolProcess) -> None:
        member.retired = True
        if member in self.pool:
            self.pool.remove(member)
        self._forget(member)
        if member.process.is_alive():
            member.process.kill()
        member.channel.close()

    def _forget(self, member: PoolProcess) -> None:
        """Drop ``member`` from every model's workers."""
        for entry in self.models.values():
            entry.workers = [w for w in entry.workers if w.process is not member.process]

    async def _drop_model(self, entry: ModelEntry, exc: EngineError) -> None:
        """A model that a replacement could not load is unloaded from every process, as the default
        engine unloads a model whose worker cannot be replaced: the pool stays whole and the other
        models keep being served; invocations of it get 404 until it is loaded again."""
        log.error("model %s could not be loaded in a replacement pool process: %s; it was unloaded from "
                  "every process", entry.name, exc.message)
        entry.state = "unloading"
        await self._unload_everywhere(entry)
        if self.models.get(entry.name) is entry:
            del self.models[entry.name]

    async def _replace(self) -> None:
        """Start a pool process in place of one that ended, trying again until one starts (a model
        whose load ends the process is dropped on the way), so the pool is never a process short
        for good."""
        for attempt in itertools.count():
            async with self._registry:
                if self._closing:
                    return
                try:
                    member = await self._start_pool_process()
                except EngineError as exc:
                    delay = REPLACE_RETRY_S[min(attempt, len(REPLACE_RETRY_S) - 1)]
                    log.error("could not replace a pool process: %s; the pool runs with %d process(es); "
                              "trying again in %.0f s", exc.message, len(self.pool), delay)
                else:
                    self.pool.append(member)
                    log.info("replaced a pool process (new pid %d) holding %d model(s)",
                             member.pid, len(self.models))
                    return
            await asyncio.sleep(delay)

    async def _stop_member(self, member: PoolProcess, graceful: bool) -> None:
        member.retired = True
        await self._stop_process(member.process, member.channel, graceful)

    async def _kill_stuck_processes(self) -> None:
        """Kill a pool process whose request outlived the timeout where its own SIGALRM cannot reach
        (code inside a C call); the client's connection closes and a replacement starts."""
        limit = self.settings.timeout_s + STUCK_GRACE_S
        while True:
            await asyncio.sleep(STUCK_CHECK_PERIOD_S)
            now = time.monotonic()
            for member in list(self.pool):
                since = member.busy_since.value
                if since and now - since > limit:
                    log.error("pool process %d has been in one request for %.0f s, past the %.0f s timeout; "
                              "killing and replacing it", member.pid, now - since, self.settings.timeout_s)
                    member.process.kill()

    # -- the registry ---------------------------------------------------------------------------

    def _predicted_cost(self, url: str) -> int:
        """Every pool process holds the model: what one costs, once per process."""
        return super()._predicted_cost(url) * max(1, len(self.pool))

    async def _load(self, name: str, url: str, workers: int | None) -> ModelEntry:
        if workers is not None:
            raise EngineError(400, f"initial_workers cannot be honoured with SERVE_MME_POOL=true: every one "
                                   f"of the pool's {self.size} processes holds every model")
        if self._closing:
            raise EngineError(503, "the server is shutting down")
        if name in self.models:
            raise EngineError(409, f"model {name!r} is already loaded")
        entry = ModelEntry(name=name, url=url, target_workers=self.size)
        self.models[name] = entry  # claims the name: concurrent loads of it get 409 (single flight)
        started = time.perf_counter()
        try:
            others = await self._admit(name, url)
            # Ready before the lock is released: a replacement's catch-up, which takes the lock next,
            # must find it (it loads the ready models).
            async with self._registry:
                await self._load_everywhere(entry)
                if await self._used_after_load(others, entry) > self.memory.limit:
                    await self._unload_everywhere(entry)
                    raise EngineError(507, f"model {name!r} loaded but pushed the server over its memory "
                                           f"limit of {self.memory.limit / MB:.0f} MB; it was unloaded again")
                entry.state = "ready"
        except BaseException:
            del self.models[name]
            raise
        finally:
            self._reserved.pop(name, None)
        entry.load_seconds = time.perf_counter() - started
        entry.loaded_at = entry.last_used = time.time()
        self._observed.append(entry.memory_bytes // max(1, len(entry.workers)))
        log.info("loaded model %s from %s in %d pool process(es), %.1f MB, %.3f s", name, url,
                 len(entry.workers), entry.memory_bytes / MB, entry.load_seconds)
        return entry

    async def _load_everywhere(self, entry: ModelEntry) -> None:
        """Load ``entry`` in every pool process, or in none (an error's loads are undone)."""
        members = list(self.pool)
        if not members:
            raise EngineError(503, "no pool process is alive; replacements are starting")
        results = await asyncio.gather(*(self._command(m, ["load", entry.url, entry.name]) for m in members),
                                       return_exceptions=True)
        for member, result in zip(members, results, strict=True):
            if isinstance(result, WorkerInfo):
                entry.workers.append(Worker(member.process, member.channel, result, member.busy_since))
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._unload_everywhere(entry)
            raise failure

    async def _unload_everywhere(self, entry: ModelEntry) -> None:
        """Unload ``entry`` from every pool process that holds it."""
        holders = [m for m in self.pool if any(w.process is m.process for w in entry.workers)]
        results = await asyncio.gather(*(self._command(m, ["unload", entry.name]) for m in holders),
                                       return_exceptions=True)
        for member, result in zip(holders, results, strict=True):
            if isinstance(result, BaseException):
                log.error("unloading model %s from pool process %d failed: %s", entry.name, member.pid, result)
        entry.workers = []

    async def unload(self, name: str) -> None:
        """Unload a model from every pool process. A request in a process runs in its event loop's
        thread, so the process takes the unload once the request in it has been answered."""
        entry = self.models.get(name)
        if entry is None or entry.state != "ready":
            raise EngineError(404, f"model {name!r} is not loaded")
        entry.state = "unloading"
        async with self._registry:
            await self._unload_everywhere(entry)
        self.models.pop(name, None)
        log.info("unloaded model %s", name)

    async def invoke(self, name: str, request: Request) -> Response | Streamed:
        """Never called: the front does not listen; the pool processes answer invocations."""
        raise EngineError(500, "SERVE_MME_POOL: the front answers no invocation")

    # -- requests handed over by a pool process -------------------------------------------------

    async def _answer_http(self, member: PoolProcess, meta: list[Any], body: bytes) -> None:
        """Answer a request a pool process handed over with the front's own routes."""
        _, request_id, method, path, query, headers = meta
        assert self.control_app is not None
        status, answer_headers, answer = await call_app(self.control_app, method, path, query, headers, body)
        with contextlib.suppress(EOFError, OSError):  # the process is gone: nobody is left to answer
            member.channel.send(["answer", request_id, status, answer_headers], answer)

    # -- shutdown -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every pool process: each finishes its in-flight requests, then exits."""
        self._closing = True
        for task in list(self._background):
            task.cancel()
        members, self.pool = self.pool, []
        for member in members:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(member.process.sentinel)
        await asyncio.gather(*(self._stop_member(m, graceful=True) for m in members))
        self.models.clear()


async def call_app(app: ASGIApp, method: str, path: str, query: str, headers: list[list[str]],
                   body: bytes) -> tuple[int, list[list[str]], bytes]:
    """One HTTP request through an ASGI app in this process: (status, headers, body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode("latin-1"), "root_path": "",
        "query_string": query.encode("latin-1"), "client": None, "server": None,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    received = False
    status = 500
    answer_headers: list[list[str]] = []
    chunks: list[bytes] = []
    started: list[bool] = []

    async def receive() -> Message:
        nonlocal received
        if received:
            await asyncio.Event().wait()  # as a connection that stays open: no disconnect to report
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            started.append(True)
            status = message["status"]
            answer_headers.extend([k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:  # Starlette answers 500 first, then raises again: keep its answer
        log.exception("the front's routes failed on %s %s handed over by a pool process", method, path)
        if not started:
            return 500, [["content-type", "application/json"]], error_json(500, "the server failed; see its log")
    return status, answer_headers, b"".join(chunks)
