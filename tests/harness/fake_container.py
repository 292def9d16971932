"""A stand-in serving container for harness tests: the SageMaker container contract, no framework.

Started by the harness's process backend in place of ``python -m serve``; configured by the same
platform variables plus FAKE_* switches so tests can make it misbehave on purpose:

* ``FAKE_EXIT=<code>``: exit at once; ``FAKE_PING_STATUS=<code>``: /ping answers that forever;
* ``FAKE_MAX_MODELS=<n>``: POST /models answers 507 when n models are loaded;
* ``FAKE_LOAD_DELAY_S=<s>``: POST /models takes that long;
* ``FAKE_OUTPUT_TYPE=<mime>``: Content-Type of /invocations answers;
* ``FAKE_EXECUTION_PARAMETERS=<json>``: GET /execution-parameters answers it (else 404);
* ``FAKE_BATCH=1``: /invocations answers one line per body line, the sum of the numbers in it (a
  JSON array or object, or CSV fields); a line containing ``fail`` makes the request answer 400.
  ``FAKE_BATCH_DELAY_S=<s>`` makes each request take that long. Each request logs
  ``batch-request records=N in_flight=K``.

Streaming (InvokeEndpointWithResponseStream), answered with ``Transfer-Encoding: chunked``, each chunk
flushed as written:

* ``stream:<n>``: n chunks ``part-<i>\n``, then the terminating empty chunk;
* ``stream-break:<n>``: n chunks, then the connection is closed without the terminating chunk;
* ``stream-gated:<seconds>``: chunk ``first\n``, then waits until ``POST /release`` (sent by the test
  once it holds the first part) or the deadline, then ``released\n`` or ``deadline\n`` and the end.
  A write that fails because the reader went away logs ``stream-reader-gone``.

A request body ``status:<code>:<text>`` makes the invocation answer ``<code>`` with ``<text>``;
``sleep:<seconds>`` answers 200 after that long (a request to be in flight when a test kills the
container). Any other body is answered with JSON describing what the container saw (body, headers, its model files).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOADED: dict[str, str] = {}
LOCK = threading.Lock()
IN_FLIGHT = [0]
RELEASE = threading.Event()


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    try:
        return [float(value)]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []


def _line_sum(line: str) -> str:
    stripped = line.strip()
    if stripped[:1] in ("[", "{"):
        numbers = _numbers(json.loads(stripped))
    else:
        numbers = _numbers(stripped.split(","))
    total = sum(numbers)
    return str(int(total)) if total == int(total) else str(total)


def _files(root: str) -> list[str]:
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write("fake-container: " + (fmt % args) + "\n")
        sys.stdout.flush()

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json(status, {"code": status, "type": kind, "message": message})

    def _chunked(self, chunks: list[bytes], *, end: bool = True) -> None:
        """A chunked 200 answer; without ``end`` the connection closes with no terminating chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self._chunk(chunk)
        if end:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True

    def _chunk(self, chunk: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.flush()

    def _gated(self, deadline_s: float) -> None:
        self._chunked([b"first\n"], end=False)
        self.close_connection = False
        released = RELEASE.wait(deadline_s)
        RELEASE.clear()
        try:
            self._chunk(b"released\n" if released else b"deadline\n")
            for _ in range(100):  # until the harness's closed connection makes a write fail
                self._chunk(b"more\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            print("fake-container: stream-reader-gone", flush=True)
            self.close_connection = True

    def _stream(self, body: bytes) -> bool:
        """The streaming answers; False when ``body`` asks for none."""
        command, _, argument = body.decode(errors="replace").partition(":")
        if command == "stream":
            self._chunked([b"part-%d\n" % i for i in range(int(argument))])
        elif command == "stream-break":
            self._chunked([b"part-%d\n" % i for i in range(int(argument))], end=False)
        elif command == "stream-gated":
            self._gated(float(argument))
        else:
            return False
        return True

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/execution-parameters" and os.environ.get("FAKE_EXECUTION_PARAMETERS"):
            self._send(200, os.environ["FAKE_EXECUTION_PARAMETERS"].encode())
        elif self.path == "/ping":
            status = int(os.environ.get("FAKE_PING_STATUS", "200"))
            self._send(status, b"", "text/plain")
        elif self.path.startswith("/models") and os.environ.get("SAGEMAKER_MULTI_MODEL") == "true":
            parts = self.path.split("?")[0].strip("/").split("/")
            with LOCK:
                if len(parts) == 1:
                    self._json(200, {"models": [{"modelName": n, "modelUrl": u} for n, u in sorted(LOADED.items())]})
                elif parts[1] in LOADED:
                    self._json(200, {"modelName": parts[1], "modelUrl": LOADED[parts[1]]})
                else:
                    self._error(404, "ModelNotFoundException", f"Model not found: {parts[1]}")
        else:
            self._error(404, "ResourceNotFoundException", f"no route {self.path}")

    def _batch(self, body: bytes) -> None:
        lines = body.decode().split("\n")
        with LOCK:
            IN_FLIGHT[0] += 1
            print(f"fake-container: batch-request records={len(lines)} in_flight={IN_FLIGHT[0]}", flush=True)
        try:
            time.sleep(float(os.environ.get("FAKE_BATCH_DELAY_S", "0")))
            if any("fail" in line for line in lines):
                self._send(400, b"bad record: fail", "text/plain")
                return
            answer = "\n".join(_line_sum(line) for line in lines)
            self._send(200, answer.encode(), os.environ.get("FAKE_OUTPUT_TYPE", "text/csv"))
        finally:
            with LOCK:
                IN_FLIGHT[0] -= 1

    def do_DELETE(self) -> None:  # noqa: N802
        name = self.path.strip("/").split("/")[-1]
        with LOCK:
            if LOADED.pop(name, None) is None:
                self._error(404, "ModelNotFoundException", f"Model not found: {name}")
                return
        self._json(200, {"status": f'Model "{name}" unregistered'})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path == "/release":
            RELEASE.set()
            self._send(200, b"released", "text/plain")
            return
        if self.path == "/models":
            request = json.loads(body)
            name, url = request["model_name"], request["url"]
            delay = float(os.environ.get("FAKE_LOAD_DELAY_S", "0"))
            if delay:
                time.sleep(delay)
            with LOCK:
                if name in LOADED:
                    self._error(409, "ConflictStatusException", f"Model {name} is already loaded")
                    return
                limit = int(os.environ.get("FAKE_MAX_MODELS", "1000"))
                if len(LOADED) >= limit:
                    self._error(507, "InsufficientStorage", "no memory left for another model")
                    return
                if not Path(url).is_dir():
                    self._error(400, "BadRequest", f"{url} is not a directory")
                    return
                LOADED[name] = url
            self._json(200, {"status": f'Model "{name}" registered'})
            return
        if self.path == "/invocations" or (self.path.startswith("/models/") and self.path.endswith("/invoke")):
            model_dir = os.environ.get("SERVE_MODEL_DIR", "")
            if self.path.startswith("/models/"):
                name = self.path.split("/")[2]
                with LOCK:
                    if name not in LOADED:
                        self._error(404, "ModelNotFoundException", f"Model not found: {name}")
                        return
                    model_dir = LOADED[name]
            if os.environ.get("FAKE_BATCH") == "1":
                self._batch(body)
                return
            if self._stream(body):
                return
            if body.startswith(b"sleep:"):
                time.sleep(float(body.decode().split(":", 1)[1]))
                self._send(200, b"slept", "text/plain")
                return
            if body.startswith(b"status:"):
                _, code, text = body.decode().split(":", 2)
                self._send(int(code), text.encode(), "text/plain")
                return
            seen = {
                "body": body.decode("utf-8", errors="replace"),
                "content_type": self.headers.get("Content-Type"),
                "accept": self.headers.get("Accept"),
                "target_model": self.headers.get("X-Amzn-SageMaker-Target-Model"),
                "custom_attributes": self.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
                "port": os.environ.get("SAGEMAKER_BIND_TO_PORT"),
                "safe_range": os.environ.get("SAGEMAKER_SAFE_PORT_RANGE"),
                "user_env": os.environ.get("USER_SETTING"),
                "files": _files(model_dir),
            }
            extra = {}
            attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if attributes:
                extra["X-Amzn-SageMaker-Custom-Attributes"] = "seen=" + attributes
            self._send(200, json.dumps(seen).encode(), os.environ.get("FAKE_OUTPUT_TYPE", "application/json"), extra)
            return
        self._error(404, "ResourceNotFoundException", f"no route {self.path}")


def main() -> None:
    if os.environ.get("FAKE_EXIT"):
        print("fake-container: exiting on purpose", flush=True)
        sys.exit(int(os.environ["FAKE_EXIT"]))
    host = os.environ.get("SERVE_HOST", "127.0.0.1")
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    batch = {k: v for k, v in sorted(os.environ.items()) if k.startswith("SAGEMAKER_BATCH") or k in (
        "SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "USER_SETTING")}
    print(f"fake-container: listening on {host}:{port} environment={json.dumps(batch)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
