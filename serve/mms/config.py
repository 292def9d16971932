"""multi-model-server's configuration and prerequisites: everything done before MMS is started.

The MMS configuration is rendered from ``serve.settings.Settings`` into a private temporary
directory (never ``/etc``), together with a log4j2 configuration that logs to stdout only (MMS's
default writes ``logs/`` into the working directory), and the launcher's environment and command
line are built here. What this avoids of the stock sagemaker-inference setup:

* ``TMPDIR``/``TEMP`` of the MMS process point into that directory, so its pid file and worker
  sockets are private: two servers on one machine do not collide ("one pid file per TMPDIR").
* ``default_response_timeout_seconds`` is used; ``default_response_timeout`` is read by MMS as
  *minutes* (ConfigManager.getDefaultResponseTimeoutSeconds, sagemaker-inference issue #99).
* MMS rejects ports >= 32767 (``Connector.parse``: ``port >= Short.MAX_VALUE``). Rather than a
  proxy in front of it, such a ``SAGEMAKER_BIND_TO_PORT`` is refused with a one-line error before
  anything starts (see docs/engines.md).

Private files besides the configuration: ``python``, a shim MMS runs as its Python
(``serve.mms.backend.backend_main`` loads the model before MMS's worker code starts, so the port
opens only once the model is loaded), and in single-model mode ``management.sock``, where MMS's
management API listens instead of the public port. The environment handed to the workers is
described in ``serve.mms.worker_env``; ``PYTHONPATH`` also gains the directory holding the ``serve``
package so workers can import it.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.memory import memory_limit_bytes
from serve.mms.worker_env import (
    BUSY_DIR_ENV,
    FAILURE_FILE_ENV,
    REFUSED_DIR_ENV,
    ROOT_PID_ENV,
    SETTINGS_ENV,
    encode_worker_settings,
)
from serve.settings import Settings, SettingsError
from serve.shared import SINGLE_MODEL_NAME, set_parent_death_signal, workers_per_model

#: MMS's ``Connector.parse`` refuses any port >= Short.MAX_VALUE (32767).
MMS_PORT_LIMIT = 32767

#: The handler entry point MMS imports in each worker: a module-level ``handle`` function, because
#: MMS calls a function entry point for the load *without* swallowing its exception (it does swallow
#: exceptions from a service class's ``initialize``), which is what makes a failed load fail.
SERVICE_HANDLER = "serve.mms.service:handle"

#: Seconds MMS's own request timeout exceeds SAGEMAKER_MODEL_SERVER_TIMEOUT: the worker interrupts
#: the request itself at the timeout and answers 504; MMS's timeout (which kills the worker and
#: answers 500) is the backstop for code that never returns to Python.
TIMEOUT_BACKSTOP_S = 10

#: Largest value MMS can hold for a size (a Java int).
_JAVA_INT_MAX = 2**31 - 1

_LOG4J_LEVELS = ((10, "debug"), (20, "info"), (30, "warn"), (40, "error"))


class MmsUnavailable(RuntimeError):
    """multi-model-server or a Java runtime is missing; the message says what to install."""


@dataclass(frozen=True)
class MmsLayout:
    """The private files of one MMS run."""

    workdir: Path
    config_file: Path
    log_config: Path
    failure_file: Path
    python_shim: Path
    management_socket: Path
    busy_dir: Path
    refused_dir: Path

    @classmethod
    def create(cls) -> MmsLayout:
        """Make a fresh private directory (mode 0700) for one run."""
        return cls.at(Path(tempfile.mkdtemp(prefix="servekit-mms-")))

    @classmethod
    def at(cls, workdir: Path) -> MmsLayout:
        """The file names inside ``workdir``."""
        return cls(workdir, workdir / "config.properties", workdir / "log4j2.xml", workdir / "load-failure",
                   workdir / "python", workdir / "management.sock", workdir / "busy", workdir / "refused")


def check_settings(settings: Settings) -> None:
    """Raise SettingsError for settings multi-model-server cannot honour (the message names the fix)."""
    if settings.port >= MMS_PORT_LIMIT:
        raise SettingsError(
            f"SAGEMAKER_BIND_TO_PORT={settings.port} is too high for SERVE_ENGINE=mms: multi-model-server "
            f"only accepts ports below {MMS_PORT_LIMIT}; choose a lower port or SERVE_ENGINE=native"
        )
    if any(ch in settings.host for ch in "\n\\ "):
        raise SettingsError(f"SERVE_HOST={settings.host!r} is not a valid listen address")


def find_java(environ: Mapping[str, str]) -> str:
    """The java executable MMS's launcher will run (JAVA_HOME/bin/java, else java on PATH)."""
    java_home = environ.get("JAVA_HOME")
    if java_home:
        java: str | None = os.path.join(java_home, "bin", "java")
    else:
        java = shutil.which("java", path=environ.get("PATH"))
    if not java or not os.access(java, os.X_OK):
        raise MmsUnavailable(
            "SERVE_ENGINE=mms needs a Java runtime (11 or later) and none was found"
            + (f" at JAVA_HOME={java_home}" if java_home else " on PATH")
            + ": install e.g. openjdk-17-jre-headless, or use SERVE_ENGINE=native"
        )
    return java


