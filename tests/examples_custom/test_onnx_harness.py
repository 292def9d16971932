"""The ONNX Runtime example through the local SageMaker: single model, MME, Direct multi-container.

Process backend: the custom image name ``servekit-onnx`` is mapped to its handler
(``frameworks={"servekit-onnx": "onnx_handler:OnnxHandler"}``, the CLI's ``--image-framework``) and
the example directory is on PYTHONPATH -- exactly what the example image adds to servekit-sklearn
(its Dockerfile sets the same two variables), with this environment's onnxruntime.

Docker backend (marker ``images``): the example image itself, built from servekit-sklearn with
``./build.sh build --dockerfile examples/custom_framework/Dockerfile --name servekit-onnx``. Without a
Docker engine these tests are skipped loudly, unless SERVEKIT_REQUIRE_DOCKER=1 (CI): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.docker import docker_available
from harness.local import LocalSageMaker
from tests.examples_custom import scenarios
from tests.examples_custom.conftest import EXAMPLE_DIR, FRAMEWORK

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1"
#: The example image's name and the servekit image it is built from (the Dockerfile's BASE default).
CUSTOM_IMAGE = f"servekit-onnx:{os.environ.get('SERVEKIT_IMAGE_TAG', 'latest')}"
BASE_IMAGE = "servekit-sklearn:latest"

PROCESS_IMAGES = scenarios.Images(
    custom="123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-onnx:latest",
    sklearn="123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest",
)
DOCKER_IMAGES = scenarios.Images(custom=CUSTOM_IMAGE, sklearn=BASE_IMAGE)


# ---- process backend ------------------------------------------------------------------------------

@pytest.fixture
def process_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_path: Path) -> Iterator[LocalSageMaker]:
    # The serve subprocess inherits this environment: the handler module must be importable there.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(EXAMPLE_DIR), os.environ.get("PYTHONPATH"))
                                                     if p))
    with LocalSageMaker("process", state_dir=tmp_path / "state", startup_timeout_s=120, stop_grace_s=10,
                        backend_options={"frameworks": {"servekit-onnx": FRAMEWORK}}) as h:
        yield h


def test_process_single_model(process_harness, classifier, regressor):
    scenarios.single_model(process_harness, PROCESS_IMAGES, classifier, regressor)


def test_process_single_model_mms_engine(process_harness, classifier, regressor):
    """The same handler under multi-model-server (SERVE_ENGINE=mms), as the image offers it."""
    if shutil.which("java") is None or importlib.util.find_spec("mms") is None:
        pytest.skip("MMS ENGINE NOT TESTED: needs java and multi-model-server (pip install -e '.[mms]')")
    scenarios.single_model(process_harness, PROCESS_IMAGES, classifier, regressor, engine="mms", update=False)


def test_process_multi_model(process_harness, classifier, regressor, train_onnx, tmp_path):
    second = train_onnx.build_artifact(tmp_path / "c1", "classifier", seed=1)
    scenarios.multi_model(process_harness, PROCESS_IMAGES, [classifier, second, regressor], tmp_path / "mme")


def test_process_direct_beside_sklearn(process_harness, classifier, tmp_path):
    scenarios.direct_beside_sklearn(process_harness, PROCESS_IMAGES, classifier, tmp_path)


def test_process_bad_artifact_fails_the_endpoint(process_harness, tmp_path):
    scenarios.bad_artifact(process_harness, PROCESS_IMAGES, tmp_path)


# ---- docker backend: the real example image ------------------------------------------------------------

def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"SERVEKIT_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"CUSTOM FRAMEWORK IMAGE TESTS NOT RUN: {reason} (SERVEKIT_REQUIRE_DOCKER=1 makes this a failure)")


def _build(*args: str) -> None:
    command = [str(REPO / "build.sh"), "build", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed:\n{(result.stdout + result.stderr)[-4000:]}")


@pytest.fixture(scope="session")
def custom_image(example_path: Path) -> str:
    """The example image, (re)built from the current sources (cached layers make a rebuild seconds)."""
    if not docker_available():
        _missing("no Docker engine answers `docker info` (start one: bash .ci/setup-docker.sh)")
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False).returncode:
        _build("sklearn", "--tag", "latest")
    tag = CUSTOM_IMAGE.rpartition(":")[2]
    _build("--dockerfile", "examples/custom_framework/Dockerfile", "--name", "servekit-onnx", "--tag", tag)
    return CUSTOM_IMAGE


@pytest.fixture
def docker_harness(custom_image: str, tmp_path: Path) -> Iterator[LocalSageMaker]:
    with LocalSageMaker("docker", state_dir=tmp_path / "state", startup_timeout_s=180, stop_grace_s=10) as h:
        yield h


@pytest.mark.images
def test_image_labels_and_handler(custom_image):
    """The example image keeps servekit's labels and entrypoint and names the handler itself."""
    import json

    inspect = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config}}", custom_image],
                             capture_output=True, text=True, check=True)
    config: dict[str, Any] = json.loads(inspect.stdout)
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Entrypoint"] == ["serve"]
    assert f"SERVE_FRAMEWORK={FRAMEWORK}" in config["Env"]


@pytest.mark.images
def test_image_single_model(docker_harness, classifier, regressor):
    scenarios.single_model(docker_harness, DOCKER_IMAGES, classifier, regressor)


@pytest.mark.images
def test_image_single_model_mms_engine(docker_harness, classifier, regressor):
    scenarios.single_model(docker_harness, DOCKER_IMAGES, classifier, regressor, engine="mms", update=False)


@pytest.mark.images
def test_image_multi_model(docker_harness, classifier, regressor, train_onnx, tmp_path):
    second = train_onnx.build_artifact(tmp_path / "c1", "classifier", seed=1)
    scenarios.multi_model(docker_harness, DOCKER_IMAGES, [classifier, second, regressor], tmp_path / "mme")


@pytest.mark.images
def test_image_direct_beside_sklearn(docker_harness, classifier, tmp_path):
    scenarios.direct_beside_sklearn(docker_harness, DOCKER_IMAGES, classifier, tmp_path)


@pytest.mark.images
def test_image_bad_artifact_fails_the_endpoint(docker_harness, tmp_path):
    scenarios.bad_artifact(docker_harness, DOCKER_IMAGES, tmp_path)
