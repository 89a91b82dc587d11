"""The `_simd` vector operations against numpy, lane by lane: selects and shuffles are exact, so exact equality."""
import numpy as np
import pytest
from numba import njit

from mpfpipe.kernels._simd import lanes, veven, vload, vmaxgt, vodd, vstore


@njit
def _apply(a, b, out):
    L = lanes(a)
    va, vb = vload(a, 0), vload(b, 0)
    vstore(out, 0, vmaxgt(va, vb))
    vstore(out, L, veven(va, vb))
    vstore(out, 2 * L, vodd(va, vb))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxgt_even_odd_lane_by_lane(dtype):
    L = 64 // np.dtype(dtype).itemsize
    a = np.arange(L, dtype=dtype) - 3.0
    b = (L - np.arange(L, dtype=dtype)) - 5.0
    a[1], b[2], a[4], b[4], a[5], b[5] = np.nan, np.nan, np.nan, np.nan, 1.0, 1.0  # NaN in a, in b, in both; a tie
    out = np.zeros(3 * L, dtype)
    _apply(a, b, out)
    want = np.array([x if x > y else y for x, y in zip(a, b)], dtype)  # the scalar rule: NaN in a keeps b
    np.testing.assert_array_equal(out[:L], want)
    assert np.isnan(out[1]) == np.isnan(b[1]) and np.isnan(out[2]) and np.isnan(out[4])
    ab = np.concatenate([a, b])
    np.testing.assert_array_equal(out[L:2 * L], ab[0::2])
    np.testing.assert_array_equal(out[2 * L:], ab[1::2])
