"""CloudWatch Logs (JSON 1.1, ``X-Amz-Target: Logs_20140328.<Op>``) for the harness's own log streams.

Read-only: DescribeLogGroups, DescribeLogStreams, GetLogEvents and FilterLogEvents over the files the
harness already writes (docs/harness.md "CloudWatch Logs"):

* ``/aws/sagemaker/Endpoints/<endpoint>``: ``<state dir>/logs/<endpoint>/<variant>__<instance>[__<host>].log``,
  stream ``<variant>/<instance>[/<host>]`` (docs/sagemaker-contract.md; SageMaker's names), and
  ``async-inference-errors.log``, stream ``async-inference-errors`` (the harness's name; docs/harness.md
  "Asynchronous inference");
* ``/aws/sagemaker/TransformJobs``: ``<state dir>/logs/_transform-jobs/<job>/<job>__<stream>.log``, stream
  ``<job>/<stream>`` (the SageMaker Python SDK lists them with ``logStreamNamePrefix=<job>/``).

Containers write their files directly, with no timestamps. Each line gets one the first time the harness
reads it: the file's modification time then (the time of its latest write, so never earlier than the
line's arrival), and never earlier than the line before it. A line keeps that timestamp for good.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ACCOUNT_ID, ControlPlaneError

TARGET_PREFIX = "Logs_20140328"
ENDPOINT_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
TRANSFORM_DIR = "_transform-jobs"
ASYNC_ERRORS_STREAM = "async-inference-errors"  # harness.async_inference writes it, one per endpoint
# Page sizes when the request gives no limit (CloudWatch Logs API reference: DescribeLogGroups and
# DescribeLogStreams 50, GetLogEvents and FilterLogEvents up to 10,000 events).
DEFAULT_LIST_LIMIT = 50
DEFAULT_EVENT_LIMIT = 10_000

Operation = Callable[[dict[str, Any]], dict[str, Any]]


def not_found(what: str) -> ControlPlaneError:
    """AWS's ResourceNotFoundException for a missing log group or stream."""
    return ControlPlaneError(f"The specified {what} does not exist.", code="ResourceNotFoundException")


def invalid(message: str) -> ControlPlaneError:
    return ControlPlaneError(message, code="InvalidParameterException")


@dataclass
class _Seen:
    """What has been read of one file: the byte offset reached and the events (timestamp ms, message)."""

    offset: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)


def stream_file(directory: Path, stream: str) -> Path:
    """The file that holds ``stream`` in a group's ``directory`` (``a/b`` is ``a__b.log``)."""
    return directory / f"{stream.replace('/', '__')}.log"


def _stream_files(directory: Path, prefix: str, singles: tuple[str, ...] = ()) -> dict[str, Path]:
    """The ``*.log`` files of ``directory`` that are streams (``a__b.log``, or one of ``singles``), by name."""
    files = sorted(directory.glob("*.log")) if directory.is_dir() else []
    return {prefix + path.stem.replace("__", "/"): path for path in files
            if "__" in path.stem or path.stem in singles}


def compile_filter(pattern: str) -> Callable[[str], bool]:
    """A plain term or a quoted phrase, matched case-sensitively as a substring; anything else refused."""
    text = pattern.strip()
    if not text:
        return lambda message: True
    quoted = re.fullmatch(r'"([^"]+)"', text)
    if quoted:
        term = quoted.group(1)
    elif re.fullmatch(r'[^\s{}\[\]"?%-][^\s{}\[\]"?%]*', text):
        term = text
    else:
        raise ControlPlaneError(
            f"filterPattern {pattern!r} is not supported by the local harness: only one plain term or one "
            "quoted phrase, matched as a case-sensitive substring (no JSON, space-delimited, OR, exclusion "
            "or regular-expression patterns).")
    return lambda message: term in message


def _token(params: dict[str, Any], key: str = "nextToken") -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not re.fullmatch(r"[fb]?/?\d{1,12}", value):
        raise invalid("The specified nextToken is invalid.")
    return int(value.rpartition("/")[2])


def _in_window(params: dict[str, Any]) -> Callable[[int], bool]:
    """startTime inclusive, endTime exclusive (the API reference's wording for both operations)."""
    start, end = params.get("startTime"), params.get("endTime")
    return lambda ts: (start is None or ts >= start) and (end is None or ts < end)


def _paged(items: list[Any], params: dict[str, Any], default: int) -> tuple[list[Any], dict[str, Any]]:
    """One page from ``nextToken`` (an index), and ``nextToken`` only when more remain."""
    first = _token(params) or 0
    limit = params.get("limit") or default
    page = items[first:first + limit]
    more = {"nextToken": str(first + limit)} if first + limit < len(items) else {}
    return page, more


