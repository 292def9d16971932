"""Codecs: request bytes <-> Python values, one codec per media type, found through one registry.

``decode(body, content_type)`` and ``encode(prediction, accept, default_accept)`` are what handlers
use. Each codec says which media types it answers to, whether it can encode a given prediction
(``can_encode``), and how to ``decode`` / ``encode``. Content negotiation:

* Media-type parameters are accepted and parsed (``text/csv; charset=utf-8; header=present``).
* A missing Accept or ``*/*`` means ``default_accept`` (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``).
* A comma-separated Accept is tried in order of preference (``q`` values, then position); the first
  type whose codec can encode the prediction wins. Ranges such as ``application/*`` match
  ``default_accept`` first, then the registered codecs in registration order.

Errors: a body the codec cannot parse -> ``BadRequestError`` (400); a Content-Type with no codec ->
``UnsupportedContentTypeError`` (415); no acceptable type can carry the prediction ->
``UnsupportedAcceptError`` (406). NPY and NPZ are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from handlers.errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError

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


def _charset(params: Mapping[str, str]) -> str:
    return params.get("charset", "utf-8")


def _text(body: bytes, params: Mapping[str, str], what: str) -> str:
    try:
        return body.decode(_charset(params))
    except LookupError as exc:
        raise BadRequestError(
            f"unknown charset {_charset(params)!r} in the Content-Type of a {what} body"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"the {what} body is not valid {_charset(params)} text (byte {exc.start}); "
            "send UTF-8 or name the charset in Content-Type"
        ) from exc


def to_builtin(value: Any) -> Any:
    """numpy arrays/scalars, tensors and other array-likes -> Python lists and scalars (for JSON)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # torch / tensorflow tensors and scipy sparse matrices, without importing those frameworks here.
    for method in ("numpy", "toarray"):
        fn = getattr(value, method, None)
        if callable(fn):
            return to_builtin(np.asarray(fn()))
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_ndarray(value: Any) -> np.ndarray:
    """Best-effort array view of a prediction (tensors via ``.numpy()``, sparse via ``.toarray()``)."""
    if isinstance(value, np.ndarray):
        return value
    for method in ("numpy", "toarray"):
        fn = getattr(value, method, None)
        if callable(fn) and not isinstance(value, (list, tuple, dict)):
            return np.asarray(fn())
    return np.asarray(value)


class Codec(ABC):
    """One payload format. Subclasses set ``media_type`` (the canonical name, used in responses)."""

    media_type: ClassVar[str]
    #: Other names clients use for the same format; they decode and encode the same way.
    aliases: ClassVar[tuple[str, ...]] = ()

    def media_types(self) -> tuple[str, ...]:
        """Every media type this codec answers to, canonical first."""
        return (self.media_type, *self.aliases)

    @abstractmethod
    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        """Bytes -> value; raise ``BadRequestError`` naming what is wrong with the body."""

    def can_encode(self, prediction: Any) -> bool:
        """Cheap check whether ``encode`` can represent ``prediction`` (picks among acceptable types)."""
        return True

    @abstractmethod
    def encode(self, prediction: Any) -> bytes:
        """Value -> bytes; raise TypeError/ValueError when it cannot (the next acceptable type is tried)."""


