"""im2col + GEMM convolution with the block loop inside one Numba parallel region.

Each thread takes its own blocks of row units, unrolls them into a private column buffer and multiplies it by the
weights with a single-threaded BLAS call, so the buffer is still in that core's cache when the GEMM reads it, and
there is one thread pool (Numba's): alternating Numba-parallel and BLAS-parallel phases left the two pools
spinning against each other on a 2-core machine (measured 3-5x slower). Weight gradients are accumulated per
thread in float64 and summed in thread order: deterministic for a given thread count. Input gradients are
scattered (col2im) by the thread that owns the whole fragment, so no two threads write the same rows.
"""
import numpy as np
from numba import njit, prange

from ._act import _act_grad_row, _act_row
from ._blas import gemm


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


@njit(parallel=True, cache=True)
def conv_fwd_blocked(x, w2, b, code, fast, k, oh, ow, per, y2, post, wp, bp, z2, threads):
    """y2 (Cout, F*oh*ow) = act(w2 @ im2col(x) + b), blocks of ``per`` row units dealt round-robin to threads.
    The GEMM writes each block straight into its columns of y2 (row stride F*oh*ow), where bias and activation
    are applied while the block is in cache. With ``post``, also z2 (K, F*oh*ow) = wp @ y2 + bp, a following
    linear 1x1 layer (the output layer), computed on the block instead of re-reading all of y2 from memory."""
    F = x.shape[1]
    cout, ckk = w2.shape
    units = F * oh
    N = units * ow
    nblk = (units + per - 1) // per
    T = min(threads, nblk)  # the caller's get_num_threads(): called in here, it kept the kernel from caching
    K = wp.shape[0]
    y2f, z2f = y2.reshape(-1), z2.reshape(-1)  # flat: a block starts at [base]; rows N apart
    for t in prange(T):
        colbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        for blk in range(t, nblk, T):
            u0 = blk * per
            u1 = min(units, u0 + per)
            n = (u1 - u0) * ow
            base = u0 * ow
            col = colbuf[:ckk * n].reshape(ckk, n)
            _im2col_serial(x, k, u0, u1, oh, ow, col)
            gemm(False, False, cout, n, ckk, 1.0, w2, ckk, col, n, 0.0, y2f[base:], N)
            for o in range(cout):
                r = y2[o, base:base + n]
                bo = b[o]
                for i in range(n):
                    r[i] += bo
                _act_row(r, code, fast, n)  # a pass per row: vectorised (a per-element call was not)
            if post:
                gemm(False, False, K, n, cout, 1.0, wp, cout, y2f[base:], N, 0.0, z2f[base:], N)
                for q in range(K):
                    r = z2[q, base:base + n]
                    bq = bp[q]
                    for i in range(n):
                        r[i] += bq


@njit(parallel=True, cache=True)
def conv_bwd_blocked(x, w2, dy2, k, oh, ow, per, need_dx, dwparts, dx, post, y2, wp, code, dbparts, dwpparts,
                     dbpparts):
    """Weight gradient (into dwparts (T, Cout, C*k*k) float64, one slab per thread) and, if need_dx, input
    gradient. Threads own whole fragments (f = t, t+T, ...), so their col2im writes never overlap. The GEMMs read
    each block of dy2 (and y2) in place (row stride F*oh*ow).

    Without ``post``, dy2 is the gradient w.r.t. the pre-activation (the caller applied act'). With ``post``, dy2
    is the gradient w.r.t. z = wp @ y + b of a following linear 1x1 layer (see conv_fwd_blocked): per block, that
    layer's gradients go to dwpparts / dbpparts, and the pre-activation gradient wp^T dz * act'(y) is formed in
    cache (its bias gradient into dbparts), instead of three passes over a (Cout, N) array in memory."""
    F = x.shape[1]
    cout, ckk = w2.shape
    T = dwparts.shape[0]
    units = F * oh
    N = units * ow
    nblk = (units + per - 1) // per
    K = wp.shape[0]
    dyf, y2f = dy2.reshape(-1), y2.reshape(-1)  # flat: a block starts at [base]; rows N apart
    for t in prange(T):
        colbuf = np.empty(ckk * per * ow, dtype=x.dtype)
        gbuf = np.empty(cout * per * ow if post else 1, dtype=x.dtype)
        dcolbuf = np.empty(ckk * per * ow if need_dx else 1, dtype=x.dtype)
        part = np.empty((cout, ckk), dtype=x.dtype)
        partp = np.empty((K, cout), dtype=x.dtype)
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
                base = u0 * ow
                col = colbuf[:ckk * n].reshape(ckk, n)
                _im2col_serial(x, k, u0, u1, oh, ow, col)
                if post:
                    g = gbuf[:cout * n].reshape(cout, n)
                    for q in range(K):
                        r = dy2[q, base:base + n]
                        sb = 0.0
                        for i in range(n):
                            sb += r[i]
                        dbpparts[t, q] += sb
                    gemm(False, True, K, cout, n, 1.0, dyf[base:], N, y2f[base:], N, 0.0, partp, cout)
                    for q in range(K):
                        for o in range(cout):
                            dwpparts[t, q, o] += partp[q, o]
                    gemm(True, False, cout, n, K, 1.0, wp, cout, dyf[base:], N, 0.0, g, n)
                    for o in range(cout):
                        r = g[o]
                        _act_grad_row(r, y2[o, base:base + n], code, n)
                        sb = 0.0
                        for i in range(n):
                            sb += r[i]
                        dbparts[t, o] += sb
                    gsrc, gld = gbuf[:], n
                else:
                    gsrc, gld = dyf[base:], N
                gemm(False, True, cout, ckk, n, 1.0, gsrc, gld, col, n, 0.0, part, ckk)
                for o in range(cout):
                    for j in range(ckk):
                        dwparts[t, o, j] += part[o, j]
                if need_dx:
                    dcol = dcolbuf[:ckk * n].reshape(ckk, n)
                    gemm(True, False, ckk, n, cout, 1.0, w2, ckk, gsrc, gld, 0.0, dcol, n)
                    _col2im_serial(dcol, k, u0, u1, oh, ow, dx)
