"""The native engine: a registry of loaded models, each served by worker processes.

The front process (this module's caller) never imports a framework. Each model's workers are forked
from the standard library's forkserver, which preloads the framework's handler module once, so a new
worker starts warm and costs only the memory its model adds; in MME mode one is forked ahead of the
next load (the spare). Unloading a model ends its workers, so that memory really comes back. Where
forking after the import is unsafe (the handler says so, or the fork parent runs threads) the engine
falls back to spawning fresh interpreters and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import statistics
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from handlers.base import HandlerOptions, Request, Response
from handlers.registry import handler_class, handler_module
from serve.channel import BATCH, BROKEN, CANCEL, CHUNK, STREAM, Frame, FrontChannel, pack, unpack
from serve.memory import memory_budget
from serve.settings import Batching, Settings
from serve.shared import handler_options, workers_per_model
from serve.stream import AnswerStream, Streamed, StreamFailed
from serve.worker import PreforkServing, WorkerInfo, request_fields, response_from, worker_main

log = logging.getLogger("serve.engine")

MB = 1024 * 1024
#: SageMaker keeps loading an MME model for up to 360 s after the invocation gave up
#: (docs/sagemaker-contract.md §2.2).
LOAD_TIMEOUT_S = 360.0
#: How long a stopping worker gets to exit after its socket closes before it is killed.
STOP_GRACE_S = 5.0
#: Predicted private memory of a model's worker before anything was measured: the fork's own
#: pages (about 2 MB) plus room for the unpickled model.
FIRST_MODEL_BASELINE = 16 * MB
#: Share of the memory limit that loads may not fill: loaded models still grow when they first
#: predict (buffers, caches) and the kernel charges the cgroup for more than the tree's PSS. With no
#: headroom a --memory 400m container filled with 29 models OOM-killed 24 workers once they were
#: invoked (tests/reliability/test_memory_limited_container.py).
ADMISSION_HEADROOM = 0.10
#: Requests a model may hold (running or waiting for a worker) per worker, unless
#: SERVE_MAX_IN_FLIGHT_PER_MODEL says otherwise; beyond it 503.
IN_FLIGHT_PER_WORKER = 100
#: Prefork: how often the front looks for a worker stuck in a request, and how long past the timeout
#: (by which the worker's own SIGALRM answers 504) it waits before killing it.
STUCK_CHECK_PERIOD_S = 1.0
STUCK_GRACE_S = 2.0
#: Modules a prefork worker imports to serve HTTP, preloaded in the fork parent so they are shared
#: (with its entry point's module, ``Prefork.main``'s).
PREFORK_PRELOAD = ["uvicorn", "serve.app", "serve.http", "serve.prefork"]


def timed_out_message(name: str, timeout: float) -> str:
    """What a request that reached SAGEMAKER_MODEL_SERVER_TIMEOUT is answered (504)."""
    return (f"model {name!r} did not answer within {timeout:.0f} s (SAGEMAKER_MODEL_SERVER_TIMEOUT); "
            "its worker was restarted")


class EngineError(Exception):
    """A request the engine answers with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Worker:
    """One worker process serving one model, and the front's end of its socket."""

    process: BaseProcess
    channel: FrontChannel
    info: WorkerInfo
    busy_since: Any = None  # prefork: the RawValue("d") shared with the worker (PreforkServing)
    busy: bool = False  # handling a request (its socket is the request's)
    exited: bool = False  # its process ended while it was busy
    retired: bool = False  # stopped or replaced: its exit is expected
    watched: bool = False  # its sentinel is registered with the event loop


@dataclass(eq=False)  # found in the queue by identity
class Queued:
    """A request waiting for a batch (docs/engines.md, "Batching"): the frame it is answered with
    arrives in ``answer``."""

    request: Request
    answer: asyncio.Future[Frame]
    since: float  # time.monotonic() when it was queued
    deadline: float


