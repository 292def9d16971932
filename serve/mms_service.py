"""The handler service multi-model-server runs in each Python worker (``SERVE_ENGINE=mms``).

MMS is configured (``serve.mms_engine``) with ``default_service_handler=serve.mms_service:handle``.
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

Settings come from the ``SERVEKIT_MMS_SETTINGS`` environment variable (JSON, written by the engine)
and are read when a model loads, never at import time.
"""

from __future__ import annotations

import http
import json
import logging
import os
import traceback
from typing import Any

log = logging.getLogger("serve.mms_service")

SETTINGS_ENV = "SERVEKIT_MMS_SETTINGS"
FAILURE_FILE_ENV = "SERVEKIT_MMS_FAILURE_FILE"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
#: The same wording the native engine's worker uses for unexpected exceptions.
UNEXPECTED = "{kind} failed: {name}: {error}"

#: The model this worker process serves (MMS runs one model per worker process).
_served: Any = None


class ModelLoadFailed(Exception):
    """Raised to MMS when the model cannot load; MMS then fails ``POST /models`` (or retries at start)."""


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    """MMS entry point: ``data is None`` loads the model; otherwise answer each request of the batch."""
    if data is None:
        _load(context)
        return None
    return [_invoke(item, context, idx) for idx, item in enumerate(data)]


def _worker_settings() -> dict[str, Any]:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        log.error("%s is not valid JSON; using defaults", SETTINGS_ENV)
        return {}
    return value if isinstance(value, dict) else {}


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


def _load(context: Any) -> None:
    global _served
    from handlers.base import HandlerOptions
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    settings = _worker_settings()
    log.setLevel(int(settings.get("log_level", logging.INFO)))
    model_dir = str(context.system_properties.get("model_dir"))
    model_name = str(context.model_name)
    options = HandlerOptions(
        default_accept=settings.get("default_accept", "application/json"),
        program=settings.get("program", "inference.py"),
        submit_directory=settings.get("submit_directory"),
        install_requirements=bool(settings.get("install_requirements", True)),
    )
    try:
        handler = handler_class(settings.get("framework", "sklearn"))(options)
        _served = ServedModel.load(handler, model_dir, model_name)
    except MemoryError:
        # MMS answers POST /models with 507 for a MemoryError at load: SageMaker then unloads others.
        _report_failure("out of memory while loading the model")
        raise
    except HandlerError as exc:
        log.error("loading model %s from %s failed: %s", model_name, model_dir, exc.message)
        _report_failure(exc.message)
        raise ModelLoadFailed(exc.message) from None
    except ValueError as exc:  # handler_class: unknown framework or missing extra
        log.error("loading model %s failed: %s", model_name, exc)
        _report_failure(str(exc))
        raise ModelLoadFailed(str(exc)) from None
    except Exception as exc:  # user model_fn or framework failure
        message = UNEXPECTED.format(kind="loading the model", name=type(exc).__name__, error=exc)
        log.error("loading model %s failed:\n%s", model_name, traceback.format_exc())
        _report_failure(message)
        raise ModelLoadFailed(message) from None
    log.info("model %s loaded from %s", model_name, model_dir)


def _header(headers: dict[str, Any], name: str) -> str | None:
    """A request header by name, ignoring case (MMS keeps the spelling the client sent)."""
    lowered = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == lowered and isinstance(value, str):
            return value
    return None


def _error(context: Any, idx: int, status: int, message: str) -> bytes:
    """Set an error status on request ``idx`` and return the body the native engine also sends.

    ``{"code", "type", "message"}`` is multi-model-server's own error shape; ``type`` is the status
    phrase in CamelCase ("BadRequest"), as serve.app.error_response writes it.
    """
    phrase = _phrase(status)
    kind = phrase.title().replace(" ", "").replace("-", "") if phrase else "Error"
    context.set_response_status(status, phrase, idx)
    context.set_response_content_type(idx, "application/json")
    return json.dumps({"code": status, "type": kind, "message": message}).encode()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


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
        response = _served.invoke(request)
    except MemoryError:
        raise  # MMS answers 507 "Out of resources"
    except HandlerError as exc:
        return _error(context, idx, exc.status, exc.message)
    except Exception as exc:
        log.error("invoking model %s failed:\n%s", context.model_name, traceback.format_exc())
        message = UNEXPECTED.format(kind="prediction", name=type(exc).__name__, error=exc)
        return _error(context, idx, 500, message)
    for key, value in response.headers.items():
        context.set_response_header(idx, key, value)
    if response.custom_attributes is not None:
        context.set_response_header(idx, CUSTOM_ATTRIBUTES_HEADER, response.custom_attributes)
    context.set_response_content_type(idx, response.content_type)
    context.set_response_status(200, "OK", idx)
    return bytes(response.body)
