"""ServedModel + the user-script contract (model_fn / input_fn / predict_fn / output_fn / transform_fn)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from handlers.context import Context
from handlers.errors import BadRequestError, HandlerError, ModelLoadError, PredictionError
from handlers.model import ServedModel
from tests.handlers.helpers import assert_clean, make_handler, req, write


def load(model_dir: Path, name: str = "model", **options: object) -> ServedModel:
    return ServedModel.load(make_handler(**options), str(model_dir), name)


# ---- no script: handler defaults --------------------------------------------------------------------


def test_defaults_without_script(scale_dir: Path) -> None:
    served = load(scale_dir)
    assert served.script is None
    out = served.invoke(req("[1, 2]"))
    assert (json.loads(out.body), out.content_type) == ([2.0, 4.0], "application/json")
    out = served.invoke(req("1,2\n", "text/csv", "text/csv"))
    assert out.body == b"2.0,4.0\n"
    served.unload()
    with pytest.raises(HandlerError) as info:
        served.invoke(req("[1]"))
    assert info.value.status == 404


def test_default_accept_option_applies(scale_dir: Path) -> None:
    served = load(scale_dir, default_accept="text/csv")
    assert served.invoke(req("[3]", accept="*/*")).content_type == "text/csv"


def test_missing_model_dir_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="scale.json"):
        load(tmp_path / "empty")


# ---- each function ----------------------------------------------------------------------------------


def test_model_fn_input_fn_predict_fn_output_fn(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        import json, os

        def model_fn(model_dir):
            return {"offset": 10, "dir": model_dir}

        def input_fn(data, content_type):
            # The toolkit hands JSON and CSV bodies over as str.
            assert isinstance(data, str), type(data)
            return {"values": json.loads(data), "ctype": content_type}

        def predict_fn(data, model):
            return [v + model["offset"] for v in data["values"]], data["ctype"]

        def output_fn(prediction, accept):
            values, ctype = prediction
            return json.dumps({"out": values, "ctype": ctype, "accept": accept}), "application/vnd.test+json"
        """,
    )
    served = load(scale_dir)
    out = served.invoke(req("[1, 2]", "application/json; charset=utf-8", "application/json"))
    assert out.content_type == "application/vnd.test+json"
    # content_type reaches input_fn verbatim, as in the toolkit.
    assert json.loads(out.body) == {
        "out": [11, 12],
        "ctype": "application/json; charset=utf-8",
        "accept": "application/json",
    }
    assert served.model["dir"] == str(scale_dir)


def test_input_fn_gets_bytes_for_binary_types(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def input_fn(data, content_type):
            return [type(data).__name__, len(data)]

        def predict_fn(data, model):
            return data
        """,
    )
    served = load(scale_dir)
    assert json.loads(served.invoke(req(b"\x93NUMPY", "application/x-npy")).body) == ["bytes", 6]
    assert json.loads(served.invoke(req("1,2", "text/csv")).body) == ["str", 3]


def test_only_predict_fn_uses_handler_codecs(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def predict_fn(data, model):
            return data.sum(axis=1) * model
        """,
    )
    served = load(scale_dir)
    assert served.invoke(req("1,2\n3,4\n", "text/csv", "text/csv")).body == b"6.0\n14.0\n"


@pytest.mark.parametrize(
    ("returned", "accept", "body", "ctype"),
    [
        ("b'raw'", "application/octet-stream", b"raw", "application/octet-stream"),
        ("'text'", "text/plain, application/json", b"text", "text/plain"),
        ("(b'x', 'image/png')", "application/json", b"x", "image/png"),
        ("{'a': [1, 2]}", None, b'{"a": [1, 2]}', "application/json"),
        ("bytearray(b'ba')", "*/*", b"ba", "application/json"),
    ],
)
def test_output_fn_return_forms(scale_dir: Path, returned: str, accept: str | None, body: bytes, ctype: str) -> None:
    write(
        scale_dir / "code" / "inference.py",
        f"""
        def output_fn(prediction, accept):
            return {returned}
        """,
    )
    out = load(scale_dir).invoke(req("[1]", accept=accept))
    assert (out.body, out.content_type) == (body, ctype)


