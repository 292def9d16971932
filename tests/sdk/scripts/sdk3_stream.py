"""SDK v3: sagemaker.core resources -- an endpoint whose user script streams tokens. v3's own call,
Endpoint.invoke_with_response_stream, is tried and what it raises recorded (3.27.0 fails in its own
response transform, whatever the server); the stream is then read with v3's sagemaker.core.iterators
over boto3's invoke_endpoint_with_response_stream."""

import json

import boto3
from sagemaker.core.iterators import ByteIterator
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
name = a["endpoint"]
model = Model.create(model_name=name, execution_role_arn=ROLE, primary_container=ContainerDefinition(
    image=a["image"], model_data_url=a["model_data"], environment=a["environment"]))
config = EndpointConfig.create(endpoint_config_name=name, production_variants=[ProductionVariant(
    variant_name="AllTraffic", model_name=name, instance_type=INSTANCE, initial_instance_count=1)])
endpoint = timed("create_endpoint", Endpoint.create, endpoint_name=name, endpoint_config_name=name)
result: dict = {}
request = {"body": json.dumps(a["request"]), "content_type": "application/json", "accept": "text/plain"}
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    try:
        response = endpoint.invoke_with_response_stream(**request)
        result["resource_parts"] = [event["PayloadPart"]["Bytes"].decode() for event in response.body]
    except Exception as exc:  # recorded for the test, which states what v3 does
        result["resource_error"] = f"{type(exc).__name__}: {exc}"
    answer = boto3.client("sagemaker-runtime").invoke_endpoint_with_response_stream(
        EndpointName=name, Body=request["body"], ContentType=request["content_type"], Accept=request["accept"])
    result.update(parts=[part.decode() for part in ByteIterator(answer["Body"])], content_type=answer["ContentType"],
                  variant=answer["InvokedProductionVariant"])
finally:
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    config.delete()
    model.delete()
report(result)
