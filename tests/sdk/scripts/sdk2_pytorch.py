"""SDK v2: PyTorchModel with an entry_point whose model_fn loads a state dict (the SDK repacks the script
into the artifact's code/ and points SAGEMAKER_SUBMIT_DIRECTORY at /opt/ml/model/code)."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.pytorch.model import PyTorchModel
from sagemaker.serializers import JSONSerializer
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = PyTorchModel(model_data=a["model_data"], role=ROLE, entry_point=a["entry_point"], source_dir=a["source_dir"],
                     framework_version="2.3", py_version="py311", image_uri=a["image"], sagemaker_session=session)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=JSONSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    container = session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]
    report({"answer": predictor.predict(a["rows"]), "environment": container.get("Environment", {})})
finally:
    predictor.delete_endpoint()
    model.delete_model()