def test_output_fn_unserializable_return_is_500(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def output_fn(prediction, accept):\n    return object()\n")
    with pytest.raises(PredictionError) as info:
        load(scale_dir).invoke(req("[1]"))
    assert info.value.status == 500 and "neither bytes" in info.value.message


def test_transform_fn(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        import json

        def model_fn(model_dir):
            return 3

        def transform_fn(model, data, content_type, accept):
            values = json.loads(data)
            return json.dumps([v * model for v in values]).encode(), "application/json"
        """,
    )
    out = load(scale_dir).invoke(req("[1, 2]", accept="*/*"))
    assert (json.loads(out.body), out.content_type) == ([3, 6], "application/json")


def test_transform_fn_plain_bytes_content_type_is_accept(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def transform_fn(model, data, content_type, accept):
            return data.upper()
        """,
    )
    out = load(scale_dir, default_accept="text/csv").invoke(req("a,b", "text/csv"))
    assert (out.body, out.content_type) == (b"A,B", "text/csv")


def test_transform_fn_with_other_functions_is_a_load_error(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def transform_fn(model, data, content_type, accept):
            return data
        def input_fn(data, content_type):
            return data
        """,
    )
    with pytest.raises(ModelLoadError, match="transform_fn together with"):
        load(scale_dir)


def test_pre_model_fn_and_model_warmup_fn(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        calls = []
        def pre_model_fn(model_dir):
            calls.append(("pre", model_dir))
        def model_warmup_fn(model_dir, model):
            calls.append(("warm", model))
        """,
    )
    served = load(scale_dir)
    assert served.script is not None and served.script.module is not None
    assert served.script.module.calls == [("pre", str(scale_dir)), ("warm", 2)]


# ---- context -----------------------------------------------------------------------------------------


def test_context_argument_variants(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        import json
        seen = {}

        def model_fn(model_dir, context):
            seen["load_props"] = dict(context.system_properties)
            seen["load_has_request"] = context.request_processor is not None
            return 1

        def input_fn(data, content_type, context):
            seen["header_accept"] = context.get_request_header(0, "accept")
            seen["header_ctype"] = context.get_request_header(0, "Content-Type")
            seen["all"] = sorted(k.lower() for k in context.get_all_request_header(0))
            seen["custom"] = context.custom_attributes
            seen["target"] = context.target_model
            return json.loads(data)

        def predict_fn(data, model):  # no context: mixing is allowed
            return data

        def output_fn(prediction, accept, context=None):
            context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "trace=42")
            context.set_response_header(0, "X-Extra", "yes")
            context.set_response_content_type(0, "application/x-custom")
            return json.dumps(prediction)
        """,
    )
    served = load(scale_dir, name="m1")
    out = served.invoke(
        req("[5]", accept="application/json", custom_attributes="c=1", target_model="m1.tar.gz", model_name="m1")
    )
    seen = served.script.module.seen  # type: ignore[union-attr]
    assert seen["load_props"]["model_dir"] == str(scale_dir)
    assert seen["load_props"]["gpu_id"] is None
    assert seen["load_has_request"] is False
    assert seen["header_accept"] == "application/json"
    assert seen["header_ctype"] == "application/json"
    assert seen["all"] == [
        "accept",
        "content-type",
        "x-amzn-sagemaker-custom-attributes",
        "x-amzn-sagemaker-target-model",
    ]
    assert (seen["custom"], seen["target"]) == ("c=1", "m1.tar.gz")
    assert out.custom_attributes == "trace=42"
    assert out.headers == {"X-Extra": "yes"}
    assert out.content_type == "application/x-custom"
    assert json.loads(out.body) == [5]


def test_context_response_custom_attributes_property_and_transform_fn(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def transform_fn(model, data, content_type, accept, context):
            context.response_custom_attributes = "echo=" + (context.custom_attributes or "")
            return b"ok", "text/plain"
        """,
    )
    out = load(scale_dir).invoke(req("{}", custom_attributes="abc"))
    assert (out.body, out.custom_attributes) == (b"ok", "echo=abc")


def test_context_error_status_from_user_code(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        """
        def output_fn(prediction, accept, context):
            context.set_response_status(422, "values must be positive")
            return b"ignored"
        """,
    )
    with pytest.raises(HandlerError) as info:
        load(scale_dir).invoke(req("[1]"))
    assert info.value.status == 422 and "values must be positive" in info.value.message


def test_context_per_request_is_fresh() -> None:
    context = Context("m", "/tmp/m", request_headers={"Content-Type": "text/csv"})
    assert context.content_type == "text/csv" and context.get_request_id() is None
    context.metrics.add_time("x", 1)  # MMS metrics calls are accepted and dropped
    assert context.get_response_headers(0) == {}
    loading = Context("m", "/tmp/m")
    with pytest.raises(RuntimeError, match="no request"):
        loading.get_request_header(0, "Accept")


