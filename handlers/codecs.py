"""Codecs: request bytes <-> Python values, one codec per media type, found through one registry.

``decode(body, content_type)`` and ``encode(prediction, accept, default_accept)`` are what handlers
use. Each codec says which media types it answers to, whether it can encode a given prediction
(``can_encode``), and how to ``decode`` / ``encode``. Content negotiation:

* Media-type parameters are accepted and parsed (``text/csv; charset=utf-8; header=present``).
* A missing Accept or ``*/*`` means ``default_accept`` (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``).
* A comma-separated Accept is tried in order of preference (``q`` values, then position); the first
  type whose codec can encode the prediction wins. Ranges such as ``application/*`` match
  ``default_accept`` first, then the registered codecs in registration order.

Errors: a body the codec cannot parse -> ``BadRequestError`` (400); a Content-Type with no codec, or a
``charset`` outside ``TEXT_CHARSETS`` -> ``UnsupportedContentTypeError`` (415); decoding that would exceed
``DecodeLimits.max_bytes`` -> ``PayloadTooLargeError`` (413); no acceptable type can carry the prediction
-> ``UnsupportedAcceptError`` (406). NPY and NPZ are always read with ``allow_pickle=False``.

Bounds (``handlers.limits``): every size is checked before the memory is allocated -- NPY shapes from
the header, NPZ members from the zip directory and their NPY headers, string arrays from the measured
lists (``as_array``), CSV tables from their row and field counts; JSON nesting is measured before
parsing. Sparse matrices from NPZ pass scipy's full format check before any other use.
"""

from __future__ import annotations

import csv
import functools
import inspect
import io
import json
import math
import sys
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import IO, Any, ClassVar

import numpy as np

from handlers.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)
from handlers.limits import DEFAULT_LIMITS, DecodeLimits, describe_bytes

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSONLINES = "application/jsonlines"
ANY = "*/*"

#: Media types whose bodies the sagemaker-inference toolkit hands to ``input_fn`` as ``str``.
UTF8_TYPES = (JSON, CSV)


def parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``'Text/CSV; charset=utf-8'`` -> ``('text/csv', {'charset': 'utf-8'})``; ``None`` -> ``('', {})``."""
    if not value:
        return "", {}
    main, *raw_params = value.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        key, sep, val = raw.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return main.strip().lower(), params


def parse_accept(accept: str | None) -> list[str]:
    """The media ranges of an Accept header, most preferred first (``q`` descending, then position).

    Entries with ``q=0`` are dropped (the client refuses them). An empty or missing header gives ``[]``.
    """
    if not accept:
        return []
    ranked: list[tuple[float, int, str]] = []
    for pos, item in enumerate(accept.split(",")):
        media_type, params = parse_media_type(item)
        if not media_type:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality <= 0:
            continue
        ranked.append((-quality, pos, media_type))
    ranked.sort()
    return [media_type for _, _, media_type in ranked]


#: Text encodings a body may name in its ``charset`` parameter: IANA preferred names, lower-cased
#: (charset names are case-insensitive, RFC 2046 section 4.1.2) -> Python codec. Python's codec registry
#: also answers to binary transforms (base64_codec, zlib_codec, uu_codec), rot13, punycode, idna and
#: utf-7, some super-linear on crafted input, so no other name is ever looked up: anything else is 415.
TEXT_CHARSETS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-32": "utf-32",
    "utf-32le": "utf-32-le",
    "utf-32be": "utf-32-be",
    "us-ascii": "ascii",
    "iso-8859-1": "latin-1",
    "windows-1252": "cp1252",
}
#: Common other spellings of those charsets.
CHARSET_ALIASES: dict[str, str] = {
    "utf8": "utf-8",
    "ascii": "us-ascii",
    "latin1": "iso-8859-1",
    "latin-1": "iso-8859-1",
    "iso8859-1": "iso-8859-1",
    "cp1252": "windows-1252",
}


def text_codec(params: Mapping[str, str]) -> str:
    """The Python codec for the ``charset`` parameter (default UTF-8); 415 naming any other charset."""
    name = params.get("charset", "utf-8").strip().lower()
    codec = TEXT_CHARSETS.get(CHARSET_ALIASES.get(name, name))
    if codec is None:
        raise UnsupportedContentTypeError(
            f"charset {name[:60]!r} is not supported; use one of {', '.join(TEXT_CHARSETS)}"
        )
    return codec


def decode_text(body: bytes, params: Mapping[str, str], what: str) -> str:
    """``body`` as text in its declared charset: 415 for a charset outside ``TEXT_CHARSETS``, 400 if invalid."""
    codec = text_codec(params)
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"the {what} body is not valid {codec} text (byte {exc.start}); "
            "send UTF-8 or name the charset in Content-Type"
        ) from exc


# ---- JSON within bounds -----------------------------------------------------------------------------

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


# ---- arrays from request data within bounds ---------------------------------------------------------

#: Bytes per character of numpy's fixed-width unicode dtype ('U' is UCS4; numpy docs, "Data type objects").
_UNICODE_CHAR_BYTES = 4
#: Widest text numpy gives a number when it stringifies it next to strings (float64 repr: '<U32').
_NUMBER_TEXT_WIDTH = 32
#: Bytes per element of a numeric or object array built from a list (float64, int64, pointers).
_ELEMENT_BYTES = 8
_SEQUENCES = (list, tuple)
_NESTED = {list, tuple, np.ndarray}
_TEXT_TYPES = (str, bytes)
_TEXT = set(_TEXT_TYPES)


def _measure(value: list[Any] | tuple[Any, ...]) -> tuple[int, int]:
    """(elements, characters per element numpy's fixed-width unicode form would take, 0 without
    strings) of nested lists / tuples, iteratively (no recursion)."""
    count = longest = 0
    texts = others = False
    stack: list[Any] = [value]
    while stack:
        items = stack.pop()
        kinds = set(map(type, items))
        if kinds.isdisjoint(_NESTED) and (kinds <= _TEXT or kinds.isdisjoint(_TEXT)):
            count += len(items)
            if kinds and kinds <= _TEXT:
                texts, longest = True, max(longest, max(map(len, items)))
            others = others or bool(kinds) and kinds.isdisjoint(_TEXT)
            continue
        for item in items:
            if isinstance(item, _SEQUENCES):
                stack.append(item)
                continue
            size, width = _leaf(item)
            count += size
            if width is None:
                others = True
            else:
                texts, longest = True, max(longest, width)
    if texts and others:
        longest = max(longest, _NUMBER_TEXT_WIDTH)
    return count, longest if texts else 0


def _leaf(item: Any) -> tuple[int, int | None]:
    """(elements, characters per element when it is text, else None) of one non-list value."""
    if isinstance(item, np.ndarray):
        if item.dtype.kind in "US":
            return item.size, item.dtype.itemsize // (_UNICODE_CHAR_BYTES if item.dtype.kind == "U" else 1)
        return item.size, None
    return 1, len(item) if isinstance(item, _TEXT_TYPES) else None


def as_array(value: Any, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """``to_ndarray`` for request data, within ``limits.max_bytes`` (413 beyond).

    Nested lists are measured before numpy sees them: numpy makes strings a fixed-width unicode array
    of elements x longest string x 4 bytes, so one long string among many short ones would ask for
    gigabytes. When that form would exceed the limit the strings go into an ``object`` array instead
    (8 bytes per element; the strings already exist), which scikit-learn's text and categorical
    transformers take as well.
    """
    if not isinstance(value, _SEQUENCES):
        return to_ndarray(value)
    count, longest = _measure(value)
    if count * _ELEMENT_BYTES > limits.max_bytes:
        raise PayloadTooLargeError(
            f"the input has {count} values, {describe_bytes(count * _ELEMENT_BYTES)} as an array; the "
            f"decoded-size limit is {describe_bytes(limits.max_bytes)}"
        )
    if count * longest * _UNICODE_CHAR_BYTES > limits.max_bytes:
        return np.array(value, dtype=object)
    return np.asarray(value)


def to_builtin(value: Any) -> Any:
    """numpy arrays/scalars, tensors and other array-likes -> Python lists and scalars (for JSON)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # torch / tensorflow tensors and scipy sparse matrices, without importing those frameworks here.
    if callable(getattr(value, "numpy", None)):
        return to_builtin(np.asarray(value.numpy()))
    if callable(getattr(value, "toarray", None)):
        return to_builtin(_densify(value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_ndarray(value: Any) -> np.ndarray:
    """Best-effort array view of a prediction (tensors via ``.numpy()``, sparse via ``.toarray()``)."""
    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, (list, tuple, dict)):
        if callable(getattr(value, "numpy", None)):
            return np.asarray(value.numpy())
        if callable(getattr(value, "toarray", None)):
            return _densify(value)
    return np.asarray(value)


def _densify(sparse: Any) -> np.ndarray:
    """``sparse.toarray()``, refused with ValueError (the encoder then tries the next acceptable type)
    when the dense form would exceed the default decoded-size limit: a request's sparse matrix may
    declare any shape, and a model may hand it back."""
    shape = tuple(int(n) for n in getattr(sparse, "shape", ()))
    dense = math.prod(shape) * np.dtype(getattr(sparse, "dtype", np.float64)).itemsize
    if dense > DEFAULT_LIMITS.max_bytes:
        raise ValueError(
            f"a sparse result of shape {shape} takes {describe_bytes(dense)} dense, over the "
            f"{describe_bytes(DEFAULT_LIMITS.max_bytes)} limit; ask for application/x-npz"
        )
    return np.asarray(sparse.toarray())


class Codec(ABC):
    """One payload format. Subclasses set ``media_type`` (the canonical name, used in responses)."""

    media_type: ClassVar[str]
    #: Other names clients use for the same format; they decode and encode the same way.
    aliases: ClassVar[tuple[str, ...]] = ()

    def media_types(self) -> tuple[str, ...]:
        """Every media type this codec answers to, canonical first."""
        return (self.media_type, *self.aliases)

    @abstractmethod
    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        """Bytes -> value; raise ``BadRequestError`` naming what is wrong with the body, and
        ``PayloadTooLargeError`` before allocating more than ``limits.max_bytes``.

        A codec written before ``limits`` existed may define ``decode(body, params)``; the registry then
        calls it that way (unbounded: only the request-size limit applies to it).
        """

    def can_encode(self, prediction: Any) -> bool:
        """Cheap check whether ``encode`` can represent ``prediction`` (picks among acceptable types)."""
        return True

    @abstractmethod
    def encode(self, prediction: Any) -> bytes:
        """Value -> bytes; raise TypeError/ValueError when it cannot (the next acceptable type is tried)."""


class JSONCodec(Codec):
    """``application/json``: decodes to the parsed value (dict/list/scalars); encodes arrays as lists."""

    media_type = JSON

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        return parse_json(decode_text(body, params, "JSON"), limits)

    def encode(self, prediction: Any) -> bytes:
        return json.dumps(prediction, default=to_builtin).encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        # numpy's str() gives the shortest round-tripping text for float32 as well as float64.
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


class CSVCodec(Codec):
    """``text/csv``, comma-separated, RFC 4180 quoting.

    Decode: no header unless the Content-Type says ``header=present`` (the RFC 4180 parameter); then
    the first row names the columns. Every row must have the same number of fields. A column whose
    fields all parse as numbers (empty field = NaN) becomes float; when every column is numeric the
    result is a 2-D ``float64`` ndarray. Otherwise the result is a 2-D ``object`` ndarray holding
    floats in numeric columns and strings in the others (what a scikit-learn ``ColumnTransformer``
    with integer column selectors takes) -- or, when a header is present and pandas is installed, a
    ``pandas.DataFrame`` with those column names (what a pipeline fitted on a DataFrame needs).

    Encode: a scalar -> one line; a 1-D array -> one value per line (one prediction per record); a
    2-D array -> one row per line. Higher dimensions and mappings cannot be written as CSV.
    """

    media_type = CSV

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        text = decode_text(body, params, "CSV")
        try:
            rows = [row for row in csv.reader(io.StringIO(text)) if row]
        except csv.Error as exc:
            raise BadRequestError(f"request body is not valid CSV: {exc}") from exc
        _check_table_size(rows, limits)
        header: list[str] | None = None
        if params.get("header", "absent").lower() == "present":
            if not rows:
                raise BadRequestError("CSV body with header=present has no header row")
            header, rows = [name.strip() for name in rows[0]], rows[1:]
        if not rows:
            raise BadRequestError("CSV body has no data rows")
        width = len(header) if header is not None else len(rows[0])
        for number, row in enumerate(rows, start=1):
            if len(row) != width:
                raise BadRequestError(
                    f"CSV row {number} has {len(row)} fields but the "
                    f"{'header' if header is not None else 'first row'} has {width}; every row needs the same count"
                )
        if header is None:
            try:
                # Fast path: numpy parses an all-numeric table in C (an empty field fails it -> slow path).
                return np.array(rows, dtype=np.float64)
            except ValueError:
                pass
        columns: list[list[Any]] = []
        all_numeric = True
        for col in range(width):
            cells = [row[col].strip() for row in rows]
            numbers = _parse_floats(cells)
            if numbers is None:
                all_numeric = False
                columns.append(cells)
            else:
                columns.append(numbers)
        if header is not None:
            try:
                import pandas as pd
            except ImportError:
                pass
            else:
                return pd.DataFrame({name: col for name, col in zip(header, columns, strict=True)})
        if all_numeric:
            return np.array(columns, dtype=np.float64).T.copy()
        out = np.empty((len(rows), width), dtype=object)
        for col, values in enumerate(columns):
            out[:, col] = values
        return out

    def can_encode(self, prediction: Any) -> bool:
        if isinstance(prediction, (Mapping, str, bytes)):
            return False
        try:
            arr = to_ndarray(prediction)
        except (TypeError, ValueError):
            return False
        return arr.ndim <= 2

    def encode(self, prediction: Any) -> bytes:
        arr = to_ndarray(prediction)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in arr:
            writer.writerow([_csv_cell(v) for v in row])
        return out.getvalue().encode("utf-8")


def _check_table_size(rows: list[list[str]], limits: DecodeLimits) -> None:
    """413 when the table, as an array of 8-byte values, would exceed ``limits.max_bytes``."""
    fields = sum(map(len, rows))
    if fields * _ELEMENT_BYTES > limits.max_bytes:
        raise PayloadTooLargeError(
            f"the CSV body has {fields} fields, {describe_bytes(fields * _ELEMENT_BYTES)} as an array; "
            f"the decoded-size limit is {describe_bytes(limits.max_bytes)}"
        )


def _parse_floats(cells: list[str]) -> list[float] | None:
    """All cells as floats (empty -> NaN), or None if any cell is not a number."""
    values: list[float] = []
    for cell in cells:
        if cell == "":
            values.append(math.nan)
            continue
        try:
            values.append(float(cell))
        except ValueError:
            return None
    return values


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


#: How a .npz member may be stored: what ``np.savez`` / ``np.savez_compressed`` write. bzip2 and LZMA
#: members are refused: zipfile decompresses their chunks without an output bound.
_NPZ_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def _npz_members(archive: zipfile.ZipFile, budget: int) -> list[zipfile.ZipInfo]:
    """The archive's members, refused before any decompression when their declared uncompressed sizes
    (zip directory) exceed ``budget`` (413) or their storage is not what numpy writes (400)."""
    members = archive.infolist()
    declared = sum(info.file_size for info in members)
    if declared > budget:
        raise PayloadTooLargeError(
            f"the .npz archive's {len(members)} members declare {describe_bytes(declared)} uncompressed; "
            f"the decoded-size limit is {describe_bytes(budget)}"
        )
    for info in members:
        if info.compress_type not in _NPZ_COMPRESSION or info.flag_bits & 0x1:
            raise BadRequestError(
                f".npz member {info.filename[:80]!r} is encrypted or compressed with method "
                f"{info.compress_type}; send what numpy.savez / savez_compressed write"
            )
    return members


def read_npz(body: bytes, limits: DecodeLimits) -> dict[str, np.ndarray]:
    """``{name: array}`` of a .npz body (names without ``.npy``, as ``np.load`` gives them), every
    member's size checked against what is left of ``limits.max_bytes`` before it is decompressed. zipfile
    never inflates a member past its directory size, and numpy's reader reads exactly the declared bytes."""
    if body.startswith(np.lib.format.MAGIC_PREFIX):
        raise BadRequestError("request body is a .npy array, not a .npz archive; send it as application/x-npy")
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError... on garbage
        raise BadRequestError(f"request body is not a valid .npz archive: {exc}") from exc
    arrays: dict[str, np.ndarray] = {}
    budget = limits.max_bytes
    with archive:
        for info in _npz_members(archive, budget):
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with _open_member(archive, info) as stream:
                arrays[name] = read_npy(stream, info.file_size, budget, f".npz member {name[:80]!r}")
            budget -= arrays[name].nbytes
    return arrays


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return archive.open(info)
    except Exception as exc:  # a damaged local header
        raise BadRequestError(f"request body is not a valid .npz archive: {exc}") from exc


#: Keys of a ``scipy.sparse.save_npz`` file (format, shape and the matrix arrays).
_SPARSE_KEYS = {"format", "shape"}
#: The sparse formats a .npz body may hold -> its arrays, data first (``scipy.sparse.save_npz``).
_SPARSE_ARRAYS = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "coo": ("data", "row", "col"),
}


