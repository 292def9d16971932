"""Model artifacts: fetch them (s3://, https://, file://, local path) and extract them safely.

SageMaker copies ``ModelDataUrl`` and unpacks the tar.gz into ``/opt/ml/model`` before the container
starts (single model), or into ``/opt/ml/models/<name>/model`` on the first invocation of a target
model (MME); docs/sagemaker-contract.md §1.2, §2.2. An archive is untrusted input: a member outside the target
directory (absolute or with ``..``), a symbolic or hard link, or a device/FIFO is refused with an
error that names the member, before anything is written.

Every fetch and extraction runs under ``ArtifactLimits`` (``HarnessConfig.artifact_limits``): bytes
downloaded, bytes and files extracted, and seconds for the whole fetch + extraction, checked while
streaming, so a hostile or mistaken artifact fails with one line naming the bound instead of filling
the disk. A ``TargetModel`` is percent-decoded until stable before it is checked (``join_prefix``).
"""

from __future__ import annotations

import lzma
import posixpath
import re
import shutil
import tarfile
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.faults import Faults

#: Bytes read per chunk while streaming a download; the bounds are checked after each.
CHUNK = 1024 * 1024


class ArtifactError(Exception):
    """An artifact cannot be fetched or is unsafe to extract; the message names it and the fix."""


class ArtifactNotFound(ArtifactError):
    """The URL points at nothing."""


class ArtifactLimitExceeded(ArtifactError):
    """A fetch or an extraction went over one of ArtifactLimits; the message names the bound."""


@dataclass(frozen=True)
class ArtifactLimits:
    """Bounds on one artifact (``HarnessConfig.artifact_limits``); sized for a laptop."""

    #: Bytes one download may write (s3:// or https://).
    download_bytes: int = 5 * 2**30
    #: Bytes an archive's members may hold in all, as extracted.
    extracted_bytes: int = 10 * 2**30
    #: Members (files and directories) an archive may hold.
    files: int = 100_000
    #: Seconds one fetch + extraction may take.
    seconds: float = 900.0


class Budget:
    """One artifact's limits and the deadline of its fetch + extraction (``seconds`` may shorten it)."""

    def __init__(self, limits: ArtifactLimits | None = None, seconds: float | None = None) -> None:
        self.limits = limits or ArtifactLimits()
        self.seconds = min(self.limits.seconds, seconds if seconds is not None else self.limits.seconds)
        self.deadline = time.monotonic() + self.seconds

    def check_time(self, what: str) -> None:
        """ArtifactLimitExceeded once the deadline has passed."""
        if time.monotonic() > self.deadline:
            raise ArtifactLimitExceeded(f"{what} took longer than the {self.seconds:g}-second limit "
                                        "(artifact_limits.seconds)")

    def check_download(self, url: str, size: int) -> None:
        """ArtifactLimitExceeded when ``size`` bytes are over the download bound."""
        if size > self.limits.download_bytes:
            raise ArtifactLimitExceeded(f"model artifact {url} is over the {self.limits.download_bytes}-byte "
                                        "download limit (artifact_limits.download_bytes)")


def s3_client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 S3 client; ``endpoint_url`` None lets boto3 find a local S3 in the environment."""
    import boto3

    # With endpoint_url None, boto3 itself honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (a moto
    # or MinIO server), exactly as the user's own boto3 code would.
    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url or None)


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    parsed = urllib.parse.urlparse(url)
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(url: str) -> Path | None:
    """The filesystem path for a ``file://`` URL or an absolute path; None for remote URLs."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


#: How many rounds of percent-decoding a TargetModel may need before it stops changing.
DECODE_ROUNDS = 4


def decode_fully(text: str, what: str) -> str:
    """``text`` percent-decoded until it no longer changes; ArtifactError after DECODE_ROUNDS rounds."""
    for _ in range(DECODE_ROUNDS):
        decoded = urllib.parse.unquote(text, errors="strict")
        if decoded == text:
            return text
        text = decoded
    raise ArtifactError(f"{what} is percent-encoded more than {DECODE_ROUNDS - 1} times; send it decoded")


