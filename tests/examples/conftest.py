"""Fixtures for the example tests: the churn artifacts (trained once per session) and a harness per backend.

Backends: ``process`` always; ``docker`` with the real images, marked ``images``. Without a Docker
engine or the images the docker cases are skipped with a loud reason, unless
SERVEKIT_REQUIRE_DOCKER=1 (CI), where a missing prerequisite is a failure -- as in tests/harness.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.backends.docker import docker_available
from harness.local import LocalSageMaker

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REQUIRED = os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1"
IMAGES = ("servekit-sklearn:latest", "servekit-tensorflow:latest")
BACKENDS = [pytest.param("process", id="process"),
            pytest.param("docker", id="docker", marks=pytest.mark.images)]


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"SERVEKIT_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason} (set SERVEKIT_REQUIRE_DOCKER=1 to make this a failure)")


def need_images() -> None:
    """A Docker engine and both images, else a loud skip (a failure under SERVEKIT_REQUIRE_DOCKER=1)."""
    if not docker_available():
        _missing("no Docker engine answers `docker info`")
    for image in IMAGES:
        probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
        if probe.returncode != 0:
            _missing(f"image {image} is not built (./build.sh build sklearn tensorflow)")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The preprocessor, the Keras model and three MME models, with their artifacts (once per session)."""
    pytest.importorskip("keras", reason="TensorFlow is not installed: pip install -e '.[tensorflow]'")
    pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install -e '.[sklearn]'")
    from examples.sklearn_tf_pipeline.train import train

    # Fewer rows and epochs than the demo: the tests compare served and in-process answers of the
    # same fitted objects, so model quality does not matter, only that it is a real trained model.
    return train(tmp_path_factory.mktemp("churn"), rows=1500, epochs=3)


@pytest.fixture(scope="module", params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSageMaker]:
    """A local SageMaker on each backend (the docker one only with the real images)."""
    backend = str(request.param)
    if backend == "docker":
        need_images()
    state = tmp_path_factory.mktemp(f"state-{backend}")
    with LocalSageMaker(backend, state_dir=state, startup_timeout_s=240, stop_grace_s=10) as h:
        yield h


def expected_probabilities(trained: Any, rows: list[list[Any]]) -> np.ndarray:
    """``model.predict(preprocessor.transform(rows))`` in this process: the reference answer."""
    from examples.sklearn_tf_pipeline.serving import churn_schema

    features = trained.preprocessor.transform(churn_schema.parse_rows(rows))
    return np.asarray(trained.model.predict(features.astype(np.float32), verbose=0)[:, 0], dtype=np.float64)


def artifact_path(path: Path) -> str:
    """ModelDataUrl for a local artifact (the harness takes absolute paths)."""
    return str(path.resolve())
