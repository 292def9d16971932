"""Codecs: request bytes <-> Python values, one codec per media type and one module per codec, found
through one registry.

``decode(body, content_type)`` and ``encode(prediction, accept, default_accept)`` are what handlers
use. Each codec (``handlers.codecs.base.Codec``) says which media types it answers to, whether it can
encode a given prediction (``can_encode``), and how to ``decode`` / ``encode``. A team's own codec is
one more module beside these, added with ``register`` (docs/custom-framework.md, "Add a codec").

| module | holds |
|---|---|
| ``media_types`` | the media type names, Content-Type and Accept parsing, text charsets (numpy-free) |
| ``base`` | ``Codec``, the base class |
| ``json``, ``csv``, ``npy``, ``npz``, ``jsonlines`` | one codec each, with its bounded reader |
| ``arrays`` | arrays from request data within bounds; ``to_builtin`` / ``to_ndarray`` for predictions |
| ``registry`` | ``CodecRegistry``: content negotiation |

Content negotiation:

* Media-type parameters are accepted and parsed (``text/csv; charset=utf-8; header=present``).
* A missing Accept or ``*/*`` means ``default_accept`` (the handler's, or
  ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` when the user set it: ``Handler.default_response_type``).
* A comma-separated Accept is tried in order of preference (``q`` values, then position); the first
  type whose codec can encode the prediction wins. Ranges such as ``application/*`` match
  ``default_accept`` first, then the registered codecs in registration order.

Errors: a body the codec cannot parse -> ``BadRequestError`` (400); a Content-Type with no codec, or a
``charset`` outside ``TEXT_CHARSETS`` -> ``UnsupportedContentTypeError`` (415); decoding that would exceed
``DecodeLimits.max_bytes`` -> ``PayloadTooLargeError`` (413); no acceptable type can carry the prediction
-> ``UnsupportedAcceptError`` (406), naming only the types that can. NPY and NPZ are always read with
``allow_pickle=False``.

Bounds (``handlers.limits``): every size is checked before the memory is allocated -- NPY shapes from
the header, NPZ members from the zip directory and their NPY headers, string arrays from the measured
lists (``as_array``), CSV tables from their row and field counts; JSON nesting is measured before
parsing. Sparse matrices from NPZ pass scipy's full format check before any other use.
"""

from __future__ import annotations

from typing import Any

from handlers.codecs.arrays import as_array, to_builtin, to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.csv import CSVCodec
from handlers.codecs.json import JSONCodec, check_json_depth, json_depth, loads_json, parse_json
from handlers.codecs.jsonlines import JSONLinesCodec
from handlers.codecs.media_types import (
    ANY,
    CHARSET_ALIASES,
    CSV,
    JSON,
    JSONLINES,
    NPY,
    NPZ,
    TEXT_CHARSETS,
    UTF8_TYPES,
    decode_text,
    parse_accept,
    parse_media_type,
    text_codec,
)
from handlers.codecs.npy import NPYCodec, read_npy
from handlers.codecs.npz import NPZCodec, read_npz
from handlers.codecs.registry import CodecRegistry
from handlers.limits import DEFAULT_LIMITS, DecodeLimits

__all__ = [
    "ANY", "CHARSET_ALIASES", "CSV", "JSON", "JSONLINES", "NPY", "NPZ", "REGISTRY", "TEXT_CHARSETS",
    "UTF8_TYPES", "CSVCodec", "Codec", "CodecRegistry", "JSONCodec", "JSONLinesCodec", "NPYCodec", "NPZCodec",
    "as_array", "check_json_depth", "decode", "decode_text", "encode", "json_depth", "loads_json",
    "parse_accept", "parse_json", "parse_media_type", "read_npy", "read_npz", "register", "text_codec",
    "to_builtin", "to_ndarray",
]

#: The default registry: JSON, CSV, NPY, NPZ, JSON Lines.
REGISTRY = CodecRegistry([JSONCodec(), CSVCodec(), NPYCodec(), NPZCodec(), JSONLinesCodec()])


def decode(body: bytes, content_type: str | None, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode a request body with the default registry (see the module docstring for the rules)."""
    return REGISTRY.decode(body, content_type, limits)


def encode(prediction: Any, accept: str | None, default_accept: str = JSON) -> tuple[bytes, str]:
    """Encode a prediction with the default registry -> ``(body, content_type)``."""
    return REGISTRY.encode(prediction, accept, default_accept)


def register(codec: Codec) -> None:
    """Add a codec to the default registry (e.g. from a custom handler module)."""
    REGISTRY.register(codec)
