"""Run multi-model-server (``SERVE_ENGINE=mms``): prepare, start, supervise, stop.

Runs AWS's multi-model-server 1.1.11 (the Java front end AWS's CPU multi-model containers use) with
servekit's handlers inside its Python workers (``serve.mms.service``), so teams can choose the stack
they run today and benchmarks can put it beside the native engine in the same image. The
configuration is rendered by ``serve.mms.config``; the process tree is watched by
``serve.mms.supervisor``. When MMS dies on its own, this process stops what is left of the tree and
exits non-zero.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

from serve.mms.config import MmsLayout, MmsUnavailable, die_with_parent, prepare
from serve.mms.supervisor import RefusalJanitor, Supervisor, check_startup_model, drain
from serve.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: How often the supervisor refreshes its list of MMS's processes (a psutil walk from our child).
_TREE_REFRESH_S = 2.0
#: Poll interval of the supervising loop; shorter while a 507 leftover may appear, because
#: SageMaker's retry follows within about 0.1 s.
_POLL_S = 0.1
_POLL_AFTER_REFUSAL_S = 0.02


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
                                preexec_fn=die_with_parent)
        return MmsRun(settings, layout, Supervisor(proc)).until_stopped(stop_signal)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(layout.workdir, ignore_errors=True)


class MmsRun:
    """The supervising loop of one started MMS: what it watches and when it stops."""

    def __init__(self, settings: Settings, layout: MmsLayout, supervisor: Supervisor) -> None:
        self.settings = settings
        self.layout = layout
        self.supervisor = supervisor
        self.startup_checked = settings.multi_model  # only single-model mode has a start-up model
        self.janitor = (RefusalJanitor(layout.refused_dir, settings.host, settings.port)
                        if settings.multi_model else None)
        self.next_refresh = 0.0

    def until_stopped(self, stop_signal: list[int]) -> int:
        """Watch MMS until a signal arrives in ``stop_signal`` or it stops on its own; the exit code."""
        while True:
            if stop_signal:
                return self.stop_on_signal(stop_signal[0])
            code = self.exit_code()
            if code is not None:
                return code
            self.housekeeping()
            watching = self.janitor is not None and self.janitor.watching
            time.sleep(_POLL_AFTER_REFUSAL_S if watching else _POLL_S)

    def stop_on_signal(self, signum: int) -> int:
        """Like the native engine: let in-flight requests finish (bounded), then stop MMS; exit 0.
        SageMaker sends SIGKILL 30 s after SIGTERM."""
        grace = self.settings.drain_s
        log.info("signal %s: finishing in-flight requests (up to %.0f s), then stopping "
                 "multi-model-server", signal.Signals(signum).name, grace)
        if not drain(self.layout.busy_dir, grace):
            log.warning("requests still running after %.0f s; stopping anyway", grace)
        self.supervisor.stop()
        return 0

    def exit_code(self) -> int | None:
        """The exit code when MMS died or the single model cannot be served (MMS then stopped); None
        while all is well."""
        if self.supervisor.exited():
            code = self.supervisor.stop(grace_s=0)
            log.error("multi-model-server exited with code %s; stopping", code)
            return code if code else 1
        if self.layout.failure_file.exists():
            reason = self.layout.failure_file.read_text(errors="replace").strip() or "unknown reason"
            return self.fail(f"failed to load: {reason}")
        if not self.startup_checked and self.layout.management_socket.exists():
            self.startup_checked, problem = check_startup_model(self.layout.management_socket)
            if problem:
                return self.fail(f"was not loaded: {problem}")
        return None

    def fail(self, what: str) -> int:
        """Say why the single model cannot be served, stop MMS, and exit 1."""
        print(f"serve: the model in {self.settings.model_dir} {what}", file=sys.stderr)
        self.supervisor.stop()
        return 1

    def housekeeping(self) -> None:
        """Remove 507 leftovers and keep the list of MMS's processes fresh."""
        if self.janitor is not None:
            self.janitor.poll()
        now = time.monotonic()
        if now >= self.next_refresh:
            self.supervisor.refresh()
            self.next_refresh = now + _TREE_REFRESH_S
