"""What every backend provides: start a container from a spec, say whether it runs, stop it."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from harness.instance_types import InstanceLimits

#: Where SageMaker presents the artifact in a container (single model), and the models root (MME).
SINGLE_MODEL_MOUNT = "/opt/ml/model"
MULTI_MODEL_MOUNT = "/opt/ml/models"
MULTI_MODELS_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"
BIND_TO_PORT_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"


#: prctl(2) option: the signal the kernel sends a process when the thread that started it exits.
_PR_SET_PDEATHSIG = 1
#: libc's prctl, looked up once here: a preexec_fn runs between fork and exec, where loading a library
#: (and taking the locks that needs) could deadlock. None off Linux.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(harness_pid: int) -> None:
    """``preexec_fn`` (with ``functools.partial(die_with_parent, os.getpid())``) of every process a
    backend starts: the kernel sends it SIGTERM when the harness dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG; elsewhere a no-op).

    The signal follows the *thread* that forked: backends start processes from the event loop's
    executor threads, which live as long as the loop, after every container is stopped.
    """
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != harness_pid:  # the harness died before prctl took effect
        os._exit(1)


@dataclass
class ContainerSpec:
    """One container of one endpoint instance, as the platform starts it."""

    name: str  # unique: endpoint, variant, instance and hostname
    image: str
    hostname: str
    port: int  # SAGEMAKER_BIND_TO_PORT; reachable on 127.0.0.1:port
    safe_port_range: tuple[int, int]
    multi_model: bool
    # Host directory holding the extracted artifact (single model) or the models root (MME).
    model_dir: Path
    log_path: Path
    environment: dict[str, str] = field(default_factory=dict)  # the model's Environment
    limits: InstanceLimits | None = None  # this container's share of the instance
    # AWS credentials, region and endpoints (HarnessConfig.role_environment); the model's Environment wins.
    role_environment: dict[str, str] = field(default_factory=dict)

    @property
    def model_mount(self) -> str:
        """The container path of ``model_dir``: ``/opt/ml/model``, or ``/opt/ml/models`` for MME."""
        return MULTI_MODEL_MOUNT if self.multi_model else SINGLE_MODEL_MOUNT

    def platform_environment(self) -> dict[str, str]:
        """The variables SageMaker itself sets (docs/sagemaker-contract.md §1.7), over the model's Environment."""
        env = {**self.role_environment, **self.environment}
        env["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
        env["SAGEMAKER_SAFE_PORT_RANGE"] = f"{self.safe_port_range[0]}-{self.safe_port_range[1]}"
        if self.multi_model:
            env["SAGEMAKER_MULTI_MODEL"] = "true"
        return env


class RunningContainer(ABC):
    """A started container."""

    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec

    @property
    def base_url(self) -> str:
        """Where the harness talks to the container."""
        return f"http://127.0.0.1:{self.spec.port}"

    @property
    @abstractmethod
    def ident(self) -> str:
        """PID or container id, for logs and ``servekit local ls``."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """None while running; the exit status once it has stopped."""

    @abstractmethod
    def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` seconds (SageMaker waits 30 s); blocking."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the container now, as an instance that fails does (a fault for tests: harness.faults);
        the harness notices at its next health check and replaces the instance."""

    @abstractmethod
    def model_url(self, host_path: Path) -> str:
        """The path the container sees for a host path under ``spec.model_dir`` (for POST /models)."""


class Backend(ABC):
    """Runs containers; also checks images at CreateModel the way SageMaker checks labels."""

    name = "backend"

    @abstractmethod
    def check_image(self, image: str, *, multi_model: bool, bind_to_port: bool) -> None:
        """Raise ValueError with SageMaker's message when ``image`` cannot be used as asked."""

    @abstractmethod
    def start(self, spec: ContainerSpec) -> RunningContainer:
        """Start the container (blocking, returns once launched, not once healthy)."""


#: Container ports stay below 32767: multi-model-server (the mms engine) refuses higher ones, and the
#: kernel's ephemeral range starts above it. Bind ports and safe ranges come from separate blocks.
BIND_PORTS = (27000, 32766)
SAFE_RANGES = (21000, 27000)


def free_port() -> int:
    """A TCP port in BIND_PORTS that is free on 127.0.0.1 right now."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(*BIND_PORTS)
        if _port_free(port):
            return port
    raise RuntimeError(f"no free port in {BIND_PORTS[0]}-{BIND_PORTS[1]}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortRanges:
    """Hands out disjoint SAGEMAKER_SAFE_PORT_RANGE blocks (one per container)."""

    def __init__(self, start: int = SAFE_RANGES[0], size: int = 100, end: int = SAFE_RANGES[1]) -> None:
        self._lock = threading.Lock()
        self._start, self._size, self._end = start, size, end
        self._used: set[int] = set()

    def acquire(self) -> tuple[int, int]:
        """A block whose first and last ports are free now and that no live container holds."""
        with self._lock:
            for low in range(self._start, self._end, self._size):
                high = low + self._size - 1
                if low not in self._used and _port_free(low) and _port_free(high):
                    self._used.add(low)
                    return (low, high)
        raise RuntimeError("no free port range left for SAGEMAKER_SAFE_PORT_RANGE")

    def release(self, block: tuple[int, int]) -> None:
        """Give a block back once its container stopped."""
        with self._lock:
            self._used.discard(block[0])
