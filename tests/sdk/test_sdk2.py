"""SageMaker Python SDK v2 (``sagemaker<3``, in ``.venv-sdk2``) against ``servekit local up``.

Each test runs one user script from ``scripts/`` with SDK v2 and checks its answers against the real
model's, computed here. Script paths that the SDK only sets up (sourcedir.tar.gz in S3, code repacked
into the artifact) are asserted too, so a passing test means the path under test was really taken.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.sdk import artifacts
from tests.sdk.artifacts import Artifact
from tests.sdk.conftest import BUCKET, CODE, LocalAws, image_uri, run_script, sdk_python

pytestmark = pytest.mark.sdk

SKLEARN_IMAGE = image_uri("sklearn")
PYTORCH_IMAGE = image_uri("pytorch")
TENSORFLOW_IMAGE = image_uri("tensorflow")


def v2(aws: LocalAws, script: str, endpoint: str, **args: Any) -> Any:
    """Run ``scripts/<script>`` with SDK v2, deploying ``endpoint``."""
    return run_script(aws, 2, script, {"endpoint": endpoint, "bucket": BUCKET, **args}, endpoints=(endpoint,))


def as_floats(values: Any) -> list[float]:
    assert isinstance(values, list), f"expected a JSON list of predictions, got {values!r}"
    return [float(v) for v in values]


@pytest.fixture(scope="session", autouse=True)
def sdk2() -> str:
    """SDK v2's interpreter, checked before any server starts."""
    return sdk_python(2)


@pytest.fixture(scope="module")
def iris(local_aws: LocalAws) -> Artifact:
    return artifacts.sklearn_model(local_aws, "artifacts/iris/model.tar.gz")


@pytest.fixture(scope="module")
def iris_shifted(local_aws: LocalAws, iris: Artifact) -> Artifact:
    """Another iris model whose labels differ from ``iris``'s for every test row."""
    shifted = artifacts.sklearn_model(local_aws, "artifacts/iris-shifted/model.tar.gz", label_shift=1)
    assert all(a != b for a, b in zip(iris.expected, shifted.expected, strict=True)), "test data"
    return shifted


@pytest.fixture(scope="module")
def predictor_answers(local_aws: LocalAws, iris: Artifact) -> Any:
    return v2(local_aws, "sdk2_predictor.py", "sdk2-predictor", image=SKLEARN_IMAGE, model_data=iris.url,
              rows=iris.rows)


@pytest.mark.parametrize("serializer", ["csv", "json"])
def test_predictor_serializer_with_json_deserializer(predictor_answers: Any, iris: Artifact, serializer: str) -> None:
    assert as_floats(predictor_answers[serializer]) == as_floats(iris.expected)


def test_predictor_numpy_serializer_and_deserializer(predictor_answers: Any, iris: Artifact) -> None:
    answer = predictor_answers["npy"]
    assert answer["type"] == "ndarray"
    assert as_floats(answer["value"]) == as_floats(iris.expected)


@pytest.mark.parametrize("isolation", [False, True], ids=["sourcedir-in-s3", "network-isolation"])
def test_sklearn_model_entry_point_script_answers(local_aws: LocalAws, iris: Artifact, isolation: bool) -> None:
    endpoint = "sdk2-sklearn-isolated" if isolation else "sdk2-sklearn-script"
    result = v2(local_aws, "sdk2_sklearn_entry_point.py", endpoint, image=SKLEARN_IMAGE, model_data=iris.url,
                rows=iris.rows, entry_point="iris_proba.py", source_dir=str(CODE / "sklearn_proba"),
                network_isolation=isolation)
    env = result["environment"]
    assert env["SAGEMAKER_PROGRAM"] == "iris_proba.py"
    if isolation:  # the SDK repacked the script into the artifact's code/
        assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
        assert result["model_data_url"] != iris.url
    else:
        assert env["SAGEMAKER_SUBMIT_DIRECTORY"].startswith("s3://")
        assert env["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    answer = result["answer"]
    # The default predict would answer labels, shape (4,); the script answers predict_proba, (4, 3).
    assert isinstance(answer, dict) and "probabilities" in answer, f"the script's output_fn was not used: {answer!r}"
    probabilities = np.array(answer["probabilities"])
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities, artifacts.iris_proba(), atol=1e-6)


