"""DataCaptureConfig and ``servekit local replay`` through boto3, with moto S3 and the stand-in container of
fake_container.py on the process backend (docs/harness.md "Data capture")."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness.backends.process import ProcessBackend
from harness.cli import main as servekit
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TYPES = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
KEY = re.compile(r"capture/cap/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl")


def capturing(sm: Any, name: str, capture: dict[str, Any], **environment: str) -> None:
    """Endpoint ``name`` whose configuration captures to s3://data/capture with ``capture``'s settings."""
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": IMAGE, "Environment": environment})
    config = {"DestinationS3Uri": "s3://data/capture", "InitialSamplingPercentage": 100,
              "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}], **capture}
    sm.create_endpoint_config(EndpointConfigName=name, DataCaptureConfig=config, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def captured(s3: Any, endpoint: str) -> dict[str, list[dict[str, Any]]]:
    """Every capture object of ``endpoint``: key -> its records."""
    listed = s3.list_objects_v2(Bucket="data", Prefix=f"capture/{endpoint}/").get("Contents", [])
    return {o["Key"]: [json.loads(line) for line in
                       s3.get_object(Bucket="data", Key=o["Key"])["Body"].read().decode().splitlines()]
            for o in listed}


def wait_for_records(s3: Any, endpoint: str, count: int, deadline_s: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + deadline_s
    while True:
        records = [r for rs in captured(s3, endpoint).values() for r in rs]
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, f"{len(records)} of {count} records captured before the deadline"
        time.sleep(0.1)


def test_records_in_sagemakers_format_written_when_the_endpoint_is_deleted(s3, fake_harness):
    fake_harness.config.capture_flush_interval_s = 600  # only the deletion writes them
    sm, rt = boto_clients(fake_harness.endpoint_url)
    capturing(sm, "cap", {"CaptureContentTypeHeader": TYPES})
    summary = sm.describe_endpoint(EndpointName="cap")["DataCaptureConfig"]
    assert summary == {"EnableCapture": True, "CaptureStatus": "Started", "CurrentSamplingPercentage": 100,
                       "DestinationS3Uri": "s3://data/capture"}
    npy = b"\x93NUMPY\x01\x00binary"
    rt.invoke_endpoint(EndpointName="cap", Body=b'{"x": 1}', ContentType="application/json", InferenceId="id-1")
    rt.invoke_endpoint(EndpointName="cap", Body=b"1,2", ContentType="text/csv; charset=utf-8")
    rt.invoke_endpoint(EndpointName="cap", Body=npy, ContentType="application/x-npy")
    assert captured(s3, "cap") == {}  # buffered: neither the interval nor the size reached
    sm.delete_endpoint(EndpointName="cap")
    records = wait_for_records(s3, "cap", 3)
    [key] = captured(s3, "cap")
    assert KEY.fullmatch(key), key
    inputs = [r["captureData"]["endpointInput"] for r in records]
    assert [(i["observedContentType"], i["encoding"], i["mode"]) for i in inputs] == [
        ("application/json", "JSON", "INPUT"), ("text/csv; charset=utf-8", "CSV", "INPUT"),
        ("application/x-npy", "BASE64", "INPUT")]
    assert inputs[0]["data"] == '{"x": 1}' and inputs[1]["data"] == "1,2"
    assert base64.b64decode(inputs[2]["data"]) == npy
    output = records[0]["captureData"]["endpointOutput"]
    assert (output["mode"], output["encoding"], output["observedContentType"]) == ("OUTPUT", "JSON", "application/json")
    assert json.loads(output["data"])["body"] == '{"x": 1}'
    assert records[0]["eventMetadata"]["inferenceId"] == "id-1" and "inferenceId" not in records[1]["eventMetadata"]
    assert all(r["eventVersion"] == "0" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                          r["eventMetadata"]["inferenceTime"]) for r in records)
    assert len({r["eventMetadata"]["eventId"] for r in records}) == 3


def test_sampling_options_interval_and_refusals(s3, fake_harness):
    fake_harness.config.capture_flush_interval_s = 0.2
    sm, rt = boto_clients(fake_harness.endpoint_url)
    capturing(sm, "none", {"InitialSamplingPercentage": 0})
    capturing(sm, "inputs", {"CaptureOptions": [{"CaptureMode": "Input"}]})  # no content-type lists: BASE64
    for name in ("none", "inputs"):
        for _ in range(5):
            rt.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv")
    records = wait_for_records(s3, "inputs", 5)  # written by the interval, the endpoint still in service
    assert all(set(r["captureData"]) == {"endpointInput"} for r in records)
    assert {r["captureData"]["endpointInput"]["encoding"] for r in records} == {"BASE64"}
    sm.delete_endpoint(EndpointName="none")
    assert captured(s3, "none") == {}

    refusals = {"KmsKeyId is not supported": {"KmsKeyId": "alias/capture"},
                "must be an s3:// URI": {"DestinationS3Uri": "https://data.s3.amazonaws.com/capture"}}
    for message, change in refusals.items():
        with pytest.raises(ClientError, match=message):
            capturing(sm, "refused", change)
        sm.delete_model(ModelName="refused")


def test_replay_same_and_other_endpoint(s3, fake_harness, capsys):
    fake_harness.config.capture_flush_interval_s = 0.2
    sm, rt = boto_clients(fake_harness.endpoint_url)
    capturing(sm, "prod", {"CaptureContentTypeHeader": TYPES}, FAKE_BATCH="1")  # answers the sum of the CSV row
    sm.create_model(ModelName="cand", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName="cand", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "cand", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="cand", EndpointConfigName="cand")
    wait_in_service(sm, "cand")
    for row in (b"1,2", b"3,4", b"5,6"):
        assert rt.invoke_endpoint(EndpointName="prod", Body=row, ContentType="text/csv")["Body"].read().strip()
    wait_for_records(s3, "prod", 3)
    capsys.readouterr()

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = servekit(["local", "replay", "s3://data/capture/prod", *args, "--url", fake_harness.endpoint_url,
                         "--state-dir", str(fake_harness.state_dir), "--json"])
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert f"replayed {report['records']}/{report['records']}" in out.err
        return code, report

    # prod captures the replayed requests too: later runs read more records.
    code, report = run("--endpoint", "prod")  # against what was captured
    assert code == 0 and report["records"] == 3 and report["differences"] == []
    assert report["compared_with"] == "captured"
    assert report["endpoints"]["prod"]["count"] == 3 and report["endpoints"]["prod"]["errors"] == 0
    assert report["endpoints"]["prod"]["p50_ms"] <= report["endpoints"]["prod"]["p99_ms"]
    code, report = run("--endpoint", "prod", "--compare", "prod")
    assert code == 0 and report["differences"] == []
    code, report = run("--endpoint", "prod", "--compare", "cand")
    assert code == 1 and len(report["differences"]) == report["records"]
    assert set(report["endpoints"]) == {"prod", "cand"}
    first = report["differences"][0]
    assert first["prod"].strip() == "3" and json.loads(first["cand"])["body"] == "1,2"
    assert run("--endpoint", "cand")[0] == 1  # cand's answers differ from prod's captured ones


def test_harness_shutdown_writes_what_waits(s3, tmp_path):
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "state", capture_flush_interval_s=600) as harness:
        sm, rt = boto_clients(harness.endpoint_url)
        capturing(sm, "bye", {})
        for _ in range(2):
            rt.invoke_endpoint(EndpointName="bye", Body=b"{}", ContentType="application/json")
        assert captured(s3, "bye") == {}
    assert len([r for rs in captured(s3, "bye").values() for r in rs]) == 2  # written as the harness stopped


def test_streamed_answers_captured_whole(s3, fake_harness):
    fake_harness.config.capture_flush_interval_s = 0.2
    sm, rt = boto_clients(fake_harness.endpoint_url)
    capturing(sm, "streamed", {"CaptureContentTypeHeader": {"CsvContentTypes": ["text/plain"]}})
    answer = rt.invoke_endpoint_with_response_stream(EndpointName="streamed", Body=b"stream:3",
                                                     ContentType="text/plain", InferenceId="s-1")
    received = b"".join(event["PayloadPart"]["Bytes"] for event in answer["Body"] if "PayloadPart" in event)
    broken = rt.invoke_endpoint_with_response_stream(EndpointName="streamed", Body=b"stream-break:2",
                                                     ContentType="text/plain")
    with pytest.raises(Exception, match="ModelStreamError"):  # a broken stream is not captured
        list(broken["Body"])
    rt.invoke_endpoint(EndpointName="streamed", Body=b"after", ContentType="text/plain")
    records = wait_for_records(s3, "streamed", 2)
    assert len(records) == 2
    first = records[0]
    assert first["captureData"]["endpointInput"]["data"] == "stream:3"
    assert first["captureData"]["endpointOutput"]["data"] == received.decode() and received.count(b"part-") == 3
    assert first["eventMetadata"]["inferenceId"] == "s-1"


def test_a_listed_body_that_is_not_utf8_is_captured_as_base64_with_its_bytes() -> None:
    from harness.data_capture import CaptureSettings

    settings = CaptureSettings.from_config({"InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://data/c",
                                            "CaptureOptions": [{"CaptureMode": "Input"}],
                                            "CaptureContentTypeHeader": TYPES})
    assert settings.encode("INPUT", "text/csv", b"1,2\n")["encoding"] == "CSV"
    side = settings.encode("INPUT", "text/csv", b"1,\xff\n")
    assert side["encoding"] == "BASE64" and base64.b64decode(side["data"]) == b"1,\xff\n"
