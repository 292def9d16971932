"""Shared helpers for harness tests: a harness with a stand-in container, boto3 clients, archives."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from harness.backends.docker import docker_available
from harness.backends.process import ProcessBackend
from harness.local import LocalSageMaker

FAKE_CONTAINER = Path(__file__).with_name("fake_container.py")
IMAGE = "servekit-sklearn:latest"


def boto_clients(url: str, **config: Any) -> tuple[Any, Any]:
    """(sagemaker, sagemaker-runtime) clients exactly as a user makes them, pointed at ``url``."""
    kwargs: dict[str, Any] = dict(
        region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    if config:
        kwargs["config"] = Config(**config)
    return boto3.client("sagemaker", **kwargs), boto3.client("sagemaker-runtime", **kwargs)


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    """Write a model.tar.gz holding ``files`` (name -> content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def tar_dir(directory: Path, archive: Path) -> Path:
    """A model.tar.gz of everything under ``directory``."""
    files = {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    return make_tar(archive, files)


def missing_prerequisite(reason: str) -> None:
    """Skip loudly, or fail under SERVEKIT_REQUIRE_DOCKER=1 (CI, where the images must be there)."""
    if os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1":
        pytest.fail(f"SERVEKIT_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason} (set SERVEKIT_REQUIRE_DOCKER=1 to make this a failure)")


def require_images(harness: LocalSageMaker, *images: str) -> None:
    """With the docker backend, every image must exist in the engine (nothing is pulled)."""
    if harness.backend.name != "docker":
        return
    for image in images:
        try:
            harness.backend.resolve_image(image)  # type: ignore[attr-defined]
        except ValueError:
            missing_prerequisite(f"image {image} is not built (./build.sh)")


def container_pid(runtime: Any) -> int:
    """Host PID of a container's main process (a process-backend child or a docker container's init)."""
    running = runtime.running
    if hasattr(running, "container_id"):
        out = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", running.container_id],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip())
    return int(running.process.pid)


def wait_in_service(sm: Any, name: str, attempts: int = 1200) -> None:
    """The endpoint_in_service waiter, polling fast; a failure says the endpoint's FailureReason."""
    from botocore.exceptions import WaiterError

    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name,
                                                  WaiterConfig={"Delay": 0.25, "MaxAttempts": attempts})
    except WaiterError as exc:
        described = exc.last_response or {}
        raise WaiterError(name=exc.kwargs.get("name"), reason=f"{exc.kwargs.get('reason')}; FailureReason: "
                          f"{described.get('FailureReason')}", last_response=described) from None


def deploy(sm: Any, name: str, *, instance_count: int = 1, wait: bool = True, **model: Any) -> None:
    """CreateModel + CreateEndpointConfig + CreateEndpoint (+ waiter), all called ``name``."""
    sm.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole", **model)
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": instance_count}],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        wait_in_service(sm, name)


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.images)])
def serve_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalSageMaker]:
    """A harness running the real servekit containers: the process backend, and the docker backend
    with the real images (marker ``images``)."""
    if request.param == "docker" and not docker_available():
        missing_prerequisite("no Docker engine answers `docker info`")
    with LocalSageMaker(request.param, state_dir=tmp_path / "state", startup_timeout_s=180,
                        stop_grace_s=10) as harness:
        yield harness


@pytest.fixture
def fake_harness(tmp_path: Path) -> Iterator[LocalSageMaker]:
    """A process-backend harness whose containers are the stand-in in fake_container.py."""
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        health_check_interval_s=0.5) as harness:
        yield harness


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[str]:
    """A moto S3 server on a free loopback port (started as a subprocess, stopped by its PID)."""
    import shutil
    import subprocess
    import time

    import httpx

    from harness.backends.base import free_port
    from tests.support.server import stop_process

    executable = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "moto.log").read_text()
            try:
                if httpx.get(url + "/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "moto_server did not start within 30 s"
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)
        log.close()


@pytest.fixture
def s3(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 S3 client on moto with bucket ``data``; the harness finds the same S3 through the environment."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="data")
    return client
