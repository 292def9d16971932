"""AWS's TF Serving container contract in servekit-tensorflow: TF1 SavedModels, model versions chosen by
``tfs-model-version``, classify / regress, and ``handler`` / ``input_handler`` / ``output_handler`` scripts
(written here in AWS's documented style) with a live ``context.rest_uri``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed: pip install -e '.[tensorflow]'")

from handlers.errors import BadRequestError, HandlerError, ModelLoadError  # noqa: E402
from handlers.model import ServedModel  # noqa: E402
from handlers.tensorflow_handler import TensorFlowHandler  # noqa: E402
from handlers.tfs_rest import parse_tfs_attributes  # noqa: E402
from tests.handlers.helpers import assert_clean, req, write  # noqa: E402

CSV = "text/csv"


def build_tf1_half_plus(path: Path, a: float, b: float) -> None:
    """A TF1 SavedModel (graph mode, placeholders, variables, SavedModelBuilder, tag 'serve'):
    ``serving_default`` y = a*x + b on x of static shape (None, 1), plus regress and classify signatures
    over serialized tf.Examples with feature "x"."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        a_var = v1.get_variable("a", initializer=a)
        b_var = v1.get_variable("b", initializer=b)
        y = tf.add(a_var * x, b_var, name="y")
        examples = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.parse_example(examples, {"x": v1.FixedLenFeature([1], tf.float32)})
        y_examples = a_var * parsed["x"] + b_var
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        signatures = {
            "serving_default": v1.saved_model.predict_signature_def({"x": x}, {"y": y}),
            "regress_x_to_y": v1.saved_model.regression_signature_def(examples, y_examples),
            "classify_x": v1.saved_model.classification_signature_def(examples, None, y_examples),
        }
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


@pytest.fixture(scope="module")
def tf1_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``half/1`` (y = x/2 + 2) and ``half/2`` (y = x/2 + 3): AWS's ``<name>/<version>`` layout."""
    root = tmp_path_factory.mktemp("tfs") / "artifact"
    build_tf1_half_plus(root / "half" / "1", 0.5, 2.0)
    build_tf1_half_plus(root / "half" / "2", 0.5, 3.0)
    return root


@pytest.fixture(scope="module")
def served(tf1_versions: Path) -> ServedModel:
    return ServedModel.load(TensorFlowHandler(), str(tf1_versions))


def with_script(tf1_versions: Path, tmp_path: Path, script: str) -> ServedModel:
    """The module's TF1 model with ``script`` as code/inference.py (links keep it fast)."""
    model_dir = tmp_path / "m"
    (model_dir / "half").mkdir(parents=True)
    for version in ("1", "2"):
        (model_dir / "half" / version).symlink_to(tf1_versions / "half" / version)
    write(model_dir / "code" / "inference.py", script)
    return ServedModel.load(TensorFlowHandler(), str(model_dir))


INSTANCES = json.dumps({"instances": [1.0, 2.0, 5.0]})


# ---- TF1 SavedModels and versions on the default path -----------------------------------------------


def test_tf1_saved_model_latest_version_serves(served: ServedModel) -> None:
    # A flat batch into x of static shape (None, 1), as TF Serving takes it for AWS's half_plus_three.
    assert json.loads(served.invoke(req(INSTANCES)).body) == {"predictions": [3.5, 4.0, 5.5]}
    out = served.invoke(req("1.0\n2.0\n", CSV, CSV))
    assert out.body.decode().split() == ["3.5", "4.0"]


def test_version_selected_by_custom_attributes(served: ServedModel) -> None:
    for header in ("tfs-model-version=1", "tfs-model-version=1,tfs-method=predict", "x=y; tfs-model-version=1"):
        out = served.invoke(req(INSTANCES, custom_attributes=header))
        assert json.loads(out.body) == {"predictions": [2.5, 3.0, 4.5]}, header
    out = served.invoke(req(INSTANCES, custom_attributes="tfs-model-version=2"))
    assert json.loads(out.body) == {"predictions": [3.5, 4.0, 5.5]}


