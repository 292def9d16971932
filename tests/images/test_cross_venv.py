"""docker/cross/prebuilt_venv.py, the host-side install behind ``./build.sh build --cross``: its
refusals and the venv layout it writes, without pip or Docker. The image it makes is checked under
emulation in tests/images/test_arm64.py (versions equal to the amd64 image's, contract checks)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import marshal
import struct
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.images.conftest import REPO

SCRIPT = REPO / "docker" / "cross" / "prebuilt_venv.py"
TAG = sys.implementation.cache_tag  # the script refuses any interpreter but the image's CPython 3.11
EPOCH = 315532800


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
                             "--wheels", str(tmp_path), "--out", str(tmp_path / "venv.tar"), "--epoch", "0"],
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
    click = dist_info(site, "click-8.5.1", {"REQUESTED": "", "RECORD": "click-8.5.1.dist-info/REQUESTED,,\n"})
    pip = dist_info(site, "pip-23.0.1", {"REQUESTED": "", "direct_url.json": "{}",
                                         "RECORD": "pip-23.0.1.dist-info/direct_url.json,,\npip/__init__.py,,\n"})
    cross.fix_scripts(site, tmp_path / "venv" / "bin")
    cross.match_pip_metadata(site, ["uvicorn>=0.29"], [tmp_path / "pip-23.0.1-py3-none-any.whl"])
    cross.refuse_host_paths(tmp_path / "venv")
    script = tmp_path / "venv" / "bin" / "uvicorn"
    assert script.read_text().splitlines()[0] == "#!/opt/venv/bin/python3"
    assert (uvicorn / "RECORD").read_text().startswith("../../../bin/uvicorn,")
    assert (uvicorn / "REQUESTED").exists() and not (click / "REQUESTED").exists()  # click is only a dependency
    assert "REQUESTED" not in (click / "RECORD").read_text()
    assert (pip / "REQUESTED").exists() and not (pip / "direct_url.json").exists()
    assert (pip / "RECORD").read_text() == "pip/__init__.py,,\n"


def tiny_venv(root: Path) -> Path:
    """A venv tree as --target leaves it once the scripts are moved: one package, one script."""
    site = root / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "broken.py").write_text("def (:\n")  # pip leaves a file that does not compile as it is
    (root / "bin").mkdir()
    (root / "bin" / "tool.py").write_text("print('tool')\n")
    dist_info(site, "pkg-1.0", {"RECORD": "pkg/__init__.py,sha256=a,10\r\npkg/broken.py,sha256=b,8\r\n"
                                          "../../../bin/tool.py,sha256=c,99\r\npkg-1.0.dist-info/RECORD,,\r\n"
                                          "pkg/__init__.py,sha256=a,10\r\n"})  # listed twice, pypa/pip#5868
    return site


def test_the_tar_is_the_same_bytes_from_two_trees_made_apart(cross: ModuleType, tmp_path: Path) -> None:
    tars = []
    for attempt in ("first", "second"):
        root = tmp_path / attempt / "venv"
        site = tiny_venv(root)
        cross.compile_as_pip(root, site, EPOCH)
        cross.write_tar(root, tmp_path / f"{attempt}.tar", EPOCH)
        tars.append((tmp_path / f"{attempt}.tar").read_bytes())
    assert tars[0] == tars[1]
    with tarfile.open(tmp_path / "first.tar") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert {member.mtime for member in members.values()} == {EPOCH}
    assert f"bin/__pycache__/tool.{TAG}.pyc" in members
    assert f"lib/python3.11/site-packages/pkg/__pycache__/broken.{TAG}.pyc" not in members


def test_the_pyc_files_record_the_image_path_and_are_listed(cross: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "venv"
    site = tiny_venv(root)
    cross.compile_as_pip(root, site, EPOCH)
    pyc = site / "pkg" / "__pycache__" / f"__init__.{TAG}.pyc"
    flags, mtime, size = struct.unpack("<III", pyc.read_bytes()[4:16])
    assert (flags, mtime, size) == (0, EPOCH, len("VALUE = 1\n"))  # a timestamp .pyc valid in the image
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == "/opt/venv/lib/python3.11/site-packages/pkg/__init__.py"
    # the script's hash and size are its own (pip's in the image), not the ones --target recorded
    tool_hash = base64.urlsafe_b64encode(hashlib.sha256(b"print('tool')\n").digest()).rstrip(b"=").decode()
    assert (site / "pkg-1.0.dist-info" / "RECORD").read_bytes() == (
        f"../../../bin/__pycache__/tool.{TAG}.pyc,,\r\n../../../bin/tool.py,sha256={tool_hash},14\r\n"
        f"pkg-1.0.dist-info/RECORD,,\r\npkg/__init__.py,sha256=a,10\r\npkg/__init__.py,sha256=a,10\r\n"
        f"pkg/__pycache__/__init__.{TAG}.pyc,,\r\npkg/broken.py,sha256=b,8\r\n").encode()