@dataclass
class ModelEntry:
    """A model in the registry: its workers, memory and use."""

    name: str
    url: str
    state: str = "loading"  # loading | ready | unloading
    target_workers: int = 1
    workers: list[Worker] = field(default_factory=list)
    idle: asyncio.Queue[Worker] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    waiting: int = 0  # requests waiting in _take for an idle worker
    queued: deque[Queued] = field(default_factory=deque)  # batching: requests waiting for a batch
    held: Worker | None = None  # batching: a free worker waiting for a fuller batch
    hold_timer: asyncio.TimerHandle | None = None  # when ``held`` stops waiting
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    loaded_at: float = 0.0
    last_used: float = 0.0
    load_seconds: float = 0.0

    @property
    def memory_bytes(self) -> int:
        return sum(w.info.uss_bytes for w in self.workers)

    def describe(self) -> dict[str, Any]:
        return {
            "modelName": self.name,
            "modelUrl": self.url,
            "state": self.state,
            "workers": [{"pid": w.info.pid, "memoryBytes": w.info.uss_bytes} for w in self.workers],
            "memoryBytes": self.memory_bytes,
            "loadSeconds": round(self.load_seconds, 4),
            "inFlight": self.in_flight,
        }


#: A prefork worker process's entry point: ``serve.worker.worker_main``'s arguments, then its
#: ``PreforkServing`` (``serve.prefork.worker_main``).
PreforkMain = Callable[[socket.socket, str, HandlerOptions, tuple[str, str] | None, bool, int, PreforkServing], None]


@dataclass(frozen=True)
class Prefork:
    """SERVE_PREFORK: the port's listening socket, handed to every worker, and the entry point of a
    worker that serves HTTP on it. The caller hands the entry point over: it serves the front's
    routes, which import this module, so the engine never imports it (docs/architecture.md,
    "serve/: the container")."""

    listener: socket.socket
    main: PreforkMain


#: A started worker process, the front's channel to it and, with prefork, what it serves HTTP with.
StartedProcess = tuple[BaseProcess, FrontChannel, PreforkServing | None]


