"""SDK v2: ``model.deploy(async_inference_config=AsyncInferenceConfig(...))`` -> AsyncPredictor; one
request with ``predict`` (upload, InvokeEndpointAsync, wait for the S3 result) and one with
``predict_async`` + ``get_result``."""

import sagemaker
from sagemaker.async_inference import AsyncInferenceConfig, WaiterConfig
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor)
config = AsyncInferenceConfig(output_path=f"s3://{a['bucket']}/{a['prefix']}/out",
                              failure_path=f"s3://{a['bucket']}/{a['prefix']}/failed",
                              max_concurrent_invocations_per_instance=2)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], async_inference_config=config, serializer=CSVSerializer(),
                  deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    # The SDK polls the output and the failure path in two threads and returns once the output is
    # there, but the failure path's thread is not a daemon and polls on for every attempt, so the
    # script cannot exit before max_attempts x delay: 15 s, not the minutes of the SDK's default.
    waiter = WaiterConfig(max_attempts=15, delay=1)
    answer = timed("predict", predictor.predict, a["rows"], waiter_config=waiter)
    response = predictor.predict_async(a["rows"])
    later = response.get_result(waiter)
    report({"type": type(predictor).__name__, "answer": answer, "later": later,
            "output_path": response.output_path})
finally:
    predictor.delete_endpoint()
    model.delete_model()
