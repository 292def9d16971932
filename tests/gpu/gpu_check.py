"""The GPU check: both handlers' CUDA paths, run on a machine with an NVIDIA GPU (under 5 minutes).

    python -m tests.gpu.gpu_check                         # servers as processes of this venv
    python -m tests.gpu.gpu_check --image-tag latest-gpu  # servekit-{pytorch,tensorflow}:latest-gpu, docker --gpus all

Per framework (PyTorch, TensorFlow): the framework sees CUDA; single model: /invocations answers
what the model itself answers, and the process doing the work holds GPU memory and is a forked worker
(not the server's first process: CUDA initialised in a parent before fork() breaks every child);
multi-model: two models loaded side by side on the one GPU, both answer, one is unloaded and the
other still answers. Exits 0 only when every check ran and passed; with no GPU visible it exits 1
after one line, and nothing is reported as passed. The verdict is the last line.

Needs: nvidia-smi; process mode, torch with CUDA and tensorflow with CUDA in this interpreter;
image mode, the GPU images (./build.sh build --gpu) and the NVIDIA container toolkit. The models
are built here with this interpreter's torch and tensorflow (CPU is fine for that).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

BUDGET_S = 300.0
FRAMEWORKS = ("pytorch", "tensorflow")
CUDA_PROBE = {
    "pytorch": "import torch; print(torch.cuda.is_available() and torch.cuda.device_count())",
    "tensorflow": "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))",
}


class CheckFailed(Exception):
    """One check failed; the message is the line printed."""


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists (empty when none is visible or nvidia-smi is missing)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU ")] if out.returncode == 0 else []


def gpu_pids() -> set[int]:
    """Host PIDs of the processes holding memory on any GPU."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {int(line) for line in out.split() if line.strip().isdigit()}


@dataclass
class Server:
    """A running server: its URL, its first process and a way to list its worker processes."""

    url: str
    main_pid: int
    pids: Callable[[], set[int]]
    log: Callable[[], str]


def wait_ready(server: Server, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)  # poll interval
    raise CheckFailed(f"server not ready in time:\n{server.log()[-3000:]}")


@contextmanager
def process_server(framework: str, env: dict[str, str], deadline: float) -> Iterator[Server]:
    """``python -m serve`` of this interpreter (the repository's test helper, stopped by PID)."""
    from tests.support.server import start_server, stop_server

    running = start_server({"SERVE_FRAMEWORK": framework, **env})
    try:
        # The native engine's forked workers (children of its forkserver) are the ones that must
        # initialise CUDA themselves.
        server = Server(running.url, running.process.pid,
                        lambda: {p.pid for p in running.forked_workers()}, running.log)
        wait_ready(server, deadline)
        yield server
    finally:
        stop_server(running)


