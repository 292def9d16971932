"""S3 objects for batch transform and asynchronous inference: which objects an input names, reading one
(as a stream), writing one.

Everything is streamed: an input is read in ``CHUNK``-sized pieces (decompressed on the fly for
``CompressionType: Gzip``), an output is uploaded from a local file, so a job's memory does not grow
with its data. The client honours ``AWS_ENDPOINT_URL_S3`` (moto, MinIO) like the user's own boto3 code.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts import CHUNK, s3_client, split_s3


class S3InputError(Exception):
    """An input or output location cannot be used; the message is the job's FailureReason."""


@dataclass(frozen=True)
class InputObject:
    """One object to transform and where its result goes, relative to S3OutputPath."""

    bucket: str
    key: str
    relative: str  # the key below the input prefix; the output is <S3OutputPath>/<relative>.out

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _not_found(uri: str) -> S3InputError:
    return S3InputError(
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the bucket '
        "exists in the selected region, that objects exist under that S3 prefix, and that the role provided "
        "has permissions to read them."
    )


class S3Objects:
    """One job's S3 access (one boto3 client, made on first use in the job's thread)."""

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.endpoint_url, self.region)
        return self._client

    def inputs(self, data_type: str, uri: str) -> list[InputObject]:
        """The objects an S3DataSource names: every key under an S3Prefix, or a ManifestFile's list."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self._manifest(uri) if data_type == "ManifestFile" else self._prefix(uri)
        except (ClientError, BotoCoreError) as exc:
            raise S3InputError(f"Cannot read input {uri}: {exc}") from None
        if not found:
            raise _not_found(uri)
        return found

    def _prefix(self, uri: str) -> list[InputObject]:
        bucket, prefix = split_s3(uri)
        base = prefix[:prefix.rfind("/") + 1]  # relative names start after the prefix's last '/'
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    found.append(InputObject(bucket, item["Key"], item["Key"][len(base):]))
        return found

    def _manifest(self, uri: str) -> list[InputObject]:
        """``[{"prefix": "s3://bucket/p/"}, "relative/key", ...]`` (SageMaker's manifest format)."""
        bucket, key = split_s3(uri)
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"].read(16 * 2**20)
        try:
            entries = json.loads(body)
            prefix = entries[0]["prefix"]
            names = [str(e) for e in entries[1:]]
        except (ValueError, KeyError, IndexError, TypeError):
            raise S3InputError(f'Manifest file {uri} is not a JSON list starting with {{"prefix": "s3://..."}} '
                               "followed by relative keys") from None
        prefix_bucket, prefix_key = split_s3(prefix)
        return [InputObject(prefix_bucket, posixpath.join(prefix_key, name), name) for name in names]

    def read(self, source: InputObject, gzip: bool) -> Iterator[bytes]:
        """The object's bytes in chunks, decompressed when ``gzip``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=source.bucket, Key=source.key)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise S3InputError(f"Cannot read input {source.uri}: {exc}") from None
        try:
            if not gzip:
                yield from body.iter_chunks(CHUNK)
                return
            inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
            for chunk in body.iter_chunks(CHUNK):
                while chunk:
                    yield inflater.decompress(chunk, CHUNK)
                    chunk = inflater.unconsumed_tail
            if not inflater.eof:
                raise S3InputError(f"{source.uri} is not a complete gzip stream (CompressionType Gzip)")
        except zlib.error as exc:
            raise S3InputError(f"{source.uri} cannot be decompressed (CompressionType Gzip): {exc}") from None
        finally:
            body.close()

    def read_bytes(self, uri: str, limit: int) -> tuple[bytes, str | None]:
        """A whole object, at most ``limit`` bytes, and its Content-Type (S3InputError beyond the limit, or
        when it cannot be read)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3(uri)
        try:
            reply = self.client.get_object(Bucket=bucket, Key=key)
            if int(reply.get("ContentLength") or 0) > limit:
                raise S3InputError(f"{uri} is larger than the {limit}-byte limit")
            data = reply["Body"].read(limit + 1)
        except (ClientError, BotoCoreError) as exc:
            raise S3InputError(f"Cannot read {uri}: {exc}") from None
        if len(data) > limit:
            raise S3InputError(f"{uri} is larger than the {limit}-byte limit")
        return bytes(data), reply.get("ContentType")

    def put_bytes(self, uri: str, body: bytes, content_type: str | None) -> None:
        """Write ``body`` to ``uri``; S3InputError when it cannot be written."""
        bucket, key = split_s3(uri)
        extra = {"ContentType": content_type} if content_type else {}
        with _writing(uri):
            self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def upload(self, path: Path, uri: str) -> None:
        """Write the local file ``path`` to ``uri`` (multipart for large files); S3InputError when it
        cannot be written."""
        bucket, key = split_s3(uri)
        with _writing(uri):
            self.client.upload_file(str(path), bucket, key)


@contextlib.contextmanager
def _writing(uri: str) -> Iterator[None]:
    """boto3's errors while writing ``uri`` as one S3InputError naming it."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        raise S3InputError(f"Cannot write {uri}: {exc}") from None


def output_uri(output_path: str, source: InputObject) -> str:
    """``<S3OutputPath>/<relative key>.out``."""
    return f"{output_path.rstrip('/')}/{source.relative}.out"
