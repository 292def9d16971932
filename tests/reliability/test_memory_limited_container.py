"""A memory-limited container (``docker run --memory``) of the real scikit-learn image, in multi-model
mode on the native engine with no memory setting of its own (the engine reads the cgroup limit), is
filled with models until a load answers 507: the container is never OOM-killed, keeps running and
answering /ping, and further loads are refused with 507 again. Filled with concurrent loads and then
invoked, no worker inside it is OOM-killed either (the admission keeps a headroom; without it the
kernel killed 24-133 workers).

Without a Docker engine the test is skipped loudly, unless ``SERVEKIT_REQUIRE_DOCKER=1`` (CI): then
it fails (the convention of tests/images).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.images.conftest import Container, _engine_problem, docker, ensure_image
from tests.reliability.conftest import report
from tests.reliability.mme_traffic import ROW, constant_models, constant_of
from tests.support.server import free_port

MEMORY_LIMIT = "400m"
MIB = 2**20
#: Far more than fit in 400 MiB (~9 MiB each after the first): no 507 by then is a failure.
MODELS = 80

pytestmark = pytest.mark.images


@pytest.fixture
def docker_image() -> str:
    problem = _engine_problem()
    if problem is not None:
        message = (f"MEMORY-LIMITED CONTAINER TEST NOT RUN: {problem}. Start an engine with "
                   "`bash .ci/setup-docker.sh` (SERVEKIT_REQUIRE_DOCKER=1 turns this skip into a failure)")
        if os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return ensure_image("sklearn")


def cgroup_figures(container: Container) -> dict[str, int]:
    """The container's memory cgroup: limit, usage, peak usage and OOM kills (cgroup v1 or v2)."""
    script = ("cd /sys/fs/cgroup; if [ -f memory.max ]; then echo limit $(cat memory.max); "
              "echo usage $(cat memory.current); echo peak $(cat memory.peak 2>/dev/null || echo -1); "
              "echo oom_kill $(grep '^oom_kill ' memory.events | cut -d' ' -f2); else cd memory; "
              "echo limit $(cat memory.limit_in_bytes); echo usage $(cat memory.usage_in_bytes); "
              "echo peak $(cat memory.max_usage_in_bytes); "
              "echo oom_kill $(grep '^oom_kill ' memory.oom_control | cut -d' ' -f2 || echo 0); fi")
    out = docker("exec", container.id, "sh", "-c", script).stdout
    figures = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        figures[key] = int(value) if value.strip().lstrip("-").isdigit() else -1
    return figures


def start_limited(docker_image: str, models_dir: Path) -> Container:
    """The image in multi-model mode under ``--memory MEMORY_LIMIT`` (no swap), ``models_dir`` mounted at
    /opt/ml/models, ready."""
    port = free_port()
    command = ["run", "-d", "--network", "host", "--name", f"servekit-memtest-{uuid.uuid4().hex[:10]}",
               "--memory", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT,
               "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SERVE_HOST=127.0.0.1",
               "-e", "SAGEMAKER_MULTI_MODEL=true", "-e", "SERVE_ENGINE=native",
               "-e", "SAGEMAKER_MODEL_SERVER_TIMEOUT=10",
               "-v", f"{models_dir}:/opt/ml/models:ro", docker_image, "serve"]
    container = Container(docker(*command).stdout.strip(), port, docker_image)
    try:
        container.wait_ready()
    except BaseException:
        container.remove()
        raise
    return container


