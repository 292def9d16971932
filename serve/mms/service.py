"""The handler service multi-model-server runs in each Python worker (``SERVE_ENGINE=mms``).

MMS is configured (``serve.mms.config``) with ``default_service_handler=serve.mms.service:handle``.
Each model gets its own worker processes; in each, MMS calls ``handle(None, context)`` once to load
the model and then ``handle(batch, context)`` per request batch. This module runs servekit's own
handlers through ``handlers.model.ServedModel``: the same handlers, codecs, user-script contract
(``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn`` / ``transform_fn``, optional
``context``) and error mapping as the native engine.

What is taken from sagemaker-inference, and what is not:

* Taken: its user-script contract and its use of MMS's ``Context`` request/response API (headers,
  per-request status, response content type), which is how scripts written for AWS's containers
  expect to be driven. servekit re-implements the contract in ``handlers/`` instead of importing
  ``sagemaker_inference.transformer``, because that module reads settings at import time.
* Not taken: per-model ``code/`` only appended to ``os.environ["PYTHONPATH"]`` (the running
  interpreter never sees it: ``ServedModel`` imports the script from the model's own directory);
  ``np.load(allow_pickle=True)`` (servekit's codecs never unpickle); ``message + traceback`` bodies
  (clients get ``{"code", "type", "message"}``, tracebacks go to the log); a service *class*, whose
  ``initialize`` errors MMS swallows so a broken model "loads" (a module-level ``handle`` function's
  load error reaches MMS, which then answers ``POST /models`` with an error and unregisters it).

Settings come from the engine through the environment (``serve.mms.worker_env``) and are read when a
model loads, never at import time.
"""

from __future__ import annotations

import contextlib
import fcntl
import http
import logging
import os
import signal
import struct
import sys
import termios
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

from serve.mms.worker_env import BUSY_DIR_ENV, FAILURE_FILE_ENV, REFUSED_DIR_ENV, ROOT_PID_ENV, worker_settings_from_env
from serve.shared import (
    CUSTOM_ATTRIBUTES_HEADER,
    TARGET_MODEL_HEADER,
    error_json,
    handler_options,
    reason_field,
    set_parent_death_signal,
    unexpected_error,
)

log = logging.getLogger(__name__)

#: The model this worker process serves (MMS runs one model per worker process).
_served: Any = None
#: SAGEMAKER_MODEL_SERVER_TIMEOUT in seconds, set when the model loads (None: no timeout).
_timeout_s: float | None = None
#: (pid, fd) of this worker's in-flight lock file; see _busy().
_busy_file: tuple[int, int] | None = None
#: How long a worker whose model failed to load waits for MMS to read its last log lines before it
#: dies: MMS stops reading a worker's stdout and stderr once the worker disconnects, and the lines
#: still in the pipes are lost (the reason's line, written last, was lost so in a CI run).
LOG_RELAY_WAIT_S = 2.0
LOG_RELAY_POLL_S = 0.01


class RequestTimedOut(BaseException):
    """Raised by SIGALRM inside a request that ran past the timeout (BaseException: user code's
    ``except Exception`` cannot swallow it)."""


class ModelLoadFailed(Exception):
    """Raised to MMS when the model cannot load; MMS then fails ``POST /models`` (or retries at start)."""


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    """MMS entry point: ``data is None`` loads the model; otherwise answer each request of the batch."""
    if data is None:
        _die_with_parent()
        model_dir = str(context.system_properties.get("model_dir"))
        if _served is not None and _served.model_dir == model_dir:
            return None  # preloaded by serve.mms.backend in the parent this worker was forked from
        load_model(model_dir, str(context.model_name))
        return None
    return [_invoke(item, context, idx) for idx, item in enumerate(data)]


def _die_with_parent() -> None:
    """Ask the kernel to kill this worker when its MMS backend process dies.

    ``DELETE /models`` makes MMS kill the model's backend process only; the worker forked from it
    would live on until its current request ends, holding the model's memory after DELETE returned.
    """
    try:
        set_parent_death_signal(signal.SIGKILL)
    except OSError:
        log.debug("PR_SET_PDEATHSIG is not available here")


def _wait_for_log_relay() -> None:
    """Return once MMS has read everything this worker wrote to its stdout and stderr pipes (the
    bytes a pipe holds unread: FIONREAD), or after LOG_RELAY_WAIT_S; at once where they are not pipes."""
    deadline = time.monotonic() + LOG_RELAY_WAIT_S
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        while time.monotonic() < deadline:
            try:
                unread = struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0" * 4))[0]
            except (OSError, ValueError):  # not a pipe (a file, a closed stream)
                break
            if not unread:
                break
            time.sleep(LOG_RELAY_POLL_S)


