"""The multi-model-server compatibility engine (``SERVE_ENGINE=mms``).

Runs AWS's multi-model-server 1.1.11 (the Java front end AWS's CPU multi-model containers use) with
servekit's handlers inside its Python workers (``serve.mms_service``), so teams can choose the stack
they run today and benchmarks can put it beside the native engine in the same image.

What this module does, and which sagemaker-inference defects it does not inherit:

* The MMS configuration is rendered from ``serve.settings.Settings`` into a private temporary
  directory (never ``/etc``), together with a log4j2 configuration that logs to stdout only (MMS's
  default writes ``logs/`` into the working directory).
* ``TMPDIR``/``TEMP`` of the MMS process point into that directory, so its pid file and worker
  sockets are private: two servers on one machine do not collide ("one pid file per TMPDIR").
* ``default_response_timeout_seconds`` is used; ``default_response_timeout`` is read by MMS as
  *minutes* (ConfigManager.getDefaultResponseTimeoutSeconds, sagemaker-inference issue #99).
* MMS is started with ``--foreground`` as our own child in a new process group; its Java process
  and every Python worker are found from that PID (psutil children), never by scanning process
  names. On SIGTERM/SIGINT the Java process gets SIGTERM, then every remaining process of the tree
  gets SIGKILL (MMS's workers ignore SIGTERM, which is why they are orphaned otherwise).
* When MMS dies on its own, this process stops what is left of the tree and exits non-zero.
* MMS rejects ports >= 32767 (``Connector.parse``: ``port >= Short.MAX_VALUE``). Rather than a
  proxy in front of it, the engine refuses such a ``SAGEMAKER_BIND_TO_PORT`` with a one-line error
  before starting anything (see docs/engines.md).

Environment of the MMS process (inherited by its workers) that servekit adds, all read by
``serve.mms_service`` when a model loads, never at import time:

* ``SERVEKIT_MMS_SETTINGS``: JSON of the settings a worker needs (framework, program,
  submit_directory, default_accept, install_requirements, log_level, timeout_s, memory_limit_mb).
* ``SERVEKIT_MMS_FAILURE_FILE``: single-model mode only. A worker that cannot load the model writes
  the reason there; the supervisor then stops MMS and exits 1 with that reason, instead of MMS
  retrying the load forever while ``/ping`` keeps answering 200.
* ``SERVEKIT_MMS_BUSY_DIR``: each worker holds a lock on a file there while it runs a request, so
  SIGTERM can wait for in-flight requests (MMS itself would cut them).
* ``SERVEKIT_MMS_REFUSED_DIR``: multi-model mode only. A worker that refused a load for memory
  (507) names the model there; the supervisor removes the registration MMS leaves behind.
* ``SERVEKIT_MMS_ROOT_PID``: this process, the root of the tree whose memory counts against
  ``SERVE_MEMORY_LIMIT_MB``.
* ``PYTHONPATH``: gains the directory holding the ``serve`` package so workers can import it.

Other private files: ``python``, a shim MMS runs as its Python (``serve.mms_service.backend_main``
loads the model before MMS's worker code starts, so the port opens only once the model is loaded),
and in single-model mode ``management.sock``, where MMS's management API listens instead of the
public port (checked once at start: the single model must be registered with workers).
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from serve.settings import Settings, SettingsError

log = logging.getLogger("serve.mms_engine")

#: MMS's ``Connector.parse`` refuses any port >= Short.MAX_VALUE (32767).
MMS_PORT_LIMIT = 32767
#: The handler entry point MMS imports in each worker: a module-level ``handle`` function, because
#: MMS calls a function entry point for the load *without* swallowing its exception (it does swallow
#: exceptions from a service class's ``initialize``), which is what makes a failed load fail.
SERVICE_HANDLER = "serve.mms_service:handle"
SETTINGS_ENV = "SERVEKIT_MMS_SETTINGS"
FAILURE_FILE_ENV = "SERVEKIT_MMS_FAILURE_FILE"
BUSY_DIR_ENV = "SERVEKIT_MMS_BUSY_DIR"
ROOT_PID_ENV = "SERVEKIT_MMS_ROOT_PID"
REFUSED_DIR_ENV = "SERVEKIT_MMS_REFUSED_DIR"
#: Seconds MMS's own request timeout exceeds SAGEMAKER_MODEL_SERVER_TIMEOUT: the worker interrupts
#: the request itself at the timeout and answers 504; MMS's timeout (which kills the worker and
#: answers 500) is the backstop for code that never returns to Python.
TIMEOUT_BACKSTOP_S = 10
#: The model name MMS registers in single-model mode (what /invocations routes to).
SINGLE_MODEL_NAME = "model"
#: Largest value MMS can hold for a size (a Java int).
_JAVA_INT_MAX = 2**31 - 1
#: Seconds the Java process gets to stop after SIGTERM before the whole tree is killed.
STOP_GRACE_S = 5.0
#: Longest wait for in-flight requests after SIGTERM (SageMaker kills the container 30 s after it).
DRAIN_LIMIT_S = 20.0
#: How often the supervisor refreshes its list of MMS's processes (a psutil walk from our child).
_TREE_REFRESH_S = 2.0

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
    """Workers per model: SAGEMAKER_MODEL_SERVER_WORKERS, else 1 in MME, else the framework's default.

    MMS's own default is one worker per CPU; servekit's engines share the framework's default so the
    two engines run the same number of model copies.
    """
    if settings.workers is not None:
        return settings.workers
    if settings.multi_model:
        return 1
    from handlers.registry import handler_class

    try:
        return max(1, int(handler_class(settings.framework).default_workers))
    except ValueError as exc:
        raise SettingsError(f"SERVE_FRAMEWORK={settings.framework!r}: {exc}") from None


def jvm_heap_mb(settings: Settings, memory_bytes: int, cpus: int) -> int:
    """Maximum Java heap for MMS's front end, sized for the container.

    The front end buffers whole requests and responses (up to SAGEMAKER_MAX_PAYLOAD_IN_MB each);
    AWS's scikit-learn container sizes its heap as ``3 * cpus * payload * 1.2 + 128`` MB. That is
    capped at a quarter of the memory the container may use, since the models live in the Python
    workers, and kept at 64 MB or more so the JVM can start at all. Without a cap the JVM sizes its
    heap from the host (sagemaker-inference passes -XX:-UseContainerSupport) and grows to hundreds of
    MB under load without giving it back (baseline-mms.md issue 4).
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
    lines = ["# Rendered by servekit (serve/mms_engine.py) from its settings; edits are overwritten."]
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
<!-- Rendered by servekit (serve/mms_engine.py). -->
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


