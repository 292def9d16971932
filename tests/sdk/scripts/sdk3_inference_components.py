"""SDK v3: sagemaker.core resources -- an endpoint for inference components (EndpointConfig.create with a variant of
instance type and count only), InferenceComponent.create with two copies, wait_for_status, Endpoint.invoke naming
the component, update_runtime_configs to one copy, then delete everything."""

from sagemaker.core.resources import Endpoint, EndpointConfig, InferenceComponent, Model
from sagemaker.core.shapes import (
    ContainerDefinition,
    InferenceComponentComputeResourceRequirements,
    InferenceComponentRuntimeConfig,
    InferenceComponentSpecification,
    ProductionVariant,
)
from sdk_common import INSTANCE, ROLE, args, csv_rows, report, timed

a = args()
name = a["endpoint"]
model = Model.create(model_name=name, execution_role_arn=ROLE,
                     primary_container=ContainerDefinition(image=a["image"], model_data_url=a["model_data"]))
config = EndpointConfig.create(endpoint_config_name=name, execution_role_arn=ROLE, production_variants=[
    ProductionVariant(variant_name="AllTraffic", instance_type=INSTANCE, initial_instance_count=1)])
endpoint = timed("create_endpoint", Endpoint.create, endpoint_name=name, endpoint_config_name=name)
result: dict = {}
component = None
try:
    timed("wait_endpoint", endpoint.wait_for_status, "InService", poll=1, timeout=120)
    requirements = InferenceComponentComputeResourceRequirements(number_of_cpu_cores_required=1,
                                                                 min_memory_required_in_mb=512)
    component = InferenceComponent.create(
        inference_component_name=name, endpoint_name=name, variant_name="AllTraffic",
        specification=InferenceComponentSpecification(model_name=name, compute_resource_requirements=requirements),
        runtime_config=InferenceComponentRuntimeConfig(copy_count=2))
    timed("wait_component", component.wait_for_status, "InService", poll=1, timeout=300)
    bodies = []
    for _ in range(2):
        response = endpoint.invoke(body=csv_rows(a["rows"]), content_type="text/csv", accept="application/json",
                                   inference_component_name=name)
        body = response.body.read() if hasattr(response.body, "read") else response.body
        bodies.append(body.decode() if isinstance(body, bytes) else body)
    component.update_runtime_configs(desired_runtime_config=InferenceComponentRuntimeConfig(copy_count=1))
    timed("wait_scaled", component.wait_for_status, "InService", poll=1, timeout=120)
    runtime = InferenceComponent.get(name).runtime_config
    result.update(bodies=bodies, variant=response.invoked_production_variant,
                  copies={"desired": runtime.desired_copy_count, "current": runtime.current_copy_count})
finally:
    if component is not None:
        component.delete()
        timed("wait_component_deleted", component.wait_for_delete, poll=1, timeout=120)
    endpoint.delete()
    timed("wait_deleted", endpoint.wait_for_delete, poll=1, timeout=120)
    config.delete()
    model.delete()
report(result)
