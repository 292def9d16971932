"""A user's deployment script, written for AWS and run unchanged against ``servekit local up``.

It is the script docs/harness.md shows. The only difference between AWS and local is the
environment: AWS_ENDPOINT_URL_SAGEMAKER / AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME point boto3 at the
harness (and AWS_ENDPOINT_URL_S3 at a local S3 such as moto or MinIO, if the bucket is local).
"""

import json

import boto3

sm = boto3.client("sagemaker")
runtime = boto3.client("sagemaker-runtime")

image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest"
role = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"

sm.create_model(
    ModelName="iris",
    ExecutionRoleArn=role,
    PrimaryContainer={"Image": image, "ModelDataUrl": "s3://my-models/iris/model.tar.gz"},
)
sm.create_endpoint_config(
    EndpointConfigName="iris",
    ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "iris",
                         "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
)
sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
sm.get_waiter("endpoint_in_service").wait(EndpointName="iris")

response = runtime.invoke_endpoint(
    EndpointName="iris",
    ContentType="text/csv",
    Accept="application/json",
    Body="5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3",
)
print(response["InvokedProductionVariant"], json.loads(response["Body"].read()))
