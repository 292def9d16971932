"""Batch transform's record handling, as pure functions: split, pack, filter, join, assemble.

SageMaker's rules (AWS Developer Guide "Use batch transform", "Associate prediction results with input
records"; CreateTransformJob API reference):

* ``SplitType`` ``None`` makes the whole object one record, ``Line`` makes each line one record;
* ``BatchStrategy`` ``SingleRecord`` sends one record per request, ``MultiRecord`` packs as many records
  as fit in ``MaxPayloadInMB``; a record larger than that fails the object;
* ``DataProcessing``: ``InputFilter`` picks part of each record (a CSV record is a JSON array of its
  fields), ``JoinSource: Input`` puts the record's prediction beside the input (CSV: appended columns;
  JSON object: under ``SageMakerOutput``), ``OutputFilter`` picks part of the joined record;
* ``AssembleWith`` ``Line`` ends every response with a newline, ``None`` concatenates them.

Only the JSONPath subset SageMaker documents is accepted (``compile_path``): ``$``, ``.name``, ``*``,
``['a','b']``, ``[0,2]``, ``[start:end]`` (unions of indices and slices such as ``[0,5:]``); anything
else is a ValueError naming the expression.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

#: The key a JSON record's prediction is joined under (JoinSource Input).
JOINED_KEY = "SageMakerOutput"
CSV_TYPES = ("text/csv",)
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines")


class RecordError(Exception):
    """A record (or a response) cannot be processed as the job asks; the message says which and why."""


# -- splitting and packing -----------------------------------------------------------------------------------
def split_lines(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[bytes]:
    """Lines of a byte stream (without their newline; a final empty line is dropped), each at most
    ``max_record_bytes`` (RecordError beyond it), holding no more than one record in memory."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _check_size(line, max_record_bytes)
            yield line
        _check_size(pending, max_record_bytes)
    if pending:
        yield pending


def _check_size(record: bytes | bytearray, limit: int) -> None:
    if len(record) > limit:
        raise RecordError(f"a record of {len(record)} bytes or more does not fit MaxPayloadInMB ({limit} bytes)")


def whole_object(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[bytes]:
    """SplitType None: the whole object is one record, at most ``max_record_bytes``."""
    data = bytearray()
    for chunk in chunks:
        data += chunk
        _check_size(data, max_record_bytes)
    yield bytes(data)


def mini_batches(records: Iterable[bytes], *, multi_record: bool, max_bytes: int) -> Iterator[list[bytes]]:
    """Records grouped into requests: one each (SingleRecord), or as many as fit ``max_bytes`` once
    joined with newlines (MultiRecord)."""
    batch: list[bytes] = []
    size = 0
    for record in records:
        extra = len(record) + (1 if batch else 0)
        if batch and (not multi_record or size + extra > max_bytes):
            yield batch
            batch, size, extra = [], 0, len(record)
        batch.append(record)
        size += extra
    if batch:
        yield batch


def payload(batch: list[bytes]) -> bytes:
    """The request body of a mini-batch: its records joined with newlines."""
    return b"\n".join(batch)


def assemble(response: bytes, assemble_with_line: bool) -> bytes:
    """A response as written to ``<key>.out``: AssembleWith Line ends it with a newline."""
    if assemble_with_line and not response.endswith(b"\n"):
        return response + b"\n"
    return response


# -- JSONPath (SageMaker's subset) -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Step:
    kind: str  # "name", "names", "wildcard", "indices"
    names: tuple[str, ...] = ()
    picks: tuple[tuple[int | None, int | None, bool], ...] = ()  # (start, end, is_slice)


_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_TOKEN = re.compile(
    rf"\.(?P<dot>{_NAME})|\.?\*|\[\*\]|\[(?P<names>\s*'[^']*'(?:\s*,\s*'[^']*')*\s*)\]"
    r"|\[(?P<picks>\s*-?\d*(?::-?\d*)?(?:\s*,\s*-?\d*(?::-?\d*)?)*\s*)\]"
)


def _pick(text: str, expression: str) -> tuple[int | None, int | None, bool]:
    text = text.strip()
    if ":" in text:
        start, _, end = text.partition(":")
        return (int(start) if start else None, int(end) if end else None, True)
    if not text:
        raise ValueError(f"JSONPath expression {expression!r} has an empty index")
    return (int(text), None, False)


def compile_path(expression: str) -> tuple[_Step, ...]:
    """The steps of a JSONPath expression in SageMaker's subset; ValueError naming it otherwise."""
    if expression in ("", "$"):
        return ()
    if not expression.startswith("$"):
        raise ValueError(f"JSONPath expression {expression!r} must start with '$'")
    steps: list[_Step] = []
    position = 1
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"JSONPath expression {expression!r} is outside the subset batch transform supports "
                             f"($, .name, *, ['name',...], [index,...], [start:end]) at {expression[position:]!r}")
        steps.append(_step(match, expression))
        position = match.end()
    for step in steps[:-1]:
        if step.kind in ("names", "wildcard") or (step.kind == "indices" and
                                                  (len(step.picks) > 1 or step.picks[0][2])):
            raise ValueError(f"JSONPath expression {expression!r} selects further below a union, wildcard or "
                             "slice, which batch transform does not support")
    return tuple(steps)


