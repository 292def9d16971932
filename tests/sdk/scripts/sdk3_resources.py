"""SDK v3: sagemaker.core resources -- Model.create, EndpointConfig.create, Endpoint.create,
wait_for_status, invoke, then delete everything and wait for the endpoint to go."""

import boto3
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
from sdk_common import INSTANCE, ROLE, args, csv_rows, error_of, leftovers, report, timed

a = args()
name = a["endpoint"]
model = Model.create(model_name=name, execution_role_arn=ROLE,
                     primary_container=ContainerDefinition(image=a["image"], model_data_url=a["model_data"]))
config = EndpointConfig.create(endpoint_config_name=name, production_variants=[ProductionVariant(
    variant_name="AllTraffic", model_name=name, instance_type=INSTANCE, initial_instance_count=1)])
endpoint = timed("create_endpoint", Endpoint.create, endpoint_name=name, endpoint_config_name=name)
result: dict = {}
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    response = endpoint.invoke(body=csv_rows(a["rows"]), content_type="text/csv", accept="application/json")
    body = response.body.read() if hasattr(response.body, "read") else response.body
    result.update(status=Endpoint.get(name).endpoint_status, variant=response.invoked_production_variant,
                  content_type=response.content_type, body=body.decode() if isinstance(body, bytes) else body)
finally:
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    config.delete()
    model.delete()
result["describe_deleted"] = error_of(Endpoint.get, name)
result["leftovers"] = leftovers(boto3.client("sagemaker"), name)
report(result)