def relative_parts(text: str, what: str) -> list[str]:
    """The components of a path that must stay below a prefix, decoded first; ArtifactError otherwise.

    Refused: absolute paths, ``..``, backslashes, drive letters, NUL and other control characters,
    in any percent-encoding (``%2e%2e``, ``%252e%252e``, ``%2E%2e``, ``%5c``, ``%00``).
    """
    try:
        decoded = decode_fully(text.lstrip(), what)
    except UnicodeDecodeError:
        raise ArtifactError(f"{what} {text!r} is not valid UTF-8 once percent-decoded") from None
    parts = [p for p in decoded.split("/") if p not in ("", ".")]
    unsafe = (decoded.startswith("/") or "\\" in decoded or ".." in parts or not parts
              or any(ord(c) < 32 or ord(c) == 127 for c in decoded) or re.match(r"[A-Za-z]:", decoded))
    if unsafe:
        raise ArtifactError(f"{what} {text!r} must be a path relative to the model's ModelDataUrl prefix, "
                            "without '..', backslashes or control characters (after percent-decoding)")
    return parts


def join_prefix(prefix: str, target_model: str) -> str:
    """An MME's absolute artifact URL: the CreateModel prefix plus the relative, decoded TargetModel.

    Raises ArtifactError when ``target_model`` would leave the prefix (see ``relative_parts``); for a
    local prefix the joined path is also checked to resolve below the prefix's directory.
    """
    parts = relative_parts(target_model, "TargetModel")
    base = prefix if prefix.endswith("/") else prefix + "/"
    joined = base + "/".join(urllib.parse.quote(p) for p in parts) if base.startswith("file://") else (
        base + "/".join(parts))
    root, path = local_path(base), local_path(joined)
    if root is not None and path is not None and not path.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"TargetModel {target_model!r} resolves outside the model's ModelDataUrl prefix")
    return joined


def fetch(url: str, work_dir: Path, *, region: str = "us-east-1", s3_endpoint_url: str | None = None,
          budget: Budget | None = None, faults: Faults | None = None) -> Path:
    """Make the artifact at ``url`` available locally; returns a local file or directory path.

    Local paths are used in place; remote objects are streamed into ``work_dir`` within ``budget``.
    An artifact a test made vanish (``faults``) is missing, as a deleted S3 object is.
    """
    if faults is not None and faults.vanished(url):
        raise ArtifactNotFound(f"model artifact {url} does not exist (made to vanish by a test: harness.faults)")
    budget = budget or Budget()
    path = local_path(url)
    if path is not None:
        if not path.exists():
            raise ArtifactNotFound(f"model artifact {url} does not exist")
        return path
    work_dir.mkdir(parents=True, exist_ok=True)
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "model.tar.gz"
    dest = work_dir / name
    if url.startswith("s3://"):
        _fetch_s3(url, dest, region, s3_endpoint_url, budget)
        return dest
    if url.startswith(("https://", "http://")):
        try:
            timeout = max(1.0, min(60.0, budget.deadline - time.monotonic()))
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                _declared(url, response.headers.get("Content-Length"), budget)
                _stream(url, iter(lambda: response.read1(CHUNK), b""), dest, budget)
        except OSError as exc:
            raise ArtifactError(f"cannot download {url}: {exc}") from None
        return dest
    raise ArtifactError(f"unsupported model artifact URL {url!r}: use s3://, https://, file:// or an absolute path")


def _declared(url: str, length: object, budget: Budget) -> None:
    """Refuse before reading when the server declares a size over the bound."""
    if isinstance(length, int | str) and str(length).isascii() and str(length).isdigit():
        budget.check_download(url, int(length))


def _stream(url: str, chunks: Iterable[bytes], dest: Path, budget: Budget) -> None:
    """Write ``chunks`` to ``dest``, checking bytes and time after each; a partial file is removed."""
    written = 0
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                budget.check_download(url, written)
                budget.check_time(f"downloading {url}")
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _fetch_s3(url: str, dest: Path, region: str, endpoint_url: str | None, budget: Budget) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(url)
    client = s3_client(endpoint_url, region)
    try:
        reply = client.get_object(Bucket=bucket, Key=key)
        _declared(url, reply.get("ContentLength"), budget)
        _stream(url, reply["Body"].iter_chunks(CHUNK), dest, budget)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise ArtifactNotFound(f"no object at {url}") from None
        raise ArtifactError(f"cannot download {url}: {exc}") from None
    except BotoCoreError as exc:
        raise ArtifactError(f"cannot download {url}: {exc}") from None