def worker_settings(settings: Settings) -> dict[str, Any]:
    """What ``serve.mms_service`` needs from the settings, as JSON-able values."""
    return {
        "framework": settings.framework,
        "program": settings.program,
        "submit_directory": settings.submit_directory,
        "default_accept": settings.default_accept,
        "install_requirements": settings.install_requirements,
        "log_level": settings.log_level,
        "timeout_s": settings.timeout_s,
        # Only an explicit budget: without one the kernel's limit applies, and MMS answers 507 when
        # a worker is OOM-killed (exit 137).
        "memory_limit_mb": settings.memory_limit_mb,
    }


def mms_environment(settings: Settings, layout: MmsLayout, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the MMS launcher (and, through Java, of every worker)."""
    env = dict(base)
    # MMS reads MMS_CONFIG_FILE before its --mms-config argument; ours must win.
    env.pop("MMS_CONFIG_FILE", None)
    # Private pid file (Python launcher: tempfile.gettempdir()) and worker sockets (Java: TEMP).
    env["TMPDIR"] = env["TEMP"] = env["TMP"] = str(layout.workdir)
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(layout.workdir)
    env[SETTINGS_ENV] = json.dumps(worker_settings(settings))
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
    # Workers import serve.mms_service; make the tree holding the serve package importable even when
    # servekit runs from a source checkout rather than an installed wheel.
    package_root = str(Path(__file__).resolve().parent.parent)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    paths = [package_root, *inherited]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def render_python_shim() -> str:
    """The executable MMS is told is "python": ``serve.mms_service.backend_main`` (see its docstring).

    A /bin/sh script, because MMS runs its Python by path with no extra arguments and a shebang
    naming a long virtualenv path could exceed the kernel's shebang limit.
    """
    code = "import sys; from serve.mms_service import backend_main; sys.exit(backend_main(sys.argv[1:]))"
    return (
        "#!/bin/sh\n"
        "# Rendered by servekit (serve/mms_engine.py): multi-model-server runs this as its Python.\n"
        f'exec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n'
    )


#: Runs MMS's own launcher (mms.model_server.start) with ``sys.executable`` set to the shim, because
#: the launcher passes its own interpreter to Java as the workers' Python and has no option for it.
#: Should this engine process die without stopping MMS (SIGKILL, OOM kill), the kernel sends the
#: launcher SIGTERM (PR_SET_PDEATHSIG, set in _die_with_parent) and the launcher kills its whole
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
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the launcher, before exec: ask the kernel for SIGTERM when this engine process dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


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
    from serve.memory import memory_limit_bytes

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


class _Supervisor:
    """Owns one MMS process tree: started here, stopped here, never looked up by name."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.root = psutil.Process(proc.pid)
        self.known: dict[int, psutil.Process] = {}

    def refresh(self) -> None:
        """Remember every current descendant (so they can be killed even after their parent died)."""
        try:
            for child in self.root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def exited(self) -> bool:
        """True once the launcher has exited; it is *not* reaped, so its pid (= our process group id)
        cannot be reused while we clean up."""
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for proc in self.known.values():
            try:
                # psutil compares the creation time, so a reused pid is never mistaken for ours.
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """Stop Java gracefully, then kill what remains of the tree; returns the launcher's exit code."""
        self.refresh()
        javas = [p for p in self.known.values() if _is_direct_child(p, self.proc.pid)]
        for java in javas:
            try:
                java.terminate()
            except psutil.Error:
                pass
        deadline = time.monotonic() + grace_s
        while javas and time.monotonic() < deadline:
            self.refresh()  # workers started meanwhile are still ours
            _, javas = psutil.wait_procs(javas, timeout=0.1)
        self.refresh()
        for proc in self._alive():
            try:
                proc.kill()
            except psutil.Error:
                pass
        if not self.exited():
            self.proc.kill()
        # Belt and braces: everything MMS starts stays in the process group we created; the launcher
        # is not reaped yet, so this group id is still ours.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        psutil.wait_procs(self._alive(), timeout=5)
        return self.proc.wait()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the private Unix socket MMS's management API listens on in single-model mode."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def check_startup_model(management_socket: Path) -> tuple[bool, str | None]:
    """Once MMS listens, confirm it registered the single model with workers: (checked, problem).

    MMS opens its port even when registering the start-up model failed -- e.g. a preloaded model
    that took longer than the minute MMS waits for it -- and then answers /ping 200 with no model to
    serve. ``checked`` is False while the management API does not answer yet.
    """
    connection = _UnixHTTPConnection(management_socket)
    try:
        connection.request("GET", f"/models/{SINGLE_MODEL_NAME}")
        response = connection.getresponse()
        body = response.read()
    except OSError:
        return False, None
    finally:
        connection.close()
    if response.status == 404:
        return True, ("multi-model-server did not register it (see the log above; a preloaded model must "
                      "load within 60 s)")
    try:
        described = json.loads(body)
        models = described if isinstance(described, list) else [described]
        min_workers = int(models[0].get("minWorkers", 0))
    except (ValueError, IndexError, AttributeError, TypeError):
        return True, None  # an answer we cannot read: do not stop a server that may be fine
    if min_workers < 1:
        return True, "multi-model-server registered it without workers (a preloaded model must load within 60 s)"
    return True, None


class RefusalJanitor:
    """Removes the registration MMS leaves behind after a load answered 507 (multi-model mode).

    MMS unregisters a model whose load failed on the worker thread that received the failure, and
    that thread's own worker shutdown interrupts the unregistration, which MMS then undoes: the model
    stays listed with zero workers (``minWorkers`` 0), so a retry gets 409 and invocations find no
    worker. Workers name refused models in ``directory``; for a few seconds after each, this polls
    ``GET /models/{name}`` and sends ``DELETE`` while the leftover (zero workers) is there.
    """

    WATCH_S = 5.0
    SETTLE_S = 0.5

    def __init__(self, directory: Path, host: str, port: int) -> None:
        self.directory = directory
        self.host = _connect_host(host)
        self.port = port
        self.watching: dict[str, float] = {}

    def poll(self) -> None:
        """Pick up new refusals and clean up leftovers; cheap when there is nothing to do."""
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            entries = []
        for entry in entries:
            if entry.suffix == ".tmp":
                continue
            try:
                name = entry.read_text(encoding="utf-8")
                entry.unlink()
            except OSError:
                continue
            self.watching[name] = time.monotonic()
        for name, noted in list(self.watching.items()):
            # The worker wrote its note just before answering 507; until MMS has processed that answer
            # the model still shows its workers. The leftover is the registration with zero workers.
            # Once it is removed (or found gone) watching stops, so a later registration of the same
            # name -- which also shows zero workers while its first worker starts -- is never touched.
            age = time.monotonic() - noted
            workers = self._min_workers(name)
            if workers == 0:
                status = self._request("DELETE", name)[0]
                log.info("removed model %s, left registered by multi-model-server after a 507 (HTTP %s)",
                         name, status)
                if status in (200, 404):
                    del self.watching[name]
                    continue
            elif workers is None and age > self.SETTLE_S:
                del self.watching[name]  # gone: MMS's own unregistration worked
                continue
            if age > self.WATCH_S:
                del self.watching[name]

    def _min_workers(self, name: str) -> int | None:
        status, body = self._request("GET", name)
        if status != 200:
            return None
        try:
            described = json.loads(body)
            first = described[0] if isinstance(described, list) else described
            return int(first.get("minWorkers", 0))
        except (ValueError, IndexError, AttributeError, TypeError):
            return None

    def _request(self, method: str, name: str) -> tuple[int, bytes]:
        from urllib.parse import quote

        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request(method, f"/models/{quote(name, safe='')}")
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()


def _connect_host(host: str) -> str:
    """An address to reach a server listening on ``host`` from this machine."""
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def busy_workers(directory: Path) -> int:
    """How many MMS workers are running a request now (each holds a lock on its file while it does)."""
    busy = 0
    try:
        entries = list(directory.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            fd = os.open(entry, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy += 1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return busy


def drain(directory: Path, deadline_s: float) -> bool:
    """Wait until no worker runs a request (seen idle twice, 0.1 s apart) or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    idle_checks = 0
    while time.monotonic() < deadline:
        idle_checks = idle_checks + 1 if busy_workers(directory) == 0 else 0
        if idle_checks >= 2:
            return True
        time.sleep(0.1)
    return False


def _is_direct_child(proc: psutil.Process, parent_pid: int) -> bool:
    try:
        return proc.ppid() == parent_pid
    except psutil.Error:
        return False


def run(settings: Settings) -> int:
    """Run multi-model-server for ``settings`` until SIGTERM/SIGINT or until it dies; returns the exit code.

    0 after a requested stop; 1 when MMS died on its own or the single model failed to load; 2 when
    the settings or the installation cannot work (a one-line message is logged and printed).
    """
    try:
        layout, cmd, env = prepare(settings)
    except (SettingsError, MmsUnavailable) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2

    stop_signal: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_signal.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("starting multi-model-server on %s:%s (%s mode, config %s)", settings.host, settings.port,
                 "multi-model" if settings.multi_model else "single-model", layout.config_file)
        # A new session: MMS's tree is one process group we own, and a terminal's Ctrl-C reaches only
        # us (we then stop MMS in order).
        proc = subprocess.Popen(cmd, env=env, cwd=layout.workdir, start_new_session=True,
                                preexec_fn=_die_with_parent)
        supervisor = _Supervisor(proc)
        next_refresh = 0.0
        startup_checked = settings.multi_model  # only single-model mode has a start-up model
        janitor = RefusalJanitor(layout.refused_dir, settings.host, settings.port) if settings.multi_model else None
        while True:
            if stop_signal:
                # Like the native engine: let in-flight requests finish (bounded) before stopping;
                # SageMaker sends SIGKILL 30 s after SIGTERM.
                grace = min(settings.timeout_s, DRAIN_LIMIT_S)
                log.info("signal %s: finishing in-flight requests (up to %.0f s), then stopping "
                         "multi-model-server", signal.Signals(stop_signal[0]).name, grace)
                if not drain(layout.busy_dir, grace):
                    log.warning("requests still running after %.0f s; stopping anyway", grace)
                supervisor.stop()
                return 0
            if supervisor.exited():
                code = supervisor.stop(grace_s=0)
                log.error("multi-model-server exited with code %s; stopping", code)
                return code if code else 1
            if layout.failure_file.exists():
                reason = layout.failure_file.read_text(errors="replace").strip() or "unknown reason"
                print(f"serve: the model in {settings.model_dir} failed to load: {reason}", file=sys.stderr)
                supervisor.stop()
                return 1
            if not startup_checked and layout.management_socket.exists():
                startup_checked, problem = check_startup_model(layout.management_socket)
                if problem:
                    print(f"serve: the model in {settings.model_dir} was not loaded: {problem}", file=sys.stderr)
                    supervisor.stop()
                    return 1
            if janitor is not None:
                janitor.poll()
            now = time.monotonic()
            if now >= next_refresh:
                supervisor.refresh()
                next_refresh = now + _TREE_REFRESH_S
            # Poll quickly while a 507 leftover may appear: a SageMaker retry follows within ~0.1 s.
            time.sleep(0.02 if janitor is not None and janitor.watching else 0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(layout.workdir, ignore_errors=True)
