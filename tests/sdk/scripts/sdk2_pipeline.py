"""SDK v2: PipelineModel of a scaler (SKLearnModel with a script) and a classifier (plain Model)."""

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.pipeline import PipelineModel
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn.model import SKLearnModel
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
scaler = SKLearnModel(model_data=a["scaler"], role=ROLE, entry_point=a["entry_point"], source_dir=a["source_dir"],
                      framework_version="1.2-1", image_uri=a["image"], sagemaker_session=session)
classifier = Model(image_uri=a["image"], model_data=a["classifier"], role=ROLE, sagemaker_session=session)
pipeline = PipelineModel(models=[scaler, classifier], role=ROLE, name=a["endpoint"], sagemaker_session=session,
                         predictor_cls=Predictor)
predictor = timed("deploy", pipeline.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    described = session.sagemaker_client.describe_model(ModelName=a["endpoint"])
    report({"answer": predictor.predict(a["rows"]), "containers": len(described.get("Containers", []))})
finally:
    predictor.delete_endpoint()
    pipeline.delete_model()
