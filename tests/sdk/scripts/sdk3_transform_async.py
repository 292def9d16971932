"""SDK v3: sagemaker.core resources -- TransformJob.create + wait(logs=True) (a batch transform of CSV rows in S3,
its CloudWatch Logs read from the harness),
and an endpoint with AsyncInferenceConfig answering Endpoint.invoke_async through S3."""

import os
import time

import boto3
from sagemaker.core.resources import Endpoint, EndpointConfig, Model, TransformJob
from sagemaker.core.shapes import (
    AsyncInferenceConfig,
    AsyncInferenceOutputConfig,
    ContainerDefinition,
    ProductionVariant,
    TransformDataSource,
    TransformInput,
    TransformOutput,
    TransformResources,
    TransformS3DataSource,
)
from sdk_common import INSTANCE, ROLE, args, csv_rows, record_calls, report, timed

# CloudWatch Logs from the harness too: the one extra endpoint URL docs/harness.md "CloudWatch Logs" names.
os.environ["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = os.environ["AWS_ENDPOINT_URL_SAGEMAKER"]
record_calls()

a = args()
name, bucket, prefix = a["endpoint"], a["bucket"], a["prefix"]
s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key=f"{prefix}/in/rows.csv", Body=(csv_rows(a["rows"]) + "\n").encode())
model = Model.create(model_name=name, execution_role_arn=ROLE,
                     primary_container=ContainerDefinition(image=a["image"], model_data_url=a["model_data"]))
result: dict = {}
try:
    job = TransformJob.create(
        transform_job_name=name, model_name=name, batch_strategy="MultiRecord",
        transform_input=TransformInput(
            data_source=TransformDataSource(s3_data_source=TransformS3DataSource(
                s3_data_type="S3Prefix", s3_uri=f"s3://{bucket}/{prefix}/in/")),
            content_type="text/csv", split_type="Line"),
        transform_output=TransformOutput(s3_output_path=f"s3://{bucket}/{prefix}/out", accept="text/csv",
                                         assemble_with="Line"),
        transform_resources=TransformResources(instance_type=INSTANCE, instance_count=1))
    timed("transform_wait", job.wait, poll=1, timeout=300, logs=True)
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/out/rows.csv.out")["Body"].read().decode()
    result.update(transform_status=TransformJob.get(name).transform_job_status, transform=body.split())

    config = EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[ProductionVariant(variant_name="AllTraffic", model_name=name, instance_type=INSTANCE,
                                               initial_instance_count=1)],
        async_inference_config=AsyncInferenceConfig(
            output_config=AsyncInferenceOutputConfig(s3_output_path=f"s3://{bucket}/{prefix}/async-out")))
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name)
    try:
        timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
        s3.put_object(Bucket=bucket, Key=f"{prefix}/async-in.csv", Body=csv_rows(a["rows"]).encode())
        answer = endpoint.invoke_async(input_location=f"s3://{bucket}/{prefix}/async-in.csv",
                                       content_type="text/csv", accept="application/json", inference_id="v3-1")
        out_bucket, out_key = answer.output_location[len("s3://"):].split("/", 1)
        deadline = time.monotonic() + 120
        while True:
            try:
                output = s3.get_object(Bucket=out_bucket, Key=out_key)["Body"].read().decode()
                break
            except s3.exceptions.NoSuchKey:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        result.update(inference_id=answer.inference_id, async_answer=output)
    finally:
        endpoint.delete()
        endpoint.wait_for_delete(poll=1, timeout=120)
        config.delete()
finally:
    model.delete()
report(result)
