"""SDK v2: Model.deploy(serverless_inference_config=ServerlessInferenceConfig(...)), a CSV prediction (the cold
start) and a second one, the endpoint's DescribeEndpoint variant summary."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sagemaker.serverless import ServerlessInferenceConfig
from sdk_common import ROLE, args, record_calls, report, timed

record_calls()
a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor)
predictor = timed("deploy", model.deploy, endpoint_name=a["endpoint"], serializer=CSVSerializer(),
                  deserializer=JSONDeserializer(), wait=False,
                  serverless_inference_config=ServerlessInferenceConfig(memory_size_in_mb=2048, max_concurrency=2))
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    cold = timed("cold_predict", predictor.predict, a["rows"])
    warm = timed("warm_predict", predictor.predict, a["rows"])
    described = session.sagemaker_client.describe_endpoint(EndpointName=a["endpoint"])["ProductionVariants"][0]
    variant = {"CurrentServerlessConfig": described["CurrentServerlessConfig"]}
    result = {"cold": cold, "warm": warm, "variant": variant}
finally:
    predictor.delete_endpoint()
    model.delete_model()
report(result)  # after the cleanup: its calls are reported too
