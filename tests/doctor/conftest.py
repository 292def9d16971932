"""Fixtures for the doctor's tests: a Docker engine, and the tiny test images of tests/doctor/images.

Without an engine the image tests skip loudly, or fail when SERVEKIT_REQUIRE_DOCKER=1 (CI), as
tests/images/conftest.py does. The test images are built once per session (seconds: each is
servekit/base plus one small layer) and removed at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.conftest import docker, require_docker_engine

IMAGES = Path(__file__).parent / "images"
PREFIX = "servekit-doctor-test"
#: Broken images built from flaw.Dockerfile, by server.py's DOCTOR_FLAW.
FLAWS = ("port", "ping_early", "load_fails", "slow_ping", "exit", "write_model", "models_404", "ignore_sigterm",
         "side_port", "no_507")
#: Images with a Dockerfile of their own.
DOCKERFILES = ("good", "shell-form", "no-mme-label", "oversize", "gpu-label")


def image_name(name: str) -> str:
    return f"{PREFIX}-{name.replace('_', '-')}:latest"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers, else a loud skip (a failure when SERVEKIT_REQUIRE_DOCKER=1)."""
    require_docker_engine("DOCTOR IMAGE TESTS")


def _build(tag: str, dockerfile: str, *args: str) -> None:
    docker("build", "--quiet", "--network", "host", "--tag", tag, "--file", str(IMAGES / dockerfile), *args,
           str(IMAGES), timeout=600)


@pytest.fixture(scope="session")
def test_images(docker_engine: None) -> Iterator[dict[str, str]]:
    """Every test image, built: name -> tag; removed after the session."""
    built: dict[str, str] = {}
    for name in DOCKERFILES:
        built[name] = image_name(name)
        _build(built[name], f"{name}.Dockerfile")
    for flaw in FLAWS:
        built[flaw] = image_name(flaw)
        _build(built[flaw], "flaw.Dockerfile", "--build-arg", f"FLAW={flaw}")
    built["arm64"] = image_name("arm64")
    _build(built["arm64"], "arm64.Dockerfile", "--platform", "linux/arm64")
    yield built
    docker("image", "rm", "--force", *built.values(), check=False, timeout=120)
