"""The model worker: the code that runs inside each per-model process.

A worker is forked from the framework-preloaded fork parent (or spawned, where forking is unsafe),
loads one model artifact, reports its memory, then answers requests arriving over its pipe until the
pipe closes. Messages are tuples so the front process never needs the framework to read them:

    front -> worker:  Request | None (stop)
    worker -> front:  ("ready", WorkerInfo) | ("respawn", reason) | ("ok", Response) | ("error", status, message)
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.base import HandlerOptions, Request
from serve.shared import unexpected_error

if TYPE_CHECKING:
    from handlers.model import ServedModel

log = logging.getLogger("serve.worker")


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
    from serve.memory import process_memory

    # Ctrl-C in a terminal reaches the whole process group; the front decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(message)s")
    started = time.perf_counter()
    served = _load(conn, framework, options, model_dir, model_name, forked)
    if served is None:
        return
    uss, pss = process_memory()
    conn.send(("ready", WorkerInfo(os.getpid(), uss, pss, time.perf_counter() - started)))
    try:
        _serve(conn, served, model_name)
    finally:
        served.unload()


def _load(conn: Connection, framework: str, options: HandlerOptions, model_dir: str, model_name: str,
          forked: bool) -> ServedModel | None:
    """The loaded ``ServedModel``, or None after telling the front why there is none."""
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    try:
        cls = handler_class(framework)
        hazard = cls.fork_hazard() if forked else None
        if hazard:
            conn.send(("respawn", hazard))
            return None
        if not Path(model_dir).is_dir():
            conn.send(("error", 404, f"model directory {model_dir} does not exist"))
            return None
        return ServedModel.load(cls(options), model_dir, model_name)
    except HandlerError as exc:
        conn.send(("error", exc.status, exc.message))
    except Exception as exc:  # user model_fn or framework failure: report, don't leak a traceback
        log.error("loading model %s failed:\n%s", model_name, traceback.format_exc())
        conn.send(("error", 500, unexpected_error("loading the model", exc)))
    return None


def _serve(conn: Connection, served: ServedModel, model_name: str) -> None:
    """Answer requests from the pipe until it closes (or something other than a request arrives)."""
    from handlers.errors import HandlerError

    while True:
        try:
            message = conn.recv()
        except EOFError:  # the front closed the pipe or died: stop
            return
        if not isinstance(message, Request):
            return
        try:
            conn.send(("ok", served.invoke(message)))
        except HandlerError as exc:
            conn.send(("error", exc.status, exc.message))
        except Exception as exc:
            log.error("invoking model %s failed:\n%s", model_name, traceback.format_exc())
            conn.send(("error", 500, unexpected_error("prediction", exc)))
