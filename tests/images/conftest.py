"""Fixtures for the image tests: a Docker engine, the three built images, containers on free ports.

Images: the tests use ``servekit-<framework>:<tag>`` (tag from ``SERVEKIT_IMAGE_TAG``, default
``latest``). CI builds them first with ``./build.sh build all``; a missing image is built here with
the same command (minutes), so ``pytest tests/images`` also works on its own.

Without a Docker engine every test that needs one is skipped with a loud reason, unless
``SERVEKIT_REQUIRE_DOCKER=1`` (set by CI): then they fail, so CI can never pass without running them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import free_port

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("sklearn", "pytorch", "tensorflow")
READY_TIMEOUT_S = 120.0


def image_tag() -> str:
    """The tag of the images under test."""
    return os.environ.get("SERVEKIT_IMAGE_TAG", "latest")


def image_name(framework: str) -> str:
    """``servekit-<framework>:<tag>``."""
    return f"servekit-{framework}:{image_tag()}"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; on failure with ``check`` raise AssertionError carrying its stderr."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if result.returncode != 0:
        return f"no Docker engine answers: {result.stderr.strip()[:300]}"
    return None


def require_docker_engine(what: str) -> None:
    """Return when a Docker engine answers; else skip loudly naming ``what`` was not run, or fail
    when CI demands Docker (SERVEKIT_REQUIRE_DOCKER=1)."""
    problem = _engine_problem()
    if problem is None:
        return
    message = (f"{what} NOT RUN: {problem}. Start an engine with `bash .ci/setup-docker.sh` "
               "(SERVEKIT_REQUIRE_DOCKER=1 turns this skip into a failure)")
    if os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers, else a loud skip (or a failure when CI demands Docker)."""
    require_docker_engine("IMAGE TESTS")


_built: dict[str, str] = {}


def ensure_image(framework: str, *build_options: str, tag: str | None = None) -> str:
    """``servekit-<framework>:<tag>`` (default: the tag under test), built once per session with
    ``./build.sh build FRAMEWORK --tag TAG BUILD_OPTIONS`` when missing."""
    tag = tag or image_tag()
    name = f"servekit-{framework}:{tag}"
    if name in _built:
        return name
    if docker("image", "inspect", name, check=False).returncode != 0:
        args = [str(REPO / "build.sh"), "build", framework, "--tag", tag, *build_options]
        if image_tag().endswith("nomms"):
            args.append("--no-mms")
        result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-4000:]
            pytest.fail(f"image {name} is missing and `{' '.join(args)}` failed:\n{tail}")
    _built[name] = name
    return name


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    """Each framework in turn."""
    return str(request.param)


@pytest.fixture
def image(docker_engine: None, framework: str) -> str:
    """The built image of the current framework."""
    return ensure_image(framework)


@dataclass
class Container:
    """A container started by a test, listening on 127.0.0.1:``port`` (host network)."""

    id: str
    port: int
    image: str
    removed: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        out = docker("inspect", "--format", "{{json .State}}", self.id).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def logs(self) -> str:
        result = docker("logs", "--tail", "80", self.id, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll GET /ping until 200, failing early (with the logs) if the container exits."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(self.url + "/ping", timeout=2)
                if answer.status_code == 200:
                    return
                last = f"/ping answered {answer.status_code}"
            except httpx.HTTPError as exc:
                last = f"/ping: {type(exc).__name__}"
            if not self.state().get("Running"):
                raise AssertionError(f"container of {self.image} exited before /ping answered:\n{self.logs()}")
            time.sleep(0.25)
        raise AssertionError(f"{self.image} not ready within {timeout:.0f} s ({last}):\n{self.logs()}")

    def remove(self) -> None:
        if not self.removed:
            docker("rm", "-f", self.id, check=False, timeout=60)
            self.removed = True


@pytest.fixture
def run_container(docker_engine: None) -> Iterator[Any]:
    """Start containers with ``--network host`` on a free port; every one is removed afterwards."""
    started: list[Container] = []

    def start(image: str, env: dict[str, str] | None = None, mounts: dict[Path, str] | None = None,
              args: tuple[str, ...] = ("serve",), wait: bool = True) -> Container:
        # multi-model-server only accepts ports below 32767.
        port = free_port()  # below 32767, which multi-model-server requires
        command = ["run", "-d", "--network", "host", "--name", f"servekit-test-{uuid.uuid4().hex[:10]}",
                   "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SERVE_HOST=127.0.0.1"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        for source, target in (mounts or {}).items():
            command += ["-v", f"{source}:{target}:ro"]
        container = Container(docker(*command, image, *args).stdout.strip(), port, image)
        started.append(container)
        if wait:
            container.wait_ready()
        return container

    yield start
    for container in started:
        container.remove()