def test_wrong_arity_is_a_load_error(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def input_fn(data):\n    return data\n")
    with pytest.raises(ModelLoadError, match="input_fn .* takes 1 arguments; it must take 2"):
        load(scale_dir)


# ---- errors ------------------------------------------------------------------------------------------


def test_model_fn_failure_is_load_error_without_traceback(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def model_fn(model_dir):\n    raise FileNotFoundError('weights.bin')\n")
    with pytest.raises(ModelLoadError) as info:
        load(scale_dir)
    assert "model_fn" in info.value.message and "weights.bin" in info.value.message
    assert "inference.py" in info.value.message
    assert_clean(info.value.message)


def test_script_import_failure_is_load_error(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "import servekit_no_such_module_xyz\n")
    with pytest.raises(ModelLoadError, match="servekit_no_such_module_xyz") as info:
        load(scale_dir)
    assert_clean(info.value.message)


def test_model_fn_memory_error_is_507(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def model_fn(model_dir):\n    raise MemoryError()\n")
    with pytest.raises(HandlerError) as info:
        load(scale_dir)
    assert info.value.status == 507


@pytest.mark.parametrize(
    ("fn", "exc", "status"),
    [
        ("input_fn(data, content_type)", "ValueError('bad field')", 400),
        ("input_fn(data, content_type)", "RuntimeError('bug')", 500),
        ("predict_fn(data, model)", "ValueError('X has 3 features')", 400),
        ("predict_fn(data, model)", "ZeroDivisionError('oops')", 500),
        ("output_fn(prediction, accept)", "ValueError('bad')", 500),
        ("predict_fn(data, model)", "Toolkit(418, 'teapot')", 418),
    ],
)
def test_user_exceptions_map_to_statuses(scale_dir: Path, fn: str, exc: str, status: int) -> None:
    write(
        scale_dir / "code" / "inference.py",
        f"""
        class Toolkit(Exception):  # shaped like sagemaker_inference.errors.BaseInferenceToolkitError
            def __init__(self, status_code, message):
                super().__init__(message)
                self.status_code, self.message = status_code, message

        def {fn}:
            raise {exc}
        """,
    )
    with pytest.raises(HandlerError) as info:
        load(scale_dir).invoke(req("[1]"))
    assert info.value.status == status
    assert_clean(info.value.message)


def test_multiline_framework_messages_are_cleaned(scale_dir: Path) -> None:
    write(
        scale_dir / "code" / "inference.py",
        '''
        def predict_fn(data, model):
            raise RuntimeError("""Graph execution error:

        Traceback (most recent call last):
          File "/x/y.py", line 3, in f
        shapes do not match""")
        ''',
    )
    with pytest.raises(PredictionError) as info:
        load(scale_dir).invoke(req("[1]"))
    assert_clean(info.value.message)
    assert "shapes do not match" in info.value.message


def test_handler_codec_errors_pass_through(scale_dir: Path) -> None:
    served = load(scale_dir)
    with pytest.raises(HandlerError) as info:
        served.invoke(req("[1]", "image/png"))
    assert info.value.status == 415
    with pytest.raises(HandlerError) as info:
        served.invoke(req("[1]", accept="image/png"))
    assert info.value.status == 406
    with pytest.raises(BadRequestError):
        served.invoke(req("[1,"))
    with pytest.raises(BadRequestError):
        served.invoke(req(b"\xff", "text/csv"))


# ---- isolation of per-model code ------------------------------------------------------------------


def _model_with_helpers(root: Path, name: str, factor: int) -> Path:
    model_dir = root / name
    write(model_dir / "scale.json", '{"factor": 1}')
    write(model_dir / "code" / "helpers.py", f"FACTOR = {factor}\nNAME = {name!r}\n")
    write(model_dir / "code" / "mypkg" / "__init__.py", f"TAG = {name!r}\n")
    write(model_dir / "code" / "lazy.py", f"def tag():\n    return 'lazy-{name}'\n")
    write(
        model_dir / "code" / "inference.py",
        """
        import helpers
        from mypkg import TAG

        def predict_fn(data, model):
            import lazy  # imported at request time, not at load time
            return {"value": data[0] * helpers.FACTOR, "name": helpers.NAME, "tag": TAG, "lazy": lazy.tag()}
        """,
    )
    return model_dir


def test_two_models_with_clashing_inference_py_and_helpers(tmp_path: Path) -> None:
    sys.modules.pop("helpers", None)
    a = load(_model_with_helpers(tmp_path, "a", 10), "a")
    b = load(_model_with_helpers(tmp_path, "b", 100), "b")
    for _ in range(2):  # interleaved calls keep answering from their own code
        assert json.loads(a.invoke(req("[2]")).body) == {"value": 20, "name": "a", "tag": "a", "lazy": "lazy-a"}
        assert json.loads(b.invoke(req("[2]")).body) == {"value": 200, "name": "b", "tag": "b", "lazy": "lazy-b"}
    # Nothing of either model's code is left importable by plain name, nor on sys.path.
    for name in ("helpers", "mypkg", "lazy", "inference"):
        assert name not in sys.modules
    assert str((tmp_path / "a" / "code").resolve()) not in sys.path
    assert a.script is not None and a.script.module_name != b.script.module_name  # type: ignore[union-attr]
    a.unload()
    assert json.loads(b.invoke(req("[1]")).body)["value"] == 100
    b.unload()


def test_helper_name_shadowing_an_imported_module_is_restored(tmp_path: Path) -> None:
    import types

    outsider = types.ModuleType("helpers")
    sys.modules["helpers"] = outsider
    try:
        served = load(_model_with_helpers(tmp_path, "c", 3), "c")
        assert json.loads(served.invoke(req("[1]")).body)["value"] == 3
        assert sys.modules["helpers"] is outsider
    finally:
        sys.modules.pop("helpers", None)


def test_program_and_submit_directory_options(tmp_path: Path, scale_dir: Path) -> None:
    write(scale_dir / "src" / "serve_me.py", "def predict_fn(data, model):\n    return ['serve_me']\n")
    served = load(scale_dir, program="serve_me", submit_directory="src")
    assert json.loads(served.invoke(req("[1]")).body) == ["serve_me"]
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "inference.py", "def predict_fn(data, model):\n    return ['abs']\n")
    served = load(scale_dir, submit_directory=str(elsewhere))
    assert json.loads(served.invoke(req("[1]")).body) == ["abs"]


# ---- requirements.txt --------------------------------------------------------------------------------


def test_requirements_installed_when_present(scale_dir: Path) -> None:
    # --no-index keeps pip offline; numpy is already installed, so pip succeeds without downloading.
    write(scale_dir / "code" / "requirements.txt", "--no-index\nnumpy\n")
    write(scale_dir / "code" / "inference.py", "import numpy\n")
    assert load(scale_dir).script is not None


def test_requirements_failure_names_the_file(scale_dir: Path) -> None:
    req_file = write(scale_dir / "code" / "requirements.txt", "--no-index\nservekit-no-such-package-xyz==1.0\n")
    write(scale_dir / "code" / "inference.py", "\n")
    with pytest.raises(ModelLoadError) as info:
        load(scale_dir)
    assert str(req_file) in info.value.message
    assert "servekit-no-such-package-xyz" in info.value.message
    assert_clean(info.value.message)
    # Switched off (pre-baked images): the file is ignored.
    assert load(scale_dir, install_requirements=False).script is not None


def test_unload_forgets_script_module(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def predict_fn(data, model):\n    return data\n")
    served = load(scale_dir)
    name = served.script.module_name  # type: ignore[union-attr]
    assert name in sys.modules
    served.unload()
    served.unload()  # idempotent
    assert name not in sys.modules


def test_numpy_prediction_through_output_fn_default(scale_dir: Path) -> None:
    script = "import numpy as np\ndef predict_fn(data, model):\n    return np.eye(2)\n"
    write(scale_dir / "code" / "inference.py", script)
    out = load(scale_dir).invoke(req("[1]", accept="application/x-npy"))
    np.testing.assert_array_equal(np.load(io.BytesIO(out.body)), np.eye(2))


def test_requirements_installed_once_per_content(scale_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers.model as model_module

    calls: list[Path] = []
    monkeypatch.setattr(model_module, "_run_pip", lambda path, timeout: calls.append(path))
    # Unique content, so no marker from an earlier run of this test applies.
    write(scale_dir / "code" / "requirements.txt", f"# {scale_dir}\nnumpy\n")
    write(scale_dir / "code" / "inference.py", "\n")
    load(scale_dir)
    load(scale_dir)  # a second worker of the same model: pip is not run again
    assert calls == [scale_dir / "code" / "requirements.txt"]
    write(scale_dir / "code" / "requirements.txt", f"# {scale_dir}\nnumpy\nscipy\n")
    load(scale_dir)  # changed content: installed again
    assert len(calls) == 2