def _sparse_format(arrays: Mapping[str, np.ndarray]) -> str:
    """The format named in a save_npz archive, with its arrays present, 1-D, numeric and integer indices."""
    raw = arrays["format"]
    fmt = raw.item() if raw.size == 1 and raw.dtype.kind in "SU" else None
    fmt = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    if fmt not in _SPARSE_ARRAYS:
        raise BadRequestError(
            f"sparse format {str(fmt)[:20]!r} in the .npz body is not supported; send csr, csc or coo"
        )
    data, *indices = _SPARSE_ARRAYS[fmt]
    for key in (data, *indices):
        if key not in arrays:
            raise BadRequestError(f"the .npz body is a {fmt} sparse matrix without its {key!r} array")
        kinds = "biufc" if key == data else "iu"
        if arrays[key].ndim != 1 or arrays[key].dtype.kind not in kinds:
            raise BadRequestError(
                f"the {fmt} matrix's {key!r} array is {arrays[key].ndim}-D {arrays[key].dtype}; it must be 1-D "
                + ("numbers" if key == data else "integers")
            )
    return fmt


def _sparse_shape(raw: np.ndarray) -> tuple[int, int]:
    if raw.shape != (2,) or raw.dtype.kind not in "iu" or (raw < 0).any():
        raise BadRequestError(f"the sparse matrix's shape {raw.tolist()!r:.60} must be two non-negative integers")
    return int(raw[0]), int(raw[1])


