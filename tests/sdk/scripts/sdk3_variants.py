"""SDK v3: EndpointConfig.create with a shadow variant, Endpoint.invoke, then
Endpoint.update_weights_and_capacities (a second instance for the production variant), waited for, and the
variant summaries Endpoint.get reads."""

from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, DesiredWeightAndCapacity, ProductionVariant
from sdk_common import INSTANCE, ROLE, args, csv_rows, record_calls, report, timed

record_calls()
a = args()
name = a["endpoint"]
model = Model.create(model_name=name, execution_role_arn=ROLE,
                     primary_container=ContainerDefinition(image=a["image"], model_data_url=a["model_data"]))


def variant(variant_name: str) -> ProductionVariant:
    return ProductionVariant(variant_name=variant_name, model_name=name, instance_type=INSTANCE,
                             initial_instance_count=1)


config = EndpointConfig.create(endpoint_config_name=name, production_variants=[variant("Main")],
                               shadow_production_variants=[variant("Shadow")])
endpoint = timed("create_endpoint", Endpoint.create, endpoint_name=name, endpoint_config_name=name)
result: dict = {}
try:
    timed("wait_in_service", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    response = endpoint.invoke(body=csv_rows(a["rows"]), content_type="text/csv", accept="application/json")
    result["variant"] = response.invoked_production_variant
    endpoint.update_weights_and_capacities(desired_weights_and_capacities=[
        DesiredWeightAndCapacity(variant_name="Main", desired_instance_count=2)])
    timed("wait_updated", endpoint.wait_for_status, "InService", poll=1, timeout=300)
    described = Endpoint.get(name)
    result["main"] = [(v.variant_name, v.current_instance_count) for v in described.production_variants]
    result["shadow"] = [(v.variant_name, v.current_instance_count) for v in described.shadow_production_variants]
finally:
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    config.delete()
    model.delete()
report(result)
