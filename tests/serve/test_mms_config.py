"""SERVE_ENGINE=mms: configuration rendering and start-up checks (no Java needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serve.mms import config, supervisor, worker_env
from serve.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_properties_bind_both_apis_to_the_sagemaker_port_and_use_seconds():
    settings = Settings(port=18080, host="127.0.0.1", timeout_s=7.5, max_payload_mb=10)
    props = _props(config.render_properties(settings, workers=3, heap_mb=256))

    assert props["inference_address"] == "http://127.0.0.1:18080"
    assert props["management_address"] == props["inference_address"]
    # Seconds (7.5 rounded up, plus the backstop past the worker's own 504), never the minutes-valued
    # default_response_timeout.
    assert props["default_response_timeout_seconds"] == str(8 + config.TIMEOUT_BACKSTOP_S)
    assert "default_response_timeout" not in props
    assert props["max_request_size"] == props["max_response_size"] == str(10 * 1024 * 1024)
    assert props["default_workers_per_model"] == "3"
    assert props["default_service_handler"] == "serve.mms.service:handle"
    assert props["decode_input_request"] == "false"
    assert props["enable_envvars_config"] == "false"
    assert props["model_store"] == "/"
    assert props["vmargs"].split()[0] == "-Xmx256m"
    assert "UseParNewGC" not in props["vmargs"]  # Java 17 refuses it


def test_single_model_mode_keeps_the_models_api_off_the_port(tmp_path):
    socket = tmp_path / "management.sock"
    single = _props(config.render_properties(Settings(port=18080), workers=1, heap_mb=64,
                                                 management_socket=socket))
    assert single["inference_address"] == "http://0.0.0.0:18080"
    assert single["management_address"] == f"unix:{socket}"
    multi = _props(config.render_properties(Settings(port=18080, multi_model=True), workers=1, heap_mb=64,
                                            management_socket=socket))
    assert multi["management_address"] == multi["inference_address"] == "http://0.0.0.0:18080"


def test_module_paths_given_to_mms_resolve():
    """MMS finds servekit's code by module path (a moved module must not break that silently)."""
    import importlib

    module, _, function = config.SERVICE_HANDLER.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    shim = config.render_python_shim()
    assert "from serve.mms.backend import backend_main" in shim
    assert callable(importlib.import_module("serve.mms.backend").backend_main)


def test_worker_settings_round_trip_to_the_same_handler_options(monkeypatch):
    from serve.shared import handler_options

    settings = Settings(program="serve_me", submit_directory="/code", default_accept="text/csv",
                        install_requirements=False, timeout_s=7.5, memory_limit_mb=512, framework="sklearn")
    monkeypatch.setenv(worker_env.SETTINGS_ENV, worker_env.encode_worker_settings(settings))
    rebuilt = worker_env.worker_settings_from_env()
    assert handler_options(rebuilt) == handler_options(settings)
    assert (rebuilt.timeout_s, rebuilt.memory_limit_mb, rebuilt.log_level) == (7.5, 512, 20)
    monkeypatch.delenv(worker_env.SETTINGS_ENV)
    assert worker_env.worker_settings_from_env() == Settings()


def test_python_shim_runs_the_backend_entry_with_this_interpreter():
    shim = config.render_python_shim()
    assert shim.startswith("#!/bin/sh\n")
    assert sys.executable in shim and "backend_main" in shim and '"$@"' in shim


def test_payload_size_is_capped_at_what_a_java_int_holds():
    props = _props(config.render_properties(Settings(max_payload_mb=4096), workers=1, heap_mb=64))
    assert int(props["max_request_size"]) == 2**31 - 1


@pytest.mark.parametrize("port", [32767, 40000, 65535])
def test_ports_mms_cannot_bind_are_refused_with_the_variable_and_limit(port):
    with pytest.raises(SettingsError) as info:
        config.check_settings(Settings(port=port))
    message = str(info.value)
    assert f"SAGEMAKER_BIND_TO_PORT={port}" in message and "32767" in message
    assert "\n" not in message