def test_pytorch_model_entry_point_loads_state_dict(local_aws: LocalAws) -> None:
    model = artifacts.torch_state_dict(local_aws, "artifacts/torch/model.tar.gz")
    result = v2(local_aws, "sdk2_pytorch.py", "sdk2-pytorch", image=PYTORCH_IMAGE, model_data=model.url,
                rows=model.rows, entry_point="iris_net.py", source_dir=str(CODE / "pytorch_state_dict"))
    assert result["environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    answer = result["answer"]
    assert isinstance(answer, dict) and "softmax" in answer, f"the script's output_fn was not used: {answer!r}"
    np.testing.assert_allclose(answer["softmax"], model.expected, atol=1e-5)


def test_tensorflow_model_input_and_output_handlers(local_aws: LocalAws, tmp_path: Any) -> None:
    model = artifacts.tensorflow_saved_model(local_aws, "artifacts/tf/model.tar.gz", tmp_path)
    result = v2(local_aws, "sdk2_tensorflow.py", "sdk2-tensorflow", image=TENSORFLOW_IMAGE, model_data=model.url,
                rows=model.rows, entry_point="inference.py", source_dir=str(CODE / "tensorflow_handlers"))
    answer = result["answer"]
    assert result["environment"].get("SAGEMAKER_TFS_NGINX_LOGLEVEL") == "warn", result["environment"]
    assert isinstance(answer, dict) and set(answer) == {"classes", "scores"}, \
        f"the script's output_handler was not used: {answer!r}"
    assert answer["classes"] == [int(np.argmax(row)) for row in model.expected]
    np.testing.assert_allclose(answer["scores"], model.expected, atol=1e-5)


def test_multi_data_model(local_aws: LocalAws, iris: Artifact, iris_shifted: Artifact) -> None:
    result = v2(local_aws, "sdk2_multidatamodel.py", "sdk2-mme", image=SKLEARN_IMAGE, rows=iris.rows,
                prefix=f"s3://{BUCKET}/mme/", first=iris.url, second=iris_shifted.url)
    assert result["container"]["Mode"] == "MultiModel"
    assert result["listed"] == ["first.tar.gz", "second.tar.gz"]
    assert as_floats(result["first"]) == as_floats(iris.expected)
    assert as_floats(result["second"]) == as_floats(iris_shifted.expected)
    unknown = result["unknown"]
    assert unknown["code"] == "ValidationError", unknown
    assert "Failed to download model data" in unknown["message"] and "mme/missing.tar.gz" in unknown["message"]


def test_pipeline_model_scaler_then_classifier(local_aws: LocalAws) -> None:
    scaler_url, classifier = artifacts.scaler_and_classifier(local_aws, "artifacts/pipeline")
    result = v2(local_aws, "sdk2_pipeline.py", "sdk2-pipeline", image=SKLEARN_IMAGE, scaler=scaler_url,
                classifier=classifier.url, rows=classifier.rows, entry_point="scale_rows.py",
                source_dir=str(CODE / "scaler"))
    assert result["containers"] == 2
    assert as_floats(result["answer"]) == as_floats(classifier.expected)


def test_update_endpoint_then_delete_everything(local_aws: LocalAws, iris: Artifact, iris_shifted: Artifact) -> None:
    endpoint = "sdk2-update"
    result = v2(local_aws, "sdk2_update_delete.py", endpoint, image=SKLEARN_IMAGE, first=iris.url,
                second=iris_shifted.url, rows=iris.rows)
    assert as_floats(result["before"]) == as_floats(iris.expected)
    assert as_floats(result["after"]) == as_floats(iris_shifted.expected)
    assert result["models_after_update"] == [f"{endpoint}-b"]
    assert result["describe_endpoint"]["code"] == "ValidationException", result["describe_endpoint"]
    assert [c["code"] for c in result["describe_configs"]] == ["ValidationException"] * 2, result["describe_configs"]
    assert result["models_left"] == []


def test_transformer_batch_transform(local_aws: LocalAws, iris: Artifact) -> None:
    """``model.transformer(...).transform(...)`` and ``.wait()``: a batch transform job, its ``.out`` read back."""
    result = run_script(local_aws, 2, "sdk2_transformer.py",
                        {"bucket": BUCKET, "prefix": "transform/iris", "model": "sdk2-transformer",
                         "image": SKLEARN_IMAGE, "model_data": iris.url, "rows": iris.rows})
    assert (result["status"], result["strategy"], result["split"]) == ("Completed", "MultiRecord", "Line")
    assert as_floats(result["answer"]) == as_floats(iris.expected)


def test_async_predictor(local_aws: LocalAws, iris: Artifact) -> None:
    """``model.deploy(async_inference_config=...)``: an AsyncPredictor whose results come back through S3."""
    result = v2(local_aws, "sdk2_async.py", "sdk2-async", image=SKLEARN_IMAGE, model_data=iris.url, rows=iris.rows,
                prefix="async/iris")
    assert result["type"] == "AsyncPredictor"
    assert as_floats(result["answer"]) == as_floats(iris.expected)
    assert as_floats(result["later"]) == as_floats(iris.expected)
    assert result["output_path"].startswith(f"s3://{BUCKET}/async/iris/out/")


def test_predict_stream_of_a_token_generator(local_aws: LocalAws, tmp_path: Any) -> None:
    """``Predictor.predict_stream``: the tokens of a PyTorch model whose predict_fn returns a generator."""
    from tests.harness import token_model

    model = artifacts.token_generator(local_aws, "artifacts/tokens/model.tar.gz", tmp_path)
    result = v2(local_aws, "sdk2_stream.py", "sdk2-stream", image=PYTORCH_IMAGE, model_data=model.url,
                request=token_model.REQUEST, entry_point="inference.py", source_dir=str(token_model.SCRIPT_DIR))
    assert "".join(result["parts"]) == "".join(model.expected)
    assert len(result["parts"]) > 1, "the tokens arrived as one part: the answer was not streamed"


def test_deploy_with_data_capture_config(local_aws: LocalAws, iris: Artifact) -> None:
    """``Model.deploy(data_capture_config=DataCaptureConfig(...))``: the captured CSV requests and JSON answers
    in S3 (docs/harness.md "Data capture")."""
    endpoint = "sdk2-capture"
    result = v2(local_aws, "sdk2_data_capture.py", endpoint, image=SKLEARN_IMAGE, model_data=iris.url,
                rows=iris.rows)
    assert result["described"]["CaptureStatus"] == "Started"
    assert result["described"]["CurrentSamplingPercentage"] == 100
    assert all(key.startswith(f"capture/{endpoint}/AllTraffic/") for key in result["keys"]), result["keys"]
    inputs, outputs = result["inputs"], result["outputs"]
    assert len(inputs) == 3 and {i["encoding"] for i in inputs} == {"CSV"}  # the SDK's default text/csv list
    assert [json.loads(o["data"]) for o in outputs] == result["answers"]
    assert {o["encoding"] for o in outputs} == {"JSON"}


def test_deploy_inference_component_based(local_aws: LocalAws, iris: Artifact) -> None:
    """``Model.deploy(endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED, resources=ResourceRequirements(...))``:
    two copies, answered through the predictor's component (docs/harness.md "Inference components")."""
    result = v2(local_aws, "sdk2_inference_components.py", "sdk2-components", image=SKLEARN_IMAGE,
                model_data=iris.url, rows=iris.rows)
    assert [as_floats(a) for a in result["answers"]] == [as_floats(iris.expected)] * 2
    assert result["runtime"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    assert result["requirements"] == {"MinMemoryRequiredInMb": 512, "NumberOfCpuCoresRequired": 1}


def test_deploy_serverless_inference_config(local_aws: LocalAws, iris: Artifact) -> None:
    """``Model.deploy(serverless_inference_config=ServerlessInferenceConfig(...))``: answered after a cold start
    (docs/harness.md "Serverless")."""
    result = v2(local_aws, "sdk2_serverless.py", "sdk2-serverless", image=SKLEARN_IMAGE, model_data=iris.url,
                rows=iris.rows)
    assert as_floats(result["cold"]) == as_floats(iris.expected)
    assert as_floats(result["warm"]) == as_floats(iris.expected)
    assert result["variant"]["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
