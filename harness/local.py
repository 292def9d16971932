"""``LocalSageMaker``: the harness as a context manager, serving on 127.0.0.1 from a thread.

    with LocalSageMaker(backend="process") as sm:
        client = boto3.client("sagemaker", endpoint_url=sm.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from harness.app import create_app
from harness.backends import make_backend
from harness.backends.base import Backend
from harness.config import HarnessConfig
from harness.core import Platform
from harness.state import remove_state_file, write_state_file


def listen_on_loopback(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: a free one).

    uvicorn serves on this very socket, so no other process can take the port between choosing it and
    serving on it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


class LocalSageMaker:
    """A running local SageMaker (control plane + runtime) and the containers it started."""

    def __init__(
        self,
        backend: str | Backend = "process",
        *,
        port: int = 0,
        state_dir: str | Path | None = None,
        backend_options: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        """``settings`` are HarnessConfig fields (region, startup_timeout_s, model_load_wait_s, ...)."""
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="servekit-"))
        self.backend = backend if isinstance(backend, Backend) else make_backend(backend, **(backend_options or {}))
        self.config = HarnessConfig(state_dir=self.state_dir.resolve(), **settings)
        self.platform = Platform(self.config, self.backend)
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    def start(self, timeout_s: float = 30.0) -> LocalSageMaker:
        """Start serving; returns once the server accepts connections."""
        sock = listen_on_loopback(self._port)
        port = sock.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{port}"
        app = create_app(self.platform, request_exit=self._request_exit)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="servekit-harness", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local harness did not start on {self.endpoint_url}")
            time.sleep(0.02)
        write_state_file(self.state_dir, self.endpoint_url, self.backend.name, self.config.token)
        return self

    def _request_exit(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def stop(self) -> None:
        """Stop every container, then the server."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=self.config.stop_grace_s + 120)
        remove_state_file(self.state_dir, self.endpoint_url)
        self._server = None
        self._thread = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def client(self, service: str, **options: Any) -> Any:
        """A boto3 client for ``sagemaker`` or ``sagemaker-runtime`` pointed here, with dummy credentials
        (the token as access key id when one is set); ``options`` go to ``boto3.client`` (``config=``)."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.config.region,
                            aws_access_key_id=self.config.token or "local", aws_secret_access_key="local",
                            **options)

    def __enter__(self) -> LocalSageMaker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
