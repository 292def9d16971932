"""Every environment variable the container server reads, each declared once: name, parser, default, help.

Each ``Settings`` field carries its variable's name, parser and help text in its metadata, so parsing
(``Settings.from_env``) and ``serve --help`` (``describe_variables``) are generated from the same
declaration. Nothing is read at import time: ``Settings.from_env()`` is called when the server
starts, and a bad value stops the start with a one-line ``SettingsError`` that names the variable.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from serve.accelerator import ACCELERATOR_VARIABLE, ACCELERATORS, GPU

LOG_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and what is accepted."""


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


def _optional_bool(value: str) -> bool | None:
    return _bool(value) if value.strip() else None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def _optional_positive_int(value: str) -> int | None:
    return _positive_int(value) if value.strip() else None


def _positive_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:  # float() accepts "nan" and "inf"
        raise ValueError("expected a positive, finite number")
    return number


def _optional_positive_float(value: str) -> float | None:
    return _positive_float(value) if value.strip() else None


#: Longest SIGTERM drain of in-flight requests: SageMaker sends SIGKILL 30 s after SIGTERM
#: (docs/sagemaker-contract.md), so both engines finish well before that.
DRAIN_LIMIT_S = 20.0
#: SageMaker's accepted MaxConcurrentTransforms (docs/sagemaker-contract.md §9).
MAX_CONCURRENT_TRANSFORMS = 100
#: CreateTransformJob's BatchStrategy values, as the container sees them (docs/sagemaker-contract.md §9).
BATCH_STRATEGIES = ("SINGLE_RECORD", "MULTI_RECORD")


#: AWS's defaults for its batching settings (docs/sagemaker-contract.md §12).
TFS_MAX_BATCH_SIZE = 8
TFS_BATCH_TIMEOUT_MICROS = 1000
TS_BATCH_SIZE = 1
TS_MAX_BATCH_DELAY_MS = 100


@dataclass(frozen=True)
class Batching:
    """Server-side batching: the most requests in one batch, the longest a queued request waits for a
    fuller one once a worker is free (seconds), and the setting it came from."""

    max_size: int
    max_delay_s: float
    source: str


def _concurrent_transforms(value: str) -> int | None:
    # A job that leaves MaxConcurrentTransforms at 0 asks the container (§9): 0 means "not set".
    number = int(value) if value.strip() else 0
    if not 0 <= number <= MAX_CONCURRENT_TRANSFORMS:
        raise ValueError(f"expected an integer 0-{MAX_CONCURRENT_TRANSFORMS}")
    return number or None


def _batch_strategy(value: str) -> str | None:
    strategy = value.strip().upper()
    if not strategy:
        return None
    if strategy not in BATCH_STRATEGIES:
        raise ValueError(f"expected {' or '.join(BATCH_STRATEGIES)}")
    return strategy


def _aws_bool(value: str) -> bool:
    # AWS's TF Serving container accepts exactly these two and stops otherwise (docs/sagemaker-contract.md §12.1).
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("expected true or false")
    return lowered == "true"


def _optional_non_negative_float(value: str) -> float | None:
    if not value.strip():
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("expected a finite number, 0 or more")
    return number


def _optional_non_negative_int(value: str) -> int | None:
    if not value.strip():
        return None
    number = int(value)
    if number < 0:
        raise ValueError("expected an integer, 0 or more")
    return number


def _log_level(value: str) -> int:
    text = value.strip().upper()
    if text in LOG_LEVELS:
        return LOG_LEVELS[text]
    level = int(text)  # the SageMaker SDK writes a stringified number, e.g. "20"
    if not 0 <= level <= 50:
        raise ValueError("expected a logging level name or number 0-50")
    return level


#: nginx's error-log levels (the values of SAGEMAKER_TFS_NGINX_LOGLEVEL) as Python logging levels.
NGINX_LOG_LEVELS = {"debug": 10, "info": 20, "notice": 20, "warn": 30, "error": 40, "crit": 50,
                    "alert": 50, "emerg": 50}


