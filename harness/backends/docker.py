"""The ``docker`` backend: ``docker run IMAGE serve`` exactly as SageMaker hosting starts a container.

* platform environment (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_SAFE_PORT_RANGE``,
  ``SAGEMAKER_MULTI_MODEL``) over the model's ``Environment``;
* the artifact mounted at ``/opt/ml/model`` (single model) or the models root at ``/opt/ml/models``;
* ``--cpus``/``--memory`` from the instance type;
* the engine's ``bridge`` network with the port published on 127.0.0.1 where the engine has one, and
  ``--network host`` where it has none (engines started with ``--bridge=none``);
* labels checked at CreateModel as SageMaker checks them (docs/sagemaker-contract.md §2.1, §3.1);
* every container labelled ``servekit.harness=1`` and with its owner (``servekit.harness.owner``:
  the harness's PID and start time), so ``servekit local up`` removes the ones a killed harness left
  (``sweep_orphans``); a harness that stops normally removes its own.

The engine is driven through the ``docker`` CLI, so the backend needs nothing beyond a docker client.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil

from harness.backends.base import (
    BIND_TO_PORT_LABEL,
    MULTI_MODELS_LABEL,
    Backend,
    ContainerSpec,
    RunningContainer,
    die_with_parent,
)

HARNESS_LABEL = "servekit.harness"
OWNER_LABEL = "servekit.harness.owner"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def docker_available() -> bool:
    """True when a docker client exists and its engine answers."""
    if shutil.which("docker") is None:
        return False
    try:
        return _docker("info", "--format", "{{.ServerVersion}}", timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def process_identity(pid: int) -> str:
    """``<pid>:<start time>``: names one process even after its PID is reused; "" when it is gone."""
    try:
        return f"{pid}:{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _owner_alive(owner: str) -> bool:
    pid, _, _ = owner.partition(":")
    return pid.isascii() and pid.isdigit() and process_identity(int(pid)) == owner


def sweep_orphans() -> list[str]:
    """Remove servekit containers whose owning harness no longer runs; the ids removed."""
    listed = _docker("ps", "--all", "--filter", f"label={HARNESS_LABEL}=1",
                     "--format", f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}', timeout=60)
    orphans = [ident for ident, _, owner in (line.partition(" ") for line in listed.stdout.split("\n") if line)
               if owner and not _owner_alive(owner)]
    if orphans:
        _docker("rm", "--force", *orphans, timeout=120)
    return orphans


class DockerContainer(RunningContainer):
    """A running container plus the ``docker logs -f`` process that writes its log stream."""

    def __init__(self, spec: ContainerSpec, container_id: str, follower: subprocess.Popen[bytes] | None) -> None:
        super().__init__(spec)
        self.container_id = container_id
        self.follower = follower

    @property
    def ident(self) -> str:
        return f"container {self.container_id[:12]}"

    def exit_code(self) -> int | None:
        result = _docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", self.container_id)
        if result.returncode != 0:
            return -1  # gone
        running, _, code = result.stdout.strip().partition(" ")
        return None if running == "true" else int(code or -1)

    def stop(self, grace_s: float) -> None:
        _docker("stop", "--time", str(int(grace_s)), self.container_id, timeout=grace_s + 30)
        if self.follower is not None and self.follower.poll() is None:
            self.follower.send_signal(signal.SIGTERM)
            try:
                self.follower.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.follower.kill()
        _docker("rm", "--force", self.container_id)

    def kill(self) -> None:
        _docker("kill", "--signal", "KILL", self.container_id, timeout=60)

    def model_url(self, host_path: Path) -> str:
        relative = host_path.relative_to(self.spec.model_dir)
        mount = self.spec.model_mount
        return f"{mount}/{relative.as_posix()}" if str(relative) != "." else mount


class DockerBackend(Backend):
    """Runs real images with the local Docker engine."""

    name = "docker"

    def __init__(self, network: str | None = None) -> None:
        #: "bridge" or "host"; None: detect (bridge when the engine has one).
        self._network = network

    @property
    def network(self) -> str:
        """The network mode containers get."""
        if self._network is None:
            has_bridge = _docker("network", "inspect", "bridge", timeout=20).returncode == 0
            self._network = "bridge" if has_bridge else "host"
        return self._network

    def resolve_image(self, image: str) -> str:
        """The local image to run for ``image``.

        SageMaker pulls ``<account>.dkr.ecr.<region>.amazonaws.com/servekit-sklearn:1.0`` from ECR; the
        harness pulls nothing. When the engine lacks that exact name but has the same repository and
        tag without the registry (what ./build.sh builds), that local image is used, so a script
        written for AWS runs unchanged. ValueError naming the image when neither exists.
        """
        if _docker("image", "inspect", "--format", "{{.Id}}", image, timeout=30).returncode == 0:
            return image
        name = image.split("@", 1)[0]
        repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
        if "/" in repository:
            local = f"{repository.rsplit('/', 1)[-1]}:{tag}"
            if _docker("image", "inspect", "--format", "{{.Id}}", local, timeout=30).returncode == 0:
                return local
        raise ValueError(
            f"Requested image {image} not found in the local Docker engine: build it (./build.sh) "
            "or docker pull it, then call CreateModel again."
        )

    def image_labels(self, image: str) -> dict[str, str]:
        """The image's labels; ValueError naming the image when the engine does not have it."""
        local = self.resolve_image(image)
        result = _docker("image", "inspect", "--format", "{{json .Config.Labels}}", local, timeout=30)
        if result.returncode != 0:
            raise ValueError(f"Requested image {image} not found in the local Docker engine.")
        return json.loads(result.stdout.strip() or "null") or {}

    def check_image(self, image: str, *, multi_model: bool, bind_to_port: bool) -> None:
        labels = self.image_labels(image)
        missing = []
        if multi_model and labels.get(MULTI_MODELS_LABEL) != "true":
            missing.append(f"{MULTI_MODELS_LABEL}=true")
        if bind_to_port and labels.get(BIND_TO_PORT_LABEL) != "true":
            missing.append(f"{BIND_TO_PORT_LABEL}=true")
        if missing:
            raise ValueError(
                f"Your Ecr Image {image} does not contain required {', '.join(missing)} Docker label(s)."
            )

    def start(self, spec: ContainerSpec) -> DockerContainer:
        env = spec.platform_environment()
        args = ["run", "--detach", "--name", spec.name, "--label", f"{HARNESS_LABEL}=1",
                "--label", f"{OWNER_LABEL}={process_identity(os.getpid())}"]
        if self.network == "host":
            # The container shares the host's network: it listens on SAGEMAKER_BIND_TO_PORT of the host,
            # on loopback only.
            args += ["--network", "host"]
            env.setdefault("SERVE_HOST", "127.0.0.1")
        else:
            args += ["--hostname", spec.hostname, "--publish", f"127.0.0.1:{spec.port}:{spec.port}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += ["--volume", f"{spec.model_dir}:{spec.model_mount}:ro"]
        if spec.limits is not None:
            args += ["--cpus", f"{spec.limits.vcpus:g}", "--memory", f"{spec.limits.memory_mib}m"]
        args += [self.resolve_image(spec.image), "serve"]
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        result = _docker(*args)
        if result.returncode != 0:
            spec.log_path.write_text(f"[harness] docker run failed: {result.stderr.strip()}\n")
            raise RuntimeError(f"docker run {spec.image} failed: {result.stderr.strip()}")
        container_id = result.stdout.strip()
        log = open(spec.log_path, "ab")  # noqa: SIM115 - handed to the follower process
        try:
            follower = subprocess.Popen(
                ["docker", "logs", "--follow", container_id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
            )
        finally:
            log.close()
        return DockerContainer(spec, container_id, follower)