def test_unknown_version_method_or_name_is_400_naming_it(served: ServedModel) -> None:
    for header, named in [
        ("tfs-model-version=7", "no version 7 (versions: 1, 2)"),
        ("tfs-model-version=latest", "tfs-model-version=latest"),
        ("tfs-method=explain", "tfs-method=explain"),
        ("tfs-model-name=other", "tfs-model-name=other"),
    ]:
        with pytest.raises(BadRequestError) as info:
            served.invoke(req(INSTANCES, custom_attributes=header))
        assert info.value.status == 400 and named in info.value.message, header
        assert_clean(info.value.message)
    # The <name> directory and the request's model name are this model's names.
    for name in ("half", "model"):
        assert served.invoke(req(INSTANCES, custom_attributes=f"tfs-model-name={name}")).body


def test_regress_and_classify(served: ServedModel) -> None:
    body = json.dumps({"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": [5.0]}]})
    out = served.invoke(req(body, custom_attributes="tfs-method=regress,tfs-model-version=1"))
    assert json.loads(out.body) == {"results": [2.5, 4.5]}
    body = json.dumps({"signature_name": "classify_x", "examples": [{"x": 2.0}]})
    out = served.invoke(req(body, custom_attributes="tfs-method=classify"))
    assert json.loads(out.body) == {"results": [[["0", 4.0]]]}
    with pytest.raises(BadRequestError, match="is a tensorflow/serving/predict signature"):
        served.invoke(req(json.dumps({"examples": [{"x": 1.0}]}), custom_attributes="tfs-method=regress"))


def test_parse_tfs_attributes_as_aws() -> None:
    assert parse_tfs_attributes("tfs-model-name=m, tfs-model-version=3,tfs-method=classify") == {
        "tfs-model-name": "m", "tfs-model-version": "3", "tfs-method": "classify",
    }  # fmt: skip
    assert parse_tfs_attributes("trace=1;tfs-model-version=2") == {"tfs-model-version": "2"}
    assert parse_tfs_attributes(None) == {}


# ---- AWS's script contract ----------------------------------------------------------------------------

PRE_POST = """
import json

def input_handler(data, context):
    if context.request_content_type == "text/csv":
        rows = [float(v) for v in data.read().decode("utf-8").split(",")]
        return json.dumps({"instances": rows})
    if context.request_content_type == "application/json":
        return data.read().decode("utf-8")
    raise ValueError("unsupported content type " + str(context.request_content_type))

def output_handler(response, context):
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    body = {"y": response.json()["predictions"], "version": context.model_version, "method": context.method,
            "name": context.model_name, "uri": context.rest_uri}
    return json.dumps(body), context.accept_header
"""


def test_input_output_handler_script(tf1_versions: Path, tmp_path: Path) -> None:
    model = with_script(tf1_versions, tmp_path, PRE_POST)
    out = model.invoke(req("1,2,5", CSV, "application/json"))
    body = json.loads(out.body)
    assert body["y"] == [3.5, 4.0, 5.5] and body["version"] is None and body["method"] == "predict"
    assert body["name"] == "model" and body["uri"].endswith("/v1/models/model:predict")
    assert body["uri"].startswith("http://127.0.0.1:") and out.content_type == "application/json"
    out = model.invoke(req(INSTANCES, accept="application/json", custom_attributes="tfs-model-version=1"))
    body = json.loads(out.body)
    assert body["y"] == [2.5, 3.0, 4.5] and body["version"] == "1" and "/versions/1:predict" in body["uri"]


