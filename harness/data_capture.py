"""DataCaptureConfig: what an endpoint answered, written to S3 in SageMaker's capture format.

The format and layout are SageMaker's (docs/sagemaker-contract.md §11.2): JSON Lines objects under
``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``, one line per sampled request, each
``{"captureData": {"endpointInput": {...}, "endpointOutput": {...}}, "eventMetadata": {...}, "eventVersion": "0"}``.
Records wait in memory and are written when an object would pass ``flush_bytes``, every
``flush_interval_s``, and when the endpoint stops (DeleteEndpoint, UpdateEndpoint, harness shutdown), so
nothing captured is lost (docs/harness.md "Data capture").
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from harness.artifacts import s3_client, split_s3

log = logging.getLogger("harness")

CAPTURE_MODES = {"Input": (True, False), "Output": (False, True), "InputAndOutput": (True, True)}


def check_config(config: dict[str, Any]) -> None:
    """What botocore's model cannot say and the harness does not honour; ValueError names it."""
    if config.get("KmsKeyId"):
        raise ValueError("DataCaptureConfig KmsKeyId is not supported by the local harness (KMS is not emulated; "
                         "captured objects would not be encrypted with it)")
    if not str(config["DestinationS3Uri"]).startswith("s3://"):
        raise ValueError("DataCaptureConfig DestinationS3Uri must be an s3:// URI for the local harness "
                         "(https:// S3 URLs are not supported)")


def media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (matched against CaptureContentTypeHeader)."""
    return (content_type or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class CaptureSettings:
    """A DataCaptureConfig, read once."""

    enabled: bool
    percentage: int
    bucket: str
    prefix: str
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CaptureSettings:
        bucket, prefix = split_s3(config["DestinationS3Uri"])
        modes = [CAPTURE_MODES[o["CaptureMode"]] for o in config["CaptureOptions"]]
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(enabled=bool(config.get("EnableCapture", True)), percentage=int(config["InitialSamplingPercentage"]),
                   bucket=bucket, prefix=prefix.rstrip("/"),
                   capture_input=any(i for i, _ in modes), capture_output=any(o for _, o in modes),
                   csv_types=frozenset(media_type(t) for t in header.get("CsvContentTypes") or []),
                   json_types=frozenset(media_type(t) for t in header.get("JsonContentTypes") or []))

    def encode(self, mode: str, content_type: str | None, body: bytes) -> dict[str, str]:
        """One side of a record: CSV or JSON text for the listed content types, else BASE64 (SageMaker's
        default when CaptureContentTypeHeader lists none). A listed body that is not UTF-8 text is written
        as BASE64 too, which its ``encoding`` says, so the record keeps its bytes exactly."""
        kind = media_type(content_type)
        encoding = "CSV" if kind in self.csv_types else "JSON" if kind in self.json_types else "BASE64"
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                encoding = "BASE64"
        if encoding == "BASE64":
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


@dataclass
class Exchange:
    """One answered request, as captured."""

    variant: str
    request_type: str | None
    request: bytes
    response_type: str | None
    response: bytes
    inference_id: str | None = None
    when: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def capture_line(settings: CaptureSettings, exchange: Exchange) -> str:
    """The JSON Lines record of ``exchange``."""
    data: dict[str, Any] = {}
    if settings.capture_input:
        data["endpointInput"] = settings.encode("INPUT", exchange.request_type, exchange.request)
    if settings.capture_output:
        data["endpointOutput"] = settings.encode("OUTPUT", exchange.response_type, exchange.response)
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": exchange.when.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{exchange.when.microsecond // 1000:03d}Z"}
    if exchange.inference_id is not None:
        metadata["inferenceId"] = exchange.inference_id
    return json.dumps({"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}, separators=(",", ":"))


class DataCapture:
    """One endpoint's capture: sampling, buffering per variant and hour, writing to S3."""

    def __init__(self, endpoint: str, config: dict[str, Any], *, region: str, s3_endpoint_url: str | None,
                 flush_interval_s: float, flush_bytes: int) -> None:
        self.endpoint = endpoint
        self.config = config
        self.settings = CaptureSettings.from_config(config)
        self.flush_interval_s = flush_interval_s
        self.flush_bytes = flush_bytes
        self._region, self._s3_endpoint_url = region, s3_endpoint_url
        self._buffers: dict[str, list[str]] = {}  # object directory (<prefix>/<endpoint>/<variant>/<hour>) -> lines
        self._sizes: dict[str, int] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._client: Any = None

    def summary(self) -> dict[str, Any]:
        """DescribeEndpoint's DataCaptureConfigSummary."""
        return {"EnableCapture": self.settings.enabled,
                "CaptureStatus": "Started" if self.settings.enabled else "Stopped",
                "CurrentSamplingPercentage": self.settings.percentage,
                "DestinationS3Uri": self.config["DestinationS3Uri"]}

    def start(self) -> None:
        """Write what waits every flush_interval_s."""
        if self.settings.enabled and self._timer is None:
            self._timer = asyncio.create_task(self._every_interval())

    def sampled(self) -> bool:
        """Whether this request is captured: InitialSamplingPercentage per cent of them, at random."""
        return self.settings.enabled and random.random() * 100 < self.settings.percentage

    def add(self, exchange: Exchange) -> None:
        """Buffer one sampled exchange; write its object once it reaches flush_bytes."""
        directory = "/".join(p for p in (self.settings.prefix, self.endpoint, exchange.variant,
                                         exchange.when.strftime("%Y/%m/%d/%H")) if p)
        line = capture_line(self.settings, exchange)
        self._buffers.setdefault(directory, []).append(line)
        self._sizes[directory] = self._sizes.get(directory, 0) + len(line) + 1
        if self._sizes[directory] >= self.flush_bytes:
            self._write_later(directory)

    def _write_later(self, directory: str) -> None:
        lines = self._buffers.pop(directory)
        self._sizes.pop(directory, None)
        task = asyncio.create_task(asyncio.to_thread(self._put, directory, lines))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _put(self, directory: str, lines: list[str]) -> None:
        """One object: ``<directory>/<mm>-<ss>-<mmm>-<uuid>.jsonl`` (runs in a thread)."""
        now = dt.datetime.now(dt.UTC)
        key = f"{directory}/{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        if self._client is None:
            self._client = s3_client(self._s3_endpoint_url, self._region)
        try:
            self._client.put_object(Bucket=self.settings.bucket, Key=key, Body=("\n".join(lines) + "\n").encode(),
                                    ContentType="application/jsonlines")
        except Exception as exc:  # the endpoint keeps serving; the loss is said, never silent
            log.error("endpoint %s: %d captured records could not be written to s3://%s/%s: %s",
                      self.endpoint, len(lines), self.settings.bucket, key, exc)

    def _write_all(self) -> None:
        for directory in list(self._buffers):
            self._write_later(directory)

    async def flush(self) -> None:
        """Write every buffered record now, and wait for writes under way."""
        self._write_all()
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self._write_all()  # not awaited here: cancelling the timer must not cancel a write

    async def close(self) -> None:
        """The endpoint stops: stop the timer, then write everything."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        await self.flush()