@contextmanager
def docker_server(image: str, env: dict[str, str], mounts: dict[Path, str], deadline: float) -> Iterator[Server]:
    """``docker run --gpus all --network host`` of a GPU image, removed by its ID afterwards."""
    from tests.support.server import free_port

    port = free_port()
    command = ["docker", "run", "-d", "--gpus", "all", "--network", "host",
               "--name", f"servekit-gpu-check-{uuid.uuid4().hex[:10]}",
               "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SERVE_HOST=127.0.0.1"]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    for source, target in mounts.items():
        command += ["-v", f"{source}:{target}:ro"]
    started = subprocess.run([*command, image, "serve"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        raise CheckFailed(f"docker run {image} failed: {started.stderr.strip()[:500]}")
    cid = started.stdout.strip()

    def host_pids() -> list[int]:
        out = subprocess.run(["docker", "top", cid, "-o", "pid"], capture_output=True, text=True, timeout=30)
        return [int(x) for x in out.stdout.split()[1:] if x.isdigit()]

    def logs() -> str:
        out = subprocess.run(["docker", "logs", "--tail", "60", cid], capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr

    try:
        first = host_pids()
        server = Server(f"http://127.0.0.1:{port}", first[0] if first else -1,
                        lambda: set(host_pids()[1:]), logs)
        wait_ready(server, deadline)
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def check_answer(response: httpx.Response, expected: list[float], what: str) -> None:
    if response.status_code != 200:
        raise CheckFailed(f"{what}: {response.status_code} {response.text[:300]}")
    from tests.images.models import numbers

    got = numbers(response.json())
    # GPU kernels (TF32, other reduction order) differ from the CPU answer in the last digits.
    if not np.allclose(got, expected, rtol=2e-3, atol=2e-3):
        raise CheckFailed(f"{what}: answered {got[:4]}..., the model itself {expected[:4]}...")


def check_worker_on_gpu(server: Server, what: str) -> None:
    """A worker of this server (not its first process) holds GPU memory; the first process does not."""
    on_gpu = gpu_pids()
    workers = server.pids()
    if not on_gpu & workers:
        raise CheckFailed(f"{what}: no worker process of the server holds GPU memory "
                          f"(GPU pids {sorted(on_gpu)}, workers {sorted(workers)}): it ran on the CPU")
    if server.main_pid in on_gpu:
        raise CheckFailed(f"{what}: the server's first process initialised CUDA; forked workers would inherit it")


def run_framework(framework: str, image: str | None, root: Path, deadline: float, say: Callable[[str], None]) -> None:
    from tests.images.models import BUILDERS

    probe = (["docker", "run", "--rm", "--gpus", "all", "--network", "host", "--entrypoint", "python", image]
             if image else [sys.executable]) + ["-c", CUDA_PROBE[framework]]
    seen = subprocess.run(probe, capture_output=True, text=True, timeout=240)
    count = seen.stdout.strip().splitlines()[-1] if seen.stdout.strip() else ""
    if seen.returncode != 0 or count in ("", "0", "False"):
        raise CheckFailed(f"{framework} sees no CUDA device ({count or seen.stderr.strip()[-300:]})")
    say(f"{framework}: framework sees {count} GPU(s)")

    first = BUILDERS[framework](root / f"{framework}-first", 1)
    second = BUILDERS[framework](root / f"{framework}-second", 2)

    def start(env: dict[str, str], mounts: dict[Path, str]) -> AbstractContextManager[Server]:
        if image:
            return docker_server(image, env, mounts, deadline)
        # Process mode: the models are read where they lie (a single model through SERVE_MODEL_DIR).
        single = [str(source) for source, target in mounts.items() if target == "/opt/ml/model"]
        return process_server(framework, {**env, **({"SERVE_MODEL_DIR": single[0]} if single else {})}, deadline)

    with start({}, {first.path: "/opt/ml/model"}) as server:
        check_answer(httpx.post(server.url + "/invocations", json=first.rows, timeout=120), first.expected,
                     f"{framework} single model")
        check_worker_on_gpu(server, f"{framework} single model")
        say(f"{framework}: single model answered on the GPU from a forked worker")

    models = {"first": first, "second": second}
    mounts = {m.path: f"/opt/ml/models/{name}" for name, m in models.items()}
    with start({"SAGEMAKER_MULTI_MODEL": "true"}, mounts) as server:
        for name, model in models.items():
            url = f"/opt/ml/models/{name}" if image else str(model.path)
            loaded = httpx.post(server.url + "/models", json={"model_name": name, "url": url}, timeout=180)
            if loaded.status_code != 200:
                raise CheckFailed(f"{framework} MME load {name}: {loaded.status_code} {loaded.text[:300]}")
        for name, model in models.items():
            check_answer(httpx.post(f"{server.url}/models/{name}/invoke", json=model.rows, timeout=120),
                         model.expected, f"{framework} MME {name}")
        check_worker_on_gpu(server, f"{framework} MME")
        if httpx.delete(server.url + "/models/first", timeout=120).status_code != 200:
            raise CheckFailed(f"{framework} MME: unloading first failed")
        check_answer(httpx.post(f"{server.url}/models/second/invoke", json=second.rows, timeout=120),
                     second.expected, f"{framework} MME second after unloading first")
        say(f"{framework}: MME with two models on one GPU answered; unload kept the other serving")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-tag", help="run servekit-{pytorch,tensorflow}:TAG with docker --gpus all "
                        "(default: servers as processes of this interpreter)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated (default: both)")
    args = parser.parse_args(argv)
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        print(f"gpu_check: unknown framework(s) {sorted(unknown)}; choose from {', '.join(FRAMEWORKS)}")
        return 2

    gpus = gpu_names()
    if not gpus:
        print("gpu_check: FAILED: no GPU visible (nvidia-smi is missing or lists none); nothing was checked")
        return 1
    started = time.monotonic()
    deadline = started + BUDGET_S

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {line}", flush=True)

    say(f"GPU(s): {'; '.join(gpus)}")
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="servekit-gpu-check-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        for framework in frameworks:
            image = f"servekit-{framework}:{args.image_tag}" if args.image_tag else None
            try:
                run_framework(framework, image, root, deadline, say)
            except CheckFailed as exc:
                failures.append(f"{framework}: {exc}")
                say(f"{framework}: FAILED: {exc}")
    elapsed = time.monotonic() - started
    if elapsed > BUDGET_S:
        failures.append(f"took {elapsed:.0f} s, over the {BUDGET_S:.0f} s budget")
    if failures:
        print(f"gpu_check: FAILED ({len(failures)}): " + " | ".join(f.splitlines()[0] for f in failures))
        return 1
    print(f"gpu_check: PASSED {', '.join(frameworks)} on {len(gpus)} GPU(s) in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