def _step(match: re.Match[str], expression: str) -> _Step:
    if match.group("dot"):
        return _Step("name", names=(match.group("dot"),))
    if match.group("names") is not None:
        names = tuple(re.findall(r"'([^']*)'", match.group("names")))
        return _Step("name" if len(names) == 1 else "names", names=names)
    if match.group("picks") is not None:
        return _Step("indices", picks=tuple(_pick(p, expression) for p in match.group("picks").split(",")))
    return _Step("wildcard")


def select(steps: tuple[_Step, ...], value: Any, expression: str) -> Any:
    """Apply compiled ``steps`` to a JSON value; RecordError when the record has no such part."""
    for step in steps:
        value = _apply(step, value, expression)
    return value


def _apply(step: _Step, value: Any, expression: str) -> Any:
    if step.kind == "wildcard":
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return value
    elif step.kind in ("name", "names") and isinstance(value, dict):
        missing = [n for n in step.names if n not in value]
        if missing:
            raise RecordError(f"{expression} selects {missing[0]!r}, which the record does not have")
        return value[step.names[0]] if step.kind == "name" else {n: value[n] for n in step.names}
    elif step.kind == "indices" and isinstance(value, list):
        return _indexed(step, value, expression)
    raise RecordError(f"{expression} does not apply to a record of type {type(value).__name__}")


def _indexed(step: _Step, value: list[Any], expression: str) -> Any:
    single = len(step.picks) == 1 and not step.picks[0][2]
    out: list[Any] = []
    for start, end, is_slice in step.picks:
        if is_slice:
            out.extend(value[start:end])
            continue
        assert start is not None
        if not -len(value) <= start < len(value):
            raise RecordError(f"{expression} selects index {start}, outside a record of {len(value)} fields")
        out.append(value[start])
    return out[0] if single else out


