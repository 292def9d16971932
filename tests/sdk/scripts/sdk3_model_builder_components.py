"""SDK v3's recommended path for inference components: ModelBuilder.deploy(inference_config=ResourceRequirements(...))
with an image URI and a model artifact in S3, invoked through the component it made; the component scaled to one
copy with sagemaker.core's InferenceComponent.update_runtime_configs; then all of it deleted."""

import os

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.inference_config import ResourceRequirements
from sagemaker.core.resources import Endpoint, EndpointConfig, InferenceComponent
from sagemaker.core.shapes import InferenceComponentRuntimeConfig
from sagemaker.serve.model_builder import ModelBuilder
from sdk_common import INSTANCE, ROLE, args, csv_rows, record_calls, report, timed

record_calls()
a = args()
name = a["endpoint"]
session = Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
builder = ModelBuilder(image_uri=a["image"], s3_model_data_url=a["model_data"], role_arn=ROLE,
                       instance_type=INSTANCE, sagemaker_session=session,
                       model_path=os.path.abspath("model-builder-components"))
model = timed("build", builder.build, model_name=name)
resources = ResourceRequirements(requests={"num_cpus": 1, "memory": 512, "copies": 2})
# Without inference_component_name, SDK 3.27.0's deploy fails before any call ("'ModelBuilder' object has no
# attribute 'inference_component_name'", sagemaker/serve/model_builder.py _deploy_core_endpoint).
endpoint = timed("deploy", builder.deploy, endpoint_name=name, initial_instance_count=1, wait=False,
                 inference_config=resources, inference_component_name=name)
client = boto3.client("sagemaker")
result: dict = {}
components = []
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    components = [c["InferenceComponentName"]
                  for c in client.list_inference_components(EndpointNameEquals=name)["InferenceComponents"]]
    component = InferenceComponent.get(components[0])
    timed("wait_component", component.wait_for_status, "InService", poll=1, timeout=300)
    response = endpoint.invoke(body=csv_rows(a["rows"]), content_type="text/csv", accept="application/json",
                               inference_component_name=components[0])
    body = response.body.read() if hasattr(response.body, "read") else response.body
    described = client.describe_inference_component(InferenceComponentName=components[0])
    component.update_runtime_configs(desired_runtime_config=InferenceComponentRuntimeConfig(copy_count=1))
    timed("wait_scaled", component.wait_for_status, "InService", poll=1, timeout=120)
    scaled = client.describe_inference_component(InferenceComponentName=components[0])["RuntimeConfig"]
    result.update(body=body.decode() if isinstance(body, bytes) else body, components=len(components),
                  runtime=described["RuntimeConfig"], scaled=scaled, variant=response.invoked_production_variant,
                  requirements=described["Specification"]["ComputeResourceRequirements"])
finally:
    for component_name in components:
        client.delete_inference_component(InferenceComponentName=component_name)
    config_name = Endpoint.get(name).endpoint_config_name
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    EndpointConfig.get(config_name).delete()
    model.delete()
report(result)