def test_a_memory_limited_container_answers_507_and_is_never_oom_killed(docker_image: str, tmp_path: Path) -> None:
    """Sequential loads until 507. Asserted: the 507 comes, further loads get 507, the container (its
    PID 1, the server) is never OOM-killed and answers /ping, every loaded model then answers with its
    own value and the kernel OOM-killed no worker (the admission's headroom leaves room to serve)."""
    models = constant_models(tmp_path / "models", MODELS)
    container = start_limited(docker_image, tmp_path / "models")
    try:
        loaded: list[str] = []
        refusal = None
        with httpx.Client(base_url=container.url, timeout=120) as client:
            for name in sorted(models):
                answer = client.post("/models", json={"model_name": name, "url": f"/opt/ml/models/{name}"})
                if answer.status_code == 507:
                    refusal = answer.json()["message"]
                    break
                assert answer.status_code == 200, (name, answer.text, container.logs())
                loaded.append(name)
            assert refusal is not None, f"{len(loaded)} models loaded into {MEMORY_LIMIT} without a 507"
            # Keep pushing: every further load is refused too.
            retries = [client.post("/models", json={"model_name": name, "url": f"/opt/ml/models/{name}"}).status_code
                       for name in sorted(models)[len(loaded):len(loaded) + 5]]
            ping = client.get("/ping").status_code
            answered = 0
            for name in loaded:
                answer = client.post(f"/models/{name}/invoke", json=ROW)
                answered += answer.status_code == 200 and answer.json() == [constant_of(name)]
            figures = cgroup_figures(container)
            state = container.state()
    finally:
        container.remove()
    report("memory-limited container (docker --memory, native engine, no SERVE_MEMORY_LIMIT_MB)",
           f"--memory {MEMORY_LIMIT}: {len(loaded)} models loaded one by one, then 507 ({refusal}); 5 more loads: "
           f"{retries}; {answered}/{len(loaded)} loaded models answered; cgroup usage {figures['usage'] / MIB:.0f} "
           f"MiB, peak {figures['peak'] / MIB:.0f} MiB of {figures['limit'] / MIB:.0f} MiB, worker OOM kills "
           f"{figures['oom_kill']}; OOMKilled {state['OOMKilled']}, running {state['Running']}, /ping {ping}")
    assert retries == [507] * len(retries), retries
    assert state["Running"] and not state["OOMKilled"] and ping == 200, json.dumps(state)
    assert answered == len(loaded) and figures["oom_kill"] in (0, -1), (answered, len(loaded), figures)


def test_concurrent_loads_in_a_memory_limited_container_answer_507_before_any_oom_kill(
        docker_image: str, tmp_path: Path) -> None:
    models = constant_models(tmp_path / "models", 48)
    container = start_limited(docker_image, tmp_path / "models")

    async def load_rounds() -> list[list[int]]:
        rounds = []
        async with httpx.AsyncClient(base_url=container.url, timeout=120) as client:
            for number in range(3):  # 16 loads at once, three times: the container fills up
                names = sorted(models)[number * 16:(number + 1) * 16]
                answers = await asyncio.gather(*(client.post("/models", json={
                    "model_name": name, "url": f"/opt/ml/models/{name}"}) for name in names))
                rounds.append([answer.status_code for answer in answers])
        return rounds

    try:
        rounds = asyncio.run(load_rounds())
        with httpx.Client(base_url=container.url, timeout=60) as client:  # the loaded models serve once each
            invoked = {model["modelName"]: client.post(f"/models/{model['modelName']}/invoke", json=ROW).status_code
                       for model in client.get("/models").json()["models"]}
        figures = cgroup_figures(container)
        state = container.state()
        ping = httpx.get(container.url + "/ping", timeout=30).status_code
    finally:
        logs = container.logs()
        container.remove()
    report("memory-limited container (docker --memory, native engine, no SERVE_MEMORY_LIMIT_MB)",
           f"--memory {MEMORY_LIMIT}, 3 rounds of 16 concurrent loads: statuses {rounds}; cgroup peak "
           f"{figures['peak'] / MIB:.0f} MiB of {figures['limit'] / MIB:.0f} MiB, OOM kills {figures['oom_kill']}; "
           f"OOMKilled {state['OOMKilled']}, running {state['Running']}, /ping {ping}")
    assert all(status in (200, 507) for statuses in rounds for status in statuses), rounds
    assert state["Running"] and not state["OOMKilled"] and ping == 200, json.dumps(state)
    assert figures["oom_kill"] in (0, -1), (figures, logs)
    assert set(invoked.values()) == {200}, invoked