class JSONCodec(Codec):
    """``application/json``: decodes to the parsed value (dict/list/scalars); encodes arrays as lists."""

    media_type = JSON

    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        text = _text(body, params, "JSON")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequestError(
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc

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

    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        text = _text(body, params, "CSV")
        try:
            rows = [row for row in csv.reader(io.StringIO(text)) if row]
        except csv.Error as exc:
            raise BadRequestError(f"request body is not valid CSV: {exc}") from exc
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

    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise BadRequestError(
                    "the .npy body holds Python objects, which need pickle; pickled arrays are refused "
                    "for safety. Send a numeric or fixed-width string array"
                ) from exc
            raise BadRequestError(f"request body is not a valid .npy array: {exc}") from exc
        except Exception as exc:  # np.load raises OSError, EOFError, SyntaxError... on garbage
            raise BadRequestError(f"request body is not a valid .npy array: {exc}") from exc

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


#: Keys of a ``scipy.sparse.save_npz`` file (format, shape and the matrix arrays).
_SPARSE_KEYS = {"format", "shape"}


class NPZCodec(Codec):
    """``application/x-npz``: NumPy's ``.npz`` archive, read with ``allow_pickle=False``.

    Decode: a ``scipy.sparse.save_npz`` archive -> a scipy sparse matrix (what the sagemaker-inference
    toolkit decodes NPZ to); an archive with one array -> that array; several -> ``{name: array}``.
    Encode: a sparse matrix -> ``save_npz``; a mapping of arrays -> one entry per key; anything else ->
    one array named ``arr_0``.
    """

    media_type = NPZ

    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        try:
            loaded = np.load(io.BytesIO(body), allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise BadRequestError(
                    "request body is a .npy array, not a .npz archive; send it as application/x-npy"
                )
            with loaded as archive:
                arrays = {name: archive[name] for name in archive.files}
        except BadRequestError:
            raise
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise BadRequestError(
                    "the .npz body holds Python objects, which need pickle; pickled arrays are refused"
                ) from exc
            raise BadRequestError(f"request body is not a valid .npz archive: {exc}") from exc
        except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError... on garbage
            raise BadRequestError(f"request body is not a valid .npz archive: {exc}") from exc
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


def _sparse_from_arrays(arrays: Mapping[str, np.ndarray]) -> Any:
    try:
        import scipy.sparse
    except ImportError as exc:
        raise BadRequestError("the .npz body is a sparse matrix but scipy is not installed here") from exc
    fmt = arrays["format"].item()
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    shape = tuple(int(n) for n in arrays["shape"])
    try:
        if fmt in ("csr", "csc"):
            cls = scipy.sparse.csr_matrix if fmt == "csr" else scipy.sparse.csc_matrix
            return cls((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        if fmt == "coo":
            return scipy.sparse.coo_matrix((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
    except (KeyError, ValueError) as exc:
        raise BadRequestError(f"the .npz body is not a valid {fmt} sparse matrix: {exc}") from exc
    raise BadRequestError(f"sparse format {fmt!r} in the .npz body is not supported; send csr, csc or coo")


class JSONLinesCodec(Codec):
    """``application/jsonlines``: one JSON value per line.

    Decode: a list of the values (blank lines skipped). Encode: a list/array -> one line per element
    along the first axis; anything else -> one line.
    """

    media_type = JSONLINES
    aliases = ("application/jsonl", "application/x-jsonlines")

    def decode(self, body: bytes, params: Mapping[str, str]) -> Any:
        text = _text(body, params, "JSON Lines")
        values = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
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
        for codec in codecs or []:
            self.register(codec)

    def register(self, codec: Codec) -> None:
        """Add ``codec`` (a later codec for the same media type replaces the earlier one)."""
        self._codecs = [c for c in self._codecs if not set(c.media_types()) & set(codec.media_types())]
        self._codecs.append(codec)
        self._by_type = {mt: c for c in self._codecs for mt in c.media_types()}

    def get(self, media_type: str) -> Codec | None:
        """The codec for a bare media type (no parameters), or None."""
        return self._by_type.get(media_type)

    def media_types(self) -> list[str]:
        """Canonical media types, in registration order."""
        return [c.media_type for c in self._codecs]

    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Decode ``body`` by its Content-Type (415 if none fits, 400 if the body is malformed)."""
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
        return codec.decode(body, params)

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


def decode(body: bytes, content_type: str | None) -> Any:
    """Decode a request body with the default registry (see the module docstring for the rules)."""
    return REGISTRY.decode(body, content_type)


def encode(prediction: Any, accept: str | None, default_accept: str = JSON) -> tuple[bytes, str]:
    """Encode a prediction with the default registry -> ``(body, content_type)``."""
    return REGISTRY.encode(prediction, accept, default_accept)


def register(codec: Codec) -> None:
    """Add a codec to the default registry (e.g. from a custom handler module)."""
    REGISTRY.register(codec)
