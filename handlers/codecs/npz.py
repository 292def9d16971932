"""``application/x-npz``: NumPy archives and scipy sparse matrices, every member's size checked from the
zip directory and its NPY header before it is inflated."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from handlers.codecs.arrays import to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.media_types import NPZ
from handlers.codecs.npy import read_npy
from handlers.errors import BadRequestError, PayloadTooLargeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits, describe_bytes

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
