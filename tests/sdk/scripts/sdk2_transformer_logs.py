"""SDK v2: ``transformer.transform(..., wait=False)`` then ``transformer.wait(logs=True)``, which reads the job's
CloudWatch Logs (DescribeLogStreams by ``<job>/`` prefix, GetLogEvents) and prints them; the script reports
the printed lines."""

import contextlib
import io
import os

import boto3
import sagemaker
from sagemaker.model import Model
from sdk_common import INSTANCE, ROLE, args, csv_rows, report, timed

# The one endpoint URL: the harness answers CloudWatch Logs too (docs/harness.md "CloudWatch Logs").
os.environ["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = os.environ["AWS_ENDPOINT_URL_SAGEMAKER"]
a = args()
session = sagemaker.Session(default_bucket=a["bucket"])
boto3.client("s3").put_object(Bucket=a["bucket"], Key=f"{a['prefix']}/in/rows.csv",
                              Body=(csv_rows(a["rows"]) + "\n").encode())
model = Model(image_uri=a["image"], model_data=a["model_data"], role=ROLE, sagemaker_session=session,
              name=a["model"])
transformer = model.transformer(instance_count=1, instance_type=INSTANCE, strategy="MultiRecord",
                                assemble_with="Line", accept="text/csv",
                                output_path=f"s3://{a['bucket']}/{a['prefix']}/out")
printed = io.StringIO()
try:
    timed("transform", transformer.transform, f"s3://{a['bucket']}/{a['prefix']}/in/", content_type="text/csv",
          split_type="Line", wait=False)
    with contextlib.redirect_stdout(printed):
        timed("wait", transformer.wait, logs=True)
    job = session.sagemaker_client.describe_transform_job(TransformJobName=transformer.latest_transform_job.name)
    report({"status": job["TransformJobStatus"], "job": job["TransformJobName"],
            "printed": printed.getvalue().splitlines()})
finally:
    model.delete_model()
