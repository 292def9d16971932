"""``application/jsonlines``: one JSON value per line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from handlers.codecs.arrays import to_builtin, to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.json import check_json_depth, loads_json
from handlers.codecs.media_types import JSONLINES, decode_text
from handlers.errors import BadRequestError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits


class JSONLinesCodec(Codec):
    """``application/jsonlines``: one JSON value per line.

    Decode: a list of the values (blank lines skipped). Encode: a list/array -> one line per element
    along the first axis; anything else -> one line.
    """

    media_type = JSONLINES
    aliases = ("application/jsonl", "application/x-jsonlines")

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        text = decode_text(body, params, "JSON Lines")
        # Each line is a whole value (strings cannot span lines), so one pass bounds every line's depth.
        check_json_depth(text, limits, "JSON Lines")
        values = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append(loads_json(line, limits, "JSON Lines"))
            except json.JSONDecodeError as exc:
                raise BadRequestError(
                    f"line {number} of the JSON Lines body is not valid JSON: {exc.msg}"
                ) from exc
        if not values:
            raise BadRequestError("JSON Lines body has no records")
        return values

    def encode(self, prediction: Any) -> bytes:
        if isinstance(prediction, (list, tuple)):
            records: Any = prediction
        elif isinstance(prediction, Mapping) or isinstance(prediction, (str, bytes)):
            records = [prediction]
        else:
            arr = to_ndarray(prediction)
            records = [arr.item()] if arr.ndim == 0 else list(arr)
        return "".join(json.dumps(r, default=to_builtin) + "\n" for r in records).encode("utf-8")
