"""docker/cross/prebuilt_venv.py, the host-side install behind ``./build.sh build --cross``: its
refusals and the venv layout it writes, without pip or Docker. The image it makes is checked under
emulation in tests/images/test_arm64.py (versions equal to the amd64 image's, contract checks)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.images.conftest import REPO

SCRIPT = REPO / "docker" / "cross" / "prebuilt_venv.py"


@pytest.fixture(scope="module")
def cross() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prebuilt_venv", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_manylinux_tag_bookworm_runs_is_offered(cross: ModuleType) -> None:
    # manylinux2014 alone makes pip pick older numpy/scikit-learn releases without a word.
    args = cross.platform_args("arm64")
    tags = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert "manylinux2014_aarch64" in tags and "manylinux_2_28_aarch64" in tags and "manylinux_2_36_aarch64" in tags
    assert not any("x86_64" in tag for tag in tags)


def test_a_marker_pip_would_evaluate_for_the_host_is_refused(cross: ModuleType) -> None:
    cross.refuse_machine_markers(["uvloop>=0.19; sys_platform != 'win32'", "numpy>=1.24"], "list")
    with pytest.raises(cross.Refused, match="tensorflow-cpu.*depends on the machine"):
        cross.refuse_machine_markers(["tensorflow-cpu>=2.15; platform_machine == 'x86_64'"], "list")


def test_the_command_refuses_in_one_line_before_installing(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1.24\ntensorflow-cpu>=2.15; platform_machine == 'x86_64'\n")
    result = subprocess.run([sys.executable, str(SCRIPT), "--arch", "arm64", "--requirements", str(requirements),
                             "--wheels", str(tmp_path), "--out", str(tmp_path / "venv.tar")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "linux/arm64" in lines[0] and "tensorflow-cpu" in lines[0], result.stderr
    assert not (tmp_path / "venv.tar").exists()


def dist_info(site: Path, name: str, files: dict[str, str]) -> Path:
    folder = site / f"{name}.dist-info"
    folder.mkdir(parents=True)
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def test_scripts_and_metadata_are_those_pip_writes_in_the_image(cross: ModuleType, tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "bin").mkdir(parents=True)
    (site / "bin" / "uvicorn").write_text(f"#!{sys.executable}\nimport uvicorn\n")
    uvicorn = dist_info(site, "uvicorn-0.55.0", {"REQUESTED": "", "RECORD": "../../bin/uvicorn,sha256=x,1\n"})
    click = dist_info(site, "click-8.5.1", {"REQUESTED": "", "RECORD": ""})
    pip = dist_info(site, "pip-23.0.1", {"REQUESTED": "", "direct_url.json": "{}",
                                         "RECORD": "pip-23.0.1.dist-info/direct_url.json,,\npip/__init__.py,,\n"})
    cross.fix_scripts(site, tmp_path / "venv" / "bin")
    cross.match_pip_metadata(site, ["uvicorn>=0.29"], [tmp_path / "pip-23.0.1-py3-none-any.whl"])
    cross.refuse_host_paths(tmp_path / "venv")
    script = tmp_path / "venv" / "bin" / "uvicorn"
    assert script.read_text().splitlines()[0] == "#!/opt/venv/bin/python3"
    assert (uvicorn / "RECORD").read_text().startswith("../../../bin/uvicorn,")
    assert (uvicorn / "REQUESTED").exists() and not (click / "REQUESTED").exists()  # click is only a dependency
    assert (pip / "REQUESTED").exists() and not (pip / "direct_url.json").exists()
    assert (pip / "RECORD").read_text() == "pip/__init__.py,,\n"
