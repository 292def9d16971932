"""A GPU image (SERVEKIT_ACCELERATOR=gpu) started where no GPU is visible says so in one WARNING line
at start, or refuses to start with SERVE_REQUIRE_GPU=true; a bad SERVEKIT_ACCELERATOR is refused
(docs/images.md, "GPU images")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serve.accelerator import missing_gpu, no_gpu_line
from serve.settings import Settings, SettingsError
from tests.support.models import SklearnArtifact
from tests.support.server import run_server

NO_GPU = "but no GPU is visible"


@pytest.fixture
def with_gpu(tmp_path: Path) -> Path:
    """A /dev stand-in holding an NVIDIA device node's name (and the control nodes beside it)."""
    dev = tmp_path / "with-gpu"
    dev.mkdir()
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    return dev


@pytest.fixture
def without_gpu(tmp_path: Path) -> Path:
    """A /dev stand-in with the control nodes but no GPU: /dev/nvidiactl alone is not a GPU."""
    dev = tmp_path / "without-gpu"
    dev.mkdir()
    for name in ("nvidiactl", "nvidia-uvm", "null"):
        (dev / name).touch()
    return dev


def test_a_gpu_image_without_a_device_gets_one_line(without_gpu: Path) -> None:
    line = no_gpu_line("gpu", False, without_gpu, environ={})
    assert line is not None and "\n" not in line
    assert line.startswith("GPU image (SERVEKIT_ACCELERATOR=gpu) but no GPU is visible: no ")
    assert str(without_gpu / "nvidia") + "* device" in line
    assert line.endswith("models run on the CPU (SERVE_REQUIRE_GPU=true refuses to start instead)")


def test_a_device_present_means_no_line(with_gpu: Path) -> None:
    assert missing_gpu(with_gpu, environ={}) is None
    assert no_gpu_line("gpu", False, with_gpu, environ={}) is None


@pytest.mark.parametrize("visible", ["void", "none", "", "NONE"])
def test_nvidia_visible_devices_that_pass_no_gpu_count_as_none(with_gpu: Path, visible: str) -> None:
    reason = missing_gpu(with_gpu, environ={"NVIDIA_VISIBLE_DEVICES": visible})
    assert reason == f"NVIDIA_VISIBLE_DEVICES={visible!r}"


def test_nvidia_visible_devices_naming_a_gpu_leaves_it_to_dev(with_gpu: Path, without_gpu: Path) -> None:
    assert missing_gpu(with_gpu, environ={"NVIDIA_VISIBLE_DEVICES": "all"}) is None
    assert missing_gpu(without_gpu, environ={"NVIDIA_VISIBLE_DEVICES": "0"}) is not None


@pytest.mark.parametrize("accelerator", ["cpu", None])
def test_cpu_or_undeclared_images_get_no_line(without_gpu: Path, accelerator: str | None) -> None:
    assert no_gpu_line(accelerator, False, without_gpu, environ={}) is None


def test_required_gpu_words_the_refusal(without_gpu: Path) -> None:
    line = no_gpu_line("gpu", True, without_gpu, environ={})
    assert line is not None and line.endswith("SERVE_REQUIRE_GPU=true: not starting")


@pytest.mark.parametrize("value", ["cuda", "nvidia", "tpu", "gpu,cpu"])
def test_accelerator_values_other_than_cpu_or_gpu_are_refused(value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"SERVEKIT_ACCELERATOR": value})
    assert str(info.value).startswith(f"SERVEKIT_ACCELERATOR={value!r} is invalid: expected cpu or gpu")


@pytest.mark.parametrize(("value", "parsed"), [("gpu", "gpu"), (" GPU", "gpu"), ("cpu", "cpu"), ("", None)])
def test_accelerator_values_accepted(value: str, parsed: str | None) -> None:
    assert Settings.from_env({"SERVEKIT_ACCELERATOR": value}).accelerator == parsed


def test_require_gpu_on_a_cpu_image_is_refused() -> None:
    with pytest.raises(SettingsError, match="SERVE_REQUIRE_GPU=true needs a GPU image"):
        Settings.from_env({"SERVE_REQUIRE_GPU": "true", "SERVEKIT_ACCELERATOR": "cpu"})


def _serve(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serve"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_bad_accelerator_stops_the_server_with_one_line_and_exit_2() -> None:
    result = _serve(SERVEKIT_ACCELERATOR="cuda")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "serve: error: SERVEKIT_ACCELERATOR='cuda' is invalid: expected cpu or gpu (set by the image's build)"]


def test_required_gpu_with_none_visible_stops_the_server_with_one_line_and_exit_2() -> None:
    # NVIDIA_VISIBLE_DEVICES=void: no GPU, whatever this machine has under /dev.
    result = _serve(SERVEKIT_ACCELERATOR="gpu", SERVE_REQUIRE_GPU="true", NVIDIA_VISIBLE_DEVICES="void")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and NO_GPU in result.stderr, result.stderr


@pytest.mark.parametrize(("accelerator", "lines"), [("gpu", 1), ("cpu", 0), (None, 0)])
def test_the_server_says_it_once_at_start(iris: SklearnArtifact, accelerator: str | None, lines: int) -> None:
    """Through the real start: the line comes from the first process, not from each forked worker."""
    env = {"SERVE_MODEL_DIR": str(iris.path), "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "NVIDIA_VISIBLE_DEVICES": "void"}
    if accelerator is not None:
        env["SERVEKIT_ACCELERATOR"] = accelerator
    with run_server(env) as server:
        found = server.log_lines_containing(NO_GPU, deadline_s=1.0, count=2)
    assert len(found) == lines, server.log()
    assert all(" WARNING serve GPU image (SERVEKIT_ACCELERATOR=gpu)" in line for line in found), found
