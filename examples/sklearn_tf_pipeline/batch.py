"""The demo's batch transform step: the churn table through the sklearn -> TensorFlow pipeline model.

With plain boto3, as against AWS: the table goes to S3 as headerless CSV, ``CreateTransformJob`` runs
the serial pipeline model the real-time endpoint was made from (records split by line, MultiRecord
mini-batches, ``Accept: text/csv``, AssembleWith Line), the ``transform_job_completed_or_stopped``
waiter waits, and ``<key>.out`` comes back with one probability per row. For comparison the same rows
are then sent one by one to the real-time pipeline endpoint.

Locally S3 is a moto server (``LocalS3``) unless ``AWS_ENDPOINT_URL_S3`` already names one; the harness
finds it through the same variable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.sklearn_tf_pipeline.serving import churn_schema

BUCKET = "servekit-demo"


class LocalS3:
    """A moto S3 server on a free loopback port, a child process stopped by its PID."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 30.0) -> str:
        """Start it; return its URL once it answers."""
        import urllib.request

        from harness.backends.base import free_port

        executable = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        if not Path(executable).exists():
            raise SystemExit("demo: the batch transform step needs a local S3: install moto[server] "
                             "(pip install -e '.[test]') or set AWS_ENDPOINT_URL_S3")
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)],
                                            stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"demo: moto_server exited with code {self.process.returncode}; log {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):  # noqa: S310
                    return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: moto_server did not answer within {timeout_s:.0f} s; log {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def use_local_s3(log_path: Path) -> LocalS3 | None:
    """Start a moto S3 and point this process (and so the harness it starts) at it, unless
    ``AWS_ENDPOINT_URL_S3`` already names an S3; the LocalS3 to stop, or None."""
    if os.environ.get("AWS_ENDPOINT_URL_S3"):
        return None
    s3 = LocalS3(log_path)
    os.environ["AWS_ENDPOINT_URL_S3"] = s3.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    return s3


@dataclass
class BatchResults:
    """What the batch step measured."""

    rows: int = 0
    probabilities: list[float] = field(default_factory=list)
    job_seconds: float = 0.0  # CreateTransformJob -> Completed, container start included
    transform_seconds: float = 0.0  # the job's own log: reading, posting and writing the records
    realtime_rows: int = 0
    realtime_seconds: float = 0.0

    def rates(self) -> tuple[float, float, float]:
        """records/s: batch (transform phase), batch (whole job), real-time one by one."""
        return (self.rows / self.transform_seconds, self.rows / self.job_seconds,
                self.realtime_rows / self.realtime_seconds)


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def _transform_seconds(state_dir: Path, job: str) -> float:
    """The transform phase's duration from the job's data log (``wrote ...: N records ..., X s``)."""
    from harness.transform import data_log_path

    log = data_log_path(state_dir, job)
    found = re.findall(r"records in \d+ mini-batches, ([0-9.]+) s", log.read_text())
    if not found:
        raise RuntimeError(f"the data log {log} records no transformed object")
    return sum(float(s) for s in found)


def run_batch(sm: Any, runtime: Any, model: str, endpoint: str, rows: list[list[Any]], state_dir: Path,
              say: Callable[[str], None], realtime_rows: int = 400) -> BatchResults:
    """Transform ``rows`` with ``model`` as a batch job, then send ``realtime_rows`` of them one by one to
    ``endpoint``; the predictions and the timings."""
    s3 = _s3_client()
    s3.create_bucket(Bucket=BUCKET)
    job = f"{model}-batch"
    s3.put_object(Bucket=BUCKET, Key=f"{job}/in/churn.csv", Body=churn_schema.to_csv(rows).encode())
    results = BatchResults(rows=len(rows))
    t0 = time.perf_counter()
    sm.create_transform_job(
        TransformJobName=job, ModelName=model, BatchStrategy="MultiRecord", MaxPayloadInMB=1,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": f"s3://{BUCKET}/{job}/in/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{job}/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    say(f"CreateTransformJob {job}: {len(rows)} rows, SplitType Line, MultiRecord up to 1 MB, Accept text/csv")
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=job, WaiterConfig={"Delay": 0.5, "MaxAttempts": 1200})
    results.job_seconds = time.perf_counter() - t0
    described = sm.describe_transform_job(TransformJobName=job)
    if described["TransformJobStatus"] != "Completed":
        raise RuntimeError(f"transform job {job} is {described['TransformJobStatus']}: "
                           f"{described.get('FailureReason')}")
    body = s3.get_object(Bucket=BUCKET, Key=f"{job}/out/churn.csv.out")["Body"].read().decode()
    results.probabilities = [float(line) for line in body.splitlines()]
    results.transform_seconds = _transform_seconds(state_dir, job)
    say(f"  Completed: s3://{BUCKET}/{job}/out/churn.csv.out has {len(results.probabilities)} rows")
    results.realtime_rows = min(realtime_rows, len(rows))
    t1 = time.perf_counter()
    for row in rows[:results.realtime_rows]:
        runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Accept="text/csv",
                                Body=churn_schema.to_csv([row]))["Body"].read()
    results.realtime_seconds = time.perf_counter() - t1
    return results
