"""SDK v3: ModelBuilder.deploy(inference_config=ServerlessInferenceConfig(...)) waited for by the SDK itself
(wait=True: v3 reads the endpoint's CloudWatch Logs while it waits, here from the harness), an invocation
(the cold start), and the endpoint's DescribeEndpoint variant summary."""

import os

from sagemaker.core.helper import session_helper
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.inference_config import ServerlessInferenceConfig
from sagemaker.core.resources import Endpoint, EndpointConfig
from sagemaker.serve.model_builder import ModelBuilder
from sdk_common import INSTANCE, ROLE, args, csv_rows, record_calls, report, timed

# CloudWatch Logs from the harness too: the one extra endpoint URL docs/harness.md "CloudWatch Logs" names.
os.environ["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = os.environ["AWS_ENDPOINT_URL_SAGEMAKER"]
# The SDK's log-streaming wait sleeps this many seconds before each look (30); the same wait, polled each second.
session_helper.EP_LOGGER_POLL = 1
record_calls()
a = args()
name = a["endpoint"]
session = Session(default_bucket=a["bucket"])  # a local S3: the SDK reaches STS only on AWS
builder = ModelBuilder(image_uri=a["image"], s3_model_data_url=a["model_data"], role_arn=ROLE,
                       instance_type=INSTANCE, sagemaker_session=session,
                       model_path=os.path.abspath("model-builder-serverless"))  # not a fresh dir under /tmp per run
model = timed("build", builder.build, model_name=name)
result: dict = {}
try:
    endpoint = timed("deploy", builder.deploy, endpoint_name=name, wait=True,
                     inference_config=ServerlessInferenceConfig(memory_size_in_mb=2048, max_concurrency=2))
    response = timed("cold_invoke", endpoint.invoke, body=csv_rows(a["rows"]), content_type="text/csv",
                     accept="application/json")
    body = response.body.read() if hasattr(response.body, "read") else response.body
    serverless = Endpoint.get(name).production_variants[0].current_serverless_config
    result.update(body=body.decode() if isinstance(body, bytes) else body, status=Endpoint.get(name).endpoint_status,
                  serverless={"MemorySizeInMB": serverless.memory_size_in_mb,
                              "MaxConcurrency": serverless.max_concurrency})
finally:
    config_name = Endpoint.get(name).endpoint_config_name
    Endpoint.get(name).delete()
    timed("wait_deleted", Endpoint.get(name).wait_for_delete, poll=1, timeout=120)
    EndpointConfig.get(config_name).delete()
    model.delete()
report(result)
