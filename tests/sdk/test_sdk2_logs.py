"""SageMaker Python SDK v2 reading CloudWatch Logs from the harness: ``Transformer.wait(logs=True)``
(``Session.logs_for_transform_job``: DescribeLogStreams by ``<job>/`` prefix, then GetLogEvents per stream)."""

from __future__ import annotations

import pytest

from tests.sdk import artifacts
from tests.sdk.conftest import BUCKET, LocalAws, image_uri, run_script, sdk_python

pytestmark = pytest.mark.sdk


def test_transformer_wait_prints_the_jobs_logs(local_aws: LocalAws) -> None:
    sdk_python(2)
    iris = artifacts.sklearn_model(local_aws, "artifacts/iris-logs/model.tar.gz")
    result = run_script(local_aws, 2, "sdk2_transformer_logs.py",
                        {"bucket": BUCKET, "prefix": "transform-logs/iris", "model": "sdk2-transformer-logs",
                         "image": image_uri("sklearn"), "model_data": iris.url, "rows": iris.rows})
    assert result["status"] == "Completed"
    printed = "\n".join(result["printed"])
    # the job's data-log line for its one input object (harness.transform writes it), as the SDK prints it
    assert f"transforming s3://{BUCKET}/transform-logs/iris/in/rows.csv" in printed