# -- records as JSON values ------------------------------------------------------------------------------------
def record_format(content_type: str | None) -> str | None:
    """``csv`` or ``json`` for the content types data processing understands; None otherwise."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in CSV_TYPES:
        return "csv"
    if media in JSON_TYPES:
        return "json"
    return None


def parse(record: bytes, fmt: str) -> Any:
    """A CSV record as the JSON array of its fields, a JSON record as its value."""
    text = record.decode("utf-8")
    if fmt == "csv":
        rows = list(csv.reader([text]))
        return rows[0] if rows else []
    try:
        return json.loads(text)
    except ValueError:
        raise RecordError(f"record {text[:80]!r} is not JSON") from None


def render(value: Any, fmt: str) -> bytes:
    """A JSON value back in the record format: CSV fields joined, or compact JSON."""
    if fmt == "json":
        return json.dumps(value, separators=(",", ":")).encode()
    if isinstance(value, dict):
        raise RecordError("a filter selected a JSON object, which cannot be written as a CSV record")
    fields = value if isinstance(value, list) else [value]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue().encode()


def join(record: Any, prediction: bytes, fmt: str) -> Any:
    """JoinSource Input: the input record with its prediction (CSV columns appended; JSON object under
    SageMakerOutput; JSON array appended)."""
    if fmt == "csv":
        return list(record) + parse(prediction, "csv")
    try:
        predicted: Any = json.loads(prediction.decode("utf-8"))
    except ValueError:
        predicted = prediction.decode("utf-8", errors="replace")
    if isinstance(record, dict):
        return {**record, JOINED_KEY: predicted}
    if isinstance(record, list):
        return [*record, *(predicted if isinstance(predicted, list) else [predicted])]
    raise RecordError(f"JoinSource Input needs a JSON object or array record, not {type(record).__name__}")


def split_response(response: bytes, count: int) -> list[bytes]:
    """A mini-batch response as one prediction per record: its lines, which must number ``count``."""
    lines = response.rstrip(b"\n").split(b"\n") if response.strip() else []
    if len(lines) != count:
        raise RecordError(f"the container answered {len(lines)} line(s) for {count} record(s); JoinSource Input "
                          "needs one line per record")
    return lines


# -- DataProcessing as a whole ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataProcessing:
    """A job's InputFilter, JoinSource and OutputFilter, checked once at CreateTransformJob."""

    input_steps: tuple[_Step, ...] = ()
    output_steps: tuple[_Step, ...] = ()
    join_input: bool = False
    input_format: str | None = None  # csv / json: how records are read; None when nothing is processed
    output_format: str | None = None  # csv / json: how predictions are read when only OutputFilter is set
    input_filter: str = "$"
    output_filter: str = "$"

    @property
    def touches_output(self) -> bool:
        """Whether responses must be split per record (join or output filter)."""
        return self.join_input or bool(self.output_steps)

    def filter_input(self, records: list[bytes]) -> list[bytes]:
        """The records as sent to the container: InputFilter applied to each."""
        if not self.input_steps:
            return records
        assert self.input_format is not None
        fmt = self.input_format
        return [render(select(self.input_steps, parse(r, fmt), self.input_filter), fmt) for r in records]

    def process_output(self, records: list[bytes], response: bytes) -> bytes:
        """A response as written: split per record, joined with its input and OutputFilter applied, one
        line each."""
        if not self.touches_output:
            return response
        predictions = split_response(response, len(records))
        fmt = self.input_format if self.join_input else self.output_format
        assert fmt is not None
        lines = []
        for record, prediction in zip(records, predictions, strict=True):
            value = join(parse(record, fmt), prediction, fmt) if self.join_input else parse(prediction, fmt)
            lines.append(render(select(self.output_steps, value, self.output_filter), fmt))
        return b"\n".join(lines) + b"\n"


def data_processing(params: dict[str, Any] | None, content_type: str | None, accept: str | None,
                    split_line: bool) -> DataProcessing:
    """DataProcessing as given, checked; ValueError with a one-line reason naming what is not supported."""
    params = params or {}
    input_filter = params.get("InputFilter") or "$"
    output_filter = params.get("OutputFilter") or "$"
    join_input = params.get("JoinSource") == "Input"
    input_steps, output_steps = compile_path(input_filter), compile_path(output_filter)
    if not (input_steps or output_steps or join_input):
        return DataProcessing()
    if not split_line:
        raise ValueError("DataProcessing (InputFilter, JoinSource Input or OutputFilter) needs "
                         "TransformInput.SplitType Line in the local harness")
    input_format = record_format(content_type)
    if (input_steps or join_input) and input_format is None:
        raise ValueError(f"DataProcessing needs TransformInput.ContentType text/csv or application/json(lines), "
                         f"not {content_type!r}")
    output_format = input_format if join_input else record_format(accept)
    if output_steps and output_format is None:
        raise ValueError(f"OutputFilter without JoinSource Input needs TransformOutput.Accept text/csv or "
                         f"application/json(lines), not {accept!r}")
    return DataProcessing(input_steps=input_steps, output_steps=output_steps, join_input=join_input,
                          input_format=input_format, output_format=output_format,
                          input_filter=input_filter, output_filter=output_filter)
