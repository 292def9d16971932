"""SDK v2: MultiDataModel -- a model added before deploy and one after, list_models, predictions routed
by target_model, and an unknown target model."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.multidatamodel import MultiDataModel
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sdk_common import INSTANCE, ROLE, args, error_of, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
mme = MultiDataModel(name=a["endpoint"], model_data_prefix=a["prefix"], image_uri=a["image"], role=ROLE,
                     sagemaker_session=session, predictor_cls=Predictor)
mme.add_model(model_data_source=a["first"], model_data_path="first.tar.gz")
predictor = timed("deploy", mme.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    first = timed("first_invoke", predictor.predict, a["rows"], target_model="first.tar.gz")
    mme.add_model(model_data_source=a["second"], model_data_path="second.tar.gz")
    report({
        "listed": sorted(mme.list_models()),
        "first": first,
        "second": predictor.predict(a["rows"], target_model="second.tar.gz"),
        "unknown": error_of(predictor.predict, a["rows"], target_model="missing.tar.gz"),
        "container": session.sagemaker_client.describe_model(ModelName=a["endpoint"])["PrimaryContainer"],
    })
finally:
    predictor.delete_endpoint()
    mme.delete_model()
