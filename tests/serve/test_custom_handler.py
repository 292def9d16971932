"""A custom handler named by SERVE_FRAMEWORK=module:Class, and the spawn fallback it asks for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from tests.support.server import run_server

REPO = Path(__file__).resolve().parents[2]


def test_custom_handler_that_is_not_fork_safe_runs_on_spawned_workers(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "scale.json").write_text(json.dumps({"factor": 3}))
    env = {"SERVE_FRAMEWORK": "tests.handlers.helpers:SpawnOnlyScaleHandler",
           "SERVE_MODEL_DIR": str(tmp_path / "model"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with run_server(env) as server:
        answer = httpx.post(server.url + "/invocations", json=[[1, 2]], timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [[3.0, 6.0]]
        assert "spawning fresh worker processes" in server.log()


def test_mme_switches_to_spawned_workers_when_a_forked_one_finds_a_hazard(tmp_path: Path) -> None:
    """The first load's worker (the spare forked ahead of it) reports the hazard; that load and every
    later one are served by spawned workers, and the switch is logged once."""
    for name, factor in [("a", 2), ("b", 5)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "scale.json").write_text(json.dumps({"factor": factor}))
    env = {"SERVE_FRAMEWORK": "tests.handlers.helpers:ForkHazardScaleHandler", "SAGEMAKER_MULTI_MODEL": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with run_server(env) as server:
        for name, factor in [("a", 2), ("b", 5)]:
            loaded = httpx.post(server.url + "/models", json={"model_name": name, "url": str(tmp_path / name)},
                                timeout=120)
            assert loaded.status_code == 200, loaded.text
            answer = httpx.post(f"{server.url}/models/{name}/invoke", json=[[1, 2]], timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json() == [[1.0 * factor, 2.0 * factor]]
        assert server.log().count("forking workers is unsafe (the test's hazard)") == 1, server.log()[-3000:]


def test_unknown_custom_handler_is_a_one_line_start_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "SERVE_FRAMEWORK": "no_such_module:Handler", "SERVE_MODEL_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "SERVE_FRAMEWORK" in done.stderr, done.stderr


def _scale_env(tmp_path: Path, framework: str, **extra: str) -> dict[str, str]:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "scale.json").write_text(json.dumps({"factor": 2}))
    return {"SERVE_FRAMEWORK": framework, "SERVE_MODEL_DIR": str(tmp_path / "model"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra}


def test_a_handlers_csv_defaults_answer_a_request_without_content_type_or_accept(tmp_path: Path) -> None:
    """As AWS's first-party algorithm containers do: no Content-Type reads CSV, no Accept answers CSV;
    the user's SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT still wins over the handler's default."""
    with run_server(_scale_env(tmp_path, "tests.handlers.helpers:CSVScaleHandler")) as server:
        # httpx sends no Content-Type for raw content and Accept */* by default.
        answer = httpx.post(server.url + "/invocations", content=b"1,2\n", timeout=60)
        assert answer.status_code == 200, answer.text
        assert (answer.text, answer.headers["content-type"]) == ("2.0,4.0\n", "text/csv; charset=utf-8")
    env = _scale_env(tmp_path, "tests.handlers.helpers:CSVScaleHandler",
                     SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="application/json")
    with run_server(env) as server:
        answer = httpx.post(server.url + "/invocations", content=b"1,2\n", timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [[2.0, 4.0]]


def test_a_default_accept_no_codec_can_answer_stops_the_start_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.server import free_port

    env = {**os.environ, **_scale_env(tmp_path, "tests.handlers.helpers:PngAnswering"),
           "SERVE_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    refusal = "PngAnswering.default_accept=image/png: the scale handler's codecs cannot answer it"
    assert done.stderr.count(refusal) == 1, done.stderr[-3000:]
