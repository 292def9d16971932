"""``text/csv``: RFC 4180 tables to arrays (or a DataFrame with a header), arrays to lines."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from handlers.codecs.arrays import ELEMENT_BYTES, to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.media_types import CSV, decode_text
from handlers.errors import BadRequestError, PayloadTooLargeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits, describe_bytes


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
    if fields * ELEMENT_BYTES > limits.max_bytes:
        raise PayloadTooLargeError(
            f"the CSV body has {fields} fields, {describe_bytes(fields * ELEMENT_BYTES)} as an array; "
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
