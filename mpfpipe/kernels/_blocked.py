"""im2col + GEMM convolution with the block loop inside one Numba parallel region.

Each thread takes its own blocks of row units, unrolls them into a private column buffer and multiplies it by the
weights with a single-threaded BLAS call, so the buffer is still in that core's cache when the GEMM reads it, and
there is one thread pool (Numba's): alternating Numba-parallel and BLAS-parallel phases left the two pools
spinning against each other on a 2-core machine (measured 3-5x slower). Weight gradients are accumulated per
thread in float64 and summed in thread order: deterministic for a given thread count. Input gradients are
scattered (col2im) by the thread that owns the whole fragment, so no two threads write the same rows.
"""
import numpy as np
from numba import get_num_threads, njit, prange

from ._act import _A, _B, _INV_C, _P0, _P1, _P2, _P3, _P4, _P5, _P6, _Q0, _Q1, _Q2, _Q3, _TANH_C


@njit(cache=True, inline="always")
def _act1(v, code, fast):
    if code == 1 or code == 2:
        s_in = 1.0 if code == 1 else _B
        s_out = 1.0 if code == 1 else _A
        if fast:
            x = min(max(v * s_in, -_TANH_C), _TANH_C)
            u = x * _INV_C
            u = u * u
            p = ((((((_P6 * u + _P5) * u + _P4) * u + _P3) * u + _P2) * u + _P1) * u + _P0)
            q = (((_Q3 * u + _Q2) * u + _Q1) * u + _Q0)
            return s_out * (x * p / q)
        return s_out * np.tanh(s_in * v)
    if code == 3:
        return v if v > 0 else 0.0 * v
    return v


@njit(cache=True)
def _im2col_serial(x, k, u0, u1, oh, ow, col):
    C = x.shape[0]
    kk = k * k
    for r in range(C * kk):
        c = r // kk
        ky = (r % kk) // k
        kx = r % k
        pos = 0
        for u in range(u0, u1):
            f = u // oh
            y = u - f * oh
            for xx in range(ow):
                col[r, pos + xx] = x[c, f, y + ky, xx + kx]
            pos += ow


@njit(cache=True)
def _col2im_serial(dcol, k, u0, u1, oh, ow, dx):
    C = dx.shape[0]
    kk = k * k
    for c in range(C):
        for ky in range(k):
            for kx in range(k):
                r = c * kk + ky * k + kx
                pos = 0
                for u in range(u0, u1):
                    f = u // oh
                    y = u - f * oh
                    for xx in range(ow):
                        dx[c, f, y + ky, xx + kx] += dcol[r, pos + xx]
                    pos += ow


# not cached: np.dot binds BLAS through ctypes pointers, which Numba cannot cache (compiled once per process)
@njit(parallel=True)
def conv_fwd_blocked(x, w2, b, code, fast, k, oh, ow, per, y2):
    """y2 (Cout, F*oh*ow) = act(w2 @ im2col(x) + b), blocks of ``per`` row units dealt round-robin to threads."""
    F = x.shape[1]
    cout, ckk = w2.shape
    units = F * oh
    nblk = (units + per - 1) // per
    T = min(get_num_threads(), nblk)
    for t in prange(T):
        colbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        outbuf = np.empty(cout * per * ow, dtype=x.dtype)
        for blk in range(t, nblk, T):
            u0 = blk * per
            u1 = min(units, u0 + per)
            n = (u1 - u0) * ow
            col = colbuf[:ckk * n].reshape(ckk, n)
            out = outbuf[:cout * n].reshape(cout, n)
            _im2col_serial(x, k, u0, u1, oh, ow, col)
            np.dot(w2, col, out)
            base = u0 * ow
            for o in range(cout):
                bo = b[o]
                for i in range(n):
                    y2[o, base + i] = _act1(out[o, i] + bo, code, fast)


@njit(parallel=True)
def conv_bwd_blocked(x, w2, dy2, k, oh, ow, per, need_dx, dwparts, dx):
    """Weight gradient (into dwparts (T, Cout, C*k*k) float64, one slab per thread) and, if need_dx, input
    gradient. Threads own whole fragments (f = t, t+T, ...), so their col2im writes never overlap."""
    F = x.shape[1]
    cout, ckk = w2.shape
    T = dwparts.shape[0]
    w2t = np.ascontiguousarray(w2.T)
    units = F * oh
    nblk = (units + per - 1) // per
    for t in prange(T):
        colbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        gbuf = np.empty(cout * per * ow, dtype=x.dtype)
        dcolbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        part = np.empty((cout, ckk), dtype=x.dtype)
        # with an input gradient, thread t owns fragments t, t+T, ... (whole fragments: disjoint col2im writes);
        # without one (first layer), blocks are dealt round-robin like the forward pass
        njobs = F if need_dx else nblk
        for job in range(t, njobs, T):
            if need_dx:
                lo, hi = job * oh, (job + 1) * oh
            else:
                lo, hi = job * per, min(units, (job + 1) * per)
            for u0 in range(lo, hi, per):
                u1 = min(hi, u0 + per)
                n = (u1 - u0) * ow
                col = colbuf[:ckk * n].reshape(ckk, n)
                g = gbuf[:cout * n].reshape(cout, n)
                _im2col_serial(x, k, u0, u1, oh, ow, col)
                base = u0 * ow
                for o in range(cout):
                    for i in range(n):
                        g[o, i] = dy2[o, base + i]
                np.dot(g, col.T, part)
                for o in range(cout):
                    for j in range(ckk):
                        dwparts[t, o, j] += part[o, j]
                if need_dx:
                    dcol = dcolbuf[:ckk * n].reshape(ckk, n)
                    np.dot(w2t, g, dcol)
                    _col2im_serial(dcol, k, u0, u1, oh, ow, dx)
