"""build.sh's platform, GPU and user options: refusals (no Docker needed) and the multi-arch push.

A request build.sh cannot honour fails with one line naming it (exit 2 for misuse), before anything
is built; the multi-arch push is checked against a real registry (Debian's docker-registry on
127.0.0.1) with two one-file images labelled amd64 and arm64, so no emulation is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.images.conftest import REPO, docker
from tests.images.test_push import registry  # noqa: F401  (fixture)

MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def build_sh(*args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SERVEKIT_PULL_TIMEOUT_S="5", **extra_env)
    return subprocess.run([str(REPO / "build.sh"), *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("build.sh: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "words"), [
    (("build", "sklearn", "--platform", "linux/s390x"), ("unsupported platform linux/s390x",)),
    (("build", "sklearn", "--platform", "linux/arm64,windows/amd64"), ("unsupported platform windows/amd64",)),
    (("base", "--platform", "linux/amd64,linux/arm64"), ("one --platform",)),
    (("build", "sklearn", "--gpu"), ("scikit-learn has no GPU build",)),
    (("build", "--gpu", "--platform", "linux/arm64"), ("--gpu", "linux/amd64 only")),
    (("build", "pytorch", "--gpu", "--torch-wheels", "/tmp"), ("--gpu", "CUDA build")),
    (("build", "sklearn", "--user", "root"), ("non-root user name",)),
    (("build", "sklearn", "--user", "svc:0"), ("0 is root",)),
    (("build", "sklearn", "--user", "svc:abc"), ("UID must be a number",)),
    (("build", "sklearn", "tensorflow", "--platform", "linux/amd64,linux/arm64", "--base-image", "x:y"),
     ("one --platform at a time",)),
    (("build", "pytorch", "--no-mms", "--cross", "--platform", "linux/arm64"), ("--cross", "build pytorch without")),
    (("build", "sklearn", "--cross", "--platform", "linux/arm64"), ("--cross needs --no-mms", "sdist only")),
    (("build", "sklearn", "--no-mms", "--cross"), ("--cross is for another architecture",)),
    (("build", "--no-mms", "--cross", "--platform", "linux/arm64", "--dockerfile", "Dockerfile.sklearn", "--name", "x"),
     ("--cross", "not --dockerfile")),
    (("build", "pytorch", "--gpu", "--cross"), ("--cross and --gpu",)),
    (("base", "--extract"), ("--extract is for another architecture",)),
])
def test_misuse_is_refused_with_one_line_and_exit_2(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    result = build_sh(*args)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    line = one_error_line(result)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("args", [
    ("build", "sklearn", "--no-mms", "--cross", "--platform", "linux/arm64"),
    ("base", "--platform", "linux/arm64", "--extract"),
])
def test_cross_and_extract_refuse_a_host_python_other_than_the_images(args: tuple[str, ...], tmp_path: Path) -> None:
    # They byte-compile the target's Python files with servekit's venv; 3.12's .pyc would not load in 3.11.
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\necho 3.12\n")
    python.chmod(0o755)
    result = build_sh(*args, SERVEKIT_VENV=str(tmp_path))
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "Python 3.12" in line and "3.11" in line, line


def test_pytorch_arm64_without_a_cpu_wheel_source_is_refused_not_built(tmp_path: Path) -> None:
    # PyPI's own torch 2.13.0 for aarch64 is a CUDA build; without the CPU index or a local aarch64
    # CPU wheel the image must not be built at all (here the index is a closed loopback port).
    result = build_sh("build", "pytorch", "--platform", "linux/arm64",
                      "--torch-index-url", "http://127.0.0.1:9/whl/cpu", timeout=300)
    assert result.returncode != 0
    line = one_error_line(result)
    assert "linux/arm64" in line and "not building it" in line, line
    result = build_sh("build", "pytorch", "--platform", "linux/arm64", "--torch-wheels", str(tmp_path))
    assert result.returncode != 0
    line = one_error_line(result)
    assert "aarch64.whl" in line and "not building it" in line, line


def tiny_image(tmp_path: Path, name: str, arch: str) -> str:
    """A one-file image labelled linux/ARCH (nothing in it runs, so no emulation is needed).

    `docker import --platform` is ignored by engines without experimental features; a FROM scratch
    build for the platform labels the image correctly.
    """
    context = tmp_path / f"context-{arch}"
    context.mkdir()
    (context / "arch.txt").write_text(f"{arch} {time.time()}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY arch.txt /\n")
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    result = subprocess.run(["docker", "build", "-q", "--platform", f"linux/{arch}", "-t", name, str(context)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert docker("image", "inspect", "-f", "{{.Architecture}}", name).stdout.strip() == arch
    return name


@pytest.fixture
def two_arch_images(docker_engine: None, tmp_path: Path) -> Iterator[str]:
    """servekit-multiarchtest:PID-amd64 and -arm64 (one file each); yields servekit-multiarchtest:PID."""
    base = f"servekit-multiarchtest:{os.getpid()}"
    made = [tiny_image(tmp_path, f"{base}-{arch}", arch) for arch in ("amd64", "arm64")]
    try:
        yield base
    finally:
        for name in made:
            docker("rmi", name, check=False)


@pytest.mark.images
def test_push_platforms_makes_one_manifest_list(registry: str, two_arch_images: str) -> None:  # noqa: F811
    target = f"{registry}/servekit-multiarchtest:multi"
    pushed = build_sh("push", two_arch_images, "--to", target, "--platform", "linux/amd64,linux/arm64",
                      timeout=600)
    assert pushed.returncode == 0, pushed.stdout[-2000:] + pushed.stderr[-2000:]
    try:
        answer = httpx.get(f"http://{registry}/v2/servekit-multiarchtest/manifests/multi", timeout=10,
                           headers={"Accept": f"{MANIFEST_LIST}, {OCI_INDEX}"})
        assert answer.status_code == 200, answer.text
        index = answer.json()
        assert index["mediaType"] in (MANIFEST_LIST, OCI_INDEX), json.dumps(index)[:500]
        platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
        assert platforms == {("linux", "amd64"), ("linux", "arm64")}
        tags = httpx.get(f"http://{registry}/v2/servekit-multiarchtest/tags/list", timeout=10).json()["tags"]
        assert {"multi", "multi-amd64", "multi-arm64"} <= set(tags)
    finally:
        for suffix in ("-amd64", "-arm64"):
            docker("rmi", f"{target}{suffix}", check=False)


@pytest.mark.images
def test_push_platforms_refuses_a_missing_or_wrong_architecture(docker_engine: None, tmp_path: Path) -> None:
    base = f"servekit-multiarchtest:{os.getpid()}-wrong"
    # An amd64 image under the arm64 name: the push must refuse it, not publish it as arm64.
    made = [tiny_image(tmp_path, f"{base}-amd64", "amd64")]
    try:
        docker("tag", made[0], f"{base}-arm64")
        made.append(f"{base}-arm64")
        result = build_sh("push", base, "--to", "127.0.0.1:9/x:y", "--platform", "linux/amd64,linux/arm64")
        assert result.returncode != 0
        assert "is amd64, not arm64" in one_error_line(result)
        result = build_sh("push", f"{base}-none", "--to", "127.0.0.1:9/x:y", "--platform", "linux/arm64")
        assert result.returncode != 0
        assert "no local image" in one_error_line(result)
    finally:
        for name in made:
            docker("rmi", name, check=False)
