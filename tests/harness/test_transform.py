"""Batch transform on the process backend: boto3 against the harness, input and output in moto S3.

The containers are the stand-in of fake_container.py in FAKE_BATCH mode: each body line is answered
with the sum of its numbers, a line containing ``fail`` makes the request answer 400, and every request
logs how many records it carried and how many requests were in flight.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from harness.cli import main as cli
from harness.transform import job_log_dir
from tests.harness.conftest import IMAGE, boto_clients

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.fixture
def batch(fake_harness, s3):
    """(sagemaker client, s3 client, harness): S3 is moto, found by the harness through the environment."""
    sm, _ = boto_clients(fake_harness.endpoint_url)
    return sm, s3, fake_harness


def create_model(sm: Any, name: str, containers: int = 1, **env: str) -> None:
    environment = {"FAKE_BATCH": "1", **env}
    if containers == 1:
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": IMAGE, "Environment": environment})
    else:
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, Containers=[
            {"Image": IMAGE, "Environment": environment} for _ in range(containers)])


def transform(sm: Any, name: str, model: str, uri: str, *, data_type: str = "S3Prefix", wait: bool = True,
              input_options: dict[str, Any] | None = None, output_options: dict[str, Any] | None = None,
              **options: Any) -> dict[str, Any]:
    """CreateTransformJob (output to s3://data/out/<name>/), then the boto3 waiter; the description."""
    sm.create_transform_job(
        TransformJobName=name, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": uri}},
                        **(input_options or {})},
        TransformOutput={"S3OutputPath": f"s3://data/out/{name}", **(output_options or {})},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **options,
    )
    if wait:
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400})
    return dict(sm.describe_transform_job(TransformJobName=name))


def read(s3: Any, key: str) -> str:
    return str(s3.get_object(Bucket="data", Key=key)["Body"].read().decode())


def job_logs(harness: Any, name: str) -> dict[str, str]:
    directory = job_log_dir(Path(harness.state_dir), name)
    return {p.stem.replace("__", "/"): p.read_text() for p in sorted(directory.glob("*.log"))}


def requests_logged(harness: Any, name: str) -> list[tuple[int, int]]:
    """(records, in flight) of every request the job's containers logged."""
    text = "".join(v for k, v in job_logs(harness, name).items() if not k.endswith("data-log"))
    return [(int(a), int(b)) for a, b in re.findall(r"batch-request records=(\d+) in_flight=(\d+)", text)]


