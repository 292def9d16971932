"""The scikit-learn image built to run as a non-root user (``./build.sh build sklearn --user servekit``).

For clusters that forbid root (Kubernetes ``runAsNonRoot``): the image's USER is a numeric uid, the
server serves single-model and multi-model from read-only mounts, writes only where that user may,
and can still pip-install a model's ``code/requirements.txt`` into the image's virtualenv.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.images.conftest import docker, ensure_image, image_tag
from tests.images.test_images import artifact, assert_prediction, multi_model_round_trip

pytestmark = pytest.mark.images

USER = "servekit"
UID = 1000


@pytest.fixture
def nonroot_image(docker_engine: None) -> str:
    """``servekit-sklearn:<tag>-nonroot``, built through build.sh when missing (cached: ~20 s)."""
    return ensure_image("sklearn", "--user", f"{USER}:{UID}", tag=f"{image_tag()}-nonroot")


def test_runs_as_a_numeric_non_root_user(nonroot_image: str) -> None:
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", nonroot_image).stdout)
    assert config["User"] == str(UID), "numeric, so Kubernetes' runAsNonRoot can verify it"
    ids = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", nonroot_image, "-c",
                 "id -u; id -un; test -w /opt/venv/lib/python3.11/site-packages && echo venv-writable; "
                 "test -w /tmp && echo tmp-writable; test -w /opt/ml || echo opt-ml-not-writable").stdout.split()
    assert ids == [str(UID), USER, "venv-writable", "tmp-writable", "opt-ml-not-writable"]


def test_nonroot_single_model(nonroot_image: str, run_container: Any,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    model = artifact(tmp_path_factory, "sklearn")
    container = run_container(nonroot_image, mounts={model.path: "/opt/ml/model"})
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=60), model)
    # Every process of the container (server and workers) runs as the user.
    top = docker("top", container.id, "-o", "pid,uid,args").stdout.splitlines()[1:]
    assert top and all(line.split()[1] == str(UID) for line in top), "\n".join(top)


def test_nonroot_multi_model(nonroot_image: str, run_container: Any,
                             tmp_path_factory: pytest.TempPathFactory) -> None:
    first = artifact(tmp_path_factory, "sklearn", "first", seed=1)
    second = artifact(tmp_path_factory, "sklearn", "second", seed=2)
    container = run_container(nonroot_image, env={"SAGEMAKER_MULTI_MODEL": "true"},
                              mounts={first.path: "/opt/ml/models/first", second.path: "/opt/ml/models/second"})
    multi_model_round_trip(container, first, second)


def test_nonroot_mms_engine(nonroot_image: str, run_container: Any,
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """multi-model-server writes its config, logs and sockets under the temp directory, not /."""
    if nonroot_image.split(":")[-1].startswith("latest-nomms") or "nomms" in image_tag():
        pytest.skip(f"{nonroot_image} was built without the compatibility engine (--no-mms)")
    model = artifact(tmp_path_factory, "sklearn")
    container = run_container(nonroot_image, env={"SERVE_ENGINE": "mms"}, mounts={model.path: "/opt/ml/model"})
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=60), model)
