"""``application/json``, and JSON parsed within bounds (nesting depth and integer digits, checked before
CPython's parser could recurse too deep or turn quadratic)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from handlers.codecs.arrays import to_builtin
from handlers.codecs.base import Codec
from handlers.codecs.media_types import JSON, decode_text
from handlers.errors import BadRequestError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits

#: Per byte: +1 for ``[`` ``{``, -1 for ``]`` ``}``; and which bytes matter to nesting (those and ``"``).
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
_NESTING_BYTE = _BRACKET_STEP != 0
_NESTING_BYTE[ord('"')] = True


def json_depth(text: str) -> int:
    """Deepest ``[`` / ``{`` nesting in ``text`` outside strings, in linear time and without recursion.

    In valid JSON a backslash occurs only inside a string and escapes the next character (RFC 8259
    section 7): dropping escaped backslashes, then escaped quotes, leaves quotes that each open or close
    a string. Invalid text may be misjudged; the parser that runs next rejects it anyway.
    """
    plain = text.replace("\\\\", "").replace('\\"', "")
    codes = np.frombuffer(plain.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    special = codes[_NESTING_BYTE[codes]]
    in_string = np.logical_xor.accumulate(special == ord('"'))
    steps = _BRACKET_STEP[special]
    steps[in_string] = 0
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def check_json_depth(text: str, limits: DecodeLimits, what: str) -> None:
    """400 when ``text`` nests deeper than ``limits.max_json_depth`` (checked before parsing: CPython's
    parser recurses once per level and would raise RecursionError deep down)."""
    # Nesting never exceeds the number of opening brackets, so a body with few of them needs no scan:
    # two str.count calls instead of json_depth's array passes (2.7 % of a TensorFlow JSON prefork
    # worker's samples under load, docs/engines.md).
    if text.count("[") + text.count("{") <= limits.max_json_depth:
        return
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise BadRequestError(f"the {what} body nests {depth} levels deep; the limit is {limits.max_json_depth}")


def _bounded_int(digits: str, max_digits: int, what: str) -> int:
    count = len(digits.lstrip("-"))
    if count > max_digits:
        raise BadRequestError(f"an integer in the {what} body has {count} digits; the limit is {max_digits}")
    return int(digits)


def _process_int_digits() -> int:
    """CPython's own limit on int() digits (3.11+, 3.10.7+; 0 = none)."""
    return int(getattr(sys, "get_int_max_str_digits", lambda: 0)())


def loads_json(text: str, limits: DecodeLimits, what: str) -> Any:
    """``json.loads`` with integer literals bounded to ``limits.max_int_digits`` digits (400 beyond).

    CPython refuses int() of more than ``sys.get_int_max_str_digits()`` digits in C (ValueError); a
    Python ``parse_int`` hook costs ~3x on integer-heavy bodies, so the hook is installed only when the
    process allows more digits than the bound. ``json.JSONDecodeError`` propagates for the caller.
    """
    process_limit = _process_int_digits()
    if 0 < process_limit <= limits.max_int_digits:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise
        except ValueError as exc:  # only int()'s digit limit raises another ValueError here
            raise BadRequestError(
                f"an integer in the {what} body has more digits than the limit of {process_limit}"
            ) from exc
    hook = functools.partial(_bounded_int, max_digits=limits.max_int_digits, what=what)
    return json.loads(text, parse_int=hook)


def parse_json(text: str, limits: DecodeLimits = DEFAULT_LIMITS, what: str = "JSON") -> Any:
    """JSON ``text`` -> value within ``limits`` (nesting, integer digits); 400 naming what is wrong."""
    check_json_depth(text, limits, what)
    try:
        return loads_json(text, limits, what)
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"request body is not valid {what}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


class JSONCodec(Codec):
    """``application/json``: decodes to the parsed value (dict/list/scalars); encodes arrays as lists."""

    media_type = JSON

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        return parse_json(decode_text(body, params, "JSON"), limits)

    def encode(self, prediction: Any) -> bytes:
        return json.dumps(prediction, default=to_builtin).encode("utf-8")
