"""Max pooling along z over stacked volume fragments: MPF in z (all pz offsets) in dense mode, plain in patch mode.

A volume tensor is ``(C, D, F, m, n)``: channel, depth (z), fragment, row, column (see `mpfpipe.network3`). A 3D
pool (pz, p, p) is the 2D MPF kernel (`_pool`) on each depth plane, then this one: for each offset ``a`` in [0, pz)
(only 0 in patch mode) and output plane i, ``y[c, i, f*noff + a] = max_t x[c, a + i*pz + t, f]`` over t < pz,
element by element over the plane's m x n positions. Max is separable, and taking y/x first and z second keeps the
arg-max the *first* maximum of the window in (z, y, x) order: the lowest plane holding the window's maximum, and in
it the first (y, x). That is numpy's argmax over the flattened (pz, p, p) window, the rule of the naive net.
The backward pass gives each thread one (channel, fragment): its writes stay in its own slice, summed in a fixed
order, so any thread count gives the same bits.
"""
import numpy as np
from numba import prange

from ._par import pjit


@pjit(cache=True)
def _zpool_fwd(x, pz, noff, keep, y, idx):
    """y (C, mz, F*noff, L) from x (C, D, F, L); the winning t into idx when ``keep``."""
    C, D, F, L = x.shape
    mz = y.shape[1]
    for cf in prange(C * F):
        c = cf // F
        f = cf % F
        for a in range(noff):
            g = f * noff + a
            for i in range(mz):
                z0 = a + i * pz
                yr = y[c, i, g]
                r0 = x[c, z0, f]
                for q in range(L):
                    yr[q] = r0[q]
                if keep:
                    ir = idx[c, i, g]
                    for q in range(L):
                        ir[q] = 0
                for t in range(1, pz):
                    r = x[c, z0 + t, f]
                    if keep:
                        ir = idx[c, i, g]
                        for q in range(L):
                            better = r[q] > yr[q]  # strict: the first maximum wins, as in `_pool`
                            ir[q] = t if better else ir[q]
                            yr[q] = r[q] if better else yr[q]
                    else:
                        for q in range(L):
                            yr[q] = r[q] if r[q] > yr[q] else yr[q]


@pjit(cache=True)
def _zpool_bwd(dy, idx, pz, noff, dx):
    C, D, F, L = dx.shape
    mz = dy.shape[1]
    for cf in prange(C * F):
        c = cf // F
        f = cf % F
        for a in range(noff):
            g = f * noff + a
            for i in range(mz):
                z0 = a + i * pz
                dr = dy[c, i, g]
                ir = idx[c, i, g]
                for q in range(L):
                    dx[c, z0 + ir[q], f, q] += dr[q]


def zpool_forward(x: np.ndarray, pz: int, dense: bool, need_idx: bool = True):
    """(C, D, F, m, n) -> ((C, mz, F*noff, m, n), arg-max t or None); ``dense``: D = mz*pz + pz - 1, patch mode
    D = mz*pz."""
    C, D, F, m, n = x.shape
    noff = pz if dense else 1
    if (D - noff + 1) % pz:
        raise ValueError(f"z pool {pz}: input depth {D} is not exact for {'MPF' if dense else 'patch'} pooling")
    mz = (D - noff + 1) // pz
    y = np.empty((C, mz, F * noff, m, n), dtype=x.dtype)
    idx = np.empty((C, mz, F * noff, m * n) if need_idx else (1, 1, 1, 1), dtype=np.uint8)
    _zpool_fwd(np.ascontiguousarray(x).reshape(C, D, F, m * n), pz, noff, need_idx,
               y.reshape(C, mz, F * noff, m * n), idx)
    return y, (idx if need_idx else None)


def zpool_backward(dy: np.ndarray, idx: np.ndarray, pz: int, dense: bool, in_shape) -> np.ndarray:
    C, D, F, m, n = in_shape
    dx = np.zeros(in_shape, dtype=dy.dtype)
    mz, G = dy.shape[1], dy.shape[2]
    _zpool_bwd(np.ascontiguousarray(dy).reshape(C, mz, G, m * n), idx, pz, pz if dense else 1,
               dx.reshape(C, D, F, m * n))
    return dx