def _check_indptr(indptr: np.ndarray, nnz: int) -> None:
    """indptr starts at 0, never decreases and ends at the number of stored entries. scipy's full check
    tests monotonicity only when the matrix stores entries (nnz = indptr[-1] > 0), so an indptr such as
    [0, 5, 0] would pass it and send sparsetools reading past the end of ``indices``."""
    if len(indptr) and (indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any()):
        raise ValueError(f"indptr must rise from 0 to the {nnz} stored entries without decreasing")


def _sparse_from_arrays(arrays: Mapping[str, np.ndarray]) -> Any:
    """A scipy sparse matrix from save_npz's arrays, fully validated before anything uses it.

    scipy's constructors check lengths only (``check_format(full_check=False)``); out-of-range or
    decreasing indices reach sparsetools' C++ loops, which do not bounds-check, and can crash the
    process. ``check_format(full_check=True)`` (scipy docs, csr_array.check_format) scans them;
    ``coo`` checks its index ranges on construction.
    """
    try:
        import scipy.sparse
    except ImportError as exc:
        raise BadRequestError("the .npz body is a sparse matrix but scipy is not installed here") from exc
    fmt = _sparse_format(arrays)
    shape = _sparse_shape(arrays["shape"])
    data, first, second = (arrays[key] for key in _SPARSE_ARRAYS[fmt])
    try:
        if fmt == "coo":
            if not len(data) == len(first) == len(second):
                raise ValueError(f"data, row and col have {len(data)}, {len(first)} and {len(second)} entries")
            return scipy.sparse.coo_matrix((data, (first, second)), shape=shape)
        _check_indptr(second, len(first))
        cls = scipy.sparse.csr_matrix if fmt == "csr" else scipy.sparse.csc_matrix
        matrix = cls((data, first, second), shape=shape)
        matrix.check_format(full_check=True)
        return matrix
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequestError(f"the .npz body is not a valid {fmt} sparse matrix: {exc}") from exc