class LogStore:
    """The harness's log files seen as CloudWatch Logs groups, streams and events."""

    def __init__(self, state_dir: Path, region: str) -> None:
        self.logs_dir = state_dir / "logs"
        self.region = region
        self._seen: dict[Path, _Seen] = {}
        self.operations: dict[str, Operation] = {
            "DescribeLogGroups": self.describe_log_groups,
            "DescribeLogStreams": self.describe_log_streams,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }

    # -- groups, streams, events ---------------------------------------------------------------------------
    def groups(self) -> dict[str, Path]:
        found = sorted(self.logs_dir.iterdir()) if self.logs_dir.is_dir() else []
        groups = {ENDPOINT_GROUP_PREFIX + d.name: d for d in found if d.is_dir() and d.name != TRANSFORM_DIR}
        if (self.logs_dir / TRANSFORM_DIR).is_dir():
            groups[TRANSFORM_GROUP] = self.logs_dir / TRANSFORM_DIR
        return groups

    def streams(self, params: dict[str, Any]) -> dict[str, Path]:
        """The streams of the group named by ``logGroupName`` or ``logGroupIdentifier`` (name or ARN)."""
        name = params.get("logGroupName") or str(params.get("logGroupIdentifier") or "").rpartition(":log-group:")[2]
        if not name:
            raise invalid("Either logGroupName or logGroupIdentifier must be specified.")
        directory = self.groups().get(name)
        if directory is None:
            raise not_found("log group")
        if name != TRANSFORM_GROUP:
            return _stream_files(directory, "", singles=(ASYNC_ERRORS_STREAM,))
        streams: dict[str, Path] = {}
        for job_dir in sorted(d for d in directory.iterdir() if d.is_dir()):
            streams.update(_stream_files(job_dir, ""))
        return dict(sorted(streams.items()))

    def events(self, path: Path) -> list[tuple[int, str]]:
        """Every complete line of ``path``, each with its timestamp (the module docstring says which)."""
        seen = self._seen.setdefault(path, _Seen())
        with open(path, "rb") as stream:
            stream.seek(seen.offset)
            chunk = stream.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        if complete:
            stamp = int(path.stat().st_mtime * 1000)
            stamp = max(stamp, seen.events[-1][0]) if seen.events else stamp
            seen.events += [(stamp, line.decode(errors="replace")) for line in complete.splitlines()]
            seen.offset += len(complete)
        return seen.events

    def _arn(self, group: str, stream: str | None = None) -> str:
        arn = f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{group}"
        return arn + (f":log-stream:{stream}" if stream else ":*")

    # -- operations ---------------------------------------------------------------------------------------
    def describe_log_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("logGroupNamePrefix") or ""
        found = self.groups()
        names = [name for name in sorted(found) if name.startswith(prefix)]
        page, more = _paged(names, params, DEFAULT_LIST_LIMIT)
        groups = [{"logGroupName": name, "arn": self._arn(name), "logGroupClass": "STANDARD",
                   "creationTime": int(found[name].stat().st_ctime * 1000), "storedBytes": 0}
                  for name in page]
        return {"logGroups": groups, **more}

    def _stream_summary(self, group: str, name: str, path: Path) -> dict[str, Any]:
        events = self.events(path)
        summary: dict[str, Any] = {"logStreamName": name, "arn": self._arn(group, name),
                                   "creationTime": int(path.stat().st_ctime * 1000), "storedBytes": 0}
        if events:
            summary.update(firstEventTimestamp=events[0][0], lastEventTimestamp=events[-1][0],
                           lastIngestionTime=events[-1][0])
        return summary

    def describe_log_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("logStreamNamePrefix") or ""
        order = params.get("orderBy") or "LogStreamName"
        if prefix and order == "LastEventTime":  # the API reference: the two cannot be combined
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        group = params.get("logGroupName") or params.get("logGroupIdentifier", "")
        streams = self.streams(params)
        summaries = [self._stream_summary(group, name, path) for name, path in streams.items()
                     if name.startswith(prefix)]
        if order == "LastEventTime":
            summaries.sort(key=lambda s: s.get("lastEventTimestamp", 0))
        if params.get("descending"):
            summaries.reverse()
        page, more = _paged(summaries, params, DEFAULT_LIST_LIMIT)
        return {"logStreams": page, **more}

    def get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """Forward tokens ``f/<index>``, backward ``b/<index>``; at the end the forward token repeats."""
        path = self.streams(params).get(params["logStreamName"])
        if path is None:
            raise not_found("log stream")
        window = _in_window(params)
        events = [(ts, message) for ts, message in self.events(path) if window(ts)]
        limit = params.get("limit") or DEFAULT_EVENT_LIMIT
        token = params.get("nextToken")
        position = _token(params)
        if token is not None and token.startswith("b/"):
            end = position or 0
            first = max(0, end - limit)
        else:
            first = position if position is not None else (0 if params.get("startFromHead") else
                                                            max(0, len(events) - limit))
            end = min(len(events), first + limit)
        page = [{"timestamp": ts, "message": message, "ingestionTime": ts} for ts, message in events[first:end]]
        return {"events": page, "nextForwardToken": f"f/{end:012d}", "nextBackwardToken": f"b/{first:012d}"}

    def _chosen_streams(self, params: dict[str, Any]) -> dict[str, Path]:
        streams = self.streams(params)
        names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
        if names and prefix:  # the API reference: "you cannot specify both"
            raise invalid("logStreamNames and logStreamNamePrefix cannot both be specified.")
        if names:
            missing = [name for name in names if name not in streams]
            if missing:
                raise not_found("log stream")
            return {name: streams[name] for name in names}
        return {name: path for name, path in streams.items() if name.startswith(prefix or "")}

    def filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        matches = compile_filter(params.get("filterPattern") or "")
        window = _in_window(params)
        chosen = self._chosen_streams(params)
        found = [(ts, name, index, message) for name, path in chosen.items()
                 for index, (ts, message) in enumerate(self.events(path)) if window(ts) and matches(message)]
        found.sort(key=lambda event: event[:3])
        page, more = _paged(found, params, DEFAULT_EVENT_LIMIT)
        events = [{"logStreamName": name, "timestamp": ts, "message": message, "ingestionTime": ts,
                   "eventId": f"{name}/{index}"} for ts, name, index, message in page]
        searched = [{"logStreamName": name, "searchedCompletely": True} for name in chosen]
        return {"events": events, "searchedLogStreams": searched, **more}