def check_mms_installed() -> None:
    """Raise MmsUnavailable unless the multi-model-server package can be imported."""
    import importlib.util

    if importlib.util.find_spec("mms") is None or importlib.util.find_spec("mms.model_server") is None:
        raise MmsUnavailable(
            "SERVE_ENGINE=mms needs multi-model-server: pip install 'servekit[mms]' "
            "(or use an image built with the compatibility engine)"
        )


def default_workers(settings: Settings) -> int:
    """Workers per model, counted as the native engine counts them (``serve.shared.workers_per_model``).

    MMS's own default is one worker per CPU; servekit's engines share the framework's default so the
    two engines run the same number of model copies.
    """
    from handlers.registry import handler_class

    try:
        handler = handler_class(settings.framework)
    except ValueError as exc:
        raise SettingsError(f"SERVE_FRAMEWORK={settings.framework!r}: {exc}") from None
    return workers_per_model(settings, handler.default_workers)


def jvm_heap_mb(settings: Settings, memory_bytes: int, cpus: int) -> int:
    """Maximum Java heap for MMS's front end, sized for the container.

    The front end buffers whole requests and responses (up to SAGEMAKER_MAX_PAYLOAD_IN_MB each);
    AWS's scikit-learn container sizes its heap as ``3 * cpus * payload * 1.2 + 128`` MB. That is
    capped at a quarter of the memory the container may use, since the models live in the Python
    workers, and kept at 64 MB or more so the JVM can start at all. Without a cap the JVM sizes its
    heap from the host (sagemaker-inference's ``environment.py`` sets ``DEFAULT_VMARGS =
    "-XX:-UseContainerSupport"``) and grows to hundreds of MB under load without giving it back.
    """
    wanted = 128 + 3 * cpus * settings.max_payload_mb * 1.2
    cap = memory_bytes / (1024 * 1024) / 4
    return int(max(64, min(wanted, cap)))


def _timeout_seconds(settings: Settings) -> int:
    # MMS takes whole seconds; round up so a 0.5 s setting does not become "no time at all".
    return max(1, math.ceil(settings.timeout_s))


