"""SDK v3's recommended path: ModelBuilder with an image URI and a model artifact in S3, built, deployed
to an endpoint and invoked; then the endpoint, its config and the model are deleted."""

import os

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.serve.model_builder import ModelBuilder
from sdk_common import INSTANCE, ROLE, args, csv_rows, leftovers, report, timed

a = args()
name = a["endpoint"]
session = Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
builder = ModelBuilder(image_uri=a["image"], s3_model_data_url=a["model_data"], role_arn=ROLE,
                       instance_type=INSTANCE, sagemaker_session=session,
                       model_path=os.path.abspath("model-builder"))  # not a fresh dir under /tmp per run
model = timed("build", builder.build, model_name=name)
endpoint = timed("deploy", builder.deploy, endpoint_name=name, initial_instance_count=1, wait=False)
result: dict = {}
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    response = endpoint.invoke(body=csv_rows(a["rows"]), content_type="text/csv", accept="application/json")
    body = response.body.read() if hasattr(response.body, "read") else response.body
    container = Model.get(model.model_name).primary_container
    result.update(body=body.decode() if isinstance(body, bytes) else body, image=container.image,
                  model_data_url=container.model_data_url)
finally:
    config_name = Endpoint.get(name).endpoint_config_name
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    EndpointConfig.get(config_name).delete()
    model.delete()
result["leftovers"] = leftovers(boto3.client("sagemaker"), name)
report(result)
