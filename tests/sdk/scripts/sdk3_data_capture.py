"""SDK v3: sagemaker.core EndpointConfig.create(data_capture_config=DataCaptureConfig(...)), two CSV invocations,
the endpoint deleted (which writes what was captured), then the capture objects read back from S3."""

import json

import boto3
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import (
    CaptureContentTypeHeader,
    CaptureOption,
    ContainerDefinition,
    DataCaptureConfig,
    ProductionVariant,
)
from sdk_common import INSTANCE, ROLE, args, csv_rows, record_calls, report, timed

record_calls()
a = args()
name = a["endpoint"]
model = Model.create(model_name=name, execution_role_arn=ROLE,
                     primary_container=ContainerDefinition(image=a["image"], model_data_url=a["model_data"]))
capture = DataCaptureConfig(enable_capture=True, initial_sampling_percentage=100,
                            destination_s3_uri=f"s3://{a['bucket']}/capture-v3",
                            capture_options=[CaptureOption(capture_mode="Input"), CaptureOption(capture_mode="Output")],
                            capture_content_type_header=CaptureContentTypeHeader(csv_content_types=["text/csv"],
                                                                                 json_content_types=["application/json"]))
config = EndpointConfig.create(endpoint_config_name=name, data_capture_config=capture, production_variants=[
    ProductionVariant(variant_name="AllTraffic", model_name=name, instance_type=INSTANCE, initial_instance_count=1)])
endpoint = timed("create_endpoint", Endpoint.create, endpoint_name=name, endpoint_config_name=name)
result: dict = {}
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    answers = []
    for row in a["rows"][:2]:
        response = endpoint.invoke(body=csv_rows([row]), content_type="text/csv", accept="application/json")
        body = response.body.read() if hasattr(response.body, "read") else response.body
        answers.append(json.loads(body))
    summary = Endpoint.get(name).data_capture_config
    result.update(answers=answers, described={"CaptureStatus": summary.capture_status,
                                              "CurrentSamplingPercentage": summary.current_sampling_percentage})
finally:
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    config.delete()
    model.delete()
s3 = boto3.client("s3")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=a["bucket"], Prefix=f"capture-v3/{name}/")["Contents"]]
records = [json.loads(line) for key in keys
           for line in s3.get_object(Bucket=a["bucket"], Key=key)["Body"].read().decode().splitlines()]
report({**result, "keys": keys, "records": records})
