"""The GPU images (``./build.sh build --gpu``), where they have been built: what can be checked without a GPU.

CI never builds them (their wheels are gigabytes), so these tests SKIP, saying so, unless
``servekit-<framework>:latest-gpu`` exists (``SERVEKIT_GPU_IMAGE_TAG`` names another tag). The CUDA
paths themselves need a GPU: ``python -m tests.gpu.gpu_check --image-tag latest-gpu``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from serve.accelerator import ACCELERATOR_LABEL
from tests.images.conftest import docker
from tests.images.test_images import artifact, assert_prediction

pytestmark = pytest.mark.images

CUDA_PROBE = {
    "pytorch": "import torch; print(torch.version.cuda is not None)",
    "tensorflow": "import tensorflow as tf; print(tf.test.is_built_with_cuda())",
}


@pytest.fixture(params=["pytorch", "tensorflow"])
def gpu_image(request: pytest.FixtureRequest, docker_engine: None) -> tuple[str, str]:
    framework = str(request.param)
    name = f"servekit-{framework}:{os.environ.get('SERVEKIT_GPU_IMAGE_TAG', 'latest-gpu')}"
    if docker("image", "inspect", name, check=False).returncode != 0:
        pytest.skip(f"GPU IMAGE TEST NOT RUN: {name} is not built "
                    f"(./build.sh build {framework} --gpu; CI never builds it)")
    return framework, name


def test_gpu_image_is_labelled_and_has_cuda(gpu_image: tuple[str, str]) -> None:
    framework, image = gpu_image
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["Labels"].get(ACCELERATOR_LABEL) == "gpu"
    assert "SERVEKIT_ACCELERATOR=gpu" in config["Env"]
    assert config["Entrypoint"] == ["serve"]
    built_with_cuda = docker("run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c",
                             CUDA_PROBE[framework], timeout=300).stdout.strip().splitlines()[-1]
    assert built_with_cuda == "True", f"{image}: the framework was not built with CUDA"


def test_gpu_image_without_a_gpu_still_serves_on_the_cpu(gpu_image: tuple[str, str], run_container: Any,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    framework, image = gpu_image
    model = artifact(tmp_path_factory, framework)
    container = run_container(image, mounts={model.path: "/opt/ml/model"})
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=120), model)
