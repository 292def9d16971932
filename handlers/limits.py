"""Bounds on what decoding one request may allocate, declared once (docs/handlers.md, "Bounds").

Numpy-free so ``handlers.base`` (imported by the server's framework-free front process) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024

#: SageMaker's request-size limit, ``SAGEMAKER_MAX_PAYLOAD_IN_MB``'s default of 6.
DEFAULT_MAX_PAYLOAD_BYTES = 6 * MIB

#: The decoded-size cap is this many times the largest request body. A legitimate body decodes to at
#: most ~8x its size (an empty CSV field, one byte, becomes an 8-byte NaN; "1," becomes an 8-byte float),
#: so 16x refuses no well-formed request while stopping decode bombs: deflate reaches ~1000x (zlib
#: docs, "maximum compression factor" 1032:1) and a fixed-width string array rows x longest x 4.
DECODED_PER_PAYLOAD = 16

#: Deepest JSON nesting accepted. numpy arrays have at most 64 dimensions (numpy 2 ``NPY_MAXDIMS``);
#: CPython's json parser recurses per level and raises RecursionError near 1000.
MAX_JSON_DEPTH = 100

#: Most digits in one JSON integer literal: CPython's own default ``sys.get_int_max_str_digits()``
#: (docs.python.org/3/library/stdtypes.html#int-max-str-digits), above which int() parsing turns
#: quadratic.
MAX_INT_DIGITS = 4300


def max_decoded_bytes_for(max_payload_bytes: int) -> int:
    """The default decoded-size cap for a server whose largest request body is ``max_payload_bytes``."""
    return DECODED_PER_PAYLOAD * max_payload_bytes


#: 16 x 6 MiB = 96 MiB.
DEFAULT_MAX_DECODED_BYTES = max_decoded_bytes_for(DEFAULT_MAX_PAYLOAD_BYTES)


@dataclass(frozen=True)
class DecodeLimits:
    """What one request's decoding may take; beyond ``max_bytes`` -> 413, beyond the others -> 400."""

    max_bytes: int = DEFAULT_MAX_DECODED_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    max_int_digits: int = MAX_INT_DIGITS


DEFAULT_LIMITS = DecodeLimits()


def describe_bytes(count: int) -> str:
    """``100663296`` -> ``'100663296 bytes (96.0 MiB)'`` for one-line error messages."""
    return f"{count} bytes ({count / MIB:.1f} MiB)"
