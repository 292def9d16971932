"""linux/arm64 images (SageMaker's Graviton instances), built and run under QEMU emulation here.

Selected by ``SERVEKIT_ARM64``, which ``.ci/run`` sets to ``sklearn``: the arm64 base's set-up, the
scikit-learn image's versions against the amd64 image's, and its single-model and multi-model
contract checks (about 40 s here once built); ``SERVEKIT_ARM64=all`` (opt-in, slow) also
starts the PyTorch and TensorFlow arm64 images and sends each one request. Unset, every test here
SKIPS, saying so; set, a machine that cannot run arm64 binaries FAILS (run
``bash .ci/setup-emulation.sh`` as root), so the option can never pass without running them.

Images: ``servekit-<framework>:<tag>-arm64`` (tag ``SERVEKIT_ARM64_TAG``, else ``SERVEKIT_IMAGE_TAG``,
default ``latest``; ``./build.sh test`` builds and sets ``latest-nomms``: no Java under QEMU), built
here when missing: the scikit-learn ``--no-mms`` image with ``./build.sh base --platform linux/arm64
--extract`` and ``./build.sh build sklearn --no-mms --platform linux/arm64 --cross`` (about two
minutes, what CI runs), the others under emulation (tens of minutes). Every container runs with
``--platform linux/arm64``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images.conftest import REPO, Container, docker, image_tag
from tests.images.test_images import artifact, assert_prediction, multi_model_round_trip
from tests.support.server import free_port

pytestmark = pytest.mark.images

PLATFORM = "linux/arm64"
# Under QEMU every instruction is translated: importing scikit-learn takes ~10x longer than natively.
READY_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 3 * 3600
OPTION = "SERVEKIT_ARM64"
CHOICES = {"sklearn": ("sklearn",), "all": ("sklearn", "pytorch", "tensorflow")}
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def selected() -> tuple[str, ...]:
    """The frameworks SERVEKIT_ARM64 asks for (empty when unset); a wrong value fails the run."""
    value = os.environ.get(OPTION, "").strip()
    if not value:
        return ()
    if value not in CHOICES:
        pytest.fail(f"{OPTION}={value!r}: expected one of {', '.join(CHOICES)} (or unset to skip)")
    return CHOICES[value]


def emulation_problem() -> str | None:
    """Why this machine cannot run arm64 binaries, or None."""
    if platform.machine() in ("aarch64", "arm64"):
        return None
    if not BINFMT.is_file():
        return f"no QEMU aarch64 interpreter is registered ({BINFMT} missing)"
    text = BINFMT.read_text()
    if not text.startswith("enabled"):
        return f"{BINFMT} is disabled"
    flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags:")), "")
    if "F" not in flags:
        return f"{BINFMT} lacks the F flag, so containers cannot reach the interpreter"
    return None


def require(framework: str) -> None:
    """Skip loudly unless the option selects ``framework``; fail when it does and emulation is missing."""
    chosen = selected()
    if framework not in chosen:
        now = f"{OPTION} is unset"
        if chosen:
            now = f"{OPTION}={os.environ[OPTION].strip()} selects {', '.join(chosen)} only"
        pytest.skip(f"ARM64 {framework.upper()} IMAGE TEST NOT RUN: {now}; {OPTION}=all runs every framework's "
                    "under emulation (tens of minutes)")
    problem = emulation_problem()
    if problem is not None:
        pytest.fail(f"{OPTION} asks for arm64 tests but this machine cannot run arm64 binaries: {problem}. "
                    "Run `bash .ci/setup-emulation.sh` as root")


_ready: set[str] = set()


def arm64_tag() -> str:
    """The tag of the arm64 images under test, without the ``-arm64`` suffix."""
    return os.environ.get("SERVEKIT_ARM64_TAG") or image_tag()


def arm64_image(framework: str) -> str:
    """``servekit-<framework>:<tag>-arm64``, built (with its base) through build.sh when missing."""
    name = f"servekit-{framework}:{arm64_tag()}-arm64"
    if name in _ready:
        return name
    if docker("image", "inspect", name, check=False).returncode != 0:
        base = [str(REPO / "build.sh"), "base", "--platform", PLATFORM]
        build = [str(REPO / "build.sh"), "build", framework, "--platform", PLATFORM, "--tag", arm64_tag()]
        if arm64_tag().endswith("nomms"):
            build.append("--no-mms")
            if framework == "sklearn":  # as ./build.sh test makes it
                base.append("--extract")
                build.append("--cross")
        steps = [base, build]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            if result.returncode != 0:
                tail = (result.stdout + result.stderr)[-4000:]
                pytest.fail(f"{name} is missing and `{' '.join(step)}` failed:\n{tail}")
    architecture = docker("image", "inspect", "-f", "{{.Architecture}}", name).stdout.strip()
    assert architecture == "arm64", f"{name} is {architecture}, not arm64"
    _ready.add(name)
    return name


@pytest.fixture
def run_arm64(docker_engine: None) -> Iterator[Any]:
    """Start arm64 containers (``--platform linux/arm64``, host network, free port); removed afterwards."""
    started: list[Container] = []

    def start(image: str, env: dict[str, str] | None = None, mounts: dict[Path, str] | None = None) -> Container:
        port = free_port()
        command = ["run", "-d", "--platform", PLATFORM, "--network", "host",
                   "--name", f"servekit-test-arm64-{uuid.uuid4().hex[:10]}",
                   "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SERVE_HOST=127.0.0.1"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        for source, target in (mounts or {}).items():
            command += ["-v", f"{source}:{target}:ro"]
        container = Container(docker(*command, image, "serve").stdout.strip(), port, image)
        started.append(container)
        container.wait_ready(READY_TIMEOUT_S)
        return container

    yield start
    for container in started:
        container.remove()


DISTRIBUTIONS = ("import importlib.metadata as m; "
                 "print('\\n'.join(sorted(f'{d.name}=={d.version}' for d in m.distributions())))")


def distributions(image: str, platform_name: str) -> set[str]:
    """``name==version`` of every distribution in the image's Python environment."""
    result = docker("run", "--rm", "--platform", platform_name, "--network", "host", "--entrypoint", "python",
                    image, "-c", DISTRIBUTIONS, timeout=300)
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def test_sklearn_arm64_image_has_the_amd64_images_versions(docker_engine: None) -> None:
    # --cross installs aarch64 wheels with the host's pip; a release without an aarch64 wheel must
    # fail the build, never drift to an older one. pip and setuptools come with each base's Python.
    require("sklearn")
    image = arm64_image("sklearn")
    amd64 = f"servekit-sklearn:{image_tag()}"
    if docker("image", "inspect", amd64, check=False).returncode != 0:
        pytest.fail(f"{amd64} (linux/amd64) is missing: ./build.sh build sklearn makes it")
    from_base = ("pip==", "setuptools==")
    arm = {item for item in distributions(image, PLATFORM) if not item.startswith(from_base)}
    amd = distributions(amd64, "linux/amd64")
    assert len(arm) > 20, arm
    assert arm <= amd, f"versions in {image} but not in {amd64}: {sorted(arm - amd)}"


