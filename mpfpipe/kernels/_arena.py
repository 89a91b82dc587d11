"""Reused memory for the engine's large activations: `empty` hands out a cached buffer once nothing refers to it.

Why. A dense pass allocates every layer's output afresh (n4 on a 512x512 slice: ~0.6 GB in all). Arrays of more
than 32 MB are always fresh mmap's in glibc (its mmap threshold cannot be raised past that), so each one is
page-faulted and zeroed by the kernel on first touch: on the development VM that was ~10 % of an n4 inference's
CPU time (`getrusage`: 0.16 s system time of 1.65 s). Segment and training run the same shapes again and again,
so the same buffers serve every block.

A buffer is handed out again only when its reference count shows that no array (view, slice, reshape: NumPy
points all of them at the owning buffer) refers to it any more, so a live result is never overwritten. Buffers are
matched by exact size; at most `CAP_BYTES` stay cached, the least recently used are dropped first. The values of
an array from `empty` are undefined, like `np.empty`'s: every caller writes all of it.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays come from the allocator's own free lists, without page faults
CAP_BYTES = 2 << 30  # cached bytes at most (idle and in use): an idle worker keeps at most this much

_lock = threading.Lock()
_buffers: OrderedDict[int, list] = OrderedDict()  # size in bytes -> owning uint8 buffers, least recently used first


def _idle_refs() -> int:
    """References to a cached buffer that nobody uses, as the loops below count them (``sys.getrefcount(buf)``
    inside ``for buf in bufs``): its list's, the loop variable's and getrefcount's own argument."""
    for buf in [np.empty(1, np.uint8)]:
        return sys.getrefcount(buf)


_IDLE = _idle_refs()


def empty(shape, dtype) -> np.ndarray:
    """Like ``np.empty(shape, dtype)`` (C order), from a reused buffer when the array is large."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        bufs = _buffers.get(nbytes)
        if bufs is not None:
            _buffers.move_to_end(nbytes)
            for buf in bufs:
                if sys.getrefcount(buf) <= _IDLE:
                    return buf.view(dtype).reshape(shape)
        buf = np.empty(nbytes, np.uint8)
        _buffers.setdefault(nbytes, []).append(buf)
        _trim()
        return buf.view(dtype).reshape(shape)


def _trim() -> None:
    """Drop idle buffers, least recently used sizes first, while the cache holds more than CAP_BYTES."""
    total = sum(size * len(bufs) for size, bufs in _buffers.items())
    for size in list(_buffers):
        if total <= CAP_BYTES:
            return
        bufs = _buffers[size]
        idle = [b for b in bufs if sys.getrefcount(b) <= _IDLE]
        total -= size * len(idle)
        bufs[:] = [b for b in bufs if not any(b is i for i in idle)]  # by identity: arrays do not compare as bools
        del idle
        if not bufs:
            del _buffers[size]


def cached_bytes() -> int:
    with _lock:
        return sum(size * len(bufs) for size, bufs in _buffers.items())


def clear() -> None:
    """Forget every cached buffer (arrays still in use keep theirs alive)."""
    with _lock:
        _buffers.clear()
