"""A tiny SageMaker serving container for the doctor's tests: correct, except for the one flaw that
DOCTOR_FLAW names (each broken test image sets it; see the Dockerfiles beside this file).

Flaws: port (hard-coded port), ping_early (/ping 200 before the model loads), load_fails (the
handler fails at load, /ping still 200), slow_ping (/ping takes 2.5 s), exit (exits at start),
write_model (writes into /opt/ml/model), models_404 (GET /models answers 404), ignore_sigterm
(SIGTERM ignored), side_port (also listens on a port outside SAGEMAKER_SAFE_PORT_RANGE), no_507
(loads until the OOM killer comes instead of answering 507).

DOCTOR_MODEL_MB (default 0) makes each MME load hold that much memory, for the doctor's --check-oom.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAW = os.environ.get("DOCTOR_FLAW", "")
HARD_CODED_PORT = 19080
SIDE_PORT = 19081
LOAD_SECONDS = 3.0
MODEL_BYTES = int(os.environ.get("DOCTOR_MODEL_MB", "0")) * 2**20
loaded = threading.Event()
models = {}
memory = []  # what loaded models hold


def _cgroup(*names):
    for name in names:
        try:
            text = open(name).read().strip()
        except OSError:
            continue
        return int(text) if text.isdigit() else None
    return None


def room_for_a_model():
    """Whether one more model fits in 90% of the container's memory limit."""
    limit = _cgroup("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    used = _cgroup("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")
    return limit is None or used is None or used + MODEL_BYTES <= 0.9 * limit


def load_model():
    if FLAW == "ping_early":
        time.sleep(LOAD_SECONDS)
    if FLAW != "load_fails":
        loaded.set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path == "/ping":
            if FLAW == "slow_ping":
                time.sleep(2.5)
            return self.reply(200)
        if self.path == "/models":
            if FLAW == "models_404":
                return self.reply(404, {"message": "no such route"})
            return self.reply(200, {"models": [{"modelName": n, "modelUrl": u} for n, u in sorted(models.items())]})
        name = self.path.removeprefix("/models/")
        if name in models:
            return self.reply(200, {"modelName": name, "modelUrl": models[name]})
        self.reply(404, {"message": f"model {name} is not loaded"})

    def do_POST(self):
        data = self.body()
        if self.path == "/invocations":
            if not loaded.is_set():
                status = 500 if FLAW == "load_fails" else 503
                return self.reply(status, {"message": "model failed to load" if status == 500 else "loading"})
            return self.reply(200, {"bytes": len(data)})
        if self.path == "/models":
            request = json.loads(data)
            if request["model_name"] in models:
                return self.reply(409, {"message": "already loaded"})
            if FLAW != "no_507" and not room_for_a_model():
                return self.reply(507, {"message": "not enough memory to load the model"})
            memory.append(b"\x01" * MODEL_BYTES)
            models[request["model_name"]] = request["url"]
            return self.reply(200, {"status": "loaded"})
        name = self.path.removeprefix("/models/").removesuffix("/invoke")
        if name in models:
            return self.reply(200, {"bytes": len(data)})
        self.reply(404, {"message": f"model {name} is not loaded"})

    def do_DELETE(self):
        name = self.path.removeprefix("/models/")
        if models.pop(name, None) is None:
            return self.reply(404, {"message": f"model {name} is not loaded"})
        self.reply(200, {"status": "unloaded"})

    def log_message(self, format, *args):
        pass


def main():
    if FLAW == "exit":
        sys.exit("fatal: cannot find the model configuration")
    if FLAW == "write_model":
        with open("/opt/ml/model/compiled.cache", "w") as cache:
            cache.write("compiled")
    port = HARD_CODED_PORT if FLAW == "port" else int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("SERVE_HOST", "0.0.0.0"), port), Handler)
    if FLAW == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if FLAW == "side_port":  # a metrics listener on a fixed port
        side = ThreadingHTTPServer((os.environ.get("SERVE_HOST", "0.0.0.0"), SIDE_PORT), Handler)
        threading.Thread(target=side.serve_forever, daemon=True).start()
    threading.Thread(target=load_model, daemon=True).start()
    if FLAW not in ("ping_early", "load_fails"):
        loaded.wait()  # a correct server answers only once its model is loaded
    server.serve_forever()


if __name__ == "__main__":
    main()