def render_properties(
    settings: Settings, *, workers: int, heap_mb: int, management_socket: Path | None = None
) -> str:
    """The MMS ``config.properties`` text for ``settings``.

    Keys are MMS 1.1.11's (util/ConfigManager.java). ``enable_envvars_config`` stays false so stray
    ``MMS_*`` environment variables cannot override what servekit rendered.

    Multi-model mode serves /ping, /invocations and the /models API on SAGEMAKER_BIND_TO_PORT, as
    sagemaker-inference does (its PR #22). In single-model mode the /models API does not belong on
    the port (the native engine answers 404 there), so MMS's management API is bound to a private
    Unix socket (``management_socket``) instead; /ping and /invocations stay on the port.
    """
    check_settings(settings)
    address = f"http://{settings.host}:{settings.port}"
    if settings.multi_model or management_socket is None:
        management = address
    else:
        management = f"unix:{management_socket}"
    size = min(settings.max_payload_bytes, _JAVA_INT_MAX)
    props: dict[str, Any] = {
        "inference_address": address,
        "management_address": management,
        # Model urls in POST /models are absolute paths; MMS resolves them as File(model_store, url).
        "model_store": "/",
        "default_service_handler": SERVICE_HANDLER,
        "default_workers_per_model": workers,
        # Seconds. default_response_timeout would be minutes (MMS bug kept for compatibility).
        "default_response_timeout_seconds": _timeout_seconds(settings) + TIMEOUT_BACKSTOP_S,
        "unregister_model_timeout": max(30, _timeout_seconds(settings)),
        "max_request_size": size,
        "max_response_size": size,
        # Hand the raw body bytes to the handlers; MMS would otherwise json.loads JSON bodies itself.
        "decode_input_request": "false",
        "enable_envvars_config": "false",
        # Load in each worker process, not in the per-model parent (a parent load error kills it
        # without an answer to POST /models).
        "preload_model": "false",
        # Java 17 refuses -XX:+UseParNewGC (AWS's sklearn container); G1, the default, is used.
        "vmargs": f"-Xmx{heap_mb}m -XX:+UseContainerSupport",
    }
    lines = ["# Rendered by servekit (serve/mms/config.py) from its settings; edits are overwritten."]
    for key, value in props.items():
        text = str(value)
        if "\n" in text or "\\" in text:
            raise SettingsError(f"MMS setting {key}={text!r} contains a newline or backslash")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def _log4j_level(level: int) -> str:
    for threshold, name in _LOG4J_LEVELS:
        if level <= threshold:
            return name
    return "fatal"


def render_log_config(log_level: int) -> str:
    """A log4j2 configuration that writes everything to stdout (the container log), no files.

    The per-request access log and MMS's metrics lines are shown at DEBUG only: at INFO they would
    add a log line per request, which the native engine does not do either.
    """
    level = _log4j_level(log_level)
    chatty = "info" if log_level <= 10 else "warn"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Rendered by servekit (serve/mms/config.py). -->
<Configuration>
    <Appenders>
        <Console name="STDOUT" target="SYSTEM_OUT">
            <PatternLayout pattern="%d{{ISO8601}} [%-5p] %t %c - %m%n"/>
        </Console>
    </Appenders>
    <Loggers>
        <Logger name="ACCESS_LOG" level="{chatty}"/>
        <Logger name="MMS_METRICS" level="{chatty}"/>
        <Logger name="MODEL_METRICS" level="{chatty}"/>
        <Logger name="MODEL_LOG" level="{level}"/>
        <Logger name="io.netty" level="error"/>
        <Logger name="org.apache" level="off"/>
        <Logger name="com.amazonaws.ml.mms" level="{level}"/>
        <Root level="{level}">
            <AppenderRef ref="STDOUT"/>
        </Root>
    </Loggers>