BASE = "servekit/base:bookworm-arm64"
# What the packages' scripts leave in a base, which ./build.sh base --extract writes without running
# them (docs/images.md): a dpkg database apt can use, the loader cache, accounts, the CA bundle.
BASE_CHECKS = """
dpkg --audit
dpkg -S /bin/gzip >/dev/null
test "$(dpkg-query -W -f='${db:Status-Status}' python3.11)" = installed
test -s /etc/ld.so.cache
python3 -c 'import ctypes.util, sys; sys.exit(ctypes.util.find_library("c") is None)'
getent passwd root >/dev/null
test "$(grep -c BEGIN /etc/ssl/certs/ca-certificates.crt)" -gt 100
test "$(readlink -f /usr/bin/awk)" = /usr/bin/mawk
echo base-ok
"""


def test_arm64_base_is_set_up_as_its_packages_scripts_would(docker_engine: None) -> None:
    require("sklearn")
    arm64_image("sklearn")  # makes the base too when missing
    how = docker("image", "inspect", "-f", '{{index .Config.Labels "com.servekit.base"}}', BASE).stdout.strip()
    result = docker("run", "--rm", "--platform", PLATFORM, "--network", "host", "--entrypoint", "/bin/bash", BASE,
                    "-ec", BASE_CHECKS, timeout=300, check=False)
    assert result.returncode == 0 and "base-ok" in result.stdout, (
        f"{BASE} (made by {how or 'an older build.sh'}) fails a check:\n{result.stdout}{result.stderr}")


def test_sklearn_arm64_image_runs_arm64_code(docker_engine: None) -> None:
    require("sklearn")
    image = arm64_image("sklearn")
    machine = docker("run", "--rm", "--platform", PLATFORM, "--network", "host", "--entrypoint", "python", image,
                     "-c", "import platform, sklearn; print(platform.machine())", timeout=300).stdout.strip()
    assert machine == "aarch64", f"{image} runs as {machine!r}, not aarch64"


def test_sklearn_arm64_single_model(docker_engine: None, run_arm64: Any,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    require("sklearn")
    image = arm64_image("sklearn")
    model = artifact(tmp_path_factory, "sklearn")
    container = run_arm64(image, mounts={model.path: "/opt/ml/model"})
    assert httpx.get(container.url + "/ping", timeout=10).status_code == 200
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=120), model)


def test_sklearn_arm64_multi_model(docker_engine: None, run_arm64: Any,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    require("sklearn")
    image = arm64_image("sklearn")
    first = artifact(tmp_path_factory, "sklearn", "first", seed=1)
    second = artifact(tmp_path_factory, "sklearn", "second", seed=2)
    container = run_arm64(image, env={"SAGEMAKER_MULTI_MODEL": "true"},
                          mounts={first.path: "/opt/ml/models/first", second.path: "/opt/ml/models/second"})
    multi_model_round_trip(container, first, second, timeout=150)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_arm64_image_starts_and_answers_one_request(framework: str, docker_engine: None, run_arm64: Any,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    require(framework)
    image = arm64_image(framework)
    model = artifact(tmp_path_factory, framework)
    container = run_arm64(image, mounts={model.path: "/opt/ml/model"})
    assert_prediction(httpx.post(container.url + "/invocations", json=model.rows, timeout=300), model)


def test_the_option_without_emulation_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """Needs no Docker: the option set on a machine that cannot run arm64 must fail, never skip."""
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(sys.modules[__name__], "BINFMT", tmp_path / "qemu-aarch64")
    monkeypatch.setenv(OPTION, "sklearn")
    with pytest.raises(pytest.fail.Exception, match="cannot run arm64 binaries"):
        require("sklearn")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\n")
    with pytest.raises(pytest.fail.Exception, match="F flag"):
        require("sklearn")
    monkeypatch.delenv(OPTION)
    with pytest.raises(pytest.skip.Exception, match="NOT RUN"):
        require("sklearn")
