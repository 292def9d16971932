"""A handler's declared ``default_accept`` / ``default_content_type``, against the user's
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, and the load-time refusal of a default no codec can serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerOptions
from handlers.errors import ModelLoadError, UnsupportedContentTypeError
from handlers.model import ServedModel
from tests.handlers.helpers import (
    CSVScaleHandler,
    PngAnswering,
    PngReading,
    ScaleHandler,
    assert_clean,
    req,
    write,
)


def load_csv(model_dir: Path, handler_cls: type[ScaleHandler] = CSVScaleHandler, **options: Any) -> ServedModel:
    return ServedModel.load(handler_cls(HandlerOptions(**options)), str(model_dir))


@pytest.mark.parametrize("accept", [None, "", "*/*"])
def test_the_handler_default_accept_answers_a_missing_or_any_accept(scale_dir: Path, accept: str | None) -> None:
    out = load_csv(scale_dir).invoke(req("[[1, 2]]", accept=accept))
    assert (out.body, out.content_type) == (b"2.0,4.0\n", "text/csv")


def test_an_explicit_accept_still_wins_over_the_handler_default(scale_dir: Path) -> None:
    out = load_csv(scale_dir).invoke(req("[[1, 2]]", accept="application/json"))
    assert (json.loads(out.body), out.content_type) == ([[2.0, 4.0]], "application/json")


def test_the_users_sagemaker_default_invocations_accept_wins_over_the_handler_default(scale_dir: Path) -> None:
    served = load_csv(scale_dir, default_accept="application/json")
    assert served.handler.default_response_type == "application/json"
    out = served.invoke(req("[[1, 2]]"))
    assert (json.loads(out.body), out.content_type) == ([[2.0, 4.0]], "application/json")


def test_a_missing_content_type_is_read_as_the_handler_default(scale_dir: Path) -> None:
    for content_type in (None, "", "  "):
        out = load_csv(scale_dir).invoke(req("1,2\n3,4\n", content_type=content_type))
        assert out.body == b"2.0,4.0\n6.0,8.0\n"


def test_without_a_declared_content_type_a_missing_one_is_415(scale_dir: Path) -> None:
    served = ServedModel.load(ScaleHandler(), str(scale_dir))
    with pytest.raises(UnsupportedContentTypeError) as info:
        served.invoke(req("1,2\n", content_type=None))
    assert "no Content-Type" in info.value.message


def test_input_fn_and_context_see_the_default_content_type(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", """
        def input_fn(data, content_type, context):
            assert context.content_type == content_type
            return [[float(v) for v in data.split(",")]] if content_type == "text/csv" else data
        """)
    out = load_csv(scale_dir).invoke(req("1,5", content_type=None))
    assert out.body == b"2.0,10.0\n"


def test_a_declared_default_accept_no_codec_can_answer_fails_the_load(scale_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_csv(scale_dir, PngAnswering)
    assert info.value.message.startswith("PngAnswering.default_accept=image/png: the scale handler's codecs "
                                         "cannot answer it; use one of application/json, text/csv"), info.value
    assert_clean(info.value.message)


def test_a_users_default_accept_no_codec_can_answer_fails_the_load_naming_the_variable(scale_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_csv(scale_dir, default_accept="image/png")
    assert info.value.message.startswith("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=image/png:"), info.value
    with pytest.raises(ModelLoadError, match=r"^SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=\*/\*:"):
        load_csv(scale_dir, default_accept="*/*")


def test_a_declared_default_content_type_no_codec_can_read_fails_the_load(scale_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_csv(scale_dir, PngReading)
    assert info.value.message.startswith("PngReading.default_content_type=image/png: the scale handler's codecs "
                                         "cannot read it; use one of application/json, text/csv"), info.value


def test_user_functions_that_answer_or_read_the_type_themselves_lift_the_check(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", """
        def input_fn(data, content_type):
            return [[len(data)]]

        def output_fn(prediction, accept):
            return b"PNG" + bytes(int(v) for v in prediction.ravel()), "image/png"
        """)
    for handler_cls, options in [(PngAnswering, {}), (ScaleHandler, {"default_accept": "image/png"}),
                                 (PngReading, {})]:
        served = load_csv(scale_dir, handler_cls, **options)
        out = served.invoke(req(b"\x89PNG\r\n", content_type=None if handler_cls is PngReading else "image/png"))
        assert (out.body, out.content_type) == (b"PNG\x0c", "image/png")