</Configuration>
"""


def mms_environment(settings: Settings, layout: MmsLayout, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the MMS launcher (and, through Java, of every worker)."""
    env = dict(base)
    # MMS reads MMS_CONFIG_FILE before its --mms-config argument; ours must win.
    env.pop("MMS_CONFIG_FILE", None)
    # Private pid file (Python launcher: tempfile.gettempdir()) and worker sockets (Java: TEMP).
    env["TMPDIR"] = env["TEMP"] = env["TMP"] = str(layout.workdir)
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(layout.workdir)
    env[SETTINGS_ENV] = encode_worker_settings(settings)
    env[BUSY_DIR_ENV] = str(layout.busy_dir)
    env[ROOT_PID_ENV] = str(os.getpid())
    if settings.multi_model:
        env[REFUSED_DIR_ENV] = str(layout.refused_dir)
    else:
        env.pop(REFUSED_DIR_ENV, None)
    if settings.multi_model:
        env.pop(FAILURE_FILE_ENV, None)
    else:
        env[FAILURE_FILE_ENV] = str(layout.failure_file)
    # Workers import serve.mms.service; make the tree holding the serve package importable even when
    # servekit runs from a source checkout rather than an installed wheel.
    package_root = str(Path(__file__).resolve().parents[2])
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    paths = [package_root, *inherited]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def render_python_shim() -> str:
    """The executable MMS is told is "python": ``serve.mms.backend.backend_main`` (see its docstring).

    A /bin/sh script, because MMS runs its Python by path with no extra arguments and a shebang
    naming a long virtualenv path could exceed the kernel's shebang limit.
    """
    code = "import sys; from serve.mms.backend import backend_main; sys.exit(backend_main(sys.argv[1:]))"
    return (
        "#!/bin/sh\n"
        "# Rendered by servekit (serve/mms/config.py): multi-model-server runs this as its Python.\n"
        f'exec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n'
    )


#: Runs MMS's own launcher (mms.model_server.start) with ``sys.executable`` set to the shim, because
#: the launcher passes its own interpreter to Java as the workers' Python and has no option for it.
#: Should this engine process die without stopping MMS (SIGKILL, OOM kill), the kernel sends the
#: launcher SIGTERM (PR_SET_PDEATHSIG, set in die_with_parent) and the launcher kills its whole
#: process group -- Java and every worker -- so nothing outlives the engine.
_LAUNCHER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))\n"
    "if os.getppid() != int(sys.argv.pop(1)):\n"
    "    os.killpg(0, signal.SIGKILL)\n"
    "from mms.model_server import start\n"
    "sys.executable = sys.argv.pop(1)\n"
    "start()\n"
)


def die_with_parent() -> None:
    """In the launcher, before exec: ask the kernel for SIGTERM when this engine process dies."""
    set_parent_death_signal(signal.SIGTERM)


def mms_command(settings: Settings, layout: MmsLayout) -> list[str]:
    """The multi-model-server launcher command line (run with this interpreter, in the foreground)."""
    cmd = [
        sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(layout.python_shim), "--start", "--foreground",
        "--mms-config", str(layout.config_file),
        "--log-config", str(layout.log_config),
        "--model-store", "/",
    ]
    if not settings.multi_model:
        cmd += ["--models", f"{SINGLE_MODEL_NAME}={os.path.abspath(settings.model_dir)}"]
    return cmd


def prepare(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[MmsLayout, list[str], dict[str, str]]:
    """Check prerequisites and write the private config; returns (layout, command, environment).

    Raises SettingsError or MmsUnavailable with a one-line message before anything is started.
    """
    env_in = os.environ if environ is None else environ
    check_settings(settings)
    check_mms_installed()
    find_java(env_in)
    if not settings.multi_model and not Path(settings.model_dir).is_dir():
        raise SettingsError(
            f"SERVE_MODEL_DIR={settings.model_dir} is not a directory: extract the model artifact there "
            "(SageMaker uses /opt/ml/model) or set SAGEMAKER_MULTI_MODEL=true"
        )
    workers = default_workers(settings)
    heap = jvm_heap_mb(settings, memory_limit_bytes(settings.memory_limit_mb), os.cpu_count() or 1)
    layout = MmsLayout.create()
    try:
        layout.config_file.write_text(render_properties(settings, workers=workers, heap_mb=heap,
                                                        management_socket=layout.management_socket))
        layout.log_config.write_text(render_log_config(settings.log_level))
        layout.python_shim.write_text(render_python_shim())
        layout.python_shim.chmod(0o700)
        layout.busy_dir.mkdir()
        layout.refused_dir.mkdir()
    except BaseException:
        shutil.rmtree(layout.workdir, ignore_errors=True)
        raise
    return layout, mms_command(settings, layout), mms_environment(settings, layout, env_in)
