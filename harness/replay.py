"""``servekit local replay``: send captured requests again and report the answers that differ.

Reads SageMaker data-capture records (JSON Lines under an S3 prefix, written by the harness or by
SageMaker: the same format, docs/sagemaker-contract.md §11.2), sends each captured request (its
Content-Type, its body decoded per its ``encoding``) to an endpoint through the runtime API, one at a
time, and compares the answers: with a second endpoint, between the two; without, against the captured
``endpointOutput``. An answer differs when one side failed and the other did not, or both answered with
different bodies (docs/harness.md "Replaying captured requests").
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.artifacts import split_s3

#: How much of a differing answer the report shows.
SHOWN_BYTES = 200


class ReplayError(Exception):
    """The captures cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Captured:
    """One captured request (and the captured answer, when its record has one)."""

    source: str  # s3://bucket/key:line
    event_id: str
    content_type: str | None
    body: bytes
    output: bytes | None


@dataclass(frozen=True)
class Outcome:
    """One endpoint's answer to one replayed request."""

    body: bytes | None  # None: the request failed
    error: str | None
    latency_ms: float


@dataclass
class EndpointStats:
    """Per endpoint: requests, failures, latencies (client-side, milliseconds)."""

    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.count += 1
        self.errors += outcome.error is not None
        self.latencies.append(outcome.latency_ms)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "errors": self.errors, "p50_ms": percentile(self.latencies, 50),
                "p99_ms": percentile(self.latencies, 99)}


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100)
    return round(ordered[int(rank) - 1], 3)


def decode(side: dict[str, Any]) -> bytes:
    """A captured body: BASE64 decoded, CSV and JSON as the UTF-8 text they hold."""
    data = str(side.get("data", ""))
    if side.get("encoding") == "BASE64":
        return base64.b64decode(data)
    return data.encode("utf-8")


def _records(text: str, source: str) -> Iterator[Captured]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            data = record["captureData"]
            request = data["endpointInput"]
        except (ValueError, KeyError, TypeError):
            raise ReplayError(f"{source}:{number} is not a capture record with captureData.endpointInput") from None
        output = data.get("endpointOutput")
        yield Captured(source=f"{source}:{number}", event_id=str(record.get("eventMetadata", {}).get("eventId", "")),
                       content_type=request.get("observedContentType") or None, body=decode(request),
                       output=decode(output) if output else None)


def read_captures(s3: Any, uri: str) -> list[Captured]:
    """Every record of every ``.jsonl`` object under ``uri``, in key order."""
    if not uri.startswith("s3://"):
        raise ReplayError(f"{uri} is not an s3:// URI")
    bucket, prefix = split_s3(uri)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".jsonl")]
    if not keys:
        raise ReplayError(f"no .jsonl capture objects under {uri}")
    found: list[Captured] = []
    for key in sorted(keys):
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        found += _records(text, f"s3://{bucket}/{key}")
    return found


def invoke(runtime: Any, endpoint: str, captured: Captured) -> Outcome:
    """One request through the runtime API; a failure is an outcome, not an exception."""
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs: dict[str, Any] = {"EndpointName": endpoint, "Body": captured.body}
    if captured.content_type:
        kwargs["ContentType"] = captured.content_type
    started = time.perf_counter()
    try:
        body = runtime.invoke_endpoint(**kwargs)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        return Outcome(None, str(exc), (time.perf_counter() - started) * 1000)
    return Outcome(bytes(body), None, (time.perf_counter() - started) * 1000)


def _shown(value: bytes | None, error: str | None) -> str:
    if error is not None:
        return f"error: {error}"
    assert value is not None
    return value[:SHOWN_BYTES].decode("utf-8", errors="replace")


def _differs(first: Outcome, second: Outcome) -> bool:
    return (first.error is None) != (second.error is None) or first.body != second.body


@dataclass
class Replay:
    """One replay's running totals and the report it becomes."""

    endpoint: str
    compare: str | None
    stats: dict[str, EndpointStats] = field(default_factory=dict)
    differences: list[dict[str, str]] = field(default_factory=list)
    not_compared: int = 0

    def record(self, captured: Captured, outcomes: dict[str, Outcome]) -> None:
        for name, outcome in outcomes.items():
            self.stats.setdefault(name, EndpointStats()).add(outcome)
        mine = outcomes[self.endpoint]
        if self.compare is not None:
            other, label = outcomes[self.compare], self.compare
        elif captured.output is not None:
            other, label = Outcome(captured.output, None, 0.0), "captured"
        else:
            self.not_compared += 1
            return
        if _differs(mine, other):
            self.differences.append({"source": captured.source, "eventId": captured.event_id,
                                     self.endpoint: _shown(mine.body, mine.error),
                                     label: _shown(other.body, other.error)})

    def report(self, records: int) -> dict[str, Any]:
        return {"records": records, "compared_with": self.compare or "captured",
                "endpoints": {name: stats.as_dict() for name, stats in self.stats.items()},
                "differences": self.differences, "not_compared": self.not_compared}


def replay(runtime: Any, records: list[Captured], endpoint: str, compare: str | None,
           progress: Callable[[int, int], None]) -> dict[str, Any]:
    """Send every record to ``endpoint`` (and ``compare``); the report."""
    run = Replay(endpoint, compare)
    names = [endpoint] + ([compare] if compare else [])
    for done, captured in enumerate(records, start=1):
        run.record(captured, {name: invoke(runtime, name, captured) for name in names})
        progress(done, len(records))
    return run.report(len(records))


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [f"{report['records']} captured requests replayed; answers compared with {report['compared_with']}"]
    for name, stats in report["endpoints"].items():
        lines.append(f"  {name}: {stats['count']} requests, {stats['errors']} errors, "
                     f"p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms")
    if report["not_compared"]:
        lines.append(f"  {report['not_compared']} records have no captured endpointOutput: not compared")
    lines.append(f"{len(report['differences'])} answers differ")
    for difference in report["differences"]:
        lines.append("  " + json.dumps(difference))
    return "\n".join(lines)
