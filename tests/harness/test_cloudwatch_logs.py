"""CloudWatch Logs over the harness's own log streams, through boto3's ``logs`` client (docs/harness.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from harness.cloudwatch_logs import LogStore
from tests.harness.conftest import IMAGE, boto_clients, deploy, make_tar

GROUP = "/aws/sagemaker/Endpoints/logs-ep"


def logs_client(url: str) -> Any:
    return boto3.client("logs", region_name="us-east-1", endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]  # type: ignore[no-any-return]


def invoked_endpoint(harness: Any, tmp_path: Path, count: int) -> str:
    """Deploy the stand-in as ``logs-ep``, invoke it ``count`` times; its one stream's name."""
    sm, runtime = boto_clients(harness.endpoint_url)
    archive = make_tar(tmp_path / "model.tar.gz", {"model.txt": b"x"})
    deploy(sm, "logs-ep", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(archive)})
    for _ in range(count):
        runtime.invoke_endpoint(EndpointName="logs-ep", ContentType="text/csv", Body=b"1,2")
    streams = logs_client(harness.endpoint_url).describe_log_streams(logGroupName=GROUP)["logStreams"]
    assert len(streams) == 1
    name: str = streams[0]["logStreamName"]
    return name


def test_endpoint_stream_events_paging_and_filter(fake_harness, tmp_path):
    stream = invoked_endpoint(fake_harness, tmp_path, 5)
    logs = logs_client(fake_harness.endpoint_url)
    assert stream.startswith("AllTraffic/i-") and stream.count("/") == 1  # <variant>/<instance id>
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [GROUP]

    everything = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)["events"]
    messages = [e["message"] for e in everything]
    assert any("fake-container: listening on" in m for m in messages)
    assert sum("POST /invocations" in m for m in messages) == 5
    assert all(e["timestamp"] <= time.time() * 1000 for e in everything)
    assert [e["timestamp"] for e in everything] == sorted(e["timestamp"] for e in everything)

    paged, token = [], None
    while True:  # the SageMaker SDK's loop (sagemaker.logs.log_stream): until a page comes back empty
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True, limit=2,
                                   **({"nextToken": token} if token else {}))
        assert len(page["events"]) <= 2
        if not page["events"]:
            assert page["nextForwardToken"] == token  # at the end the forward token repeats
            break
        paged += page["events"]
        token = page["nextForwardToken"]
    assert paged == everything
    tail = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=2)
    assert tail["events"] == everything[-2:]
    before = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=2,
                                 nextToken=tail["nextBackwardToken"])
    assert before["events"] == everything[-4:-2]
    later = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True,
                                startTime=everything[-1]["timestamp"] + 1)
    assert later["events"] == []

    found = logs.filter_log_events(logGroupName=GROUP, filterPattern="/invocations", limit=3)
    assert len(found["events"]) == 3 and all("/invocations" in e["message"] for e in found["events"])
    assert {e["logStreamName"] for e in found["events"]} == {stream}
    rest = logs.filter_log_events(logGroupName=GROUP, filterPattern='"POST /invocations"',
                                  nextToken=found["nextToken"])
    assert len(rest["events"]) == 2 and "nextToken" not in rest
    assert len({e["eventId"] for e in found["events"] + rest["events"]}) == 5
    paginated = logs.get_paginator("filter_log_events").paginate(logGroupName=GROUP, logStreamNamePrefix="AllTraffic/")
    assert [e["message"] for p in paginated for e in p["events"]] == messages


def test_unknown_group_stream_and_refused_pattern(fake_harness, tmp_path):
    stream = invoked_endpoint(fake_harness, tmp_path, 1)
    logs = logs_client(fake_harness.endpoint_url)
    error = error_of(logs.get_log_events, logGroupName="/aws/sagemaker/Endpoints/nope", logStreamName=stream)
    assert error == {"Code": "ResourceNotFoundException", "Message": "The specified log group does not exist."}
    error = error_of(logs.get_log_events, logGroupName=GROUP, logStreamName="AllTraffic/i-nope")
    assert error == {"Code": "ResourceNotFoundException", "Message": "The specified log stream does not exist."}
    error = error_of(logs.describe_log_streams, logGroupName="/aws/sagemaker/Endpoints/nope")
    assert error["Code"] == "ResourceNotFoundException"
    for pattern in ('{ $.level = "ERROR" }', "[ip, user, status=500]", "ERROR WARN", "?ERROR ?WARN", "%ERR.R%"):
        error = error_of(logs.filter_log_events, logGroupName=GROUP, filterPattern=pattern)
        assert error["Code"] == "ValidationException"
        assert repr(pattern) in error["Message"] and "not supported by the local harness" in error["Message"]
    error = error_of(logs.get_log_events, logGroupName=GROUP, logStreamName=stream, limit=10001)
    assert error["Code"] == "ValidationException" and "less than or equal to 10000" in error["Message"]
    error = error_of(logs.put_log_events, logGroupName=GROUP, logStreamName=stream,
                     logEvents=[{"timestamp": 1, "message": "x"}])
    assert error == {"Code": "UnknownOperationException",
                     "Message": "Operation PutLogEvents is not supported by the local harness."}


def test_transform_job_group_lists_streams_by_job_prefix(tmp_path):
    job_dir = tmp_path / "logs" / "_transform-jobs" / "churn"
    job_dir.mkdir(parents=True)
    (job_dir / "churn__i-1.log").write_text("started\nrecord 1\npartial")
    (job_dir / "churn__data-log.log").write_text("transforming s3://b/in\n")
    (tmp_path / "logs" / "_transform-jobs" / "other").mkdir()
    (tmp_path / "logs" / "_transform-jobs" / "other" / "other__i-2.log").write_text("x\n")
    store = LogStore(tmp_path, "us-east-1")
    group = {"logGroupName": "/aws/sagemaker/TransformJobs"}
    listed = store.describe_log_streams({**group, "logStreamNamePrefix": "churn/", "orderBy": "LogStreamName"})
    assert [s["logStreamName"] for s in listed["logStreams"]] == ["churn/data-log", "churn/i-1"]
    first = store.get_log_events({**group, "logStreamName": "churn/i-1", "startFromHead": True})["events"]
    assert [e["message"] for e in first] == ["started", "record 1"]  # an unfinished line waits for its newline
    with open(job_dir / "churn__i-1.log", "a") as out:
        out.write(" done\n")
    again = store.get_log_events({**group, "logStreamName": "churn/i-1", "startFromHead": True})["events"]
    assert again[:2] == first and again[2]["message"] == "partial done"
    assert again[2]["timestamp"] >= first[1]["timestamp"]
