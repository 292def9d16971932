"""servekit's pytest plugin as a team uses it: team_image_tests.py, run by a fresh pytest in a pytester
directory (the plugin loaded from its entry point), on the process backend and, with the marker
``images``, on the docker backend with the real servekit-sklearn image; the backend choice, its
one-line refusal, and what loading the plugin costs servekit's own runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness import pytest_plugin
from harness.backends.docker import docker_available
from tests.harness.conftest import missing_prerequisite
from tests.images.conftest import ensure_image

TEAM_TESTS = Path(__file__).with_name("team_image_tests.py")
DOCTOR_TESTS = Path(__file__).with_name("team_doctor_tests.py")
REPO = Path(__file__).resolve().parents[2]
TEAM_TEST_COUNT = 8


def run_team_tests(pytester: pytest.Pytester, *args: str, doctor: bool = False) -> pytest.RunResult:
    pytester.makepyfile(test_team=TEAM_TESTS.read_text())
    if doctor:
        pytester.makepyfile(test_team_doctor=DOCTOR_TESTS.read_text())
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=240)


def without_docker(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds no docker client, so no engine answers."""
    empty = pytester.mkdir("no-docker-here")
    monkeypatch.setenv("PATH", str(empty))


def test_team_tests_pass_on_the_process_backend(pytester: pytest.Pytester) -> None:
    result = run_team_tests(pytester, "--servekit-backend", "process")
    result.assert_outcomes(passed=TEAM_TEST_COUNT)
    result.stdout.fnmatch_lines(["servekit: local SageMaker on http://127.0.0.1:*, backend process (asked for)"])


@pytest.mark.images
def test_team_tests_pass_on_the_docker_backend(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    if not docker_available():
        missing_prerequisite("no Docker engine answers `docker info`")
    monkeypatch.setenv("TEAM_IMAGE", ensure_image("sklearn"))
    result = run_team_tests(pytester, doctor=True)  # auto: docker, since an engine answers
    result.assert_outcomes(passed=TEAM_TEST_COUNT + 2)
    result.stdout.fnmatch_lines(["servekit: local SageMaker on *, backend docker (a Docker engine answers)"])


def test_docker_asked_for_without_an_engine_fails_in_one_line(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    without_docker(pytester, monkeypatch)
    pytester.makepyfile(test_x="def test_x(servekit_sagemaker):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--servekit-backend", "docker", timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["servekit backend docker was asked for but no Docker engine answers `docker info`"])
    assert "backend process" not in result.stdout.str() and "Traceback" not in result.stdout.str()


def test_auto_without_an_engine_says_it_runs_processes(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    without_docker(pytester, monkeypatch)
    pytester.makepyfile(test_x="def test_x(servekit_sagemaker):\n    assert servekit_sagemaker.backend.name == "
                               "'process'\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*backend process (no Docker engine answers `docker info`)"])


def test_the_ini_setting_chooses_the_backend(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nservekit_backend = process\n")
    pytester.makepyfile(test_x="def test_x(servekit_sagemaker):\n    assert servekit_sagemaker.backend.name == "
                               "'process'\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*backend process (asked for)"])


def test_loading_the_plugin_imports_no_harness_machinery() -> None:
    code = ("import sys; import harness.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'boto3', 'botocore', 'httpx', 'uvicorn', "
            "'starlette', 'numpy', 'psutil'} or m.startswith('harness.') and m not in "
            "{'harness.pytest_plugin', 'harness.testing'}))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert imported.stdout.strip() == "[]"


def _conftest_names(path: Path) -> set[str]:
    """Fixture and function names a conftest defines, and the option strings it adds."""
    tree = ast.parse(path.read_text())
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    options = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--")}
    return names | options


def test_the_plugin_names_collide_with_no_conftest_of_servekit() -> None:
    ours = {name for name in vars(pytest_plugin) if name.startswith("servekit_")} | {"--servekit-backend"}
    assert {"servekit_sagemaker", "servekit_endpoint", "servekit_faults", "servekit_doctor"} <= ours
    for conftest in REPO.glob("tests/**/conftest.py"):
        assert not ours & _conftest_names(conftest), conftest