def _nginx_log_level(value: str) -> int:
    text = value.strip().lower()
    if text not in NGINX_LOG_LEVELS:
        raise ValueError(f"expected one of nginx's levels: {', '.join(NGINX_LOG_LEVELS)}")
    return NGINX_LOG_LEVELS[text]


def _engine(value: str) -> str:
    engine = value.strip().lower()
    if engine not in ("native", "mms"):
        raise ValueError("expected native or mms")
    return engine


def _accelerator(value: str) -> str | None:
    accelerator = value.strip().lower()
    if not accelerator:
        return None
    if accelerator not in ACCELERATORS:
        raise ValueError(f"expected {' or '.join(ACCELERATORS)} (set by the image's build)")
    return accelerator


def _framework(value: str) -> str:
    from handlers.registry import handler_path

    framework = value.strip()
    handler_path(framework)  # raises ValueError naming the accepted values
    return framework


def _optional_media_type(value: str) -> str | None:
    media = value.strip()
    if not media:
        return None
    if "/" not in media:
        raise ValueError("expected a media type such as application/json")
    return media


def _text(value: str) -> str:
    return value


def _optional_text(value: str) -> str | None:
    return value.strip() or None


#: Prefixes of AWS's own containers' settings (docs/sagemaker-contract.md §12): a variable with one of
#: them that no ``Settings`` field declares is not honoured, so the start is refused rather than the
#: setting ignored. The text says where servekit's equivalent lies.
AWS_PREFIXES = {
    "SAGEMAKER_TFS_": "AWS's TensorFlow Serving container setting; servekit runs no TF Serving binary "
                      "(docs/handlers.md, \"TensorFlow\")",
    "SAGEMAKER_TS_": "AWS's PyTorch toolkit's TorchServe setting; servekit runs no TorchServe "
                     "(SAGEMAKER_MODEL_SERVER_WORKERS sets the workers, SAGEMAKER_MODEL_SERVER_TIMEOUT the timeout)",
    "SAGEMAKER_GUNICORN_": "AWS's TensorFlow Serving container's gunicorn setting; servekit runs no gunicorn",
    "SAGEMAKER_NGINX_": "AWS's TensorFlow Serving container's nginx setting; servekit runs no nginx",
}


def unhonoured_aws_setting(env: Mapping[str, str], declared: Iterable[str]) -> str | None:
    """The one-line refusal of the first AWS container setting in ``env`` that no field declares."""
    known = set(declared)
    for name in sorted(env):
        prefix = next((p for p in AWS_PREFIXES if name.startswith(p)), None)
        if prefix is not None and name not in known:
            return f"{name} is not honoured by servekit: {AWS_PREFIXES[prefix]}; unset it"
    return None


