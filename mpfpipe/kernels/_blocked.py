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

from ._act import _act_grad_rows, _act_rows
from ._head import _accumulate_dw, _dense


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
def conv_fwd_blocked(x, w2, b, code, fast, k, oh, ow, per, y2, post, wp, bp, z2):
    """y2 (Cout, F*oh*ow) = act(w2 @ im2col(x) + b), blocks of ``per`` row units dealt round-robin to threads.
    With ``post``, also z2 (K, F*oh*ow) = wp @ y2 + bp, a following linear 1x1 layer (the output layer), computed
    on the block while it is in cache instead of re-reading all of y2 from memory."""
    F = x.shape[1]
    cout, ckk = w2.shape
    units = F * oh
    nblk = (units + per - 1) // per
    T = min(get_num_threads(), nblk)
    for t in prange(T):
        colbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        outbuf = np.empty(cout * per * ow, dtype=x.dtype)
        K = wp.shape[0]
        zbuf = np.empty(K * per * ow if post else 1, dtype=x.dtype)
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
                r = out[o]
                for i in range(n):
                    r[i] += bo
            _act_rows(out, code, fast, cout, n)  # a pass per row: vectorised (a per-element call was not)
            for o in range(cout):
                r = out[o]
                d = y2[o, base:base + n]
                for i in range(n):
                    d[i] = r[i]
            if post:
                zb = zbuf[:K * n].reshape(K, n)
                _dense(wp, bp, True, 0, fast, out, zb, n)
                for q in range(K):
                    r = zb[q]
                    d = z2[q, base:base + n]
                    for i in range(n):
                        d[i] = r[i]


@njit(parallel=True)
def conv_bwd_blocked(x, w2, dy2, k, oh, ow, per, need_dx, dwparts, dx, post, y2, wp, code, dbparts, dwpparts,
                     dbpparts):
    """Weight gradient (into dwparts (T, Cout, C*k*k) float64, one slab per thread) and, if need_dx, input
    gradient. Threads own whole fragments (f = t, t+T, ...), so their col2im writes never overlap.

    Without ``post``, dy2 is the gradient w.r.t. the pre-activation (the caller applied act'). With ``post``, dy2
    is the gradient w.r.t. z = wp @ y + b of a following linear 1x1 layer (see conv_fwd_blocked): per block, that
    layer's gradients go to dwpparts / dbpparts, and the pre-activation gradient wp^T dz * act'(y) is formed in
    cache (its bias gradient into dbparts), instead of three passes over a (Cout, N) array in memory."""
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
        K = wp.shape[0]
        zbuf = np.empty(K * per * ow if post else 1, dtype=x.dtype)
        ybuf = np.empty(cout * per * ow if post else 1, dtype=x.dtype)
        wpt = np.ascontiguousarray(wp.T)
        zero_b = np.zeros(1, dtype=x.dtype)
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
                if post:
                    zb = zbuf[:K * n].reshape(K, n)
                    yb = ybuf[:cout * n].reshape(cout, n)
                    for q in range(K):
                        for i in range(n):
                            zb[q, i] = dy2[q, base + i]
                    for o in range(cout):
                        for i in range(n):
                            yb[o, i] = y2[o, base + i]
                    _accumulate_dw(zb, yb, dwpparts[t], dbpparts[t], n)
                    _dense(wpt, zero_b, False, 0, False, zb, g, n)
                    _act_grad_rows(g, yb, code, cout, n)
                    for o in range(cout):
                        sb = 0.0
                        for i in range(n):
                            sb += g[o, i]
                        dbparts[t, o] += sb
                else:
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
