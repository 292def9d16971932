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


def test_unknown_custom_handler_is_a_one_line_start_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "SERVE_FRAMEWORK": "no_such_module:Handler", "SERVE_MODEL_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "SERVE_FRAMEWORK" in done.stderr, done.stderr
