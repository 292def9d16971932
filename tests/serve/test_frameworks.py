"""PyTorch and TensorFlow through the real server: single-model (also with SERVE_PREFORK) and
multi-model, both engines.

TensorFlow matters most here: its workers are forked after the fork parent imported it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serve.conftest import engine_env
from tests.support.models import TensorArtifact, tensorflow_artifact, torch_artifact
from tests.support.server import run_server

BUILDERS: dict[str, Callable[..., TensorArtifact]] = {"pytorch": torch_artifact, "tensorflow": tensorflow_artifact}


def predictions(answer: httpx.Response) -> list[list[float]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["predictions"] if isinstance(body, dict) else body


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_single_model(single_model_engine: str, framework: str, tmp_path: Path) -> None:
    artifact = BUILDERS[framework](tmp_path / "model")
    env = {**engine_env(single_model_engine), "SERVE_FRAMEWORK": framework, "SERVE_MODEL_DIR": str(artifact.path)}
    with run_server(env) as server:
        answer = httpx.post(server.url + "/invocations", json={"instances": artifact.rows}, timeout=60)
        np.testing.assert_allclose(predictions(answer), artifact.expected, atol=1e-5)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_multi_model(engine: str, framework: str, tmp_path: Path) -> None:
    artifacts = [BUILDERS[framework](tmp_path / f"m{i}" / "model", seed=i) for i in range(2)]
    env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": framework, "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server:
        for i, artifact in enumerate(artifacts):
            loaded = httpx.post(server.url + "/models", json={"model_name": f"m{i}", "url": str(artifact.path)},
                                timeout=120)
            assert loaded.status_code == 200, loaded.text
        for i, artifact in enumerate(artifacts):
            answer = httpx.post(server.url + f"/models/m{i}/invoke", json=artifact.rows, timeout=60)
            np.testing.assert_allclose(predictions(answer), artifact.expected, atol=1e-5)
        assert not np.allclose(artifacts[0].expected, artifacts[1].expected, atol=1e-3)
        for i in range(2):
            assert httpx.delete(server.url + f"/models/m{i}", timeout=60).status_code == 200
