"""SDK v2: Model.deploy(data_capture_config=DataCaptureConfig(...)), CSV predictions, the endpoint deleted (which
writes what was captured), then the capture objects read back from S3 and summarized."""

import json

import boto3
import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.model_monitor import DataCaptureConfig
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer
from sdk_common import INSTANCE, ROLE, args, record_calls, report, timed, wait_deleted

record_calls()
a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
destination = f"s3://{a['bucket']}/capture"
capture = DataCaptureConfig(enable_capture=True, sampling_percentage=100, destination_s3_uri=destination,
                            sagemaker_session=session)
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              predictor_cls=Predictor)
predictor = timed("deploy", model.deploy, initial_instance_count=1, instance_type=INSTANCE,
                  endpoint_name=a["endpoint"], serializer=CSVSerializer(), deserializer=JSONDeserializer(),
                  data_capture_config=capture, wait=False)
try:
    timed("wait_in_service", session.wait_for_endpoint, a["endpoint"], poll=1)
    answers = [predictor.predict([row]) for row in a["rows"][:3]]
    described = session.sagemaker_client.describe_endpoint(EndpointName=a["endpoint"])["DataCaptureConfig"]
finally:
    predictor.delete_endpoint()
    timed("wait_deleted", wait_deleted, session.sagemaker_client, a["endpoint"])
    model.delete_model()
s3 = boto3.client("s3")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=a["bucket"], Prefix=f"capture/{a['endpoint']}/")["Contents"]]
records = [json.loads(line) for key in keys
           for line in s3.get_object(Bucket=a["bucket"], Key=key)["Body"].read().decode().splitlines()]
report({"answers": answers, "described": described, "keys": keys,
        "inputs": [r["captureData"]["endpointInput"] for r in records],
        "outputs": [r["captureData"]["endpointOutput"] for r in records]})