def test_script_error_reaches_client_with_status(tf1_versions: Path, tmp_path: Path) -> None:
    model = with_script(tf1_versions, tmp_path, PRE_POST)
    # output_handler raises ValueError with TF Serving's error: 500, as AWS's container answers.
    with pytest.raises(HandlerError) as info:
        model.invoke(req('{"rows": [1]}'))
    assert info.value.status == 500 and "instances" in info.value.message
    assert_clean(info.value.message)
    with pytest.raises(HandlerError) as info:
        model.invoke(req(b"\x00", "application/octet-stream"))
    assert info.value.status == 500 and "unsupported content type application/octet-stream" in info.value.message
    with pytest.raises(BadRequestError, match="no version 9"):
        model.invoke(req(INSTANCES, custom_attributes="tfs-model-version=9"))
    status_script = """
    class Rejected(Exception):
        status_code = 422

    def handler(data, context):
        raise Rejected("no thanks: " + data.read().decode())
    """
    with pytest.raises(HandlerError) as info:
        with_script(tf1_versions, tmp_path / "s", status_script).invoke(req("[1]"))
    assert info.value.status == 422 and "no thanks: [1]" in info.value.message


HANDLER = """
import json
import requests

def handler(data, context):
    status = requests.get(context.rest_uri.rsplit(":", 1)[0]).json()
    response = requests.post(context.rest_uri, data=data.read().decode("utf-8"))
    if response.status_code != 200:
        return json.dumps({"status": response.status_code, "error": response.json()["error"]}), "application/json"
    other = requests.post(context.rest_uri.replace(":predict", ":regress"),
                          data=json.dumps({"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}))
    body = {"y": response.json(), "regressed": other.json(), "status": status}
    return json.dumps(body).encode(), "application/vnd.mine+json"
"""


def test_handler_script_posts_to_rest_uri(tf1_versions: Path, tmp_path: Path) -> None:
    pytest.importorskip("requests")
    model = with_script(tf1_versions, tmp_path, HANDLER)
    out = model.invoke(req(INSTANCES))
    body = json.loads(out.body)
    assert out.content_type == "application/vnd.mine+json"
    assert body["y"] == {"predictions": [3.5, 4.0, 5.5]} and body["regressed"] == {"results": [3.5]}
    assert [s["version"] for s in body["status"]["model_version_status"]] == ["1", "2"]
    body = json.loads(model.invoke(req(json.dumps({"inputs": [[1.0]]}), custom_attributes="tfs-model-version=1")).body)
    assert body["y"] == {"outputs": [[2.5]]}
    body = json.loads(model.invoke(req("[[1.0]]")).body)
    assert body["status"] == 400 and "must be a JSON object" in body["error"]
    model.unload()


@pytest.mark.parametrize("half", ["input_handler", "output_handler"])
def test_half_a_contract_is_refused_as_aws_does(tf1_versions: Path, tmp_path: Path, half: str) -> None:
    script = f"""
    def {half}(data, context):
        return data
    """
    with pytest.raises(ModelLoadError, match=f"defines {half} but no .*define both, or handler"):
        with_script(tf1_versions, tmp_path / half, script)


def test_grpc_fails_clearly_and_mixing_contracts_is_refused(tf1_versions: Path, tmp_path: Path) -> None:
    grpc_script = """
    def handler(data, context):
        return "localhost:{}".format(context.grpc_port), "text/plain"
    """
    with pytest.raises(HandlerError, match="no TF Serving gRPC API"):
        with_script(tf1_versions, tmp_path / "g", grpc_script).invoke(req(INSTANCES))
    mixed = """
    def input_fn(data, content_type):
        return data

    def input_handler(data, context):
        return data.read()

    def output_handler(response, context):
        return response.content, "application/json"
    """
    with pytest.raises(HandlerError, match="use one contract or the other"):
        with_script(tf1_versions, tmp_path / "x", mixed)


def test_rest_server_port_comes_from_the_safe_port_range() -> None:
    import socket

    from handlers.errors import PredictionError
    from handlers.tfs_rest import RestServer

    with socket.socket() as probe:  # a free port, and the 20 above it as the range
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
    server = RestServer(object(), lambda model, data: data, (low, low + 20))  # type: ignore[arg-type]
    try:
        assert low <= server.port <= low + 20
    finally:
        server.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(PredictionError, match=f"SAGEMAKER_SAFE_PORT_RANGE={port}-{port}"):
            RestServer(object(), lambda model, data: data, (port, port))  # type: ignore[arg-type]
