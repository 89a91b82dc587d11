"""Chunk checksums: a missing or damaged Zarr chunk must be an error that names the array, the index and the file.

Zarr returns the fill value for a missing chunk, so a deleted image chunk would read as an all-zero image and a
deleted label chunk as "ignore" everywhere. Every chunk mpfpipe writes (one per dataset image and array, one
per segmentation block and array) gets a CRC-32 of its *decoded* C-order bytes, recorded when it is written and
compared when it is read. The decoded bytes, not the stored file, because the check must also catch a chunk
that is absent (it decodes to the fill value) and costs one pass over memory already decoded (zlib's crc32:
5-6 GB/s on the development VM, 0.05 ms for a 512x512 uint8 image, against milliseconds for the read itself).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

ALGORITHM = "crc32 of each chunk's decoded C-order bytes"


def crc(array) -> int:
    a = np.ascontiguousarray(array)
    return zlib.crc32(memoryview(a).cast("B")) if a.size else 0


def chunk_file(store, array: str, coords) -> Path:
    """The file of chunk ``coords`` of ``array`` in a local Zarr v3 store (default chunk key encoding)."""
    return Path(store, *array.split("/"), "c", *(str(int(c)) for c in coords))


class DamagedChunkError(DataError):
    """A chunk is missing, truncated or changed since mpfpipe wrote it."""


def read_checked(arr, selection, *, store, array: str, coords, expected: int | None, what: str) -> np.ndarray:
    """``arr[selection]`` as numpy, with a decoding failure or a checksum mismatch (when ``expected`` is given)
    raised as one DamagedChunkError naming ``what``, the array and the chunk file."""
    try:
        data = np.asarray(arr[selection])
    except Exception as exc:  # noqa: BLE001 - zarr / blosc / OS errors: all mean the chunk cannot be read
        raise DamagedChunkError(f"{array} chunk of {what} ({chunk_file(store, array, coords)}) cannot be "
                                f"read ({type(exc).__name__}: {exc})") from None
    if expected is not None and crc(data) != int(expected):
        state = "missing" if not chunk_file(store, array, coords).exists() else "damaged"
        raise DamagedChunkError(f"{array} chunk of {what} ({chunk_file(store, array, coords)}) is {state} "
                                "(checksum mismatch)")
    return data


def damaged_chunks(arr, sums, done, *, store, array: str, what: str) -> list[tuple[tuple, str]]:
    """(index, problem) of every chunk of ``arr`` whose ``done`` marker is set and that does not read back with
    its checksum in ``sums``. ``done`` and ``sums`` are indexed by the chunk grid, (Z, Y, X); a 2-D array's grid
    is (1, Y, X). One chunk per block, as the segmentation's and the instance labels' arrays are written."""
    bad = []
    for index in map(tuple, np.argwhere(np.asarray(done))):
        coords = index[1:] if arr.ndim == 2 else index
        sel = tuple(slice(c * k, min((c + 1) * k, n)) for c, k, n in zip(coords, arr.chunks, arr.shape))
        try:
            read_checked(arr, sel, store=store, array=array, coords=coords, expected=sums[index],
                         what=f"{what} {index}")
        except DamagedChunkError as exc:
            bad.append((index, str(exc)))
    return bad
