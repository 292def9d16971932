"""Supervision of a running multi-model-server: its process tree, its start-up model, 507 leftovers
and in-flight requests.

MMS is started with ``--foreground`` as the engine's own child in a new process group; its Java
process and every Python worker are found from that PID (psutil children), never by scanning process
names. On SIGTERM/SIGINT the Java process gets SIGTERM, then every remaining process of the tree gets
SIGKILL (MMS's workers ignore SIGTERM, which is why they are orphaned otherwise).
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psutil

from serve.shared import SINGLE_MODEL_NAME

log = logging.getLogger(__name__)

#: Seconds the Java process gets to stop after SIGTERM before the whole tree is killed.
STOP_GRACE_S = 5.0


class Supervisor:
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
