"""The SageMaker Python SDK, v2 and v3, driving ``servekit local up`` with moto S3/STS, on both backends:
``process`` (``serve`` subprocesses) and ``docker`` (the real images, tagged with the ECR-style names the
scripts use; a missing engine or image skips loudly, or fails under CI like the image tests).

Each SDK lives in its own virtualenv (``.venv-sdk2``, ``.venv-sdk3``, made by ``.ci/setup-sdk.sh``);
the tests here run in the project's ``.venv`` and execute the user scripts in ``scripts/`` with the SDK
venv's interpreter. The scripts know nothing about servekit: boto3 finds the harness and moto through
``AWS_ENDPOINT_URL_*``. Each script prints ``RESULT <json>`` last; the tests assert on that.

A missing SDK venv skips loudly, or fails under ``SERVEKIT_REQUIRE_DOCKER=1`` / ``SERVEKIT_REQUIRE_SDK=1``
(CI), like the image tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import boto3
import httpx
import pytest

from harness.state import read_state_file
from tests.support.server import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).with_name("scripts")
CODE = Path(__file__).with_name("code")
BUCKET = "servekit-sdk-tests"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
SCRIPT_TIMEOUT_S = 600
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
FRAMEWORKS = ("sklearn", "pytorch", "tensorflow")
BACKENDS = ("process", "docker")
#: Imports the SDK and prints its version (v3 has no ``sagemaker.__version__``).
PROBE = "import importlib.metadata, sagemaker; print(importlib.metadata.version('sagemaker'))"


def sdk_venv(major: int) -> Path:
    """Where ``.ci/setup-sdk.sh`` puts SDK ``major``'s virtualenv."""
    root = Path(os.environ.get("SERVEKIT_SDK_VENV_DIR", REPO))
    return root / f".venv-sdk{major}"


def missing_prerequisite(reason: str) -> NoReturn:
    """Skip loudly, or fail when CI demands every test layer."""
    if "1" in (os.environ.get("SERVEKIT_REQUIRE_DOCKER"), os.environ.get("SERVEKIT_REQUIRE_SDK")):
        pytest.fail(f"SERVEKIT_REQUIRE_DOCKER/SERVEKIT_REQUIRE_SDK=1 but {reason}")
    pytest.skip(f"SDK TESTS NOT RUN: {reason} (set SERVEKIT_REQUIRE_SDK=1 to make this a failure)")


_checked: dict[int, str] = {}


def image_uri(framework: str) -> str:
    """The image URI the scripts deploy, as a user's ECR push names it."""
    return f"{REGISTRY}/servekit-{framework}:latest"


def tag_local_images() -> None:
    """Give ``./build.sh build``'s images the ECR-style names, so the docker backend runs them (the
    names are removed again by ``untag_local_images``: a name left behind would keep pointing at this
    build after the next ``./build.sh build``, and the harness runs an exact name before a local one)."""
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing_prerequisite(f"no Docker engine answers ({exc}); start one with `bash .ci/setup-docker.sh`")
    if info.returncode != 0:
        missing_prerequisite(f"no Docker engine answers ({info.stderr.strip()[:200]})")
    for framework in FRAMEWORKS:
        local = f"servekit-{framework}:latest"
        tagged = subprocess.run(["docker", "tag", local, image_uri(framework)],
                                capture_output=True, text=True, timeout=60, check=False)
        if tagged.returncode != 0:
            missing_prerequisite(f"image {local} is missing ({tagged.stderr.strip()[:200]}); `./build.sh build all`")


def untag_local_images() -> None:
    """Remove the ECR-style names ``tag_local_images`` added (only the names: the images stay)."""
    for framework in FRAMEWORKS:
        subprocess.run(["docker", "image", "rm", image_uri(framework)],
                       capture_output=True, text=True, timeout=60, check=False)


def sdk_python(major: int) -> str:
    """The interpreter of SDK ``major``'s venv, after checking it imports that major version."""
    if major in _checked:
        return _checked[major]
    python = sdk_venv(major) / "bin" / "python"
    if not python.is_file():
        missing_prerequisite(f"{python.parent.parent} is missing; make it with `bash .ci/setup-sdk.sh`")
    probe = subprocess.run([str(python), "-c", PROBE],
                           capture_output=True, text=True, timeout=120, check=False)
    # The SDK logs its config lookups on stdout: the version is the last line.
    version = (probe.stdout.strip().splitlines() or [""])[-1]
    if probe.returncode != 0 or not version.startswith(f"{major}."):
        found = version or (probe.stderr.strip().splitlines() or ["no output"])[-1]
        missing_prerequisite(f"{python} does not import SageMaker SDK {major}.x ({found[:200]}); "
                             "rerun `bash .ci/setup-sdk.sh`")
    _checked[major] = str(python)
    return str(python)


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} did not answer within 60 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)  # poll interval


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)


