"""What both engines share: the names, error shape and defaults a client or a worker sees.

The native engine (``serve.engine``, ``serve.app``, ``serve.worker``) and the multi-model-server
engine (``serve.mms``) answer the same contract; everything either side must spell the same way is
declared here once, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import signal
from http import HTTPStatus
from typing import Any

# Declared with the user-script ``context`` that exposes them to scripts; re-exported for the engines.
from handlers.base import HandlerOptions
from handlers.context import CUSTOM_ATTRIBUTES_HEADER, TARGET_MODEL_HEADER
from handlers.limits import MIB, max_decoded_bytes_for
from serve.settings import Settings

__all__ = [
    "CUSTOM_ATTRIBUTES_HEADER", "TARGET_MODEL_HEADER", "SINGLE_MODEL_NAME", "error_body", "error_json",
    "error_message", "handler_options", "reason_field", "set_parent_death_signal", "unexpected_error",
    "workers_per_model",
]

#: The name the single model of single-model mode is served under (what /invocations routes to).
SINGLE_MODEL_NAME = "model"

#: The message when user or framework code raises something unexpected. The class name helps the
#: user; the traceback goes to the container log, never to the client.
_UNEXPECTED = "{kind} failed: {name}: {error}"

#: prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def unexpected_error(kind: str, exc: BaseException) -> str:
    """The client's message for an unexpected exception during ``kind`` ("prediction", ...)."""
    return _UNEXPECTED.format(kind=kind, name=type(exc).__name__, error=exc)


def error_body(status: int, message: str) -> dict[str, Any]:
    """The one error shape both engines answer with: multi-model-server's ``{"code", "type", "message"}``,
    ``type`` being the status phrase in CamelCase ("BadRequest")."""
    try:
        kind = HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        kind = "Error"
    return {"code": status, "type": kind, "message": message}


def error_json(status: int, message: str) -> bytes:
    """``error_body`` serialized as Starlette's JSONResponse does, so both engines' bodies match byte
    for byte."""
    body = error_body(status, message)
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def error_message(body: bytes) -> str:
    """The message of an error answer: ``error_json``'s ``message``, else the body as text (Starlette's
    own "Not Found" / "Method Not Allowed"), for the one log line every 4xx gets."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return message if isinstance(message, str) else text.strip()


def reason_field(message: str) -> str:
    """An error answer's reason as both engines write it into the container log, once per 4xx:
    ``reason="..."``, JSON-quoted so that no client-supplied text can break or forge a line."""
    return "reason=" + json.dumps(message)


def handler_options(settings: Settings) -> HandlerOptions:
    """What a handler needs from ``settings``; the one place both engines build it (handlers read no
    environment variables)."""
    return HandlerOptions(
        default_accept=settings.default_accept,
        program=settings.program,
        submit_directory=settings.submit_directory,
        install_requirements=settings.install_requirements,
        safe_port_range=settings.safe_port_range,
        max_decoded_bytes=(int(settings.max_decoded_mb * MIB) if settings.max_decoded_mb is not None
                           else max_decoded_bytes_for(settings.max_payload_bytes)),
    )


def workers_per_model(settings: Settings, handler_default: int) -> int:
    """Workers per model: SAGEMAKER_MODEL_SERVER_WORKERS, else one per model in multi-model mode
    (multi-model-server's default_workers_per_model=1 in AWS's MME configuration), else the
    framework handler's default (``handler_default``)."""
    if settings.workers is not None:
        return settings.workers
    if settings.multi_model:
        return 1
    return max(1, int(handler_default))


def set_parent_death_signal(signum: signal.Signals) -> None:
    """Ask the kernel to send this process ``signum`` when its parent dies (Linux prctl(2)
    PR_SET_PDEATHSIG), so nothing outlives the process that supervises it. OSError where the C
    library has no prctl."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:
        raise OSError("prctl is not available here") from None
    prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
