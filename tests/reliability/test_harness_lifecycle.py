"""What a SIGKILLed harness leaves behind: nothing for long. Its ``serve`` processes get SIGTERM from
the kernel (PR_SET_PDEATHSIG) and stop with their workers; its containers are swept by the next
``servekit local up``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness.backends.base import free_port
from harness.backends.docker import HARNESS_LABEL, docker_available
from harness.state import read_state_file
from tests.harness.conftest import boto_clients, deploy, missing_prerequisite
from tests.support.models import sklearn_artifact

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest"


def _up(state_dir: Path, backend: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``servekit local up`` in the background; its URL once it has recorded it (60 s at most)."""
    previous = (read_state_file(state_dir) or {}).get("url")
    with open(log_path, "ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "harness.cli", "local", "up", "--port", str(free_port()),
                               "--backend", backend, "--state-dir", str(state_dir)], stdout=log,
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while (record := read_state_file(state_dir)) is None or record["url"] == previous:
        assert up.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    return up, str(record["url"])


def _gone(pids: list[int], deadline_s: float) -> list[int]:
    """The PIDs still running (not zombies) after waiting up to ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def test_serve_processes_die_with_a_sigkilled_harness(tmp_path):
    iris = sklearn_artifact(tmp_path / "iris")
    up, url = _up(tmp_path / "state", "process", tmp_path / "up.log")
    try:
        sm, rt = boto_clients(url)
        deploy(sm, "a", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(iris.path)})
        assert rt.invoke_endpoint(EndpointName="a", ContentType="text/csv", Body=b"5.1,3.5,1.4,0.2")["Body"].read()
        serve = [child for child in psutil.Process(up.pid).children() if "serve" in " ".join(child.cmdline())]
        assert serve, "no serve process found under the harness"
        pids = [p.pid for s in serve for p in [s, *s.children(recursive=True)]]
        up.kill()
        up.wait(timeout=30)
        assert not _gone(pids, 30), "serve processes outlived the SIGKILLed harness by 30 s"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=30)


def _labelled_containers() -> set[str]:
    listed = subprocess.run(["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter",
                             f"label={HARNESS_LABEL}=1"], capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def test_containers_of_a_sigkilled_harness_are_swept_by_the_next_up(tmp_path):
    if not docker_available():
        missing_prerequisite("no Docker engine answers `docker info`")
    if subprocess.run(["docker", "image", "inspect", "servekit-sklearn:latest"], capture_output=True).returncode:
        missing_prerequisite("image servekit-sklearn:latest is not built (./build.sh)")
    iris = sklearn_artifact(tmp_path / "iris")
    state_dir = tmp_path / "state"
    before = _labelled_containers()
    up, url = _up(state_dir, "docker", tmp_path / "up.log")
    second = None
    try:
        sm, _ = boto_clients(url)
        deploy(sm, "a", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(iris.path)})
        left = _labelled_containers() - before
        assert len(left) == 1
        up.kill()
        up.wait(timeout=30)
        assert _labelled_containers() >= left, "the container should outlive a SIGKILLed harness"
        second, _ = _up(state_dir, "docker", tmp_path / "up.log")
        assert not _labelled_containers() & left, (tmp_path / "up.log").read_text()
        assert "left by a harness that was killed" in (tmp_path / "up.log").read_text()
    finally:
        for process in (up, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
        leftovers = (_labelled_containers() - before) & left if "left" in locals() else set()
        if leftovers:  # only the containers this test made, by id
            subprocess.run(["docker", "rm", "--force", *leftovers], capture_output=True, check=False)
    assert os.path.exists(state_dir)
