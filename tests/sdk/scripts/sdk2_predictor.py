"""SDK v2: a plain Model with an image and an artifact, deployed; then one Predictor per serializer."""

import numpy as np
import sagemaker
from sagemaker.deserializers import JSONDeserializer, NumpyDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer, JSONSerializer, NumpySerializer
from sdk_common import INSTANCE, ROLE, args, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    rows = a["rows"]
    csv_answer = predictor.predict(rows)
    json_predictor = Predictor(a["endpoint"], session, serializer=JSONSerializer(), deserializer=JSONDeserializer())
    json_answer = json_predictor.predict(rows)
    npy_predictor = Predictor(a["endpoint"], session, serializer=NumpySerializer(), deserializer=NumpyDeserializer())
    npy_answer = npy_predictor.predict(np.array(rows))
    report({"csv": csv_answer, "json": json_answer,
            "npy": {"type": type(npy_answer).__name__, "value": np.asarray(npy_answer).tolist()}})
finally:
    predictor.delete_endpoint()
    model.delete_model()
