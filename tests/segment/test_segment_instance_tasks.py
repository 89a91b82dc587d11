"""mpfpipe/segment/instance_tasks.py: `_read_class`, the chunk-cached read of one class of the probabilities."""
from __future__ import annotations

import numpy as np
import zarr

from mpfpipe.segment import instance_tasks as tasks


def test_read_class_equals_a_direct_read_and_is_keyed_by_the_run(tmp_path):
    """Regions across chunk faces and the array's edges, 2-D (class, y, x) and volume (class, z, y, x) arrays with
    partial edge chunks: the same values as Zarr's own read of that class; a second run does not see the first
    run's chunks (its array changed in between), and the cache stays under its byte bound."""
    rng = np.random.default_rng(0)
    for shape, chunks in (((2, 50, 37), (2, 16, 16)), ((3, 5, 41, 29), (3, 2, 16, 8))):
        data = rng.random(shape).astype(np.float32)
        arr = zarr.open_array(str(tmp_path / f"p{len(shape)}"), mode="w", shape=shape, chunks=chunks,
                              dtype="float32")
        arr[...] = data
        for k in range(40):
            region = []
            for n in shape[1:]:
                a = int(rng.integers(0, n))
                region.append(slice(a, int(rng.integers(a + 1, n + 1))))
            pos = int(rng.integers(0, shape[0]))
            got = tasks._read_class(arr, pos, tuple(region), "run1")
            assert got.dtype == np.float32
            assert np.array_equal(got, data[(pos, *region)])
        arr[...] = data + 1  # a new segmentation, a new run: nothing of run1 is served
        full = tuple(slice(0, n) for n in shape[1:])
        assert np.array_equal(tasks._read_class(arr, 1, full, "run2"), data[1] + 1)
        assert all(key[0] == "run2" for key in tasks._CHUNKS)
    old = tasks._CHUNK_BYTES
    try:
        tasks._CHUNK_BYTES = 3 * 16 * 8 * 4  # three chunks of the volume above
        assert np.array_equal(tasks._read_class(arr, 0, full, "run3"), data[0] + 1)
        assert sum(a.nbytes for a in tasks._CHUNKS.values()) <= tasks._CHUNK_BYTES
    finally:
        tasks._CHUNK_BYTES = old
        tasks._CHUNKS.clear()
