"""The engine's buffer reuse (`kernels._arena`): a buffer is handed out again only when nothing refers to it."""
import numpy as np

from mpfpipe.kernels import _arena
from mpfpipe.kernels import conv_forward

SHAPE = (64, 64, 128)  # 2 MB of float32: above MIN_BYTES


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_buffer_is_reused_only_when_nothing_refers_to_it():
    _arena.clear()
    a = _arena.empty(SHAPE, np.float32)
    first = _addr(a)
    assert _addr(_arena.empty(SHAPE, np.float32)) != first      # a is alive
    view = a[3:, ::2]
    del a
    b = _arena.empty(SHAPE, np.float32)
    assert _addr(b) != first                                       # a view of it is alive
    flat = b.reshape(-1)
    del b
    del view
    c = _arena.empty(SHAPE, np.float32)
    assert _addr(c) == first                                       # nothing refers to the first buffer any more
    assert _addr(_arena.empty(SHAPE, np.float32)) not in (first, _addr(flat))
    del c, flat


def test_small_arrays_and_other_sizes_get_their_own_memory():
    _arena.clear()
    small = _arena.empty((10, 10), np.float32)
    assert small.base is None and small.shape == (10, 10)
    a = _arena.empty(SHAPE, np.float32)
    first = _addr(a)
    del a
    other = _arena.empty((SHAPE[0] + 1,) + SHAPE[1:], np.float32)
    assert _addr(other) != first and other.shape == (SHAPE[0] + 1,) + SHAPE[1:] and other.dtype == np.float32


def test_the_cache_is_trimmed_to_its_cap(monkeypatch):
    _arena.clear()
    monkeypatch.setattr(_arena, "CAP_BYTES", 3 * int(np.prod(SHAPE)) * 4)
    for extra in range(6):  # six sizes, each dropped as soon as it is idle and the cap is passed
        _arena.empty((SHAPE[0] + extra,) + SHAPE[1:], np.float32)
    assert _arena.cached_bytes() <= _arena.CAP_BYTES
    live = [_arena.empty((SHAPE[0] + extra,) + SHAPE[1:], np.float32) for extra in range(6)]
    assert _arena.cached_bytes() == sum(a.nbytes for a in live)    # buffers in use are never dropped
    del live


def test_results_kept_by_the_caller_are_never_overwritten():
    """Two forward passes whose outputs come from the arena: the first result is still intact after the second."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 4, 140, 140)).astype(np.float32)
    w = (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
    b = np.zeros(8, np.float32)
    y1 = conv_forward(x, w, b, "tanh")
    keep = y1.copy()
    y2 = conv_forward(x * 2, w, b, "tanh")
    assert y1.nbytes >= _arena.MIN_BYTES and np.array_equal(y1, keep) and not np.array_equal(y1, y2)
    del y1
    y3 = conv_forward(x, w, b, "tanh")
    assert np.array_equal(y3, keep)


def test_trimming_drops_the_idle_buffer_among_live_ones_of_the_same_size(monkeypatch):
    """Two buffers of one size, the second idle: trimming drops it and keeps the live one (buffers are told apart
    by identity; arrays do not compare as booleans)."""
    _arena.clear()
    live = _arena.empty(SHAPE, np.float32)
    idle = _arena.empty(SHAPE, np.float32)
    del idle
    monkeypatch.setattr(_arena, "CAP_BYTES", 2 * int(np.prod(SHAPE)) * 4)
    other = _arena.empty((SHAPE[0] + 1,) + SHAPE[1:], np.float32)  # over the cap: the idle buffer goes
    assert _arena.cached_bytes() == live.nbytes + other.nbytes
    assert _addr(_arena.empty(SHAPE, np.float32)) != _addr(live)
    del live, other
