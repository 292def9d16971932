"""Hostile request bodies, each small on the wire and huge (or crashing) if decoded naively."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GIB = 1024**3


@dataclass(frozen=True)
class Bomb:
    name: str
    content_type: str
    build: Callable[[], bytes]
    status: int


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def _deflated_zeros_member(name: str, header: bytes, data_bytes: int) -> bytes:
    """A .npz holding one member: ``header`` then ``data_bytes`` zero bytes, deflated (level 1: ~230:1,
    three times faster to build than level 9's ~1000:1)."""
    out = io.BytesIO()
    chunk = bytes(16 * 1024 * 1024)
    archive = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
    with archive, archive.open(name, "w") as member:
        member.write(header)
        for offset in range(0, data_bytes, len(chunk)):
            member.write(chunk[: data_bytes - offset])
    return out.getvalue()


def npz_zip_bomb() -> bytes:
    """~4.5 MiB body whose one member inflates to 1 GiB of float64 zeros (np.load allocated it all)."""
    return _deflated_zeros_member("x.npy", _npy_header((GIB // 8,)), GIB)


def npz_lying_directory() -> bytes:
    """The zip directory says the member is 1000 bytes; its NPY header declares 64 MiB and the
    deflated stream really holds 64 MiB. Sizes come from the directory, so it must not be trusted alone."""
    body = bytearray(_deflated_zeros_member("x.npy", _npy_header((8 * 1024 * 1024,)), 64 * 1024 * 1024))
    central = body.rindex(b"PK\x01\x02")
    struct.pack_into("<I", body, central + 24, 1000)  # uncompressed size in the central directory entry
    return bytes(body)


def npy_huge_shape() -> bytes:
    """A valid .npy header declaring 10^6 x 10^6 float64 (8 TB), followed by 64 bytes."""
    return _npy_header((10**6, 10**6)) + bytes(64)


def json_string_bomb() -> bytes:
    """~150 KB: 50 000 one-letter strings and one of 100 000 characters. np.asarray makes that a
    fixed-width '<U100000' array of 50 001 x 400 000 bytes = 20 GB."""
    return json.dumps(["a"] * 50_000 + ["b" * 100_000]).encode()


def deep_json() -> bytes:
    """100 000 nested arrays (CPython's parser recurses per level)."""
    return b"[" * 100_000 + b"]" * 100_000


def huge_int() -> bytes:
    """One 1 000 000-digit integer literal (int() parsing is quadratic in the digits)."""
    return b"[" + b"7" * 1_000_000 + b"]"


def sparse_out_of_range() -> bytes:
    """A save_npz CSR matrix whose column index points 10^9 past its 4 columns."""
    out = io.BytesIO()
    np.savez(
        out,
        format=np.array("csr"),
        shape=np.array([2, 4]),
        data=np.array([1.0, 2.0]),
        indices=np.array([1, 1_000_000_000], dtype=np.int32),
        indptr=np.array([0, 1, 2], dtype=np.int32),
    )
    return out.getvalue()


#: Python codecs that are not text encodings (binary transforms, rot13, punycode, idna, utf-7).
EXOTIC_CHARSETS = ("utf-7", "punycode", "idna", "rot13", "uu_codec", "zlib_codec", "base64_codec")


def _charset_bomb(charset: str) -> Bomb:
    return Bomb(f"charset {charset}", f"application/json; charset={charset}", lambda: b"[[1, 2, 3, 4]]", 415)


BOMBS: tuple[Bomb, ...] = (
    Bomb("NPZ zip bomb (1 GiB)", "application/x-npz", npz_zip_bomb, 413),
    Bomb("NPZ lying zip directory", "application/x-npz", npz_lying_directory, 400),
    Bomb("NPY huge declared shape", "application/x-npy", npy_huge_shape, 413),
    Bomb("JSON string-array bomb", "application/json", json_string_bomb, 400),
    Bomb("deep JSON (100 000 levels)", "application/json", deep_json, 400),
    Bomb("huge JSON integer", "application/json", huge_int, 400),
    Bomb("sparse out-of-range index", "application/x-npz", sparse_out_of_range, 400),
    *(_charset_bomb(charset) for charset in EXOTIC_CHARSETS),
)
