"""Arrays from request data within bounds, and predictions made JSON- or array-ready (``to_builtin``,
``to_ndarray``). Every size is checked before numpy allocates it (docs/handlers.md, "Bounds on decoding")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handlers.errors import PayloadTooLargeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits, describe_bytes

#: Bytes per character of numpy's fixed-width unicode dtype ('U' is UCS4; numpy docs, "Data type objects").
_UNICODE_CHAR_BYTES = 4
#: Widest text numpy gives a number when it stringifies it next to strings (float64 repr: '<U32').
_NUMBER_TEXT_WIDTH = 32
#: Bytes per element of a numeric or object array built from a list (float64, int64, pointers).
ELEMENT_BYTES = 8
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
    if count * ELEMENT_BYTES > limits.max_bytes:
        raise PayloadTooLargeError(
            f"the input has {count} values, {describe_bytes(count * ELEMENT_BYTES)} as an array; the "
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
