"""Fixtures for the serve contract suite: the engine under test and tiny model artifacts.

Every contract test takes the ``engine`` fixture, so the same suite runs against the native engine
and the multi-model-server compatibility engine. Behaviour an engine cannot match is declared in
``KNOWN_DIFFERENCES`` with its reason and becomes an explicit expected failure (strict), never a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import SklearnArtifact, sklearn_artifact

ENGINES = ["native", "mms"]

#: (engine, test name) -> why that engine cannot pass it.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    reason = KNOWN_DIFFERENCES.get((name, request.node.originalname))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    return name


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> SklearnArtifact:
    return sklearn_artifact(tmp_path_factory.mktemp("iris") / "model")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path