#: What reading a corrupt or truncated archive raises besides tarfile's own errors: the gzip, bz2 and xz
#: decoders' errors surface as they are (tarfile does not wrap them).
UNREADABLE_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
#: Linux's NAME_MAX and PATH_MAX: a longer member name cannot be created (ENAMETOOLONG).
NAME_MAX, PATH_MAX = 255, 4096


def _check_name(member: tarfile.TarInfo, parts: list[str], archive: str) -> None:
    """Refuse names no file can be created under: NUL, no file name (a file called ``.``), too long."""
    name = member.name
    too_long = len(name.encode()) >= PATH_MAX or any(len(p.encode()) > NAME_MAX for p in parts)
    if "\x00" in name or too_long or (not parts and not member.isdir()):
        raise ArtifactError(f"model archive {archive} has a member whose name {name[:80]!r} is not a valid "
                            "file name (empty, NUL or too long); rebuild the archive")


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    _check_name(member, parts, archive)
    if name.startswith("/") or ".." in parts:
        raise ArtifactError(
            f"model archive {archive} is unsafe: member {name!r} would be written outside the model "
            "directory; rebuild the archive with relative paths (tar -C <dir> -czf model.tar.gz .)"
        )
    if member.issym() or member.islnk():
        raise ArtifactError(
            f"model archive {archive} is unsafe: member {name!r} is a "
            f"{'symbolic' if member.issym() else 'hard'} link to {member.linkname!r}; "
            "links are not allowed in model artifacts, store the file itself"
        )
    if member.isdev() or member.isfifo():
        raise ArtifactError(
            f"model archive {archive} is unsafe: member {name!r} is a device or FIFO; "
            "only regular files and directories are allowed"
        )


def _checked_members(tar: tarfile.TarFile, archive: str, budget: Budget) -> list[tarfile.TarInfo]:
    """Every member, each checked, read one at a time so the bounds stop a bomb early."""
    members: list[tarfile.TarInfo] = []
    total = 0
    limits = budget.limits
    while (member := tar.next()) is not None:
        _check_member(member, archive)
        members.append(member)
        total += max(member.size, 0)
        if len(members) > limits.files:
            raise ArtifactLimitExceeded(f"model archive {archive} holds more than {limits.files} members "
                                        "(artifact_limits.files)")
        if total > limits.extracted_bytes:
            raise ArtifactLimitExceeded(f"model archive {archive} extracts to more than {limits.extracted_bytes} "
                                        "bytes (artifact_limits.extracted_bytes)")
        budget.check_time(f"reading model archive {archive}")
    return members


def extract(archive: Path, target: Path, budget: Budget | None = None) -> None:
    """Extract a (gzipped) tar into ``target`` after checking every member and the bounds (see module
    docstring); nothing is written when a check fails."""
    budget = budget or Budget()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(tar, archive.name, budget)
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                budget.check_time(f"extracting model archive {archive.name}")
                # The "data" filter re-checks what we checked and also drops setuid bits and ownership.
                tar.extract(member, target, filter="data")
    except UNREADABLE_ARCHIVE as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__  # tarfile's messages span lines
        raise ArtifactError(
            f"model artifact {archive.name} is not a readable tar archive ({reason}); "
            "ModelDataUrl must point to a model.tar.gz"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"model artifact {archive.name} could not be extracted: {exc.strerror or exc}") from None


def materialize(source: Path, target: Path, budget: Budget | None = None) -> None:
    """Put a fetched artifact into ``target``: extract an archive (within ``budget``), or copy a local
    directory (the user's own files, unbounded)."""
    if source.is_dir():
        # Local convenience: a directory is copied as if it were the extracted archive.
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    extract(source, target, budget)
