"""``application/x-npy``: one NumPy array, its size checked from the header before it is read."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from handlers.codecs.arrays import to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.media_types import NPY
from handlers.errors import BadRequestError, PayloadTooLargeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits, describe_bytes


class NPYCodec(Codec):
    """``application/x-npy``: one array in NumPy's ``.npy`` format; object arrays refused (no pickle)."""

    media_type = NPY

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        return read_npy(io.BytesIO(body), len(body), limits.max_bytes, "the .npy body")

    def can_encode(self, prediction: Any) -> bool:
        if isinstance(prediction, Mapping):
            return False
        try:
            return to_ndarray(prediction).dtype != object
        except (TypeError, ValueError):
            return False

    def encode(self, prediction: Any) -> bytes:
        out = io.BytesIO()
        np.save(out, to_ndarray(prediction), allow_pickle=False)
        return out.getvalue()


# ---- NPY / NPZ within bounds ------------------------------------------------------------------------
# The .npy format (numpy.lib.format docs): magic, version, a header holding a Python literal with
# 'descr' (dtype), 'fortran_order' and 'shape', then the raw data, prod(shape) * itemsize bytes.

#: Header readers by format version. Version 3.0 differs from 2.0 only in the header's text encoding
#: (UTF-8 instead of latin-1, for non-latin-1 field names): read as 2.0 its shape and item size are the
#: same, which is all the size check needs; numpy's own reader then reads it properly.
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def _npy_header(stream: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from a .npy header, reading nothing past it (400 for a malformed header)."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = _NPY_HEADER_READERS.get(version)
        if reader is None:
            raise BadRequestError(f"{what} uses .npy format version {version[0]}.{version[1]}; send 1.0 to 3.0")
        shape, _, dtype = reader(stream)
    except BadRequestError:
        raise
    except Exception as exc:  # ValueError, EOFError, SyntaxError... from a damaged header
        raise BadRequestError(f"{what} is not a valid .npy array: {exc}") from exc
    if dtype.hasobject:
        raise BadRequestError(
            f"{what} holds Python objects, which need pickle; pickled arrays are refused for safety. "
            "Send a numeric or fixed-width string array"
        )
    return tuple(shape), dtype


def read_npy(stream: IO[bytes], available: int, budget: int, what: str) -> np.ndarray:
    """The .npy array at the start of ``stream`` (``available`` bytes long), refused with 413 when its
    header declares more than ``budget`` bytes and with 400 when the data is shorter than declared,
    both before the array is allocated (numpy's reader allocates the declared size up front)."""
    shape, dtype = _npy_header(stream, what)
    # A zero-width dtype (e.g. 'V0') takes no bytes however many elements: count elements too.
    declared = math.prod(shape) * max(dtype.itemsize, 1)
    if declared > budget:
        raise PayloadTooLargeError(
            f"{what} declares shape {shape} of {dtype.str}, {describe_bytes(declared)}; the decoded-size "
            f"limit is {describe_bytes(budget)}"
        )
    data_bytes, present = math.prod(shape) * dtype.itemsize, available - stream.tell()
    if data_bytes > present:
        raise BadRequestError(f"{what} declares {data_bytes} bytes of data but holds {present}")
    stream.seek(0)
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except Exception as exc:  # a damaged stream (zip CRC, EOF) found while reading the data
        raise BadRequestError(f"{what} is not a valid .npy array: {exc}") from exc
