"""``./build.sh build --dockerfile`` builds a team's Dockerfile with the team's own files as the context."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.images.conftest import REPO, docker, ensure_image, image_name
from tests.images.models import sklearn_model

pytestmark = pytest.mark.images

HANDLER = '''\
from handlers.sklearn_handler import SklearnHandler


class TeamHandler(SklearnHandler):
    name = "team"
'''


def _team_repository(root: Path, base: str) -> Path:
    """A repository of a team's own: a Dockerfile FROM a servekit image that COPYs a module beside it."""
    (root / "serving").mkdir(parents=True)
    (root / "serving" / "team_handler.py").write_text(HANDLER)
    (root / "serving" / "Dockerfile").write_text(
        f"FROM {base}\n"
        "COPY team_handler.py /opt/team/team_handler.py\n"
        "ENV PYTHONPATH=/opt/team SERVE_FRAMEWORK=team_handler:TeamHandler\n"
        "RUN python -c \"from handlers.registry import handler_class; handler_class('team_handler:TeamHandler')\"\n")
    return root / "serving" / "Dockerfile"


def test_a_dockerfile_outside_servekit_copies_files_from_its_own_directory(docker_engine: None,
                                                                           tmp_path: Path) -> None:
    base = ensure_image("sklearn")
    dockerfile = _team_repository(tmp_path / "team-repo", base)
    name, tag = f"servekit-test-team-{uuid.uuid4().hex[:8]}", "ctx"
    result = subprocess.run([str(REPO / "build.sh"), "build", "--dockerfile", str(dockerfile), "--name", name,
                             "--tag", tag], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    try:
        assert f"context {dockerfile.parent}" in result.stdout + result.stderr
        shown = docker("run", "--rm", "--network", "host", "--entrypoint", "python", f"{name}:{tag}", "-c",
                       "import team_handler; print(team_handler.TeamHandler.name)").stdout.strip()
        assert shown == "team"
    finally:
        docker("image", "rm", "-f", f"{name}:{tag}", check=False)


def test_context_option_names_another_directory(docker_engine: None, tmp_path: Path) -> None:
    """--context DIR: the Dockerfile may live elsewhere (e.g. docker/Dockerfile with the code at the root)."""
    base = image_name("sklearn")
    ensure_image("sklearn")
    dockerfile = _team_repository(tmp_path / "team-repo", base)
    moved = tmp_path / "team-repo" / "docker" / "Dockerfile"
    moved.parent.mkdir()
    dockerfile.rename(moved)
    name, tag = f"servekit-test-team-{uuid.uuid4().hex[:8]}", "ctx"
    result = subprocess.run([str(REPO / "build.sh"), "build", "--dockerfile", str(moved), "--context",
                             str(dockerfile.parent), "--name", name, "--tag", tag],
                            capture_output=True, text=True, timeout=600)
    try:
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    finally:
        docker("image", "rm", "-f", f"{name}:{tag}", check=False)


def test_the_build_fails_when_doctor_finds_what_sagemaker_would_refuse(docker_engine: None, tmp_path: Path) -> None:
    """--model-data makes build.sh run servekit doctor on a --dockerfile image; a failed check fails the build."""
    base = ensure_image("sklearn")
    model = sklearn_model(tmp_path / "model")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "Dockerfile").write_text(
        f"FROM {base}\nLABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=false\n")
    name, tag = f"servekit-test-team-{uuid.uuid4().hex[:8]}", "doctor"
    try:
        result = subprocess.run([str(REPO / "build.sh"), "build", "--dockerfile", str(tmp_path / "repo" / "Dockerfile"),
                                 "--name", name, "--tag", tag, "--model-data", str(model.path)],
                                capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert re.search(r"^labels\s+fail\s", output, re.M), output[-3000:]
        assert re.search(rf"^{name}:{tag}\s+DOCTOR\s", output, re.M), output[-3000:]
    finally:
        docker("image", "rm", "-f", f"{name}:{tag}", check=False)


def test_without_model_data_the_build_says_doctor_did_not_run(docker_engine: None, tmp_path: Path) -> None:
    base = ensure_image("sklearn")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\n")
    name, tag = f"servekit-test-team-{uuid.uuid4().hex[:8]}", "doctor"
    try:
        result = subprocess.run([str(REPO / "build.sh"), "build", "--dockerfile", str(tmp_path / "Dockerfile"),
                                 "--name", name, "--tag", tag], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert f"doctor: not run on {name}:{tag}: give --model-data" in result.stdout + result.stderr
    finally:
        docker("image", "rm", "-f", f"{name}:{tag}", check=False)
