"""SAGEMAKER_SUBMIT_DIRECTORY and SAGEMAKER_PROGRAM as AWS's toolkits read them, with no fallback.

A directory, a local ``.tar.gz`` and an ``s3://`` archive (moto's in-process S3) all serve the script;
anything configured that cannot be honoured is a load error naming the variable.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from handlers.errors import ModelLoadError
from handlers.model import ServedModel
from handlers.submit_directory import cache_root
from tests.handlers.helpers import make_handler, req, write

SCRIPT = "def predict_fn(data, model):\n    return ['from the script']\n"
BUCKET = "code-bucket"


def load(model_dir: Path, **options: object) -> ServedModel:
    return ServedModel.load(make_handler(**options), str(model_dir), "model")


def answer(served: ServedModel) -> object:
    return json.loads(served.invoke(req("[1]")).body)


def sourcedir_tar(files: dict[str, str]) -> bytes:
    """A sourcedir.tar.gz as the SageMaker SDK uploads it (files at the archive's root)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test extracts into its own temp directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_local_tar_gz(tmp_path: Path, scale_dir: Path) -> None:
    archive = tmp_path / "sourcedir.tar.gz"
    archive.write_bytes(sourcedir_tar({"inference.py": SCRIPT}))
    assert answer(load(scale_dir, submit_directory=str(archive))) == ["from the script"]
    assert answer(load(scale_dir, submit_directory=f"file://{archive}")) == ["from the script"]


def test_s3_sourcedir_with_program_and_helper(scale_dir: Path, s3: object) -> None:
    files = {"serve_me.py": "from helper import VALUE\ndef predict_fn(data, model):\n    return [VALUE]\n",
             "helper.py": "VALUE = 'helper'\n"}
    s3.put_object(Bucket=BUCKET, Key="job/source/sourcedir.tar.gz", Body=sourcedir_tar(files))  # type: ignore[attr-defined]
    uri = f"s3://{BUCKET}/job/source/sourcedir.tar.gz"
    assert answer(load(scale_dir, submit_directory=uri, program="serve_me.py")) == ["helper"]
    # Fetched once per container: a second load is served from the cache even with the object gone.
    s3.delete_object(Bucket=BUCKET, Key="job/source/sourcedir.tar.gz")  # type: ignore[attr-defined]
    assert answer(load(scale_dir, submit_directory=uri, program="serve_me")) == ["helper"]
    assert len([p for p in cache_root().iterdir() if p.is_dir()]) == 1


@pytest.mark.parametrize(
    ("submit", "message"),
    [
        (f"s3://{BUCKET}/missing.tar.gz", "cannot fetch it"),
        ("s3://bucket-only", "expected s3://bucket/key"),
        ("https://example.invalid/code.tar.gz", "unsupported location"),
        ("no/such/dir", "neither a directory nor an archive"),
    ],
)
def test_unreachable_code_is_a_load_error(scale_dir: Path, s3: object, submit: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        load(scale_dir, submit_directory=submit)
    assert "SAGEMAKER_SUBMIT_DIRECTORY=" in str(info.value) and "\n" not in str(info.value)


def test_not_an_archive_is_a_load_error(tmp_path: Path, scale_dir: Path) -> None:
    bogus = write(tmp_path / "code.tar.gz", "not a tar")
    with pytest.raises(ModelLoadError, match="not a readable tar archive"):
        load(scale_dir, submit_directory=str(bogus))


def test_archive_escaping_its_directory_is_refused(tmp_path: Path, scale_dir: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(sourcedir_tar({"../escaped.py": SCRIPT}))
    with pytest.raises(ModelLoadError, match="'../escaped.py' is not a plain file or directory"):
        load(scale_dir, submit_directory=str(archive))
    assert not list(tmp_path.rglob("escaped.py"))


def test_archive_with_a_link_is_refused(tmp_path: Path, scale_dir: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("inference.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(ModelLoadError, match="'inference.py' is not a plain file or directory"):
        load(scale_dir, submit_directory=str(archive))


def test_configured_program_missing_is_a_load_error(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", SCRIPT)
    with pytest.raises(ModelLoadError, match=r"SAGEMAKER_PROGRAM=serve_me: no serve_me.py in .*inference.py"):
        load(scale_dir, program="serve_me")


def test_submit_directory_without_the_script_is_a_load_error(tmp_path: Path, scale_dir: Path) -> None:
    write(tmp_path / "src" / "other.py", SCRIPT)
    with pytest.raises(ModelLoadError, match=r"no user script inference.py in .*other.py"):
        load(scale_dir, submit_directory=str(tmp_path / "src"))


def test_code_dir_with_python_but_no_script_is_a_load_error(scale_dir: Path) -> None:
    write(scale_dir / "code" / "train.py", SCRIPT)
    with pytest.raises(ModelLoadError, match="name the entry script with SAGEMAKER_PROGRAM"):
        load(scale_dir)


def test_code_dir_without_python_serves_defaults(scale_dir: Path) -> None:
    write(scale_dir / "code" / "README.txt", "notes")
    assert load(scale_dir).script is None
