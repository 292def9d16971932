"""SDK v2: ``model.transformer(...).transform(...)`` then ``.wait()``: a batch transform of CSV rows in S3,
records split by line and packed MultiRecord; the script reads ``<key>.out`` back."""

import boto3
import sagemaker
from sagemaker.model import Model
from sdk_common import INSTANCE, ROLE, args, csv_rows, report, timed

a = args()
session = sagemaker.Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
s3 = boto3.client("s3")
s3.put_object(Bucket=a["bucket"], Key=f"{a['prefix']}/in/rows.csv", Body=(csv_rows(a["rows"]) + "\n").encode())
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              name=a["model"])
transformer = model.transformer(instance_count=1, instance_type=INSTANCE, strategy="MultiRecord",
                                assemble_with="Line", accept="text/csv",
                                output_path=f"s3://{a['bucket']}/{a['prefix']}/out")
try:
    timed("transform", transformer.transform, f"s3://{a['bucket']}/{a['prefix']}/in/", content_type="text/csv",
          split_type="Line", wait=False)
    timed("wait", transformer.wait, logs=False)
    job = session.sagemaker_client.describe_transform_job(TransformJobName=transformer.latest_transform_job.name)
    body = s3.get_object(Bucket=a["bucket"], Key=f"{a['prefix']}/out/rows.csv.out")["Body"].read().decode()
    report({"status": job["TransformJobStatus"], "strategy": job["BatchStrategy"],
            "split": job["TransformInput"].get("SplitType"), "answer": body.split()})
finally:
    model.delete_model()
