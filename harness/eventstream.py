"""AWS's event-stream framing for InvokeEndpointWithResponseStream, written for the harness.

The wire format is AWS's public ``application/vnd.amazon.eventstream`` encoding as botocore's parser
(``botocore/eventstream.py``) reads it: a 12-byte prelude (total length, headers length, CRC32 of the
first 8 bytes, all big-endian uint32), the headers, the payload, then a CRC32 of everything before it.
Each header is a 1-byte name length, the name, a 1-byte value type and the value; only type 7 (a
string with a 2-byte length) is written here. botocore has a parser and no encoder, and no encoder
library is installed with the harness, so this module is the encoder; tests check it with botocore's
parser (docs/sagemaker-contract.md §5.6 has the shapes).

``Resplitter`` cuts the container's bytes at random places, as SageMaker may (a PayloadPart carries
"pieces of the payload", not the container's chunks), so a client's parser can be tested against it.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Iterator

CONTENT_TYPE = "application/vnd.amazon.eventstream"
#: The ResponseStream members of botocore's sagemaker-runtime model.
PAYLOAD_PART = "PayloadPart"
MODEL_STREAM_ERROR = "ModelStreamError"
INTERNAL_STREAM_FAILURE = "InternalStreamFailure"
#: ModelStreamError's ErrorCode values, as the service model documents them.
STREAM_BROKEN = "StreamBroken"
TIME_EXCEEDED = "ModelInvocationTimeExceeded"

_STRING = 7
_PRELUDE = struct.Struct(">II")


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return bytes([len(raw_name)]) + raw_name + bytes([_STRING]) + struct.pack(">H", len(raw_value)) + raw_value


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = _PRELUDE.size + 4 + len(encoded) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_part(data: bytes) -> bytes:
    """A PayloadPart event: its Bytes member is the event's payload (``eventpayload`` blob)."""
    return encode_message({":event-type": PAYLOAD_PART, ":content-type": "application/octet-stream",
                           ":message-type": "event"}, data)


def _exception(kind: str, members: dict[str, str]) -> bytes:
    return encode_message({":exception-type": kind, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps(members).encode())


def model_stream_error(message: str, error_code: str) -> bytes:
    """A ModelStreamError exception event (boto3 raises EventStreamError with Code ModelStreamError)."""
    return _exception(MODEL_STREAM_ERROR, {"Message": message, "ErrorCode": error_code})


def internal_stream_failure(message: str) -> bytes:
    """An InternalStreamFailure exception event: the harness itself failed mid-stream."""
    return _exception(INTERNAL_STREAM_FAILURE, {"Message": message})


class Resplitter:
    """Re-cuts a byte stream at random boundaries: each piece is split at up to 3 random places, and the
    last piece is held back half of the time to be joined to the next one (bytes are never reordered or
    lost; ``finish`` gives what is held)."""

    def __init__(self, seed: int | None) -> None:
        self._random = random.Random(seed)
        self._held = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data, self._held = self._held + chunk, b""
        if not data:
            return
        cuts = sorted(self._random.sample(range(1, len(data)), min(3, len(data) - 1)))
        pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        if len(pieces) > 1 and self._random.random() < 0.5:
            self._held = pieces.pop()
        yield from pieces

    def finish(self) -> Iterator[bytes]:
        if self._held:
            yield self._held
            self._held = b""
