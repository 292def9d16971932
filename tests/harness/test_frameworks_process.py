"""Multi-framework endpoints with the real ``serve`` on the process backend and (marker ``images``)
the docker backend: PyTorch and TensorFlow single models, a Direct multi-container endpoint
(scikit-learn + TensorFlow) and a serial pipeline (scikit-learn scaler -> TensorFlow model).
boto3 calls exactly as for AWS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.harness.conftest import boto_clients, deploy, require_images, tar_dir
from tests.support.models import sklearn_artifact, write_script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROWS = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)

SCALER_SCRIPT = """
import io, joblib, numpy as np

def model_fn(model_dir):
    return joblib.load(model_dir + "/scaler.joblib")

def input_fn(body, content_type):
    return np.loadtxt(io.StringIO(body if isinstance(body, str) else body.decode()), delimiter=",", ndmin=2)

def predict_fn(data, model):
    return model.transform(data)

def output_fn(prediction, accept):
    # The next container reads CSV: say so in the Content-Type, whatever Accept this one got.
    out = io.StringIO()
    np.savetxt(out, prediction, delimiter=",")
    return out.getvalue(), "text/csv"
"""


@pytest.fixture
def harness(serve_harness):
    return serve_harness


def keras_artifact(directory: Path):
    """A tiny Keras model exported as a TF Serving SavedModel (``1/saved_model.pb``)."""
    keras = pytest.importorskip("keras", reason="TensorFlow is not installed: pip install -e '.[tensorflow]'")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    model.fit(x, x[:, :2], epochs=1, verbose=0)
    model.export(str(directory / "1"), verbose=False)
    return model


def predictions(body: bytes) -> np.ndarray:
    decoded = json.loads(body)
    return np.asarray(decoded["predictions"] if isinstance(decoded, dict) else decoded, dtype=np.float32)


def test_direct_sklearn_and_tensorflow_containers(harness, tmp_path):
    require_images(harness, "servekit-sklearn:latest", "registry.example.com/ml/servekit-tensorflow:latest")
    iris = sklearn_artifact(tmp_path / "iris")
    model = keras_artifact(tmp_path / "tf")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "mixed", InferenceExecutionConfig={"Mode": "Direct"}, Containers=[
        {"Image": "servekit-sklearn:latest", "ContainerHostname": "sklearn",
         "ModelDataUrl": str(tar_dir(iris.path, tmp_path / "iris.tar.gz"))},
        {"Image": "registry.example.com/ml/servekit-tensorflow:latest", "ContainerHostname": "tensorflow",
         "ModelDataUrl": str(tar_dir(tmp_path / "tf", tmp_path / "tf.tar.gz"))}])
    answer = rt.invoke_endpoint(EndpointName="mixed", TargetContainerHostname="sklearn",
                                Body=json.dumps(iris.rows.tolist()), ContentType="application/json")
    assert predictions(answer["Body"].read()).tolist() == iris.expected
    answer = rt.invoke_endpoint(EndpointName="mixed", TargetContainerHostname="tensorflow",
                                Body=json.dumps({"instances": ROWS.tolist()}), ContentType="application/json")
    np.testing.assert_allclose(predictions(answer["Body"].read()), model.predict(ROWS, verbose=0), rtol=1e-5, atol=1e-6)

    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName="mixed", TargetContainerHostname="tensorflow", Body=b"{not json",
                           ContentType="application/json")
    response = caught.value.response
    assert response["OriginalStatusCode"] == 400
    assert response["Error"]["Message"].startswith("Received client error (400) from tensorflow with message")


def test_serial_pipeline_sklearn_scaler_into_tensorflow(harness, tmp_path):
    import joblib
    from sklearn.preprocessing import StandardScaler

    require_images(harness, "servekit-sklearn", "servekit-tensorflow")
    scaler = StandardScaler().fit(np.random.default_rng(1).normal(3, 2, size=(50, 4)))
    (tmp_path / "scaler").mkdir()
    joblib.dump(scaler, tmp_path / "scaler" / "scaler.joblib")
    write_script(tmp_path / "scaler", SCALER_SCRIPT)
    model = keras_artifact(tmp_path / "tf")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "pipeline", Containers=[
        {"Image": "servekit-sklearn", "ModelDataUrl": str(tar_dir(tmp_path / "scaler", tmp_path / "s.tar.gz"))},
        {"Image": "servekit-tensorflow", "ModelDataUrl": str(tar_dir(tmp_path / "tf", tmp_path / "tf.tar.gz"))}])
    csv = "\n".join(",".join(str(v) for v in row) for row in ROWS)
    answer = rt.invoke_endpoint(EndpointName="pipeline", Body=csv, ContentType="text/csv", Accept="application/json")
    assert answer["ContentType"].startswith("application/json")
    expected = model.predict(scaler.transform(ROWS.astype(np.float64)).astype(np.float32), verbose=0)
    np.testing.assert_allclose(predictions(answer["Body"].read()), expected, rtol=1e-4, atol=1e-5)
    latency = harness.platform.metrics.snapshot("pipeline")["AllTraffic"]
    assert set(latency["containers"]) == {"container-1", "container-2"}
    assert latency["metrics"]["ModelLatency"]["SampleCount"] == 1


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_single_pytorch_model(harness, tmp_path):
    require_images(harness, "servekit-pytorch:latest")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    (tmp_path / "pt").mkdir()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "pt" / "model.pt"))
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "torch", PrimaryContainer={"Image": "servekit-pytorch:latest",
                                          "ModelDataUrl": str(tar_dir(tmp_path / "pt", tmp_path / "pt.tar.gz"))})
    answer = rt.invoke_endpoint(EndpointName="torch", Body=json.dumps(ROWS.tolist()), ContentType="application/json",
                                Accept="application/json")
    with torch.no_grad():
        expected = net(torch.from_numpy(ROWS)).numpy()
    np.testing.assert_allclose(predictions(answer["Body"].read()), expected, rtol=1e-5, atol=1e-6)


def test_single_tensorflow_model(harness, tmp_path):
    require_images(harness, "servekit-tensorflow")
    model = keras_artifact(tmp_path / "tf")
    sm, rt = boto_clients(harness.endpoint_url)
    deploy(sm, "tf", PrimaryContainer={"Image": "servekit-tensorflow",
                                       "ModelDataUrl": str(tar_dir(tmp_path / "tf", tmp_path / "tf.tar.gz"))})
    answer = rt.invoke_endpoint(EndpointName="tf", Body=json.dumps({"instances": ROWS.tolist()}),
                                ContentType="application/json")
    np.testing.assert_allclose(predictions(answer["Body"].read()), model.predict(ROWS, verbose=0), rtol=1e-5, atol=1e-6)
