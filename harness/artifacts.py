"""Model artifacts: fetch them (s3://, https://, file://, local path) and extract them safely.

SageMaker copies ``ModelDataUrl`` and unpacks the tar.gz into ``/opt/ml/model`` before the container
starts (single model), or into ``/opt/ml/models/<name>/model`` on the first invocation of a target
model (MME); docs/sagemaker-contract.md §1.2, §2.2. An archive is untrusted input: a member outside the target
directory (absolute or with ``..``), a symbolic or hard link, or a device/FIFO is refused with an
error that names the member, before anything is written.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path


class ArtifactError(Exception):
    """An artifact cannot be fetched or is unsafe to extract; the message names it and the fix."""


class ArtifactNotFound(ArtifactError):
    """The URL points at nothing."""


def _s3_client(endpoint_url: str | None, region: str) -> object:
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


def join_prefix(prefix: str, target_model: str) -> str:
    """An MME's absolute artifact URL: the CreateModel prefix plus the relative TargetModel.

    Raises ArtifactError when ``target_model`` would leave the prefix (absolute, or ``..``).
    """
    relative = target_model.lstrip()
    parts = [p for p in relative.split("/") if p]
    if relative.startswith("/") or ".." in parts or not parts:
        raise ArtifactError(
            f"TargetModel {target_model!r} must be a path relative to the model's ModelDataUrl prefix "
            "without '..' components"
        )
    base = prefix if prefix.endswith("/") else prefix + "/"
    return base + "/".join(parts)


def fetch(url: str, work_dir: Path, *, region: str = "us-east-1", s3_endpoint_url: str | None = None) -> Path:
    """Make the artifact at ``url`` available locally; returns a local file or directory path.

    Local paths are used in place; remote objects are downloaded into ``work_dir``.
    """
    path = local_path(url)
    if path is not None:
        if not path.exists():
            raise ArtifactNotFound(f"model artifact {url} does not exist")
        return path
    work_dir.mkdir(parents=True, exist_ok=True)
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "model.tar.gz"
    dest = work_dir / name
    if url.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3(url)
        client = _s3_client(s3_endpoint_url, region)
        try:
            client.download_file(bucket, key, str(dest))  # type: ignore[attr-defined]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise ArtifactNotFound(f"no object at {url}") from None
            raise ArtifactError(f"cannot download {url}: {exc}") from None
        except BotoCoreError as exc:
            raise ArtifactError(f"cannot download {url}: {exc}") from None
        return dest
    if url.startswith(("https://", "http://")):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise ArtifactError(f"cannot download {url}: {exc}") from None
        return dest
    raise ArtifactError(f"unsupported model artifact URL {url!r}: use s3://, https://, file:// or an absolute path")


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
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


def extract(archive: Path, target: Path) -> None:
    """Extract a (gzipped) tar into ``target`` after checking every member (see module docstring)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive.name)
            target.mkdir(parents=True, exist_ok=True)
            # The "data" filter re-checks what we checked and also drops setuid bits and ownership.
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        raise ArtifactError(
            f"model artifact {archive.name} is not a readable tar archive ({exc}); "
            "ModelDataUrl must point to a model.tar.gz"
        ) from None


def materialize(source: Path, target: Path) -> None:
    """Put a fetched artifact into ``target``: extract an archive, or copy a local directory."""
    if source.is_dir():
        # Local convenience: a directory is copied as if it were the extracted archive.
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    extract(source, target)
