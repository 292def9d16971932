"""SDK v2: TensorFlowModel with an entry_point in TF Serving's input_handler / output_handler style, and
container_log_level, which the SDK passes as AWS's TF Serving variable SAGEMAKER_TFS_NGINX_LOGLEVEL."""

import logging

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.serializers import CSVSerializer
from sagemaker.tensorflow.model import TensorFlowModel
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = TensorFlowModel(model_data=a["model_data"], role=ROLE, entry_point=a["entry_point"],
                        source_dir=a["source_dir"], framework_version="2.16", image_uri=a["image"],
                        container_log_level=logging.WARNING, sagemaker_session=session)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    environment = session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]["Environment"]
    report({"answer": predictor.predict(a["rows"]), "environment": environment})
finally:
    predictor.delete_endpoint()
    model.delete_model()