class NPZCodec(Codec):
    """``application/x-npz``: NumPy's ``.npz`` archive, read with ``allow_pickle=False``.

    Decode: a ``scipy.sparse.save_npz`` archive -> a scipy sparse matrix (what the sagemaker-inference
    toolkit decodes NPZ to); an archive with one array -> that array; several -> ``{name: array}``.
    Encode: a sparse matrix -> ``save_npz``; a mapping of arrays -> one entry per key; anything else ->
    one array named ``arr_0``.
    """

    media_type = NPZ

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        arrays = read_npz(body, limits)
        if not arrays:
            raise BadRequestError("the .npz archive holds no arrays")
        if _SPARSE_KEYS <= arrays.keys():
            return _sparse_from_arrays(arrays)
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        return arrays

    def can_encode(self, prediction: Any) -> bool:
        if hasattr(prediction, "tocsr") and hasattr(prediction, "nnz"):
            return True
        try:
            if isinstance(prediction, Mapping):
                return all(to_ndarray(v).dtype != object for v in prediction.values())
            return to_ndarray(prediction).dtype != object
        except (TypeError, ValueError):
            return False

    def encode(self, prediction: Any) -> bytes:
        out = io.BytesIO()
        if hasattr(prediction, "tocsr") and hasattr(prediction, "nnz"):
            import scipy.sparse

            scipy.sparse.save_npz(out, prediction)
        elif isinstance(prediction, Mapping):
            arrays = {str(k): to_ndarray(v) for k, v in prediction.items()}
            np.savez(out, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(out, to_ndarray(prediction))
        return out.getvalue()


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


class CodecRegistry:
    """Media type -> codec. One default registry (``REGISTRY``) serves the module-level functions."""

    def __init__(self, codecs: list[Codec] | None = None) -> None:
        self._codecs: list[Codec] = []
        self._by_type: dict[str, Codec] = {}
        self._bounded: dict[int, bool] = {}
        for codec in codecs or []:
            self.register(codec)

    def register(self, codec: Codec) -> None:
        """Add ``codec`` (a later codec for the same media type replaces the earlier one)."""
        self._codecs = [c for c in self._codecs if not set(c.media_types()) & set(codec.media_types())]
        self._codecs.append(codec)
        self._by_type = {mt: c for c in self._codecs for mt in c.media_types()}
        self._bounded = {id(c): _takes_limits(c) for c in self._codecs}

    def get(self, media_type: str) -> Codec | None:
        """The codec for a bare media type (no parameters), or None."""
        return self._by_type.get(media_type)

    def media_types(self) -> list[str]:
        """Canonical media types, in registration order."""
        return [c.media_type for c in self._codecs]

    def decode(self, body: bytes, content_type: str | None, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        """Decode ``body`` by its Content-Type (415 if none fits, 400 if the body is malformed, 413 if
        decoding it would exceed ``limits``)."""
        media_type, params = parse_media_type(content_type)
        if not media_type:
            raise UnsupportedContentTypeError(
                f"the request has no Content-Type; send one of {', '.join(self.media_types())}"
            )
        codec = self._by_type.get(media_type)
        if codec is None:
            raise UnsupportedContentTypeError(
                f"Content-Type {media_type!r} is not supported; send one of {', '.join(self.media_types())}"
            )
        if not body:
            raise BadRequestError(f"the request body is empty (Content-Type {media_type})")
        if self._bounded[id(codec)]:
            return codec.decode(body, params, limits)
        return codec.decode(body, params)  # a custom codec written before limits existed

    def candidates(self, accept: str | None, default_accept: str) -> list[str]:
        """Concrete media types to try for ``accept``, best first (ranges and ``*/*`` expanded)."""
        ranges = parse_accept(accept) or [ANY]
        default_type, _ = parse_media_type(default_accept)
        out: list[str] = []
        for media_range in ranges:
            if media_range == ANY:
                options = [default_type, *self.media_types()]
            elif media_range.endswith("/*"):
                prefix = media_range[:-1]
                options = [default_type] if default_type.startswith(prefix) else []
                options += [mt for mt in self.media_types() if mt.startswith(prefix)]
            else:
                options = [media_range]
            out.extend(mt for mt in options if mt not in out)
        return out

    def encode(self, prediction: Any, accept: str | None, default_accept: str) -> tuple[bytes, str]:
        """Encode ``prediction`` for ``accept`` -> ``(body, content_type)``; 406 if no acceptable type fits.

        The response Content-Type is the codec's canonical media type.
        """
        candidates = self.candidates(accept, default_accept)
        known = [mt for mt in candidates if mt in self._by_type]
        for media_type in known:
            codec = self._by_type[media_type]
            if not codec.can_encode(prediction):
                continue
            try:
                return codec.encode(prediction), codec.media_type
            except (TypeError, ValueError):
                continue
        if known:
            raise UnsupportedAcceptError(
                f"the prediction ({_describe(prediction)}) cannot be encoded as {', '.join(known)}; "
                f"ask for one of {', '.join(self.media_types())}"
            )
        raise UnsupportedAcceptError(
            f"Accept {accept!r} names no supported type; ask for one of {', '.join(self.media_types())}"
        )


def _takes_limits(codec: Codec) -> bool:
    """Whether ``codec.decode`` accepts the ``limits`` argument (codecs written before it did not)."""
    try:
        params = inspect.signature(codec.decode).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in params) >= 3 or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in params
    )


def _describe(prediction: Any) -> str:
    if isinstance(prediction, Mapping):
        return "a mapping"
    try:
        arr = to_ndarray(prediction)
    except (TypeError, ValueError):
        return type(prediction).__name__
    return f"{arr.ndim}-D {arr.dtype} array" if arr.ndim else f"{type(prediction).__name__}"


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