def test_highest_allowed_port_passes():
    config.check_settings(Settings(port=32766))


def test_heap_follows_the_payload_and_is_capped_by_the_memory_limit():
    gib = 1024**3
    roomy = config.jvm_heap_mb(Settings(max_payload_mb=6), 16 * gib, cpus=2)
    assert roomy == int(128 + 3 * 2 * 6 * 1.2)
    bigger_payload = config.jvm_heap_mb(Settings(max_payload_mb=20), 16 * gib, cpus=2)
    assert bigger_payload > roomy
    # A 512 MiB container: at most a quarter for the Java front end.
    assert config.jvm_heap_mb(Settings(max_payload_mb=100), gib // 2, cpus=8) == 128
    # Never below what the JVM needs to start.
    assert config.jvm_heap_mb(Settings(), 64 * 1024 * 1024, cpus=1) == 64


def test_log_config_writes_to_stdout_only():
    text = config.render_log_config(20)
    assert "RollingFile" not in text and "fileName" not in text
    assert '<Logger name="ACCESS_LOG" level="warn"/>' in text
    assert '<Logger name="ACCESS_LOG" level="info"/>' in config.render_log_config(10)


def test_environment_is_private_and_carries_worker_settings(tmp_path):
    layout = config.MmsLayout.at(tmp_path)
    settings = Settings(framework="sklearn", program="serve_me.py", default_accept="text/csv")
    base = {"PATH": "/usr/bin", "MMS_CONFIG_FILE": "/etc/evil.properties", "PYTHONPATH": "/x"}
    env = config.mms_environment(settings, layout, base)

    assert env["TMPDIR"] == env["TEMP"] == str(tmp_path)  # private pid file and worker sockets
    assert "MMS_CONFIG_FILE" not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/x"]
    worker = json.loads(env[worker_env.SETTINGS_ENV])
    assert worker["program"] == "serve_me.py" and worker["default_accept"] == "text/csv"
    assert env[worker_env.FAILURE_FILE_ENV] == str(layout.failure_file)
    mme_env = config.mms_environment(Settings(multi_model=True), layout, base)
    assert worker_env.FAILURE_FILE_ENV not in mme_env


def test_single_model_command_registers_the_model_dir_under_the_name_model(tmp_path):
    layout = config.MmsLayout.at(tmp_path)
    cmd = config.mms_command(Settings(model_dir=str(tmp_path)), layout)
    assert "--foreground" in cmd
    assert cmd[-2:] == ["--models", f"model={tmp_path}"]
    assert "--models" not in config.mms_command(Settings(multi_model=True), layout)


def test_prepare_writes_nothing_outside_its_private_directory(tmp_path):
    settings = Settings(multi_model=True, port=20000, host="127.0.0.1")
    try:
        layout, _, _ = config.prepare(settings)
    except config.MmsUnavailable as exc:
        pytest.fail(f"prerequisite missing on this machine: {exc}")
    try:
        assert layout.workdir.name.startswith("servekit-mms-")
        assert oct(layout.workdir.stat().st_mode & 0o777) == "0o700"
        names = sorted(p.name for p in layout.workdir.iterdir())
        assert names == ["busy", "config.properties", "log4j2.xml", "python", "refused"]
    finally:
        import shutil

        shutil.rmtree(layout.workdir)


def test_missing_java_is_named_with_the_fix(tmp_path):
    with pytest.raises(config.MmsUnavailable, match="Java runtime"):
        config.find_java({"PATH": str(tmp_path)})


def test_run_refuses_a_high_port_in_one_line_and_starts_nothing(tmp_path):
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": "47613", "SAGEMAKER_MULTI_MODEL": "true",
           "PYTHONPATH": str(ROOT)}
    code = "import sys; from serve.settings import Settings; from serve.mms.engine import run; " \
           "sys.exit(run(Settings.from_env()))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SAGEMAKER_BIND_TO_PORT=47613" in lines[0] and "32767" in lines[0]
    assert "Traceback" not in proc.stderr