def test_line_split_multi_record_assembled_by_line_under_the_prefix(batch, capsys):
    sm, s3, harness = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,2\n3,4\n5,6\n")
    s3.put_object(Bucket="data", Key="in/sub/b.csv", Body=b"10,20\n30,40")
    s3.put_object(Bucket="data", Key="other/c.csv", Body=b"fail\n")  # outside the prefix: never read
    described = transform(sm, "lines", "summer", "s3://data/in/", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
                          input_options={"ContentType": "text/csv", "SplitType": "Line"},
                          output_options={"Accept": "text/csv", "AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/lines/a.csv.out") == "3\n7\n11\n"
    assert read(s3, "out/lines/sub/b.csv.out") == "30\n70\n"
    # MultiRecord: each object's records went in one request; unset MaxConcurrentTransforms is the default 1.
    assert sorted(requests_logged(harness, "lines")) == [(2, 1), (3, 1)]
    assert described["MaxConcurrentTransforms"] == 1 and described["BatchStrategy"] == "MultiRecord"
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    logs = job_logs(harness, "lines")
    container_log = next(v for k, v in logs.items() if re.fullmatch(r"lines/i-[0-9a-f]+", k))
    environment = json.loads(container_log.split("environment=")[1].splitlines()[0])
    assert environment == {"SAGEMAKER_BATCH": "true", "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD",
                           "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}
    assert "wrote s3://data/out/lines/a.csv.out" in logs["lines/data-log"]
    assert cli(["local", "logs", "--transform-job", "lines", "--state-dir", str(harness.state_dir)]) == 0
    printed = capsys.readouterr().out
    assert "==> lines/data-log <==" in printed and "batch-request records=3" in printed


def test_single_record_manifest_gzip_and_assemble_none(batch):
    sm, s3, harness = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="zipped/x.csv.gz", Body=gzip.compress(b"1,1\n2,2\n"))
    s3.put_object(Bucket="data", Key="zipped/y.csv.gz", Body=gzip.compress(b"5,5\n"))
    s3.put_object(Bucket="data", Key="zipped/z.csv.gz", Body=gzip.compress(b"fail\n"))  # not in the manifest
    manifest = [{"prefix": "s3://data/zipped/"}, "x.csv.gz", "y.csv.gz"]
    s3.put_object(Bucket="data", Key="manifest.json", Body=json.dumps(manifest).encode())
    described = transform(sm, "manifest", "summer", "s3://data/manifest.json", data_type="ManifestFile",
                          BatchStrategy="SingleRecord",
                          input_options={"ContentType": "text/csv", "SplitType": "Line", "CompressionType": "Gzip"},
                          output_options={"AssembleWith": "None"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/manifest/x.csv.gz.out") == "24"  # "2" and "4" concatenated: AssembleWith None
    assert read(s3, "out/manifest/y.csv.gz.out") == "10"
    assert all(records == 1 for records, _ in requests_logged(harness, "manifest"))
    assert len(requests_logged(harness, "manifest")) == 3


def test_split_none_sends_the_whole_object(batch):
    sm, s3, harness = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="whole/a.csv", Body=b"1,2\n3,4")
    described = transform(sm, "whole", "summer", "s3://data/whole/a.csv",
                          input_options={"ContentType": "text/csv", "SplitType": "None"},
                          output_options={"AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/whole/a.csv.out") == "3\n7\n"
    assert requests_logged(harness, "whole") == [(2, 1)]


def test_multi_record_packs_up_to_max_payload_and_keeps_order(batch):
    sm, s3, harness = batch
    create_model(sm, "summer")
    line = "1," + "0," * 50_000 + "0"  # about 100 KB per record
    records = 25
    s3.put_object(Bucket="data", Key="big/a.csv", Body=("\n".join([line.replace("1,", f"{i},", 1)
                                                                    for i in range(records)]) + "\n").encode())
    described = transform(sm, "packing", "summer", "s3://data/big/", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
                          MaxConcurrentTransforms=4,
                          input_options={"ContentType": "text/csv", "SplitType": "Line"},
                          output_options={"AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/packing/a.csv.out").split() == [str(i) for i in range(records)]
    sizes = [n for n, _ in requests_logged(harness, "packing")]
    assert sum(sizes) == records
    assert max(sizes) == 10  # ten 100 KB records fit 1 MiB, eleven do not
    assert len(sizes) == 3


def test_execution_parameters_from_the_container_and_concurrency(batch):
    sm, s3, harness = batch
    answer = {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 2}
    create_model(sm, "asks", FAKE_EXECUTION_PARAMETERS=json.dumps(answer), FAKE_BATCH_DELAY_S="0.3")
    s3.put_object(Bucket="data", Key="many/a.csv", Body="".join(f"{i}\n" for i in range(12)).encode())
    described = transform(sm, "asked", "asks", "s3://data/many/",
                          input_options={"ContentType": "text/csv", "SplitType": "Line"},
                          output_options={"AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert (described["MaxConcurrentTransforms"], described["BatchStrategy"], described["MaxPayloadInMB"]) == (
        3, "SingleRecord", 2)
    logged = requests_logged(harness, "asked")
    assert len(logged) == 12 and all(records == 1 for records, _ in logged)
    assert max(flight for _, flight in logged) == 3  # never more than MaxConcurrentTransforms at once
    assert read(s3, "out/asked/a.csv.out").split() == [str(i) for i in range(12)]
    # A container without /execution-parameters (404): SageMaker's defaults.
    create_model(sm, "silent")
    described = transform(sm, "defaults", "silent", "s3://data/many/",
                          input_options={"ContentType": "text/csv", "SplitType": "Line"})
    assert (described["MaxConcurrentTransforms"], described["BatchStrategy"], described["MaxPayloadInMB"]) == (
        1, "MultiRecord", 6)


def test_data_processing_csv_input_filter_join_and_output_filter(batch):
    sm, s3, _ = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="ids/a.csv", Body=b"100,1,2\n200,3,4\n")
    described = transform(sm, "joined", "summer", "s3://data/ids/", BatchStrategy="MultiRecord",
                          DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
                          input_options={"ContentType": "text/csv", "SplitType": "Line"},
                          output_options={"Accept": "text/csv", "AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/joined/a.csv.out") == "100,3\n200,7\n"  # the id column was not summed
    assert described["DataProcessing"]["JoinSource"] == "Input"


def test_data_processing_json_lines(batch):
    sm, s3, _ = batch
    create_model(sm, "summer")
    lines = [{"id": "a", "features": [1, 2]}, {"id": "b", "features": [10, 20]}]
    s3.put_object(Bucket="data", Key="json/a.jsonl", Body="\n".join(json.dumps(r) for r in lines).encode())
    described = transform(sm, "jsonjoin", "summer", "s3://data/json/",
                          DataProcessing={"InputFilter": "$.features", "JoinSource": "Input",
                                          "OutputFilter": "$['id','SageMakerOutput']"},
                          input_options={"ContentType": "application/jsonlines", "SplitType": "Line"},
                          output_options={"Accept": "application/jsonlines", "AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    out = [json.loads(line) for line in read(s3, "out/jsonjoin/a.jsonl.out").splitlines()]
    assert out == [{"id": "a", "SageMakerOutput": 3}, {"id": "b", "SageMakerOutput": 30}]


def test_a_failing_record_fails_the_job_and_names_the_object(batch):
    sm, s3, harness = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="mixed/good.csv", Body=b"1,2\n")
    s3.put_object(Bucket="data", Key="mixed/bad.csv", Body=b"1,2\nfail\n")
    with pytest.raises(WaiterError):
        transform(sm, "failing", "summer", "s3://data/mixed/", BatchStrategy="SingleRecord",
                  ModelClientConfig={"InvocationsMaxRetries": 1, "InvocationsTimeoutInSeconds": 30},
                  input_options={"ContentType": "text/csv", "SplitType": "Line"})
    described = sm.describe_transform_job(TransformJobName="failing")
    assert described["TransformJobStatus"] == "Failed"
    assert "s3://data/mixed/bad.csv" in described["FailureReason"]
    assert "400" in described["FailureReason"] and "bad record" in described["FailureReason"]
    assert read(s3, "out/failing/good.csv.out") == "3"  # the other object is still transformed
    with pytest.raises(ClientError):
        read(s3, "out/failing/bad.csv.out")
    data_log = job_logs(harness, "failing")["failing/data-log"]
    assert "attempt 1" in data_log and "attempt 2" in data_log and "attempt 3" not in data_log


def test_an_output_location_that_cannot_be_written_fails_the_job(batch):
    sm, s3, _ = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1\n")
    sm.create_transform_job(
        TransformJobName="nowhere", ModelName="summer",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}}},
        TransformOutput={"S3OutputPath": "s3://no-such-bucket/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    with pytest.raises(WaiterError):
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="nowhere", WaiterConfig={"Delay": 0.25, "MaxAttempts": 400})
    reason = sm.describe_transform_job(TransformJobName="nowhere")["FailureReason"]
    assert "Cannot write s3://no-such-bucket/out/a.csv.out" in reason and "NoSuchBucket" in reason


def test_serial_pipeline_runs_every_container(batch):
    sm, s3, harness = batch
    create_model(sm, "twostep", containers=2)
    s3.put_object(Bucket="data", Key="pipe/a.csv", Body=b"1,2\n3,4\n")
    described = transform(sm, "piped", "twostep", "s3://data/pipe/",
                          input_options={"ContentType": "text/csv", "SplitType": "Line"},
                          output_options={"AssembleWith": "Line"})
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "out/piped/a.csv.out") == "3\n7\n"  # the second container summed the one-column sums
    streams = [k for k in job_logs(harness, "piped") if not k.endswith("data-log")]
    assert sorted(s.rsplit("/", 1)[-1] for s in streams) == ["container-1", "container-2"]


def test_stop_list_and_missing_input(batch):
    sm, s3, _ = batch
    create_model(sm, "slow", FAKE_BATCH_DELAY_S="30")
    s3.put_object(Bucket="data", Key="slow/a.csv", Body=b"1\n")
    transform(sm, "stopped", "slow", "s3://data/slow/", wait=False)
    sm.stop_transform_job(TransformJobName="stopped")
    assert sm.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] in ("Stopping", "Stopped")
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName="stopped", WaiterConfig={"Delay": 0.25, "MaxAttempts": 200})
    assert sm.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] == "Stopped"
    with pytest.raises(WaiterError):
        transform(sm, "empty", "slow", "s3://data/no-such-prefix/")
    reason = sm.describe_transform_job(TransformJobName="empty")["FailureReason"]
    assert reason.startswith('No S3 objects found under S3 URL "s3://data/no-such-prefix/"')
    summaries = sm.list_transform_jobs(StatusEquals="Stopped")["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in summaries] == ["stopped"]
    names = [s["TransformJobName"] for s in sm.list_transform_jobs(SortBy="Name", SortOrder="Ascending")
             ["TransformJobSummaries"]]
    assert names == ["empty", "stopped"]


def _job(name: str, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = dict(
        TransformJobName=name, ModelName="summer",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": "s3://data/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    request.update(overrides)
    return request


@pytest.mark.parametrize(("overrides", "message"), [
    ({"DataProcessing": {"InputFilter": "$..id"}}, "JSONPath expression '$..id'"),
    ({"DataProcessing": {"OutputFilter": "$[?(@.a)]"}}, "JSONPath expression"),
    ({"DataProcessing": {"JoinSource": "Input"},
      "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}},
                         "ContentType": "application/x-npy", "SplitType": "Line"}}, "ContentType"),
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}},
                         "SplitType": "RecordIO"}}, "SplitType RecordIO"),
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "AugmentedManifestFile",
                                                         "S3Uri": "s3://data/m"}}}}, "AugmentedManifestFile"),
    ({"MaxConcurrentTransforms": 10, "MaxPayloadInMB": 20}, "must not exceed 100 MB"),
    ({"MaxPayloadInMB": 0}, "MaxPayloadInMB 0"),
    ({"MaxPayloadInMB": 101}, "at most 100"),
    ({"BatchStrategy": "Everything"}, "failed to satisfy constraint: Member must satisfy enum value set"),
    ({"ModelName": "nobody"}, 'Could not find model'),
    ({"DataCaptureConfig": {"DestinationS3Uri": "s3://data/capture"}}, "DataCaptureConfig"),
])
def test_create_transform_job_refusals_name_the_option(fake_harness, overrides, message):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    create_model(sm, "summer")
    with pytest.raises(ClientError) as raised:
        sm.create_transform_job(**_job("refused", **overrides))
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="Could not find requested job with name refused"):
        sm.describe_transform_job(TransformJobName="refused")


def test_transform_job_names_are_unique_and_stop_of_an_ended_job_is_refused(batch):
    sm, s3, _ = batch
    create_model(sm, "summer")
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1\n")
    transform(sm, "once", "summer", "s3://data/in/")
    with pytest.raises(ClientError, match="a job with this name already exists"):
        sm.create_transform_job(**_job("ONCE"))
    with pytest.raises(ClientError, match="has already ended"):
        sm.stop_transform_job(TransformJobName="once")
    arn = sm.describe_transform_job(TransformJobName="once")["TransformJobArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