@dataclass
class LocalAws:
    """moto (S3, STS) and ``servekit local up`` on loopback, and what a user script needs to reach them."""

    moto_url: str
    harness_url: str
    state_dir: Path
    home: Path

    def script_env(self) -> dict[str, str]:
        """The environment of a user script: only endpoints, fake credentials and a region differ from AWS."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV", "SAGEMAKER_"))}
        env.update(CREDENTIALS, HOME=str(self.home), PYTHONUNBUFFERED="1", SAGEMAKER_SUPPRESS_V2_WARNING="1",
                   AWS_ENDPOINT_URL_SAGEMAKER=self.harness_url, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=self.harness_url,
                   AWS_ENDPOINT_URL_S3=self.moto_url, AWS_ENDPOINT_URL_STS=self.moto_url,
                   # SDK v3 checks the role with IAM's policy simulator, which neither the harness nor
                   # moto answers; this is the SDK's documented switch for that check.
                   SAGEMAKER_VALIDATE_ROLE="false")
        return env

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.moto_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def endpoint_logs(self, endpoint: str) -> str:
        """The tail of every container log stream of ``endpoint``."""
        root = self.state_dir / "logs" / endpoint
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        return "\n".join(f"--- {p.relative_to(root)}\n{p.read_text(errors='replace')[-2500:]}" for p in files)


@pytest.fixture(scope="session", params=BACKENDS)
def local_aws(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """A moto server and ``servekit local up --backend <process|docker>``, for the whole SDK suite."""
    backend: str = request.param
    if backend == "docker":
        tag_local_images()
    root = tmp_path_factory.mktemp(f"sdk-{backend}")
    moto_port = free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    moto_server = str(Path(sys.executable).with_name("moto_server"))
    moto = _start([moto_server, "-H", "127.0.0.1", "-p", str(moto_port)], dict(os.environ), root / "moto.log")
    up: subprocess.Popen[bytes] | None = None
    try:
        _wait_http(moto_url + "/moto-api/", moto, root / "moto.log", "moto_server")
        # The harness hands its credentials and S3 endpoint to the containers (the execution role's
        # stand-in): they reach moto for s3:// code.
        env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_url}
        env.pop("AWS_PROFILE", None)
        state_dir = root / "state"
        up = _start([sys.executable, "-m", "harness.cli", "local", "up", "--port", str(free_port()), "--backend",
                     backend, "--state-dir", str(state_dir)], env, root / "up.log")
        deadline = time.monotonic() + 60
        while (state := read_state_file(state_dir)) is None:
            assert up.poll() is None and time.monotonic() < deadline, (root / "up.log").read_text()[-3000:]
            time.sleep(0.1)  # poll interval
        aws = LocalAws(moto_url, str(state["url"]), state_dir, root / "home")
        aws.home.mkdir()
        aws.s3().create_bucket(Bucket=BUCKET)
        yield aws
    finally:
        if up is not None:
            stop_process(up, grace_s=60)
        stop_process(moto)
        if backend == "docker":
            untag_local_images()


def run_script(aws: LocalAws, major: int, script: str, args: dict[str, Any], endpoints: tuple[str, ...] = ()) -> Any:
    """Run ``scripts/<script>`` with SDK ``major``; its ``RESULT`` line, or a failure with its output and
    the containers' logs of ``endpoints``."""
    python = sdk_python(major)
    started = time.monotonic()
    result = subprocess.run([python, str(SCRIPTS / script), json.dumps(args)], env=aws.script_env(),
                            cwd=aws.home, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False)
    took = time.monotonic() - started
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        logs = "\n".join(aws.endpoint_logs(name) for name in endpoints)
        pytest.fail(f"{script} (SDK {major}) exited {result.returncode} after {took:.0f} s\n"
                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-6000:]}\ncontainer logs:\n{logs}",
                    pytrace=False)
    print(f"{script}: {took:.1f} s")  # shown with -s / in -rA reports: the suite's timing
    return json.loads(lines[-1][len("RESULT "):])
