"""TensorFlow handler: a tiny Keras model trained here, served as SavedModel (every TF Serving layout) and .keras."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed: pip install -e '.[tensorflow]'")
keras = pytest.importorskip("keras", reason="Keras is not installed: pip install -e '.[tensorflow]'")

from handlers.errors import BadRequestError, ModelLoadError  # noqa: E402
from handlers.model import ServedModel  # noqa: E402
from handlers.registry import handler_class  # noqa: E402
from handlers.tensorflow_handler import TensorFlowHandler  # noqa: E402
from tests.handlers.helpers import ACCEPTS, assert_clean, decode_output, npz, req, write  # noqa: E402
from tests.handlers.helpers import INPUTS as HANDLER_INPUTS  # noqa: E402

X_TEST = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)


class Artifacts:
    """A trained Keras model, its SavedModel export and .keras file, and a two-input SavedModel."""

    def __init__(self, root: Path) -> None:
        keras.utils.set_random_seed(0)
        layers = [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
        self.model = keras.Sequential(layers)
        self.model.compile(optimizer="sgd", loss="mse")
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        self.model.fit(x, x[:, :2], epochs=2, verbose=0)
        self.saved_model = root / "export"
        self.model.export(str(self.saved_model), verbose=False)
        self.keras_file = root / "model.keras"
        self.model.save(str(self.keras_file))

        class TwoInputs(tf.Module):
            spec = {"a": tf.TensorSpec([None, 2], tf.float32), "b": tf.TensorSpec([None, 2], tf.float32)}

            @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                          tf.TensorSpec([None, 2], tf.float32, name="b")])  # fmt: skip
            def combine(self, a: Any, b: Any) -> Any:
                return {"sum": a + b, "prod": a * b}

            @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                          tf.TensorSpec([None, 2], tf.float32, name="b")])  # fmt: skip
            def diff(self, a: Any, b: Any) -> Any:
                return {"diff": a - b}

        module = TwoInputs()
        self.two_inputs = root / "two_inputs"
        signatures = {"serving_default": module.combine, "diff": module.diff}
        tf.saved_model.save(module, str(self.two_inputs), signatures=signatures)
        self.no_default = root / "no_default"
        tf.saved_model.save(tf.Module(), str(self.no_default))

        class Zeros(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
            def serve(self, x: Any) -> Any:
                return {"y": tf.zeros([tf.shape(x)[0], 2])}

        zeros = Zeros()
        self.zeros = root / "zeros"
        tf.saved_model.save(zeros, str(self.zeros), signatures={"serving_default": zeros.serve})

    def expected(self, x: np.ndarray = X_TEST) -> np.ndarray:
        return np.asarray(self.model(x, training=False))


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("tf"))


def make_layout(art: Artifacts, model_dir: Path, layout: str) -> Path:
    if layout == "SavedModel at root":
        shutil.copytree(art.saved_model, model_dir)
    elif layout == "SavedModel versions 9 and 10":
        # 10 must win over 9 (numeric, not text order); 9 answers zeros, so serving it fails the test.
        shutil.copytree(art.zeros, model_dir / "9")
        shutil.copytree(art.saved_model, model_dir / "10")
    elif layout == "SavedModel name/version":
        shutil.copytree(art.saved_model, model_dir / "mymodel" / "3")
    elif layout == "model.keras":
        model_dir.mkdir(parents=True)
        shutil.copy(art.keras_file, model_dir / "model.keras")
    elif layout == "single *.keras":
        model_dir.mkdir(parents=True)
        shutil.copy(art.keras_file, model_dir / "regressor.keras")
    else:
        raise AssertionError(layout)
    return model_dir


INPUTS = {**HANDLER_INPUTS, "application/json (inputs)": lambda a: json.dumps({"inputs": a.tolist()}).encode()}


LAYOUTS = [
    "SavedModel at root",
    "SavedModel versions 9 and 10",
    "SavedModel name/version",
    "model.keras",
    "single *.keras",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_every_codec_match_keras(tmp_path: Path, art: Artifacts, layout: str) -> None:
    served = ServedModel.load(TensorFlowHandler(), str(make_layout(art, tmp_path / "m", layout)))
    want = art.expected()
    for ctype, make in INPUTS.items():
        for accept in ACCEPTS:
            out = served.invoke(req(make(X_TEST), ctype.split(" ")[0], accept))
            assert out.content_type == accept
            np.testing.assert_allclose(decode_output(out.body, accept), want, rtol=1e-5, atol=1e-6, err_msg=ctype)
    served.unload()
    assert served.model is None


def test_json_output_shape_is_tf_serving(tmp_path: Path, art: Artifacts) -> None:
    served = ServedModel.load(TensorFlowHandler(), str(make_layout(art, tmp_path / "m", "SavedModel at root")))
    out = served.invoke(req(json.dumps({"instances": X_TEST[:1].tolist()})))
    body = json.loads(out.body)
    assert list(body) == ["predictions"] and len(body["predictions"]) == 1 and len(body["predictions"][0]) == 2


def test_two_inputs_named_forms_and_signature_name(tmp_path: Path, art: Artifacts) -> None:
    served = ServedModel.load(TensorFlowHandler(), str(art.two_inputs))
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[10.0, 20.0], [30.0, 40.0]], dtype=np.float32)
    rows = [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(2)]
    expected_rows = [{"sum": (a[i] + b[i]).tolist(), "prod": (a[i] * b[i]).tolist()} for i in range(2)]
    out = served.invoke(req(json.dumps({"instances": rows})))
    assert json.loads(out.body) == {"predictions": expected_rows}
    out = served.invoke(req(json.dumps({"inputs": {"a": a.tolist(), "b": b.tolist()}})))
    assert json.loads(out.body) == {"predictions": expected_rows}
    out = served.invoke(req(npz(a=a, b=b), "application/x-npz", "application/x-npz"))
    with np.load(io.BytesIO(out.body)) as archive:
        np.testing.assert_allclose(archive["prod"], a * b)
    out = served.invoke(req(json.dumps({"signature_name": "diff", "inputs": {"a": a.tolist(), "b": b.tolist()}})))
    assert json.loads(out.body) == {"predictions": (a - b).tolist()}
    # Several outputs cannot be CSV; JSON is taken when also acceptable, else 406.
    out = served.invoke(req(json.dumps({"instances": rows}), accept="text/csv, application/json"))
    assert out.content_type == "application/json"
    with pytest.raises(Exception) as info:
        served.invoke(req(json.dumps({"instances": rows}), accept="text/csv"))
    assert getattr(info.value, "status", None) == 406


def test_bad_inputs_are_400(tmp_path: Path, art: Artifacts) -> None:
    for layout in ("SavedModel at root", "model.keras"):
        model_dir = make_layout(art, tmp_path / layout.replace(" ", "_"), layout)
        served = ServedModel.load(TensorFlowHandler(), str(model_dir))
        with pytest.raises(BadRequestError) as info:
            served.invoke(req("[[1, 2, 3]]"))
        assert_clean(info.value.message)
        with pytest.raises(BadRequestError) as info:
            served.invoke(req('[["a", "b", "c", "d"]]'))
        assert_clean(info.value.message)
        with pytest.raises(BadRequestError, match="instances"):
            served.invoke(req('{"rows": [[1, 2, 3, 4]]}'))
    two = ServedModel.load(TensorFlowHandler(), str(art.two_inputs))
    with pytest.raises(BadRequestError, match="several inputs"):
        two.invoke(req("[[1, 2]]"))
    with pytest.raises(BadRequestError, match="missing b"):
        two.invoke(req('{"inputs": {"a": [[1, 2]]}}'))
    with pytest.raises(BadRequestError, match="no signature 'nope'"):
        two.invoke(req('{"signature_name": "nope", "inputs": {"a": [[1, 2]], "b": [[1, 2]]}}'))
    with pytest.raises(BadRequestError, match="lacks input"):
        two.invoke(req('{"instances": [{"a": [1, 2], "b": [1, 2]}, {"a": [1, 2]}]}'))


def test_load_errors(tmp_path: Path, art: Artifacts) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="saved_model.pb"):
        ServedModel.load(TensorFlowHandler(), str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="serving_default") as info:
        ServedModel.load(TensorFlowHandler(), str(art.no_default))
    assert_clean(info.value.message)
    broken = tmp_path / "broken"
    write(broken / "saved_model.pb", "not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load saved_model") as info:
        ServedModel.load(TensorFlowHandler(), str(broken))
    assert_clean(info.value.message)
    # Every version is loaded (as TF Serving does), so a broken old version fails the load, naming it.
    versions = tmp_path / "versions"
    write(versions / "9" / "saved_model.pb", "broken")
    shutil.copytree(art.saved_model, versions / "10")
    with pytest.raises(ModelLoadError, match="version 9") as info:
        ServedModel.load(TensorFlowHandler(), str(versions))
    assert_clean(info.value.message)
    bad_keras = tmp_path / "bad_keras"
    write(bad_keras / "model.keras", "not a zip")
    with pytest.raises(ModelLoadError, match="model.keras"):
        ServedModel.load(TensorFlowHandler(), str(bad_keras))


def test_user_script_with_tensorflow(tmp_path: Path, art: Artifacts) -> None:
    model_dir = make_layout(art, tmp_path / "m", "SavedModel at root")
    write(
        model_dir / "code" / "inference.py",
        """
        import json
        import numpy as np

        def input_fn(data, content_type):
            return {"instances": json.loads(data)["rows"]}

        def output_fn(prediction, accept, context):
            context.response_custom_attributes = "rows=" + str(len(prediction))
            return json.dumps({"argmax": np.argmax(prediction, axis=1).tolist()}), "application/json"
        """,
    )
    out = ServedModel.load(TensorFlowHandler(), str(model_dir)).invoke(req(json.dumps({"rows": X_TEST.tolist()})))
    assert json.loads(out.body) == {"argmax": np.argmax(art.expected(), axis=1).tolist()}
    assert out.custom_attributes == "rows=3"


def test_class_attributes() -> None:
    cls = handler_class("tensorflow")
    assert cls is TensorFlowHandler and cls.default_workers == 1 and "tensorflow" in cls.preload_modules
    assert TensorFlowHandler().gpu_id in (None, 0)
