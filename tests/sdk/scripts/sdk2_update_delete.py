"""SDK v2: deploy model A, create model B, Predictor.update_endpoint(model_name=B), then delete the
endpoint, its configs and both models, waiting with boto3's endpoint_deleted waiter."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sdk_common import INSTANCE, ROLE, args, error_of, report, timed, wait_deleted

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
sm = session.sagemaker_client
first = Model(image_uri=a["image"], model_data=a["first"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor, name=a["endpoint"] + "-a")
second = Model(image_uri=a["image"], model_data=a["second"], role=ROLE, sagemaker_session=session,
               name=a["endpoint"] + "-b")
predictor = timed("deploy", first.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
result: dict = {}
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    result["before"] = predictor.predict(a["rows"])
    second.create(instance_type=INSTANCE)
    timed("update_endpoint", predictor.update_endpoint, model_name=second.name, initial_instance_count=1,
          instance_type=INSTANCE, wait=False)
    timed("wait_updated", session.wait_for_endpoint, a["endpoint"], poll=1)
    result["after"] = predictor.predict(a["rows"])
    result["models_after_update"] = predictor._get_model_names()
finally:
    configs = {sm.describe_endpoint(EndpointName=a["endpoint"])["EndpointConfigName"], a["endpoint"]}
    predictor.delete_endpoint(delete_endpoint_config=False)
    timed("wait_deleted", wait_deleted, sm, a["endpoint"])
    for config in configs:
        session.delete_endpoint_config(config)
    first.delete_model()
    second.delete_model()
result["describe_endpoint"] = error_of(sm.describe_endpoint, EndpointName=a["endpoint"])
result["describe_configs"] = [error_of(sm.describe_endpoint_config, EndpointConfigName=c) for c in sorted(configs)]
result["models_left"] = [m["ModelName"] for m in sm.list_models(NameContains=a["endpoint"])["Models"]]
report(result)
