"""ServedModel's streamed answers (docs/handlers.md, "Streaming"): a user function returns an iterator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handlers.errors import HandlerError, PredictionError, StreamError
from handlers.model import ServedModel
from tests.handlers.helpers import assert_clean, make_handler, req, write

#: Answers {"items": [...]} with a generator yielding each item; "fail_at" raises there; "status" sets
#: a context status before the first yield; the generator's end is recorded in CLOSED.
SCRIPT = """
import json

CLOSED = []

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    def generate():
        try:
            if "status" in data:
                context_holder[0].set_response_status(data["status"], "refused by the script")
            for index, item in enumerate(data["items"]):
                if index == data.get("fail_at"):
                    raise RuntimeError("mid-stream failure")
                yield item
        finally:
            CLOSED.append(True)
    return generate()

context_holder = [None]
"""

#: The same with the context kept (to set a status before the first yield) and an output_fn that
#: returns the stream with a type.
CONTEXT_SCRIPT = SCRIPT.replace("def predict_fn(data, model):", "def predict_fn(data, model, context):\n"
                                "    context_holder[0] = context") + """
def output_fn(stream, accept):
    return stream, "application/jsonlines"
"""


def load(model_dir: Path, script: str = SCRIPT) -> ServedModel:
    write(model_dir / "code" / "inference.py", script)
    return ServedModel.load(make_handler(), str(model_dir))


def closed(served: ServedModel) -> list[bool]:
    assert served.script is not None and served.script.module is not None
    result: list[bool] = served.script.module.CLOSED
    return result


def ask(served: ServedModel, **data: object) -> object:
    return served.invoke(req(json.dumps(data)))


def test_a_generator_is_a_stream_of_str_and_bytes_chunks(scale_dir: Path) -> None:
    served = load(scale_dir)
    answer = served.invoke(req(json.dumps({"items": ["a", "", "b"]}), accept="text/plain"))
    assert answer.chunks is not None
    assert (answer.body, answer.content_type) == (b"a", "text/plain")
    assert list(answer.chunks) == [b"b"]  # the empty chunk is skipped
    assert closed(served) == [True]


def test_the_first_failure_is_an_ordinary_error_and_later_ones_end_the_stream(scale_dir: Path) -> None:
    served = load(scale_dir)
    with pytest.raises(HandlerError) as first:
        ask(served, items=["a"], fail_at=0)
    assert first.value.status == 500 and "mid-stream failure" in first.value.message
    answer = served.invoke(req(json.dumps({"items": ["a", "b", "c"], "fail_at": 2})))
    assert answer.chunks is not None and next(answer.chunks) == b"b"
    with pytest.raises(StreamError) as later:
        next(answer.chunks)
    assert "failed after yielding 2 item(s)" in later.value.message and "RuntimeError" in later.value.message
    assert_clean(later.value.message)


def test_a_chunk_of_another_type_is_refused(scale_dir: Path) -> None:
    served = load(scale_dir)
    with pytest.raises(PredictionError) as first:
        ask(served, items=[1])
    assert "chunk 1 of the streamed answer is int" in first.value.message
    answer = served.invoke(req(json.dumps({"items": ["a", {"x": 1}]})))
    assert answer.chunks is not None
    with pytest.raises(StreamError, match="chunk 2 of the streamed answer is dict"):
        next(answer.chunks)


def test_closing_the_rest_closes_the_generator_even_before_it_was_pulled(scale_dir: Path) -> None:
    served = load(scale_dir)
    answer = served.invoke(req(json.dumps({"items": ["a", "b", "c"]})))
    assert answer.chunks is not None and closed(served) == []
    answer.chunks.close()
    assert closed(served) == [True]
    assert next(answer.chunks, None) is None


def test_output_fn_gets_the_stream_and_context_status_before_the_first_chunk_fails_it(scale_dir: Path) -> None:
    served = load(scale_dir, CONTEXT_SCRIPT)
    answer = served.invoke(req(json.dumps({"items": ["x"]})))
    assert (answer.body, answer.content_type) == (b"x", "application/jsonlines")
    with pytest.raises(HandlerError) as refused:
        ask(served, items=["x"], status=409)
    assert refused.value.status == 409
    assert closed(served)[-1] is True


def test_lists_stay_one_answer(scale_dir: Path) -> None:
    write(scale_dir / "code" / "inference.py", "def predict_fn(data, model):\n    return ['a', 'b']\n")
    answer = ServedModel.load(make_handler(), str(scale_dir)).invoke(req("[1]"))
    assert answer.chunks is None and json.loads(answer.body) == ["a", "b"]