def variable(name: str, parse: Callable[[str], Any], default: Any, help: str) -> Any:
    """A ``Settings`` field read from environment variable ``name`` (typed ``Any`` so that it can
    stand as the default of a field of any type, as ``dataclasses.field`` does)."""
    return field(default=default, metadata={"variable": name, "parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """The server's configuration, parsed from the environment at start."""

    # SageMaker's own variables (docs/sagemaker-contract.md §1.7).
    port: int = variable(
        "SAGEMAKER_BIND_TO_PORT", _port, 8080,
        "Port for /ping, /invocations and /models (set by SageMaker for multi-container endpoints).")
    safe_port_range: tuple[int, int] | None = variable(
        "SAGEMAKER_SAFE_PORT_RANGE", _port_range, None,
        "Inclusive LOW-HIGH range any extra port must come from (set by SageMaker for MCE).")
    multi_model: bool = variable(
        "SAGEMAKER_MULTI_MODEL", _bool, False,
        "true: multi-model endpoint mode (/models API); set by SageMaker for MME.")
    program: str | None = variable(
        "SAGEMAKER_PROGRAM", _optional_text, None,
        "User script in the code directory ('.py' optional); unset: inference.py when present.")
    submit_directory: str | None = variable(
        "SAGEMAKER_SUBMIT_DIRECTORY", _optional_text, None,
        "User code when not in <model>/code: a directory, a .tar.gz or an s3:// URI (fetched once).")
    workers: int | None = variable(
        "SAGEMAKER_MODEL_SERVER_WORKERS", _optional_positive_int, None,
        "Worker processes per model (default: the framework's default, see README).")
    timeout_s: float = variable(
        "SAGEMAKER_MODEL_SERVER_TIMEOUT", _positive_float, 60.0,
        "Seconds a request may take before it fails with 504 (seconds, not minutes); a streamed "
        "answer: to its first chunk, then between two chunks.")
    default_accept: str | None = variable(
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", _optional_media_type, None,
        "Response type when Accept is missing or */*; set, it wins over the framework handler's "
        "default_accept (unset: the handler's, application/json for the built-in frameworks).")
    max_payload_mb: float = variable(
        "SAGEMAKER_MAX_PAYLOAD_IN_MB", _positive_float, 6.0,
        "Largest request body in MiB; larger bodies get 413.")
    container_log_level: int | None = variable(
        "SAGEMAKER_CONTAINER_LOG_LEVEL", _log_level, None,
        "Python logging level, name or number (the SageMaker SDK writes \"20\"); unset: "
        "SAGEMAKER_TFS_NGINX_LOGLEVEL's, else INFO.")
    tfs_nginx_log_level: int | None = variable(
        "SAGEMAKER_TFS_NGINX_LOGLEVEL", _nginx_log_level, None,
        "AWS's TensorFlow Serving container's nginx log level (debug, info, notice, warn, error, crit, "
        "alert, emerg), which the SDK v2's TensorFlowModel(container_log_level=...) sets: servekit has "
        "no nginx, so it is the server's log level when SAGEMAKER_CONTAINER_LOG_LEVEL is unset.")
    # Batch transform's (docs/sagemaker-contract.md §9): set by SageMaker, the last two only when the
    # job set them; GET /execution-parameters answers with them.
    batch: bool = variable(
        "SAGEMAKER_BATCH", _bool, False,
        "true: the container runs a batch transform job (set by SageMaker).")
    batch_strategy: str | None = variable(
        "SAGEMAKER_BATCH_STRATEGY", _batch_strategy, None,
        "Batch transform: SINGLE_RECORD or MULTI_RECORD (unset: MULTI_RECORD in /execution-parameters).")
    max_concurrent_transforms: int | None = variable(
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", _concurrent_transforms, None,
        "Batch transform: parallel requests per instance, 1-100 (unset or 0: the model's worker count).")
    # AWS's batching settings, honoured with AWS's meaning for the framework that defines them
    # (docs/sagemaker-contract.md §12; docs/handlers.md, "Batching").
    tfs_enable_batching: bool = variable(
        "SAGEMAKER_TFS_ENABLE_BATCHING", _aws_bool, False,
        "TensorFlow, AWS's name: true batches concurrent requests (SAGEMAKER_TFS_MAX_BATCH_SIZE, default 8; "
        "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS, default 1000).")
    tfs_max_batch_size: int | None = variable(
        "SAGEMAKER_TFS_MAX_BATCH_SIZE", _optional_positive_int, None,
        "TensorFlow, with SAGEMAKER_TFS_ENABLE_BATCHING=true: most requests in one batch (AWS's default 8).")
    tfs_batch_timeout_micros: int | None = variable(
        "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS", _optional_non_negative_int, None,
        "TensorFlow, with SAGEMAKER_TFS_ENABLE_BATCHING=true: longest wait for a full batch, in "
        "microseconds (AWS's default 1000).")
    ts_batch_size: int | None = variable(
        "SAGEMAKER_TS_BATCH_SIZE", _optional_positive_int, None,
        "PyTorch, single-model, AWS's name: most requests in one batch (AWS's default 1: no batching).")
    ts_max_batch_delay: int | None = variable(
        "SAGEMAKER_TS_MAX_BATCH_DELAY", _optional_non_negative_int, None,
        "PyTorch, single-model, AWS's name: longest wait for a full batch, in milliseconds (AWS's default 100).")
    # servekit's own.
    batch_max_size: int | None = variable(
        "SERVE_BATCH_MAX_SIZE", _optional_positive_int, None,
        "Native engine, any framework: most concurrent requests of one model predicted as one batch "
        "(unset or 1: no batching; docs/handlers.md, \"Batching\").")
    batch_max_delay_ms: float | None = variable(
        "SERVE_BATCH_MAX_DELAY_MS", _optional_non_negative_float, None,
        "With SERVE_BATCH_MAX_SIZE: longest a queued request waits for a fuller batch once a worker is "
        "free, in milliseconds (default 0: a free worker takes what is queued at once).")
    framework: str = variable(
        "SERVE_FRAMEWORK", _framework, "sklearn",
        "sklearn | pytorch | tensorflow | package.module:Class for a custom handler.")
    engine: str = variable(
        "SERVE_ENGINE", _engine, "native",
        "native (forked per-model workers) or mms (multi-model-server compatibility engine).")
    host: str = variable(
        "SERVE_HOST", _text, "0.0.0.0",
        "Address to listen on (127.0.0.1 for local tests).")
    model_dir: str = variable(
        "SERVE_MODEL_DIR", _text, "/opt/ml/model",
        "Single-model mode: the extracted model artifact.")
    memory_limit_mb: int | None = variable(
        "SERVE_MEMORY_LIMIT_MB", _optional_positive_int, None,
        "Memory the server may use, for MME admission (default: the cgroup limit, else physical memory).")
    max_decoded_mb: float | None = variable(
        "SERVE_MAX_DECODED_MB", _optional_positive_float, None,
        "Largest decoded request (arrays, strings) in MiB, checked before allocating; beyond it 413 "
        "(default: 16 x SAGEMAKER_MAX_PAYLOAD_IN_MB).")
    max_in_flight_per_model: int | None = variable(
        "SERVE_MAX_IN_FLIGHT_PER_MODEL", _optional_positive_int, None,
        "Requests one model may hold running or queued (native engine); beyond it 503 "
        "(default: 100 per worker of the model).")
    prefork_choice: bool | None = variable(
        "SERVE_PREFORK", _optional_bool, None,
        "Single-model mode, native engine: once the model is loaded its workers answer HTTP themselves "
        "on the shared port, with no hop through the front (docs/engines.md, \"Prefork\"). Unset: on, "
        "unless batching or SERVE_MAX_IN_FLIGHT_PER_MODEL needs the front's queue; true: on (with batching, "
        "each worker batches the requests it reads together), and a setting it cannot honour stops the "
        "start; false: every request through the front.")
    mme_pool: bool = variable(
        "SERVE_MME_POOL", _bool, False,
        "Multi-model mode, native engine: true runs SAGEMAKER_MODEL_SERVER_WORKERS processes (default: "
        "the framework's) that each hold every loaded model and answer HTTP themselves, with no hop "
        "through the front; a model's crash or timeout restarts the process with every model in it "
        "(docs/engines.md, \"MME pool\").")
    install_requirements: bool = variable(
        "SERVE_INSTALL_REQUIREMENTS", _bool, True,
        "pip-install code/requirements.txt when a model loads (false: pre-bake them into the image).")
    accelerator: str | None = variable(
        ACCELERATOR_VARIABLE, _accelerator, None,
        "Set by the image: cpu or gpu (docs/images.md); gpu with no GPU visible logs one WARNING at start.")
    require_gpu: bool = variable(
        "SERVE_REQUIRE_GPU", _bool, False,
        "true: a GPU image with no GPU visible refuses to start (exit 2) instead of running on the CPU.")

    def __post_init__(self) -> None:
        batching = self.batching  # resolving it refuses what cannot be honoured
        if batching is not None:
            self._check_batching(batching)
        if self.prefork_choice:
            self._check_prefork()
        if self.mme_pool:
            self._check_mme_pool()
        if self.require_gpu and self.accelerator != GPU:
            raise SettingsError(f"SERVE_REQUIRE_GPU=true needs a GPU image ({ACCELERATOR_VARIABLE}={GPU}): "
                                "this image's frameworks are built without CUDA")

    def _check_prefork(self) -> None:
        """SERVE_PREFORK=true cannot be honoured beside these settings: say so rather than ignore it."""
        if self.engine != "native":
            raise SettingsError("SERVE_PREFORK=true needs SERVE_ENGINE=native: multi-model-server has "
                                "its own front end")
        if self.multi_model:
            raise SettingsError("SERVE_PREFORK=true applies to single-model mode only: in multi-model mode "
                                "the front routes each request to its model's workers")
        if self.max_in_flight_per_model is not None:
            raise SettingsError("SERVE_MAX_IN_FLIGHT_PER_MODEL cannot be honoured with SERVE_PREFORK=true: "
                                "each worker takes the connections it accepts; the kernel's listen backlog "
                                "bounds what waits")

    def _check_mme_pool(self) -> None:
        """SERVE_MME_POOL=true cannot be honoured beside these settings: say so rather than ignore it."""
        if self.engine != "native" or not self.multi_model:
            raise SettingsError("SERVE_MME_POOL=true needs SERVE_ENGINE=native and SAGEMAKER_MULTI_MODEL=true")
        if self.max_in_flight_per_model is not None:
            raise SettingsError("SERVE_MAX_IN_FLIGHT_PER_MODEL cannot be honoured with SERVE_MME_POOL=true: "
                                "each pool process takes the connections it accepts; the kernel's listen "
                                "backlog bounds what waits")

    @property
    def prefork(self) -> bool:
        """Whether the single model's workers answer HTTP themselves: SERVE_PREFORK, or by default
        wherever nothing needs the front's queue (docs/engines.md, "Prefork")."""
        if self.prefork_choice is not None:
            return self.prefork_choice
        return (self.engine == "native" and not self.multi_model and self.max_in_flight_per_model is None
                and self.batching is None)

    @property
    def log_level(self) -> int:
        """The server's Python logging level: SAGEMAKER_CONTAINER_LOG_LEVEL, else AWS's TF Serving
        name for it, else INFO."""
        for level in (self.container_log_level, self.tfs_nginx_log_level):
            if level is not None:
                return level
        return LOG_LEVELS["INFO"]

    @property
    def batching(self) -> Batching | None:
        """How concurrent requests are batched, from servekit's or AWS's names; None: not batched."""
        sources = [b for b in (self._own_batching(), self._tfs_batching(), self._ts_batching()) if b is not None]
        if len(sources) > 1:
            raise SettingsError(f"batching is set twice ({' and '.join(b.source for b in sources)}): set one")
        chosen = sources[0] if sources else None
        return chosen if chosen is not None and chosen.max_size > 1 else None

    def _own_batching(self) -> Batching | None:
        if self.batch_max_size is None:
            if self.batch_max_delay_ms is not None:
                raise SettingsError("SERVE_BATCH_MAX_DELAY_MS needs SERVE_BATCH_MAX_SIZE")
            return None
        return Batching(self.batch_max_size, (self.batch_max_delay_ms or 0.0) / 1000, "SERVE_BATCH_MAX_SIZE")

    def _tfs_batching(self) -> Batching | None:
        if not self.tfs_enable_batching:
            if self.tfs_max_batch_size is not None or self.tfs_batch_timeout_micros is not None:
                # AWS's container reads them only with batching on (docs/sagemaker-contract.md §12.1).
                raise SettingsError("SAGEMAKER_TFS_MAX_BATCH_SIZE / SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS need "
                                    "SAGEMAKER_TFS_ENABLE_BATCHING=true")
            return None
        self._check_aws_framework("tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING")
        micros = TFS_BATCH_TIMEOUT_MICROS if self.tfs_batch_timeout_micros is None else self.tfs_batch_timeout_micros
        return Batching(self.tfs_max_batch_size or TFS_MAX_BATCH_SIZE, micros / 1_000_000,
                        "SAGEMAKER_TFS_ENABLE_BATCHING")

    def _ts_batching(self) -> Batching | None:
        if self.ts_batch_size is None and self.ts_max_batch_delay is None:
            return None
        self._check_aws_framework("pytorch", "SAGEMAKER_TS_BATCH_SIZE / SAGEMAKER_TS_MAX_BATCH_DELAY")
        if self.multi_model:  # AWS's toolkit uses them for a single model only (§12.2)
            raise SettingsError("SAGEMAKER_TS_BATCH_SIZE / SAGEMAKER_TS_MAX_BATCH_DELAY apply to single-model "
                                "endpoints only (as in AWS's PyTorch toolkit); use SERVE_BATCH_MAX_SIZE")
        delay_ms = TS_MAX_BATCH_DELAY_MS if self.ts_max_batch_delay is None else self.ts_max_batch_delay
        return Batching(self.ts_batch_size or TS_BATCH_SIZE, delay_ms / 1000, "SAGEMAKER_TS_BATCH_SIZE")

    def _check_aws_framework(self, framework: str, names: str) -> None:
        if self.framework != framework:
            raise SettingsError(f"{names} are AWS's {framework} container's settings; with SERVE_FRAMEWORK="
                                f"{self.framework} use SERVE_BATCH_MAX_SIZE / SERVE_BATCH_MAX_DELAY_MS")

    def _check_batching(self, batching: Batching) -> None:
        """Batching happens in the native engine (its front's queue, or with SERVE_PREFORK=true each
        worker's own): refuse it where there is none."""
        if self.engine != "native":
            raise SettingsError(f"{batching.source} needs SERVE_ENGINE=native: servekit's mms engine does not "
                                "batch (docs/engines.md, \"Batching\")")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every declared variable from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        refusal = unhonoured_aws_setting(env, variable_names())
        if refusal is not None:
            raise SettingsError(refusal)
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata["variable"]
            raw = env.get(name)
            if raw is None:
                continue
            try:
                values[setting.name] = setting.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r} is invalid: {exc}") from None
        return cls(**values)

    def to_json(self, names: Iterable[str]) -> str:
        """The settings ``names`` as JSON, for a process that rebuilds them with ``from_json``."""
        return json.dumps({name: getattr(self, name) for name in names})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Settings from ``to_json``'s text; every field it does not name keeps its default."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object of settings")
        known = {setting.name for setting in fields(cls)}
        # JSON has no tuples; SAGEMAKER_SAFE_PORT_RANGE's (low, high) comes back as a list.
        parsed: dict[str, Any] = {name: tuple(value) if isinstance(value, list) else value
                                  for name, value in values.items() if name in known}
        return cls(**parsed)

    @property
    def drain_s(self) -> float:
        """How long a stopping server (or prefork worker) waits for its in-flight requests."""
        return min(self.timeout_s, DRAIN_LIMIT_S)

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)


def settings_fields() -> tuple[Field[Any], ...]:
    """Every setting, in declaration order."""
    return fields(Settings)


def variable_names() -> list[str]:
    """The environment variable of every setting, in declaration order."""
    return [setting.metadata["variable"] for setting in settings_fields()]


def describe_variables() -> str:
    """Text for ``serve --help``: every variable, its default and meaning."""
    lines = []
    for setting in settings_fields():
        shown = "unset" if setting.default is None else str(setting.default)
        lines.append(f"  {setting.metadata['variable']:<38} {setting.metadata['help']} [default: {shown}]")
    return "\n".join(lines)