def _report_failure(message: str) -> None:
    """Single-model mode: tell the supervising engine why the model cannot load (it then exits)."""
    path = os.environ.get(FAILURE_FILE_ENV)
    if not path:
        return
    tmp = f"{path}.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(message)
        os.replace(tmp, path)
    except OSError:
        log.exception("could not write the load failure to %s", path)


def load_model(model_dir: str, model_name: str, report: bool = True) -> None:
    """Load the model into this process; ``report``: log a failure and tell the engine about it
    (single-model). The preload passes False: its worker loads again and reports, so the reason is
    logged once."""
    global _served, _timeout_s
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    settings = worker_settings_from_env()
    log.setLevel(settings.log_level)
    _timeout_s = settings.timeout_s
    try:
        handler = handler_class(settings.framework)(handler_options(settings))
        _served = ServedModel.load(handler, model_dir, model_name)
    except MemoryError:
        _refuse(model_name, f"model {model_name!r}: out of memory while loading", report)
    except HandlerError as exc:
        if exc.status == 507:  # ServedModel's out-of-memory
            _refuse(model_name, exc.message, report)
        if report:
            log.error("loading model %s from %s failed: %s", model_name, model_dir, exc.message)
            _report_failure(exc.message)
            _wait_for_log_relay()
        raise ModelLoadFailed(exc.message) from None
    except ValueError as exc:  # handler_class: unknown framework or missing extra
        if report:
            log.error("loading model %s failed: %s", model_name, exc)
            _report_failure(str(exc))
            _wait_for_log_relay()
        raise ModelLoadFailed(str(exc)) from None
    except Exception as exc:  # user model_fn or framework failure
        message = unexpected_error("loading the model", exc)
        if report:
            log.error("loading model %s failed:\n%s", model_name, traceback.format_exc())
            _report_failure(message)
            _wait_for_log_relay()
        raise ModelLoadFailed(message) from None
    budget_mb = settings.memory_limit_mb
    if budget_mb:
        used = _server_memory_bytes()
        if used > budget_mb * 1024 * 1024:
            _served.unload()
            _served = None
            message = (f"model {model_name!r} does not fit: with it the server uses {used / 2**20:.0f} MiB, "
                       f"more than SERVE_MEMORY_LIMIT_MB={budget_mb}; unload a model and retry")
            log.warning("%s", message)
            _refuse(model_name, message, report)
    log.info("model %s loaded from %s", model_name, model_dir)


def _refuse(model_name: str, message: str, report: bool) -> NoReturn:
    """Fail the load so that MMS answers 507 (SageMaker then unloads another model and retries)."""
    if report:
        _report_failure(message)
        _report_refusal(model_name)
    raise MemoryError(message)


def _report_refusal(model_name: str) -> None:
    """Multi-model mode: ask the engine to remove the model MMS will leave registered after this 507.

    MMS's worker thread sends the 507 and then unregisters the model on that same thread, which its
    own worker shutdown interrupts (WorkLoadManager: "WorkerThread interrupted during waitFor"): the
    model stays listed with no workers, and SageMaker's retry after evicting another model would get
    409. The engine process watches this directory and removes such leftovers (this worker cannot:
    it is killed together with its backend process).
    """
    directory = os.environ.get(REFUSED_DIR_ENV)
    if not directory:
        return
    try:
        path = os.path.join(directory, f"{os.getpid()}-{time.monotonic_ns()}")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            out.write(model_name)
        os.replace(path + ".tmp", path)
    except OSError:
        log.exception("could not report the refused model %s to the engine", model_name)


