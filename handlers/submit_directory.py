"""Where a model's user code lives: ``SAGEMAKER_SUBMIT_DIRECTORY`` read as AWS's toolkits read it.

The SageMaker Python SDK's framework models (``SKLearnModel(entry_point=..., source_dir=...)``) upload
the code as ``sourcedir.tar.gz`` and set ``SAGEMAKER_SUBMIT_DIRECTORY`` to its ``s3://`` URI; with
network isolation they repack it into the artifact's ``code/`` and set ``/opt/ml/model/code`` instead.
So the variable may name:

* a directory (absolute, ``file://``, or relative to the model directory);
* a local ``.tar.gz`` (or any tar archive);
* an ``s3://bucket/key`` archive, fetched with boto3 (which honours ``AWS_ENDPOINT_URL_S3`` and the
  container's credentials).

Archives may hold only regular files and directories inside themselves (no absolute paths, no
``..``, no links, no devices) into a cache directory named by the archive's SHA-256, so worker processes
of one container share one extraction, and an ``s3://`` archive is fetched once per container (a
marker per URI, written under a file lock). Anything that cannot be honoured raises
``ModelLoadError`` naming the variable: there is no fallback to ``<model>/code``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from handlers.errors import ModelLoadError

logger = logging.getLogger("servekit.handlers")

VARIABLE = "SAGEMAKER_SUBMIT_DIRECTORY"
S3_SCHEME = "s3://"
FILE_SCHEME = "file://"
_CHUNK = 1 << 20


def cache_root() -> Path:
    """Extracted archives and per-URI markers (the container's temp directory)."""
    return Path(tempfile.gettempdir()) / "servekit-code"


def resolve_code_dir(model_dir: Path, submit_directory: str | None) -> Path:
    """The local directory holding the user script: ``<model_dir>/code`` when nothing is configured."""
    if not submit_directory:
        return model_dir / "code"
    if submit_directory.startswith(S3_SCHEME):
        return _fetch_s3(submit_directory)
    if "://" in submit_directory and not submit_directory.startswith(FILE_SCHEME):
        raise ModelLoadError(
            f"{VARIABLE}={submit_directory}: unsupported location; use a directory, a .tar.gz or an s3:// URI"
        )
    path = Path(submit_directory.removeprefix(FILE_SCHEME))
    path = path if path.is_absolute() else model_dir / path
    if path.is_dir():
        return path
    if path.is_file():
        with open(path, "rb") as archive:
            return _extract(archive, submit_directory)
    raise ModelLoadError(f"{VARIABLE}={submit_directory}: {path} is neither a directory nor an archive")


def _fetch_s3(uri: str) -> Path:
    """Download and extract ``uri`` once per container (later calls read the marker)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f"{hashlib.sha256(uri.encode()).hexdigest()[:32]}.uri"
    with _locked(root / "fetch.lock"):
        if marker.is_file():
            cached = Path(marker.read_text())
            if cached.is_dir():
                return cached
        with tempfile.TemporaryFile(dir=root) as archive:
            _download(uri, archive)
            archive.seek(0)
            code_dir = _extract(archive, uri)
        marker.write_text(str(code_dir))
    logger.info("fetched %s=%s into %s", VARIABLE, uri, code_dir)
    return code_dir


def _download(uri: str, sink: IO[bytes]) -> None:
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not bucket or not key:
        raise ModelLoadError(f"{VARIABLE}={uri}: expected s3://bucket/key")
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise ModelLoadError(f"{VARIABLE}={uri}: boto3 is not installed in this image") from exc
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            sink.write(chunk)
    except (BotoCoreError, ClientError) as exc:
        raise ModelLoadError(f"{VARIABLE}={uri}: cannot fetch it: {exc}") from exc


def _extract(archive: IO[bytes], source: str) -> Path:
    """Extract a tar archive into ``<cache>/<sha256>/`` unless that directory already exists."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: archive.read(_CHUNK), b""):
        digest.update(chunk)
    archive.seek(0)
    root = cache_root()
    target = root / digest.hexdigest()[:32]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            _extract_members(tar, staging, source)
        with contextlib.suppress(OSError):  # another worker extracted the same content first
            os.rename(staging, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        # EOFError, zlib.error, LZMAError: a truncated or corrupt gzip/xz stream (tarfile does not wrap them).
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelLoadError(f"{VARIABLE}={source}: not a readable tar archive: {reason}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract_members(tar: tarfile.TarFile, target: Path, source: str) -> None:
    """Regular files and directories inside ``target`` only: the SDK's sourcedir.tar.gz holds nothing
    else. Checked here because tarfile's ``data`` filter exists only from Python 3.11.4 / 3.10.12 (the
    images' Debian Python is 3.11.2); the filter is applied too where it exists."""
    members = tar.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        if "\x00" in member.name:
            raise ModelLoadError(f"{VARIABLE}={source}: an archive member's name holds a NUL byte; refusing it")
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            raise ModelLoadError(
                f"{VARIABLE}={source}: the archive member {member.name!r} is not a plain file or directory "
                "inside the archive; refusing to extract it"
            )
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, members=members, filter="data")
    else:
        tar.extractall(target, members=members)  # every member was checked above


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
