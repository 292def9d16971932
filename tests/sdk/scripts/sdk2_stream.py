"""SDK v2: PyTorchModel with an entry_point whose predict_fn returns a generator of tokens, deployed;
then Predictor.predict_stream (boto3's invoke_endpoint_with_response_stream), one item per PayloadPart."""

import sagemaker
from sagemaker.pytorch.model import PyTorchModel
from sagemaker.serializers import JSONSerializer
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = PyTorchModel(model_data=a["model_data"], role=ROLE, entry_point=a["entry_point"], source_dir=a["source_dir"],
                     framework_version="2.3", py_version="py311", image_uri=a["image"], sagemaker_session=session)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=JSONSerializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    parts = [part.decode() for part in predictor.predict_stream(a["request"], initial_args={"Accept": "text/plain"})]
    report({"parts": parts})
finally:
    predictor.delete_endpoint()
    model.delete_model()
