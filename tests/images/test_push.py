"""./build.sh push against a real registry: Debian's docker-registry on 127.0.0.1, started here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.images.conftest import REPO, docker
from tests.support.server import free_port, stop_process

pytestmark = pytest.mark.images


@pytest.fixture
def registry(docker_engine: None, tmp_path: Path) -> Iterator[str]:
    """A throwaway registry on a free loopback port (storage in tmp_path); yields HOST:PORT."""
    binary = shutil.which("docker-registry")
    if binary is None:
        message = "PUSH TEST NOT RUN: docker-registry is not installed (apt-get install docker-registry)"
        if os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    config = tmp_path / "registry.yml"
    # 127.0.0.0/8 registries are trusted over plain HTTP by the Docker engine: no TLS needed here.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()


@pytest.fixture
def small_image(docker_engine: None, tmp_path: Path) -> Iterator[str]:
    """A one-file image made here (seconds to push), or SERVEKIT_PUSH_TEST_IMAGE (e.g. servekit-sklearn).

    Pushing a real 0.9 GB serving image costs ~2.5 minutes of gzip on 2 cores and tests nothing more
    about ./build.sh push; set SERVEKIT_PUSH_TEST_IMAGE to push one anyway.
    """
    chosen = os.environ.get("SERVEKIT_PUSH_TEST_IMAGE")
    if chosen:
        if docker("image", "inspect", chosen, check=False).returncode != 0:
            pytest.fail(f"SERVEKIT_PUSH_TEST_IMAGE={chosen} does not exist (build it: ./build.sh build)")
        yield chosen
        return
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "hello.txt").write_text(f"servekit push test {time.time()}\n")
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    name = f"servekit-pushtest:{os.getpid()}"
    docker("import", "--change", "LABEL com.amazonaws.sagemaker.capabilities.multi-models=true",
           str(archive), name)
    try:
        yield name
    finally:
        docker("rmi", name, check=False)


def test_push_and_pull_back(registry: str, small_image: str) -> None:
    image = small_image
    repository = image.rsplit(":", 1)[0].split("/")[-1]
    target = f"{registry}/{repository}:pushtest"
    original_id = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    pushed = subprocess.run([str(REPO / "build.sh"), "push", image, "--to", target],
                            capture_output=True, text=True, timeout=600)
    assert pushed.returncode == 0, pushed.stdout[-2000:] + pushed.stderr[-2000:]
    tags = httpx.get(f"http://{registry}/v2/{repository}/tags/list", timeout=10).json()
    assert "pushtest" in tags["tags"]
    try:
        docker("rmi", target)
        assert docker("image", "inspect", target, check=False).returncode != 0
        docker("pull", target, timeout=600)
        assert docker("image", "inspect", "--format", "{{.Id}}", target).stdout.strip() == original_id
    finally:
        docker("rmi", target, check=False)
