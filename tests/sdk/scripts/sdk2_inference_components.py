"""SDK v2: Model.deploy(endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED, resources=ResourceRequirements(...)),
CSV predictions through the predictor (which names the component), the component's DescribeInferenceComponent, then
the component and the endpoint deleted."""

import sagemaker
from sagemaker.compute_resource_requirements.resource_requirements import ResourceRequirements
from sagemaker.deserializers import JSONDeserializer
from sagemaker.enums import EndpointType
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sdk_common import INSTANCE, ROLE, args, record_calls, report, timed

record_calls()
a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor)
resources = ResourceRequirements(requests={"num_cpus": 1, "memory": 512, "copies": 2})
predictor = timed("deploy", model.deploy, endpoint_name=a["endpoint"], instance_type=INSTANCE,
                  initial_instance_count=1, serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False,
                  endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED, resources=resources)
component = predictor.component_name
try:
    timed("wait_in_service", session.wait_for_inference_component, component, poll=1)
    answers = [timed(f"predict_{i}", predictor.predict, a["rows"]) for i in range(2)]
    described = session.sagemaker_client.describe_inference_component(InferenceComponentName=component)
    result = {"answers": answers, "component": component, "runtime": described["RuntimeConfig"],
              "requirements": described["Specification"]["ComputeResourceRequirements"]}
finally:
    session.delete_inference_component(component, wait=False)
    session.wait_for_inference_component_deletion(component, poll=1)
    predictor.delete_endpoint()
    model.delete_model()
report(result)  # after the cleanup: its calls are reported too
