"""The container under test, started as SageMaker starts it, and what the host can see of it.

``docker run IMAGE serve`` with the model read-only at /opt/ml/model (or the models root at
/opt/ml/models for MME), the instance type's CPUs and memory, SAGEMAKER_BIND_TO_PORT on a free port
and a SAGEMAKER_SAFE_PORT_RANGE block, loopback only: the engine's bridge with the port published on
127.0.0.1, or ``--network host`` with SERVE_HOST=127.0.0.1 where the engine has no bridge (as
harness/backends/docker.py runs containers). Every container is removed by its ID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import artifacts
from harness.backends.base import MULTI_MODEL_MOUNT, SINGLE_MODEL_MOUNT, PortRanges, free_port
from harness.backends.docker import DockerBackend, process_identity
from harness.doctor.image import DoctorError
from harness.doctor.options import DoctorOptions
from harness.instance_types import limits_for

DOCTOR_LABEL = "servekit.doctor"
#: The name a doctor loads its MME model under (and loads again to see 409).
MME_MODEL = "doctor-model"
_TCP_LISTEN = "0A"


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def stage_model_data(options: DoctorOptions, work: Path) -> Path:
    """The host directory to mount: the model (single model) or a models root holding it (MME)."""
    target = work / "model" if not options.mme else work / "models" / MME_MODEL / "model"
    target.mkdir(parents=True)
    if options.model_data is not None:
        try:
            source = artifacts.fetch(options.model_data, work / "download", region=options.region,
                                     s3_endpoint_url=options.s3_endpoint_url)
            artifacts.materialize(source, target)
        except artifacts.ArtifactError as exc:
            raise DoctorError(f"--model-data {options.model_data}: {exc}") from None
    for path in (work, *work.rglob("*")):  # the container's user may not be root
        path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)
    return work / "model" if not options.mme else work / "models"


@dataclass
class DoctorContainer:
    """A started container and the ports it was given."""

    id: str
    port: int
    safe_range: tuple[int, int]
    network: str
    #: ``pid:start time`` of every process seen in the container (harness.backends.docker.process_identity).
    seen: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """``docker inspect``'s State; {} once the container is gone."""
        result = _docker("inspect", "--format", "{{json .State}}", self.id)
        return dict(json.loads(result.stdout)) if result.returncode == 0 else {}

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def pids(self) -> list[int]:
        """Host PIDs of the container's processes (empty once it stopped)."""
        result = _docker("top", self.id, "-eo", "pid")
        if result.returncode != 0:
            return []
        pids = [int(word) for word in result.stdout.split() if word.isdigit()]
        self.seen.update(filter(None, map(process_identity, pids)))
        return pids

    def listening_ports(self) -> set[int]:
        """TCP ports the container's processes listen on, read from /proc (works in any network mode)."""
        pids = self.pids()
        inodes: set[str] = set()
        for pid in pids:
            try:
                inodes.update(link[8:-1] for link in (str(p.readlink()) for p in Path(f"/proc/{pid}/fd").iterdir())
                              if link.startswith("socket:["))
            except OSError:
                continue  # the process ended meanwhile
        return _listening(pids[0], inodes) if pids else set()

    def memory_bytes(self) -> int | None:
        """The container's cgroup memory use, or None when the host does not show it."""
        pid = int(self.state().get("Pid") or 0)
        try:
            line = Path(f"/proc/{pid}/cgroup").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        path = line.split(":", 2)[2]
        for name in ("memory.current", "memory.usage_in_bytes"):
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory"):
                file = Path(root + path) / name
                if file.exists():
                    return int(file.read_text())
        return None

    def logs(self, tail: int = 200) -> str:
        result = _docker("logs", "--tail", str(tail), self.id)
        return result.stdout + result.stderr

    def leftover_processes(self) -> list[int]:
        """Processes the container ever showed that still run (its PID namespace should take them all)."""
        return sorted(int(ident.split(":")[0]) for ident in self.seen
                      if process_identity(int(ident.split(":")[0])) == ident)

    def remove(self) -> None:
        _docker("rm", "--force", self.id, timeout=120)


def _listening(pid: int, inodes: set[str]) -> set[int]:
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def _cpus(vcpus: float, options: DoctorOptions) -> float:
    """The instance's vCPUs, or this host's when it has fewer (docker refuses more CPUs than exist): the
    checks then run on fewer CPUs than SageMaker gives, which is said in a progress line."""
    host = os.cpu_count() or 1
    if vcpus <= host:
        return vcpus
    if options.progress:
        options.progress(f"{options.instance_type} has {vcpus:g} vCPUs, this host {host}: the container gets {host}")
    return float(host)


def start_container(image: str, options: DoctorOptions, mount: Path, ranges: PortRanges) -> DoctorContainer:
    """``docker create ... IMAGE serve`` then ``docker start`` (so a start that fails leaves no container:
    it is removed by its ID); DoctorError with docker's reason when it cannot start."""
    port, safe = free_port(), ranges.acquire()
    network = DockerBackend().network
    env = {**options.env, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_SAFE_PORT_RANGE": f"{safe[0]}-{safe[1]}"}
    args = ["create", "--name", f"servekit-doctor-{uuid.uuid4().hex[:10]}", "--label", f"{DOCTOR_LABEL}=1"]
    if network == "host":
        args += ["--network", "host"]
        env.setdefault("SERVE_HOST", "127.0.0.1")  # servekit's images; others bind where they bind
    else:
        args += ["--publish", f"127.0.0.1:{port}:{port}"]
    if options.mme:
        env["SAGEMAKER_MULTI_MODEL"] = "true"
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    limits = limits_for(options.instance_type)
    # No swap beyond the instance's memory (--memory-swap = --memory): an instance has no swap to fall
    # back on [I], so a container over its memory is OOM-killed, as it would be there.
    memory = f"{limits.memory_mib}m"
    args += ["--cpus", f"{_cpus(limits.vcpus, options):g}", "--memory", memory, "--memory-swap", memory,
             "--volume", f"{mount}:{MULTI_MODEL_MOUNT if options.mme else SINGLE_MODEL_MOUNT}:ro", image, "serve"]
    created = _docker(*args, timeout=120)
    if created.returncode != 0:
        raise DoctorError(f"docker create {image} failed: {created.stderr.strip()}")
    container = DoctorContainer(created.stdout.strip(), port, safe, network)
    started = _docker("start", container.id, timeout=120)
    if started.returncode != 0:
        container.remove()  # created but never started: nothing to check
        raise DoctorError(f"docker start {image} failed: {started.stderr.strip()}")
    return container


def work_dir() -> Path:
    """A private directory for staged model data (removed with ``remove_work_dir``)."""
    return Path(tempfile.mkdtemp(prefix="servekit-doctor-"))


def remove_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
