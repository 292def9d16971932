"""The ``process`` backend: ``python -m serve`` in a subprocess instead of ``docker run IMAGE serve``.

For machines without Docker and for fast tests. It runs only images whose server it knows, by name:
servekit's own (``servekit-<framework>[:tag]`` with any registry prefix), and images of a custom
framework the user maps to their handler (``frameworks={"servekit-onnx": "onnx_handler:OnnxHandler"}``,
``servekit local up --image-framework servekit-onnx=onnx_handler:OnnxHandler``). For those it runs the
same ``serve`` entrypoint from the current environment with ``SERVE_FRAMEWORK`` set accordingly. Any
other image is refused at CreateModel with a message saying so.

A container sees its artifact at ``/opt/ml/model`` (the models root at ``/opt/ml/models`` for MME); a
process sees it in a host directory. ``map_model_paths`` rewrites the environment's paths under the
former to the latter, so a model whose Environment names ``/opt/ml/model/...`` (the SageMaker SDK's
repacked ``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``) runs as it does in a container.

Each ``serve`` process gets SIGTERM from the kernel when the harness dies, even by SIGKILL
(``die_with_parent``, Linux), and stops its workers as on any SIGTERM.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from harness.backends.base import Backend, ContainerSpec, RunningContainer, die_with_parent

IMAGE_PATTERN = re.compile(
    r"^(?:[^/\s]+/)*servekit-(?P<framework>[a-z0-9_]+)(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?(?:@sha256:[0-9a-f]{64})?$"
)
FRAMEWORKS = ("sklearn", "pytorch", "tensorflow")
# The directory that holds the handlers/, serve/ and harness/ packages, so `-m serve` resolves even
# when servekit is not installed into the interpreter.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def repository_of(image: str) -> str:
    """``servekit-onnx`` for ``123.dkr.ecr.us-east-1.amazonaws.com/servekit-onnx:1.0@sha256:...``."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def framework_of(image: str) -> str | None:
    """``sklearn`` for ``123.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:1.0``; None otherwise."""
    match = IMAGE_PATTERN.match(image)
    if match is None or match.group("framework") not in FRAMEWORKS:
        return None
    return match.group("framework")


def map_model_paths(environment: Mapping[str, str], mount: str, host_dir: Path) -> dict[str, str]:
    """``environment`` with every value that is ``mount`` or a path under it (``mount/...``) pointed at
    the same place under ``host_dir``; other values, including ones that merely contain the path, are
    kept as they are."""
    mapped = dict(environment)
    for key, value in environment.items():
        if value == mount or value.startswith(mount + "/"):
            mapped[key] = str(host_dir) + value[len(mount):]
    return mapped


class ProcessContainer(RunningContainer):
    """A ``serve`` subprocess in its own session, so it and its workers stop together."""

    def __init__(self, spec: ContainerSpec, process: subprocess.Popen[bytes]) -> None:
        super().__init__(spec)
        self.process = process

    @property
    def ident(self) -> str:
        return f"pid {self.process.pid}"

    def exit_code(self) -> int | None:
        return self.process.poll()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)  # the group id is the pid: start_new_session=True
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace_s: float) -> None:
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers the server forked share its process group; make sure none outlives it.
        self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)  # the server and every worker it forked, as a dead instance

    def model_url(self, host_path: Path) -> str:
        return str(host_path)


class ProcessBackend(Backend):
    """Runs servekit images as local processes of the current Python environment."""

    name = "process"

    def __init__(self, command: list[str] | None = None, frameworks: Mapping[str, str] | None = None) -> None:
        #: The server command; tests may substitute a stand-in container.
        self.command = command or [sys.executable, "-m", "serve"]
        #: Image repository name -> SERVE_FRAMEWORK, for custom-framework images.
        self.frameworks = dict(frameworks or {})

    def framework_for(self, image: str) -> str | None:
        """The SERVE_FRAMEWORK an image runs: a user mapping first, then servekit's own names."""
        return self.frameworks.get(repository_of(image)) or framework_of(image)

    def check_image(self, image: str, *, multi_model: bool, bind_to_port: bool) -> None:
        if self.framework_for(image) is None:
            raise ValueError(
                f"The process backend runs only servekit images (servekit-sklearn, servekit-pytorch or "
                f"servekit-tensorflow, any registry prefix and tag) and images mapped to a handler with "
                f"--image-framework NAME=module:Class; {image!r} is neither. "
                "Start the harness with --backend docker to run other images."
            )
        # servekit images carry both capability labels, so MultiModel and bind-to-port always pass.

    def start(self, spec: ContainerSpec) -> ProcessContainer:
        framework = self.framework_for(spec.image) or "sklearn"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["SERVE_FRAMEWORK"] = framework
        env["SERVE_MODEL_DIR"] = str(spec.model_dir)
        if spec.limits is not None:
            # What the docker backend enforces with --memory, told to the server for MME admission.
            env["SERVE_MEMORY_LIMIT_MB"] = str(spec.limits.memory_mib)
        # The model's Environment wins over the defaults above, its container paths made host paths.
        env.update(map_model_paths(spec.platform_environment(), spec.model_mount, spec.model_dir))
        env["SERVE_HOST"] = "127.0.0.1"  # local processes listen on loopback only
        env["PYTHONUNBUFFERED"] = "1"
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as log:
            log.write(f"[harness] {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {spec.image} as "
                      f"{' '.join(self.command)} on port {spec.port}\n".encode())
            log.flush()
            process = subprocess.Popen(
                self.command,
                env=env,
                cwd=str(spec.model_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
            )
        return ProcessContainer(spec, process)
