"""SDK v2: SKLearnModel with an entry_point script (optionally with network isolation, which repacks the
script into the artifact's code/); the script answers predict_proba."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn.model import SKLearnModel
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = SKLearnModel(model_data=a["model_data"], role=ROLE, entry_point=a["entry_point"],
                     source_dir=a["source_dir"], framework_version="1.2-1", image_uri=a["image"],
                     enable_network_isolation=a["network_isolation"], sagemaker_session=session)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    container = session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]
    report({"answer": predictor.predict(a["rows"]), "environment": container.get("Environment", {}),
            "model_data_url": container.get("ModelDataUrl")})
finally:
    predictor.delete_endpoint()
    model.delete_model()