def drain(queue: asyncio.Queue[Worker]) -> list[Worker]:
    """Everything in ``queue`` now, removed from it."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class Engine:
    """Loads, serves and unloads models on per-model worker processes."""

    def __init__(self, settings: Settings, prefork: Prefork | None = None) -> None:
        """``prefork``: with SERVE_PREFORK, the listening socket and the entry point of its workers."""
        self.settings = settings
        self.prefork = prefork
        self.options = handler_options(settings)
        self.batching: Batching | None = settings.batching
        self.memory = memory_budget(settings.memory_limit_mb)
        self.models: dict[str, ModelEntry] = {}
        self._reserved: dict[str, int] = {}  # predicted memory of loads in progress
        self._observed: list[int] = []  # measured private memory per loaded model
        self._spare: asyncio.Task[StartedProcess] | None = None  # MME: see _keep_spare
        # Importing the handler module is cheap (frameworks are imported lazily); the class says what
        # the fork parent preloads, whether forking is safe and how many workers a model gets.
        self.handler = handler_class(settings.framework)
        self._ctx: Any = multiprocessing.get_context("forkserver")  # or spawn, see _use_spawn
        self._forked = True
        if self.handler.fork_safe:
            self._ctx.set_forkserver_preload([
                handler_module(settings.framework), *self.handler.preload_modules,
                # what every worker imports on start, so it is shared rather than per worker
                "serve.worker", "handlers.model", "serve.memory",
                *([*PREFORK_PRELOAD, prefork.main.__module__] if prefork is not None else []),
            ])
        else:
            self._use_spawn(f"{self.handler.__name__} declares fork_safe = False")
        # Prefork: set once the front has stopped accepting (hand_over); the workers wait for it.
        self._handed_over = self._ctx.RawValue("b", 0) if prefork is not None else None
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    def hand_over(self) -> None:
        """Prefork: the front has stopped accepting, so the single model's workers accept from now on
        (and every worker started later, at once). Before it, a worker that had loaded its model
        while another was still loading would answer beside a front that still says "loading"."""
        if self._handed_over is not None:
            self._handed_over.value = 1

    async def start(self) -> None:
        """Start the fork parent now and wait until it has imported the framework (seconds for
        TensorFlow), so an MME's first model loads as fast as the others.

        ``forkserver.ensure_running`` returns once the parent is started, not once its preload is
        imported; the parent forks only after the import, so one no-op child proves it is done."""
        if self._forked:
            await asyncio.to_thread(self._fork_once)
        if self.prefork is not None:
            self._in_background(self._kill_stuck_workers())
        self._keep_spare()

    def _fork_once(self) -> None:
        probe = self._ctx.Process(target=os.getpid, name="serve-fork-parent-probe")
        probe.start()
        probe.join()

    # -- process start --------------------------------------------------------------------------

    def _use_spawn(self, reason: str) -> None:
        log.warning("forking workers is unsafe (%s); spawning fresh worker processes instead", reason)
        self._ctx = multiprocessing.get_context("spawn")
        self._forked = False
        spare, self._spare = self._spare, None
        if spare is not None:  # forked, so it would refuse too; the next load starts a spawned one
            self._in_background(self._stop_spare(spare))

    async def _start_worker(self, name: str, url: str) -> Worker:
        """Start one worker for model ``name`` (the spare, when one is ready) and wait until it has
        loaded the artifact at ``url``."""
        for _attempt in range(2):
            started = await self._take_spare(name, url) or await self._start_process((url, name))
            process, channel, serving = started
            try:
                message, _ = await channel.receive(LOAD_TIMEOUT_S)
            except (TimeoutError, EOFError, OSError):
                self._keep_spare()
                await self._stop_process(process, channel, graceful=False)
                raise EngineError(
                    500, f"the worker loading model {name!r} exited before it finished "
                         f"(exit code {process.exitcode}); see the container log") from None
            if message[0] == "respawn":
                await self._stop_process(process, channel, graceful=True)
                self._use_spawn(message[1])
                continue
            self._keep_spare()  # after the load, so forking it does not compete with the load
            if message[0] == "error":
                await self._stop_process(process, channel, graceful=True)
                raise EngineError(message[1], message[2])
            return Worker(process, channel, WorkerInfo(*message[1:]),
                          busy_since=serving.busy_since if serving is not None else None)
        raise EngineError(500, f"could not start a worker for model {name!r}")

    async def _start_process(self, model: tuple[str, str] | None) -> StartedProcess:
        """Start a worker process for ``model`` (artifact directory, name), or a spare for None."""
        front_end, worker_end = socket.socketpair()
        serving = None
        args: tuple[Any, ...] = (worker_end, self.settings.framework, self.options, model, self._forked,
                                 self.settings.log_level)
        target: Callable[..., None] = worker_main
        if self.prefork is not None:
            serving = self._prefork_serving()
            target, args = self.prefork.main, (*args, serving)
        name = f"serve-worker-{model[1] if model is not None else '(spare)'}"
        process, channel = await self._launch(target, args, name, front_end, worker_end)
        return process, channel, serving

    def _prefork_serving(self) -> PreforkServing:
        """What a process that answers HTTP itself is handed (the listening socket among it)."""
        assert self.prefork is not None
        return PreforkServing(self.prefork.listener, self.settings, self.handler.default_workers,
                              self._ctx.RawValue("d", 0.0), self._handed_over)

    async def _launch(self, target: Callable[..., None], args: tuple[Any, ...], name: str,
                      front_end: socket.socket, worker_end: socket.socket) -> tuple[BaseProcess, FrontChannel]:
        """Start ``target(*args)`` in a process that holds ``worker_end`` (closed here once it started);
        the front's channel reads ``front_end``."""
        process = self._ctx.Process(target=target, args=args, name=name)
        try:
            await asyncio.to_thread(process.start)
        except BaseException:
            front_end.close()
            raise
        finally:
            worker_end.close()
        return process, await FrontChannel.open(front_end)

    # -- the spare ------------------------------------------------------------------------------
    # Forking from the framework-preloaded parent costs about 9 ms on its own (the kernel copies the
    # page tables of ~1,500 mappings scikit-learn's libraries make) and the child's multiprocessing
    # bootstrap ~6 ms more: most of a small MME model's load. So in MME mode one worker is forked
    # ahead of need and handed the next model (docs/engines.md, "What limits goal 4").

    def _keep_spare(self) -> None:
        """MME mode: start forking a spare worker unless one exists (or is being started)."""
        if (self.settings.multi_model and self.prefork is None and not self._closing
                and self._spare is None):
            self._spare = asyncio.get_running_loop().create_task(self._start_process(None))

    async def _take_spare(self, name: str, url: str) -> StartedProcess | None:
        """The spare worker, told to load ``url`` as model ``name``; None when there is no live one
        (a failed or dead spare is stopped and forgotten: the caller starts a worker afresh)."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            process, channel, serving = await spare
        except Exception as exc:
            log.warning("the spare worker could not be started (%s); starting a worker for model %s", exc, name)
            return None
        try:
            if not process.is_alive():
                raise EOFError
            channel.send(["load", url, name])
        except (EOFError, OSError):
            log.warning("the spare worker (exit code %s) is gone; starting a worker for model %s",
                        process.exitcode, name)
            await self._stop_process(process, channel, graceful=False)
            return None
        process.name = f"serve-worker-{name}"
        return process, channel, serving

    async def _stop_spare(self, spare: asyncio.Task[StartedProcess] | None) -> None:
        """Stop a spare worker, if any (shutdown, or workers are spawned from now on)."""
        if spare is None:
            return
        try:
            process, channel, _ = await spare
        except Exception:  # it never started: nothing to stop
            return
        await self._stop_process(process, channel, graceful=True)

    async def _stop_process(self, process: BaseProcess, channel: FrontChannel, graceful: bool) -> None:
        """End a worker: close its socket (it exits on EOF), then kill it if it lingers."""
        channel.close()
        if graceful:
            await asyncio.to_thread(process.join, self._stop_grace_s())
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join, STOP_GRACE_S)

    def _stop_grace_s(self) -> float:
        """How long a stopping worker may take: a prefork worker first finishes its in-flight
        requests, as long as uvicorn's graceful shutdown allows (``serve.prefork``)."""
        if self.prefork is None:
            return STOP_GRACE_S
        return max(STOP_GRACE_S, self.settings.drain_s + 1.0)

    # -- model lifecycle ------------------------------------------------------------------------

    def _predicted_cost(self, url: str) -> int:
        """Private memory a new model is expected to add: what models cost so far, at least its size."""
        try:
            on_disk = sum(p.stat().st_size for p in Path(url).rglob("*") if p.is_file())
        except OSError:
            on_disk = 0
        typical = int(statistics.median(self._observed)) if self._observed else FIRST_MODEL_BASELINE
        return max(typical, on_disk)

    async def _admit(self, name: str, url: str) -> int:
        """Answer 507 before the kernel's OOM killer would, else reserve the predicted memory and
        return what was in use or reserved by other loads."""
        # Walking a large artifact takes seconds: off the event loop, so /ping and invocations go on.
        predicted = await asyncio.to_thread(self._predicted_cost, url)
        used = await asyncio.to_thread(self.memory.used)
        reserved = sum(self._reserved.values())
        admissible = self.memory.limit * (1 - ADMISSION_HEADROOM)
        if used + reserved + predicted > admissible:
            raise EngineError(
                507, f"not enough memory to load model {name!r}: {used / MB:.0f} MB in use ({self.memory.measure}), "
                     f"{reserved / MB:.0f} MB reserved by loads in progress, about {predicted / MB:.0f} MB "
                     f"needed, loads may fill {admissible / MB:.0f} MB of the {self.memory.limit / MB:.0f} MB "
                     "limit; unload a model first")
        self._reserved[name] = predicted
        return used + reserved

    async def _used_after_load(self, others: int, entry: ModelEntry) -> int:
        """Memory in use once ``entry`` loaded: measured again where that is one file read (the cgroup's
        or the machine's figure), else the admission's figure with what the model's workers report in
        place of the prediction. Reading
        every process's smaps twice per load made the 50th small model take 650 ms
        (bench/results/2026-11-30-vm)."""
        if self.memory.measured_cheaply:
            return await asyncio.to_thread(self.memory.used)
        return others + entry.memory_bytes

    async def load(self, name: str, url: str, workers: int | None = None) -> ModelEntry:
        """Load a model with ``workers`` processes (default: settings, else the framework default).

        A failure (5xx) is logged here, once, with the model's name and the reason the client gets; a
        refusal (4xx) is logged by the access line, which carries the reason (``serve.app.log_request``)."""
        try:
            return await self._load(name, url, workers)
        except EngineError as exc:
            if exc.status >= 500:
                log.error("loading model %s from %s failed (%d): %s", name, url, exc.status, exc.message)
            raise

    async def _load(self, name: str, url: str, workers: int | None) -> ModelEntry:
        if self._closing:
            raise EngineError(503, "the server is shutting down")
        if name in self.models:
            raise EngineError(409, f"model {name!r} is already loaded")
        if not Path(url).is_dir():
            raise EngineError(404, f"model directory {url!r} does not exist; "
                                   "the url must be the extracted artifact's directory")
        entry = ModelEntry(name=name, url=url)
        self.models[name] = entry  # claims the name: concurrent loads of it get 409 (single flight)
        started = time.perf_counter()
        try:
            others = await self._admit(name, url)
            first = await self._start_worker(name, url)
            entry.workers.append(first)
            wanted = entry.target_workers = workers or workers_per_model(self.settings,
                                                                        self.handler.default_workers)
            if wanted > 1:
                more = await asyncio.gather(*(self._start_worker(name, url) for _ in range(wanted - 1)),
                                            return_exceptions=True)
                # Keep every worker that started, so a failure of another still stops them all.
                entry.workers.extend(r for r in more if isinstance(r, Worker))
                for result in more:
                    if isinstance(result, BaseException):
                        raise result
            if await self._used_after_load(others, entry) > self.memory.limit:
                raise EngineError(507, f"model {name!r} loaded but pushed the server over its memory limit "
                                       f"of {self.memory.limit / MB:.0f} MB; it was unloaded again")
        except BaseException:
            await self._stop_workers(entry)
            del self.models[name]
            raise
        finally:
            self._reserved.pop(name, None)
        for worker in entry.workers:
            entry.idle.put_nowait(worker)
            self._watch(entry, worker)
        entry.load_seconds = time.perf_counter() - started
        entry.loaded_at = entry.last_used = time.time()
        entry.state = "ready"
        self._observed.append(entry.memory_bytes // max(1, len(entry.workers)))
        log.info("loaded model %s from %s: %d worker(s), %.1f MB, %.3f s", name, url, len(entry.workers),
                 entry.memory_bytes / MB, entry.load_seconds)
        return entry

    async def _stop_workers(self, entry: ModelEntry) -> None:
        workers, entry.workers = entry.workers, []
        for worker in workers:
            self._unwatch(worker)
        await asyncio.gather(*(self._stop_process(w.process, w.channel, graceful=True) for w in workers))

    async def unload(self, name: str) -> None:
        """Unload a model once its in-flight requests finish (bounded by the request timeout)."""
        entry = self.models.get(name)
        if entry is None or entry.state != "ready":
            raise EngineError(404, f"model {name!r} is not loaded")
        entry.state = "unloading"
        if entry.in_flight:
            try:
                await asyncio.wait_for(entry.drained.wait(), self.settings.timeout_s)
            except TimeoutError:
                log.warning("unloading model %s with %d request(s) still running after %.0f s",
                            name, entry.in_flight, self.settings.timeout_s)
        await self._stop_workers(entry)
        self.models.pop(name, None)
        log.info("unloaded model %s", name)

    # -- inference ------------------------------------------------------------------------------

    async def invoke(self, name: str, request: Request) -> Response | Streamed:
        """Send one request to an idle worker of model ``name`` and return its response. A streamed
        answer keeps the worker (and counts as in flight) until its ``rest`` has ended."""
        entry = self.models.get(name)
        if entry is None or entry.state != "ready":
            raise EngineError(404, f"model {name!r} is not loaded")
        limit = self.settings.max_in_flight_per_model or IN_FLIGHT_PER_WORKER * entry.target_workers
        if entry.in_flight >= limit:
            raise EngineError(503, f"model {name!r} already has {limit} requests in flight "
                                   "(SERVE_MAX_IN_FLIGHT_PER_MODEL); retry later")
        timeout = self.settings.timeout_s
        entry.in_flight += 1
        entry.drained.clear()
        deadline = time.monotonic() + timeout
        streaming = False
        try:
            worker = self._take_idle(entry)
            if worker is None and self.batching is not None:
                return await self._in_batch(entry, request, deadline)
            worker = worker or await self._take(entry, deadline)
            try:
                worker.channel.send(request_fields(request), request.body)
                message, body = await worker.channel.receive(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._replace_worker(entry, worker)
                raise EngineError(504, timed_out_message(name, timeout)) from None
            except (EOFError, OSError):
                self._replace_worker(entry, worker)
                await asyncio.to_thread(worker.process.join, STOP_GRACE_S)
                raise EngineError(
                    500, f"the worker process of model {name!r} exited while handling the request "
                         f"(exit code {worker.process.exitcode}); it is being replaced") from None
            streaming = message[0] == STREAM
            if not streaming:
                self._release(entry, worker)
        finally:
            if not streaming:
                self._request_done(entry)
        if streaming:
            return Streamed(response_from(message, body), WorkerStream(self, entry, worker))
        if message[0] == "error":
            raise EngineError(message[1], message[2])
        return response_from(message, body)

    def _request_done(self, entry: ModelEntry) -> None:
        """A request of ``entry`` is over (answered, failed, or its stream ended)."""
        entry.in_flight -= 1
        entry.last_used = time.time()
        if entry.in_flight == 0:
            entry.drained.set()

    def _take_idle(self, entry: ModelEntry) -> Worker | None:
        """An idle live worker of ``entry`` at once (now busy), or None: the common case needs no wait."""
        while entry.waiting == 0 and not entry.queued and not entry.idle.empty():  # else first come, first served
            worker = entry.idle.get_nowait()
            if not worker.retired:
                worker.busy = True
                return worker
        return None

    async def _take(self, entry: ModelEntry, deadline: float) -> Worker:
        """A live idle worker of ``entry``, now busy; 503 if none becomes free before ``deadline``."""
        entry.waiting += 1
        try:
            while True:
                try:
                    worker = await asyncio.wait_for(entry.idle.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise EngineError(503, f"no worker of model {entry.name!r} became free within "
                                           f"{self.settings.timeout_s:.0f} s") from None
                if not worker.retired:  # else it died between leaving the queue and now: take another
                    worker.busy = True
                    return worker
        finally:
            entry.waiting -= 1

    def _release(self, entry: ModelEntry, worker: Worker) -> None:
        """Make a worker that answered idle again, or replace it if it died meanwhile."""
        worker.busy = False
        if worker.exited:
            self._replace_worker(entry, worker)
        else:
            self._make_idle(entry, worker)

    def _make_idle(self, entry: ModelEntry, worker: Worker) -> None:
        """``worker`` is free for the next request (with batching, the queued ones first)."""
        entry.idle.put_nowait(worker)
        if entry.queued:
            self._dispatch(entry)

    # -- batching (docs/engines.md, "Batching") ----------------------------------------------------
    # A request that finds an idle worker is sent at once, alone, as without batching; one that finds
    # every worker busy is queued. A worker that becomes free takes up to max_size queued requests as
    # one BATCH frame; with fewer queued it waits for more until the oldest has waited max_delay.

    async def _in_batch(self, entry: ModelEntry, request: Request, deadline: float) -> Response:
        """Queue ``request`` for the next batch and return its answer; 503 if no worker takes it before
        ``deadline`` (as ``_take``)."""
        queued = Queued(request, asyncio.get_running_loop().create_future(), time.monotonic(), deadline)
        entry.queued.append(queued)
        self._dispatch(entry)
        try:
            await asyncio.wait_for(asyncio.shield(queued.answer), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if queued in entry.queued:
                entry.queued.remove(queued)
                raise EngineError(503, f"no worker of model {entry.name!r} became free within "
                                       f"{self.settings.timeout_s:.0f} s") from None
        finally:
            if queued in entry.queued and not queued.answer.done():  # the client went away
                entry.queued.remove(queued)
        message, body = await queued.answer
        if message[0] == "error":
            raise EngineError(message[1], message[2])
        return response_from(message, body)

    def _dispatch(self, entry: ModelEntry) -> None:
        """Hand queued requests to free workers: a full batch at once, a partial one once its oldest
        request has waited max_delay (one free worker holds for it meanwhile)."""
        assert self.batching is not None
        while entry.queued:
            if entry.held is None:
                worker = self._take_free(entry)
                if worker is None:
                    return
                entry.held = worker
            wait = (0.0 if len(entry.queued) >= self.batching.max_size
                    else entry.queued[0].since + self.batching.max_delay_s - time.monotonic())
            if wait > 0:
                if entry.hold_timer is None:
                    entry.hold_timer = asyncio.get_running_loop().call_later(wait, self._hold_over, entry)
                return
            self._send_batch(entry, self._unhold(entry))
        if entry.held is not None:  # every queued request went away meanwhile
            self._release(entry, self._unhold(entry))

    def _take_free(self, entry: ModelEntry) -> Worker | None:
        while not entry.idle.empty():
            worker = entry.idle.get_nowait()
            if not worker.retired:
                worker.busy = True
                return worker
        return None

    def _hold_over(self, entry: ModelEntry) -> None:
        entry.hold_timer = None
        self._dispatch(entry)

    def _unhold(self, entry: ModelEntry) -> Worker:
        worker, entry.held = entry.held, None
        if entry.hold_timer is not None:
            entry.hold_timer.cancel()
            entry.hold_timer = None
        assert worker is not None
        return worker

    def _send_batch(self, entry: ModelEntry, worker: Worker) -> None:
        assert self.batching is not None
        size = min(self.batching.max_size, len(entry.queued))
        batch = [entry.queued.popleft() for _ in range(size)]
        self._in_background(self._run_batch(entry, worker, batch))

    async def _run_batch(self, entry: ModelEntry, worker: Worker, batch: list[Queued]) -> None:
        """Send ``batch`` as one frame and hand each request its answer (all fail alike if the worker
        misses the earliest deadline among them, or dies)."""
        deadline = min(queued.deadline for queued in batch)
        try:
            worker.channel.send(*pack([request_fields(q.request) for q in batch], [q.request.body for q in batch],
                                      BATCH))
            answers = unpack(await worker.channel.receive(max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            self._replace_worker(entry, worker)
            return _fail(batch, 504, timed_out_message(entry.name, self.settings.timeout_s))
        except (EOFError, OSError):
            self._replace_worker(entry, worker)
            return _fail(batch, 500, f"the worker process of model {entry.name!r} exited while handling the "
                                     "request; it is being replaced")
        except asyncio.CancelledError:  # the server is closing
            _fail(batch, 503, "the server is shutting down")
            raise
        for queued, answer in zip(batch, answers, strict=True):
            if not queued.answer.done():
                queued.answer.set_result(answer)
        self._release(entry, worker)

    # -- liveness -------------------------------------------------------------------------------

    def _watch(self, entry: ModelEntry, worker: Worker) -> None:
        """Notice at once when ``worker``'s process ends: its sentinel becomes readable."""
        asyncio.get_running_loop().add_reader(worker.process.sentinel, self._on_exit, entry, worker)
        worker.watched = True

    def _unwatch(self, worker: Worker) -> None:
        """Stop watching ``worker`` and retire it (it is being stopped or replaced)."""
        worker.retired = True
        if worker.watched:
            worker.watched = False
            asyncio.get_running_loop().remove_reader(worker.process.sentinel)

    def _on_exit(self, entry: ModelEntry, worker: Worker) -> None:
        """A watched worker's process ended: replace it now if idle (a busy one's request sees EOF)."""
        asyncio.get_running_loop().remove_reader(worker.process.sentinel)
        worker.watched = False
        if worker.busy:
            worker.exited = True
            return
        log.warning("worker %d of model %s exited while idle (exit code %s); replacing it",
                    worker.info.pid, entry.name, worker.process.exitcode)
        others = [w for w in drain(entry.idle) if w is not worker]
        for other in others:
            entry.idle.put_nowait(other)
        self._replace_worker(entry, worker)

    def _replace_worker(self, entry: ModelEntry, dead: Worker) -> None:
        """Drop a dead or stuck worker and start a replacement in the background (once per worker)."""
        if dead.retired:
            return
        self._unwatch(dead)
        if dead in entry.workers:
            entry.workers.remove(dead)
        if dead.process.is_alive():
            dead.process.kill()
        dead.channel.close()

        async def replace() -> None:
            try:
                worker = await self._start_worker(entry.name, entry.url)
            except EngineError as exc:
                log.error("could not replace the worker of model %s: %s", entry.name, exc.message)
                if not entry.workers and self.models.get(entry.name) is entry:
                    entry.state = "unloading"
                    self.models.pop(entry.name, None)
                    log.error("model %s has no workers left and was unloaded", entry.name)
                return
            if entry.state != "ready" or self._closing:
                await self._stop_process(worker.process, worker.channel, graceful=True)
                return
            entry.workers.append(worker)
            self._make_idle(entry, worker)
            self._watch(entry, worker)
            log.info("replaced a worker of model %s (new pid %d)", entry.name, worker.info.pid)

        self._in_background(replace())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that ``close`` cancels."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _kill_stuck_workers(self) -> None:
        """Prefork: kill a worker whose request outlived the timeout, which its own SIGALRM could not
        interrupt (code inside a C call); the client's connection closes and a fresh worker starts."""
        limit = self.settings.timeout_s + STUCK_GRACE_S
        while True:
            await asyncio.sleep(STUCK_CHECK_PERIOD_S)
            now = time.monotonic()
            for entry in list(self.models.values()):
                for worker in list(entry.workers):
                    since = worker.busy_since.value if worker.busy_since is not None else 0.0
                    if since and now - since > limit:
                        log.error("worker %d of model %s has been in one request for %.0f s, past the "
                                  "%.0f s timeout; killing and replacing it", worker.info.pid, entry.name,
                                  now - since, self.settings.timeout_s)
                        self._replace_worker(entry, worker)

    # -- introspection and shutdown -------------------------------------------------------------

    def ready_models(self) -> list[ModelEntry]:
        return sorted((e for e in self.models.values() if e.state == "ready"), key=lambda e: e.name)

    async def close(self) -> None:
        """Stop every worker (the server is shutting down)."""
        self._closing = True
        for task in list(self._background):
            task.cancel()
        spare, self._spare = self._spare, None
        await asyncio.gather(self._stop_spare(spare), *(self._stop_workers(e) for e in self.models.values()))
        self.models.clear()


def _fail(batch: list[Queued], status: int, message: str) -> None:
    """Answer every request of ``batch`` with the same error."""
    for queued in batch:
        if not queued.answer.done():
            queued.answer.set_result((["error", status, message], b""))


class WorkerStream(AnswerStream):
    """The rest of a streamed answer, read frame by frame from the worker producing it (the frames of
    ``serve.channel``). The worker stays busy until the stream ends; one that misses the timeout
    between chunks, or dies, is replaced."""

    def __init__(self, engine: Engine, entry: ModelEntry, worker: Worker) -> None:
        self.engine = engine
        self.entry = entry
        self.worker = worker
        self.ended = False

    async def next_chunk(self) -> bytes | None:
        if self.ended:
            return None
        message, body = await self._receive()
        if message[0] == CHUNK:
            return body
        self._end(replace=False)
        if message[0] == BROKEN:
            raise StreamFailed(message[1])
        return None  # END

    async def cancel(self) -> None:
        if self.ended:
            return
        try:
            self.worker.channel.send([CANCEL])
            kind = CHUNK
            while kind == CHUNK:  # chunks produced before the worker saw the cancel, then its end
                (kind, *_), _ = await self._receive()
        except StreamFailed:
            return  # the worker was replaced
        self._end(replace=False)

    async def _receive(self) -> tuple[list[Any], bytes]:
        """The worker's next frame within the timeout; past it, or once the worker is gone, it is
        replaced and ``StreamFailed`` says why."""
        timeout = self.engine.settings.timeout_s
        name = self.entry.name
        try:
            return await self.worker.channel.receive(timeout)
        except TimeoutError:
            self._end(replace=True)
            raise StreamFailed(f"model {name!r} produced no chunk within {timeout:.0f} s "
                               "(SAGEMAKER_MODEL_SERVER_TIMEOUT); its worker was restarted") from None
        except (EOFError, OSError):
            self._end(replace=True)
            raise StreamFailed(f"the worker process of model {name!r} exited mid-stream; "
                               "it is being replaced") from None

    def _end(self, replace: bool) -> None:
        """The stream is over: the worker is free again (or replaced), the request done."""
        self.ended = True
        if replace:
            self.engine._replace_worker(self.entry, self.worker)
        else:
            self.engine._release(self.entry, self.worker)
        self.engine._request_done(self.entry)
