"""Every environment variable the container server reads, declared once, typed and documented.

Nothing is read at import time: ``Settings.from_env()`` is called when the server starts, and a bad
value stops the start with a one-line ``SettingsError`` that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

LOG_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and what is accepted."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, how to parse it, its default and what it means."""

    name: str
    field: str
    parse: Callable[[str], Any]
    default: Any
    help: str


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("expected a TCP port 1-65535")
    return port


def _port_range(value: str) -> tuple[int, int] | None:
    if not value.strip():
        return None
    low_s, sep, high_s = value.strip().partition("-")
    if not sep:
        raise ValueError("expected LOW-HIGH, e.g. 20000-20999")
    low, high = _port(low_s), _port(high_s)
    if low > high:
        raise ValueError("LOW must not exceed HIGH")
    return (low, high)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def _optional_positive_int(value: str) -> int | None:
    return _positive_int(value) if value.strip() else None


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("expected a positive number")
    return number


def _log_level(value: str) -> int:
    text = value.strip().upper()
    if text in LOG_LEVELS:
        return LOG_LEVELS[text]
    level = int(text)  # the SageMaker SDK writes a stringified number, e.g. "20"
    if not 0 <= level <= 50:
        raise ValueError("expected a logging level name or number 0-50")
    return level


def _engine(value: str) -> str:
    engine = value.strip().lower()
    if engine not in ("native", "mms"):
        raise ValueError("expected native or mms")
    return engine


def _framework(value: str) -> str:
    from handlers.registry import handler_path

    framework = value.strip()
    handler_path(framework)  # raises ValueError naming the accepted values
    return framework


def _media_type(value: str) -> str:
    media = value.strip()
    if "/" not in media:
        raise ValueError("expected a media type such as application/json")
    return media


def _text(value: str) -> str:
    return value


def _optional_text(value: str) -> str | None:
    return value.strip() or None


VARIABLES: tuple[Variable, ...] = (
    # SageMaker's own variables (sagemaker-contract.md §1.7).
    Variable("SAGEMAKER_BIND_TO_PORT", "port", _port, 8080,
             "Port for /ping, /invocations and /models (set by SageMaker for multi-container endpoints)."),
    Variable("SAGEMAKER_SAFE_PORT_RANGE", "safe_port_range", _port_range, None,
             "Inclusive LOW-HIGH range any extra port must come from (set by SageMaker for MCE)."),
    Variable("SAGEMAKER_MULTI_MODEL", "multi_model", _bool, False,
             "true: multi-model endpoint mode (/models API); set by SageMaker for MME."),
    Variable("SAGEMAKER_PROGRAM", "program", _optional_text, None,
             "User script in the code directory ('.py' optional); unset: inference.py when present."),
    Variable("SAGEMAKER_SUBMIT_DIRECTORY", "submit_directory", _optional_text, None,
             "User code when not in <model>/code: a directory, a .tar.gz or an s3:// URI (fetched once)."),
    Variable("SAGEMAKER_MODEL_SERVER_WORKERS", "workers", _optional_positive_int, None,
             "Worker processes per model (default: the framework's default, see README)."),
    Variable("SAGEMAKER_MODEL_SERVER_TIMEOUT", "timeout_s", _positive_float, 60.0,
             "Seconds a request may take before it fails with 504 (seconds, not minutes)."),
    Variable("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "default_accept", _media_type, "application/json",
             "Response type when Accept is missing or */*."),
    Variable("SAGEMAKER_MAX_PAYLOAD_IN_MB", "max_payload_mb", _positive_float, 6.0,
             "Largest request body in MiB; larger bodies get 413."),
    Variable("SAGEMAKER_CONTAINER_LOG_LEVEL", "log_level", _log_level, 20,
             "Python logging level, name or number (the SageMaker SDK writes \"20\")."),
    # servekit's own.
    Variable("SERVE_FRAMEWORK", "framework", _framework, "sklearn",
             "sklearn | pytorch | tensorflow | package.module:Class for a custom handler."),
    Variable("SERVE_ENGINE", "engine", _engine, "native",
             "native (forked per-model workers) or mms (multi-model-server compatibility engine)."),
    Variable("SERVE_HOST", "host", _text, "0.0.0.0",
             "Address to listen on (127.0.0.1 for local tests)."),
    Variable("SERVE_MODEL_DIR", "model_dir", _text, "/opt/ml/model",
             "Single-model mode: the extracted model artifact."),
    Variable("SERVE_MEMORY_LIMIT_MB", "memory_limit_mb", _optional_positive_int, None,
             "Memory the server may use, for MME admission (default: the cgroup limit, else physical memory)."),
    Variable("SERVE_INSTALL_REQUIREMENTS", "install_requirements", _bool, True,
             "pip-install code/requirements.txt when a model loads (false: pre-bake them into the image)."),
)


@dataclass(frozen=True)
class Settings:
    """The server's configuration, parsed from the environment at start."""

    port: int = 8080
    safe_port_range: tuple[int, int] | None = None
    multi_model: bool = False
    program: str | None = None
    submit_directory: str | None = None
    workers: int | None = None
    timeout_s: float = 60.0
    default_accept: str = "application/json"
    max_payload_mb: float = 6.0
    log_level: int = 20
    framework: str = "sklearn"
    engine: str = "native"
    host: str = "0.0.0.0"
    model_dir: str = "/opt/ml/model"
    memory_limit_mb: int | None = None
    install_requirements: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every declared variable from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None:
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{var.name}={raw!r} is invalid: {exc}") from None
        return cls(**values)

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)


def describe_variables() -> str:
    """Text for ``serve --help``: every variable, its default and meaning."""
    defaults = {f.name: f.default for f in fields(Settings)}
    lines = []
    for var in VARIABLES:
        default = defaults[var.field]
        shown = "unset" if default is None else str(default)
        lines.append(f"  {var.name:<38} {var.help} [default: {shown}]")
    return "\n".join(lines)
