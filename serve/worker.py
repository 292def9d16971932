"""The model worker: the code that runs inside each per-model process.

A worker is forked from the framework-preloaded fork parent (or spawned, where forking is unsafe),
loads one model artifact, reports its memory, then answers requests arriving over its pipe until the
pipe closes. Messages are tuples so the front process never needs the framework to read them:

    front -> worker:  Request | None (stop)
    worker -> front:  ("ready", WorkerInfo) | ("respawn", reason) | ("ok", Response) | ("error", status, message)
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from handlers.base import HandlerOptions, Request

#: Handled-error-free message when user or framework code raises something unexpected. The class name
#: helps the user; the traceback goes to the container log, never to the client.
UNEXPECTED = "{kind} failed: {name}: {error}"


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker reports once its model is loaded."""

    pid: int
    uss_bytes: int
    pss_bytes: int
    load_seconds: float


def worker_main(
    conn: Connection,
    framework: str,
    options: HandlerOptions,
    model_dir: str,
    model_name: str,
    forked: bool,
    log_level: int = 20,
) -> None:
    """Entry point of a worker process (a multiprocessing target)."""
    import logging
    import time
    import traceback

    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.registry import handler_class
    from serve.memory import process_memory

    # Ctrl-C in a terminal reaches the whole process group; the front decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(message)s")
    log = logging.getLogger("serve.worker")
    started = time.perf_counter()
    try:
        cls = handler_class(framework)
        hazard = cls.fork_hazard() if forked else None
        if hazard:
            conn.send(("respawn", hazard))
            return
        if not Path(model_dir).is_dir():
            conn.send(("error", 404, f"model directory {model_dir} does not exist"))
            return
        served = ServedModel.load(cls(options), model_dir, model_name)
    except HandlerError as exc:
        conn.send(("error", exc.status, exc.message))
        return
    except Exception as exc:  # user model_fn or framework failure: report, don't leak a traceback
        log.error("loading model %s failed:\n%s", model_name, traceback.format_exc())
        conn.send(("error", 500, UNEXPECTED.format(kind="loading the model", name=type(exc).__name__,
                                                    error=exc)))
        return

    uss, pss = process_memory()
    conn.send(("ready", WorkerInfo(os.getpid(), uss, pss, time.perf_counter() - started)))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the front closed the pipe or died: stop
                break
            if not isinstance(message, Request):
                break
            try:
                conn.send(("ok", served.invoke(message)))
            except HandlerError as exc:
                conn.send(("error", exc.status, exc.message))
            except Exception as exc:
                log.error("invoking model %s failed:\n%s", model_name, traceback.format_exc())
                conn.send(("error", 500, UNEXPECTED.format(kind="prediction", name=type(exc).__name__,
                                                            error=exc)))
    finally:
        served.unload()
