"""The three serving images, built for real and run with Docker against SageMaker's container contracts.

Every container runs with ``--network host`` on a free loopback port (``SAGEMAKER_BIND_TO_PORT``,
``SERVE_HOST=127.0.0.1``), which is also SageMaker's multi-container mechanism.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.images.conftest import docker, ensure_image, image_name
from tests.images.models import BUILDERS, Artifact, numbers

pytestmark = pytest.mark.images

LABELS = (
    "com.amazonaws.sagemaker.capabilities.multi-models",
    "com.amazonaws.sagemaker.capabilities.accept-bind-to-port",
)

_artifacts: dict[tuple[str, str], Artifact] = {}


def artifact(factory: pytest.TempPathFactory, framework: str, name: str = "model", seed: int = 0) -> Artifact:
    """A trained model of ``framework`` (cached per session), in a directory of its own."""
    key = (framework, name)
    if key not in _artifacts:
        root = factory.mktemp(f"{framework}-{name}")
        root.chmod(0o755)  # the container reads it as root anyway; keep it readable for any user
        _artifacts[key] = BUILDERS[framework](root / name, seed)
    return _artifacts[key]


def assert_prediction(answer: httpx.Response, model: Artifact) -> None:
    assert answer.status_code == 200, f"{answer.status_code}: {answer.text[:500]}"
    got = numbers(answer.json())
    np.testing.assert_allclose(got, model.expected, rtol=1e-4, atol=1e-5)


def test_labels_entrypoint_and_metadata(image: str, framework: str) -> None:
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", image).stdout)
    labels = config.get("Labels") or {}
    for label in LABELS:
        assert labels.get(label) == "true", f"{image}: label {label} is {labels.get(label)!r}"
    assert config["Entrypoint"] == ["serve"], "exec-form ENTRYPOINT so SIGTERM reaches the server"
    assert "8080/tcp" in (config.get("ExposedPorts") or {})
    assert f"SERVE_FRAMEWORK={framework}" in config["Env"]
    assert config.get("User", "") in ("", "root", "0"), "SageMaker runs containers as root"


def test_no_cuda_libraries_and_no_wheels_left(image: str) -> None:
    # A CPU image must not carry CUDA (hundreds of MB, and a sign of the wrong torch/TF build);
    # a wheel bind-mounted during the build must not have stayed behind in a layer.
    found = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", image, "-c",
                   "find / -xdev \\( -name 'libcudart*' -o -name 'libcublas*' -o -name 'libcudnn*' "
                   "-o -name 'libnccl*' -o -name 'torch-*.whl' -o -name 'tensorflow*.whl' \\) -print "
                   "2>/dev/null; pip list 2>/dev/null | grep -i -E '^nvidia-' || true").stdout.strip()
    assert found == "", f"{image} contains CUDA libraries or leftover wheels:\n{found}"


def test_single_model_ping_and_invocations(image: str, framework: str, run_container: Any,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    model = artifact(tmp_path_factory, framework)
    container = run_container(image, mounts={model.path: "/opt/ml/model"})
    assert httpx.get(container.url + "/ping", timeout=10).status_code == 200
    answer = httpx.post(container.url + "/invocations", json=model.rows, timeout=60)
    assert_prediction(answer, model)


def multi_model_round_trip(container: Any, first: Artifact, second: Artifact, timeout: float = 60) -> None:
    """SageMaker's MME calls on a container started with SAGEMAKER_MULTI_MODEL=true and the two models
    mounted under /opt/ml/models: load both, list, invoke each, unload one (then 404), and SIGTERM with a
    model still loaded: its worker ends too and the server exits 0 within SageMaker's 30 s."""
    for name in ("first", "second"):
        loaded = httpx.post(container.url + "/models", timeout=2 * timeout,
                            json={"model_name": name, "url": f"/opt/ml/models/{name}"})
        assert loaded.status_code == 200, f"load {name}: {loaded.status_code} {loaded.text[:500]}"
    listed = httpx.get(container.url + "/models", timeout=timeout)
    assert listed.status_code == 200
    assert {m["modelName"] for m in listed.json()["models"]} == {"first", "second"}
    assert_prediction(httpx.post(container.url + "/models/first/invoke", json=first.rows, timeout=timeout), first)
    assert_prediction(httpx.post(container.url + "/models/second/invoke", json=second.rows, timeout=timeout), second)
    assert httpx.delete(container.url + "/models/first", timeout=timeout).status_code == 200
    assert httpx.post(container.url + "/models/first/invoke", json=first.rows, timeout=timeout).status_code == 404
    started = time.monotonic()
    docker("stop", "-t", "30", container.id, timeout=90)
    assert container.state()["ExitCode"] == 0, container.logs()
    assert time.monotonic() - started < 30


def test_multi_model_load_list_invoke_unload(image: str, framework: str, run_container: Any,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    first = artifact(tmp_path_factory, framework, "first", seed=1)
    second = artifact(tmp_path_factory, framework, "second", seed=2)
    container = run_container(image, env={"SAGEMAKER_MULTI_MODEL": "true"},
                              mounts={first.path: "/opt/ml/models/first", second.path: "/opt/ml/models/second"})
    multi_model_round_trip(container, first, second)


def test_sigterm_stops_within_30s_with_exit_code_0(image: str, framework: str, run_container: Any,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    model = artifact(tmp_path_factory, framework)
    container = run_container(image, mounts={model.path: "/opt/ml/model"})
    started = time.monotonic()
    docker("stop", "-t", "30", container.id, timeout=60)
    elapsed = time.monotonic() - started
    state = container.state()
    assert not state["Running"]
    # docker stop sends SIGKILL after 30 s: exit code 137 would mean SIGTERM was not honoured.
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}:\n{container.logs()}"
    assert elapsed < 30, f"took {elapsed:.1f} s to stop"


def test_misuse_train_is_refused_clearly(image: str) -> None:
    result = docker("run", "--rm", "--network", "host", image, "train", check=False, timeout=120)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    message = result.stderr
    assert "train" in message and "serve" in message, message
    assert "Traceback" not in message


def test_serve_help_lists_the_environment(image: str) -> None:
    result = docker("run", "--rm", "--network", "host", image, "serve", "--help", timeout=120)
    assert "SAGEMAKER_BIND_TO_PORT" in result.stdout
    assert "SAGEMAKER_MULTI_MODEL" in result.stdout


def test_mms_engine_serves_in_the_image(docker_engine: None, framework: str, run_container: Any,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The compatibility engine (multi-model-server on the image's jlinked JRE): single and multi-model."""
    image = ensure_image(framework)
    if image_name(framework).endswith("nomms"):
        pytest.skip(f"{image} was built without the compatibility engine (--no-mms)")
    model = artifact(tmp_path_factory, framework)
    container = run_container(image, env={"SERVE_ENGINE": "mms"}, mounts={model.path: "/opt/ml/model"})
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=60), model)
    container.remove()

    multi = run_container(image, env={"SERVE_ENGINE": "mms", "SAGEMAKER_MULTI_MODEL": "true"},
                          mounts={model.path: "/opt/ml/models/m1"})
    loaded = httpx.post(multi.url + "/models", json={"model_name": "m1", "url": "/opt/ml/models/m1"}, timeout=120)
    assert loaded.status_code == 200, f"{loaded.status_code}: {loaded.text[:500]}"
    assert_prediction(httpx.post(multi.url + "/models/m1/invoke", json=model.rows, timeout=60), model)
    started = time.monotonic()
    docker("stop", "-t", "30", multi.id, timeout=60)
    assert multi.state()["ExitCode"] == 0, multi.logs()
    assert time.monotonic() - started < 30