class _FakeManagementApi:
    """MMS's management API on a Unix socket, answering GET /models/model with a canned reply."""

    def __init__(self, path: Path, status: int, body: dict) -> None:
        import http.server
        import socketserver
        import threading

        reply = json.dumps(body).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.UnixStreamServer):
            def get_request(self):  # BaseHTTPRequestHandler wants a (host, port) client address
                request, _ = super().get_request()
                return request, ("local", 0)

        self.server = Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "body", "problem"), [
    (200, {"modelName": "model", "minWorkers": 2}, None),
    (200, {"modelName": "model", "minWorkers": 0}, "without workers"),
    (404, {"code": 404, "message": "Model not found: model"}, "did not register"),
])
def test_startup_check_catches_a_model_mms_did_not_register(tmp_path, status, body, problem):
    path = tmp_path / "m.sock"
    api = _FakeManagementApi(path, status, body)
    try:
        checked, found = supervisor.check_startup_model(path)
    finally:
        api.close()
    assert checked
    assert (found is None) if problem is None else (problem in found)


def test_startup_check_waits_while_the_management_api_does_not_answer(tmp_path):
    assert supervisor.check_startup_model(tmp_path / "absent.sock") == (False, None)


def test_refusal_janitor_removes_only_the_zero_worker_leftover(tmp_path):
    """After a 507 MMS leaves the model listed with minWorkers 0; the engine DELETEs exactly that."""
    import http.server
    import threading

    state = {"minWorkers": 1, "deletes": 0}

    class Api(http.server.BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if state["minWorkers"] is None:
                self._reply(404, {"code": 404})
            else:
                self._reply(200, {"modelName": "m", "minWorkers": state["minWorkers"]})

        def do_DELETE(self) -> None:  # noqa: N802
            state["deletes"] += 1
            state["minWorkers"] = None
            self._reply(200, {"status": "unregistered"})

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        janitor = supervisor.RefusalJanitor(tmp_path, "0.0.0.0", server.server_address[1])
        (tmp_path / "123-1").write_text("m")
        janitor.poll()  # MMS has not processed the 507 yet: the model still has its worker
        assert state["deletes"] == 0 and "m" in janitor.watching
        state["minWorkers"] = 0  # the leftover
        janitor.poll()
        assert state["deletes"] == 1 and not janitor.watching
        state["minWorkers"] = 0  # registered again, first worker starting: not watched any more
        janitor.poll()
        assert state["deletes"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_worker_settings_carry_the_log_level_from_either_name(monkeypatch):
    settings = Settings.from_env({"SAGEMAKER_TFS_NGINX_LOGLEVEL": "error"})
    monkeypatch.setenv(worker_env.SETTINGS_ENV, worker_env.encode_worker_settings(settings))
    assert worker_env.worker_settings_from_env().log_level == 40


def test_a_failing_worker_waits_until_its_log_lines_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """MMS stops reading a worker's pipes once it disconnects: the worker waits for them to drain."""
    import io
    import threading
    import time

    from serve.mms import service

    read_end, write_end = os.pipe()
    pipe = open(write_end, "w")  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stdout", pipe)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a pipe: no wait for it
    monkeypatch.setattr(service, "LOG_RELAY_WAIT_S", 5.0)
    try:
        pipe.write("loading model m failed: the reason\n")
        reader = threading.Timer(0.3, lambda: os.read(read_end, 4096))  # MMS reads 0.3 s later
        reader.start()
        started = time.monotonic()
        service._wait_for_log_relay()
        waited = time.monotonic() - started
        reader.join()
        assert 0.25 < waited < 4.0, waited  # until the line was read, not the whole deadline
        pipe.write("unread\n")
        monkeypatch.setattr(service, "LOG_RELAY_WAIT_S", 0.2)
        started = time.monotonic()
        service._wait_for_log_relay()  # nobody reads: bounded by the deadline
        assert 0.15 < time.monotonic() - started < 2.0
    finally:
        pipe.close()
        os.close(read_end)