def _server_memory_bytes() -> int:
    """PSS of the whole server (the engine process MMS runs under, Java and every worker)."""
    from serve.memory import tree_pss_bytes

    root = os.environ.get(ROOT_PID_ENV)
    try:
        return tree_pss_bytes(int(root)) if root else tree_pss_bytes(os.getpid())
    except Exception:  # noqa: BLE001 - memory accounting must never break a load
        log.exception("could not measure the server's memory")
        return 0


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Interrupt the request after ``seconds`` (SIGALRM; MMS runs requests in the worker's main thread).

    MMS's own timeout (configured a little longer) kills the whole worker and answers 500 "Worker
    died."; interrupting first lets the client get the 504 the native engine sends. Code stuck in a C
    call that never returns to Python is still caught by MMS's timeout.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:
            raise RequestTimedOut()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _busy() -> Iterator[None]:
    """Hold this worker's lock file while a request runs, so the engine can drain on SIGTERM.

    An advisory lock costs two system calls per request and needs no cleanup: the kernel drops it
    when the process dies. The engine tries each lock without blocking to see whether any is held.
    """
    global _busy_file
    directory = os.environ.get(BUSY_DIR_ENV)
    if not directory:
        yield
        return
    if _busy_file is None or _busy_file[0] != os.getpid():  # opened per process, after MMS forked it
        try:
            fd = os.open(os.path.join(directory, f"worker-{os.getpid()}"), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            yield
            return
        _busy_file = (os.getpid(), fd)
    fd = _busy_file[1]
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _header(headers: dict[str, Any], name: str) -> str | None:
    """A request header by name, ignoring case (MMS keeps the spelling the client sent)."""
    lowered = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == lowered and isinstance(value, str):
            return value
    return None


def _error(context: Any, idx: int, status: int, message: str) -> bytes:
    """Set an error status on request ``idx`` and return the body the native engine also sends.

    The body is ``serve.shared.error_json``, byte for byte what the native engine sends. A 4xx gets the
    container log's one line about it here, with the model and the reason (MMS's own access log has
    neither), in the native engine's ``reason="..."`` form.
    """
    if 400 <= status < 500:
        log.info("model=%s %d %s", context.model_name, status, reason_field(message))
    context.set_response_status(status, _phrase(status), idx)
    context.set_response_content_type(idx, "application/json")
    return error_json(status, message)


def _with_charset(content_type: str) -> str:
    """``text/*`` without a charset gets ``; charset=utf-8``, as the native engine's Starlette adds it
    (the bodies servekit encodes are UTF-8), so both engines answer the same Content-Type."""
    if content_type.lower().startswith("text/") and "charset=" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def streaming_refused(model_name: str) -> str:
    """The answer (501) to a request whose script answered with a stream (docs/handlers.md,
    "Streaming"): multi-model-server sends each answer whole, and a buffered imitation of a stream
    would hide that from the client."""
    return (f"model {model_name!r} answered with a stream (its script returned an iterator), which "
            "SERVE_ENGINE=mms cannot send: multi-model-server sends whole answers only; serve it with "
            "SERVE_ENGINE=native")


def _invoke(item: dict[str, Any], context: Any, idx: int) -> bytes:
    from handlers.base import Request
    from handlers.errors import HandlerError

    if _served is None:  # MMS never sends requests to a worker whose load failed; be safe anyway
        return _error(context, idx, 503, "the model is not loaded")
    headers = context.get_all_request_header(idx) or {}
    content_type = _header(headers, "Content-Type")
    body = item.get("body")
    if not isinstance(body, (bytes, bytearray)):
        # MMS parses form-encoded and multipart bodies itself and keeps no raw bytes to hand over.
        return _error(context, idx, 415,
                      f"Content-Type {content_type!r} is not supported by SERVE_ENGINE=mms "
                      "(multi-model-server consumes form bodies); send the payload with another type")
    request = Request(
        body=bytes(body),
        content_type=content_type,
        accept=_header(headers, "Accept"),
        custom_attributes=_header(headers, CUSTOM_ATTRIBUTES_HEADER),
        target_model=_header(headers, TARGET_MODEL_HEADER),
        model_name=str(context.model_name),
    )
    try:
        with _busy(), _deadline(_timeout_s):
            response = _served.invoke(request)
    except MemoryError:
        raise  # MMS answers 507 "Out of resources"
    except RequestTimedOut:
        log.error("model %s did not answer within %s s; request interrupted", context.model_name, _timeout_s)
        return _error(context, idx, 504, f"model {context.model_name!r} did not answer within "
                                         f"{_timeout_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)")
    except HandlerError as exc:
        return _error(context, idx, exc.status, exc.message)
    except Exception as exc:
        log.error("invoking model %s failed:\n%s", context.model_name, traceback.format_exc())
        message = unexpected_error("prediction", exc)
        return _error(context, idx, 500, message)
    if response.chunks is not None:
        response.chunks.close()
        log.error("model %s answered with a stream, which SERVE_ENGINE=mms cannot send; refused (501)",
                  context.model_name)
        return _error(context, idx, 501, streaming_refused(str(context.model_name)))
    for key, value in response.headers.items():
        context.set_response_header(idx, key, value)
    if response.custom_attributes is not None:
        context.set_response_header(idx, CUSTOM_ATTRIBUTES_HEADER, response.custom_attributes)
    context.set_response_content_type(idx, _with_charset(response.content_type))
    context.set_response_status(200, "OK", idx)
    return bytes(response.body)
