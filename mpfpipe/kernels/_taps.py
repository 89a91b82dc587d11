"""Convolution as one GEMM per kernel tap, reading the input in place: no im2col.

For a tap (ky, kx), output row y of a fragment takes input row y + ky from column kx on. Laid out flat with the
*input's* row stride w, a block of R output rows is then one contiguous stretch of every input channel, starting
at (y0 + ky) * w + kx: the GEMM ``W[:, :, ky, kx] (Cout, C) @ x[:, f].flat[start : start + n]`` (C rows, channel
stride F*h*w as the leading dimension) adds the tap's share to a "wide" output block (Cout, n) whose rows have
stride w; its last k-1 columns per row mix the next row and are dropped (n = R*w - (k-1) stops the last row's
before the fragment ends). So the BLAS reads the activations where they are, and k*k GEMMs with K = C replace one
with K = C*k*k on an im2col copy that cost as much as the GEMM itself (n4's 48-map layers: 74 GFLOP/s per core
here against 52 with im2col, the GEMM alone 75-90).

The backward pass runs the same shifts: the weight gradient of a tap is ``g_wide @ x_shift^T`` and the input
gradient is added in place, ``x_shift-shaped dx += W_tap^T @ g_wide``, where g_wide is the block's output gradient
laid out wide with zeros in the dropped columns (so they add nothing). Row blocks of one fragment overlap in dx,
so with an input gradient a thread owns whole fragments. Weight gradients: float32 per block, float64 across
blocks in a fixed order, one slab per thread (deterministic for a given thread count), as in the other kernels.
The GEMMs are `_blas.gemm`: OpenBLAS, whose kernel depends on the CPU, or in reproducible mode the fixed-order
`_rgemm`.
"""
import numpy as np
from numba import njit, prange

from ._act import _act_grad_row, _bias_act_row
from ._blas import gemm
from ._head import row_sum
from ._par import pjit

# Columns of a wide block (R rows of the input width): the block's input slab and output each stay about
# C * TAP_COLS floats (n4: 48 x 2400 floats = 460 KiB, in L2); 2 400 and 4 800 measured the same on n4's layers.
TAP_COLS = 2048


def rows_per_block(w: int) -> int:
    return max(1, TAP_COLS // w)


@njit(cache=True, nogil=True)
def _widen(src, f, y0, R, ow, w, n, dst):
    """dst[:rows * n] = rows y0:y0+R of fragment f of src (rows, F, oh, ow) laid out wide (row stride w, block
    stride n), zeros in the dropped columns."""
    for o in range(src.shape[0]):
        for r in range(R):
            s = src[o, f, y0 + r]
            d = dst[o * n + r * w:o * n + r * w + ow]
            for i in range(ow):
                d[i] = s[i]
            if r + 1 < R:  # this row's dropped columns (where they fall depends on the block's n)
                for i in range(ow, w):
                    dst[o * n + r * w + i] = 0.0


@njit(cache=True, nogil=True)
def _narrow(src, bias, f, y0, R, ow, w, n, dst):
    """Rows y0:y0+R of fragment f of dst (rows, F, oh, ow) = the wide block src + bias[row]."""
    for o in range(dst.shape[0]):
        bo = bias[o]
        for r in range(R):
            d = dst[o, f, y0 + r]
            s = src[o * n + r * w:o * n + r * w + ow]
            for i in range(ow):
                d[i] = s[i] + bo


@pjit(cache=True)
def conv_fwd_taps(x, wt, b, code, fast, rows, y, threads, post, wp, bp, z):
    """y (Cout, F, oh, ow) = act(conv(x, W) + b) for x (C, F, h, w); wt (k*k, Cout, C) holds W tap by tap.
    Blocks of ``rows`` output rows of one fragment are dealt round-robin to ``threads`` threads. With ``post``,
    also z (K, F, oh, ow) = wp (K, Cout) @ y + bp, a following linear 1x1 layer (n3 / n4's output layer after
    fc1), computed on each block while it is in cache."""
    C, F, h, w = x.shape
    kk, O, _ = wt.shape
    oh, ow = y.shape[2], y.shape[3]
    k = w - ow + 1
    K = wp.shape[0]
    xf = x.reshape(-1)
    cs = F * h * w
    per_f = (oh + rows - 1) // rows
    nblk = F * per_f
    T = min(threads, nblk)
    zero = np.zeros(O, x.dtype)
    for t in prange(T):
        buf = np.empty(O * rows * w, x.dtype)
        zbuf = np.empty(K * rows * w if post else 1, x.dtype)
        for blk in range(t, nblk, T):
            f = blk // per_f
            y0 = (blk % per_f) * rows
            R = min(rows, oh - y0)
            n = R * w - (k - 1)
            for tap in range(kk):
                off = f * h * w + (y0 + tap // k) * w + tap % k
                gemm(False, False, O, n, C, 1.0, wt[tap], C, xf[off:], cs, 1.0 if tap > 0 else 0.0, buf, n)
            for o in range(O):  # bias and activation on the whole wide block (the dropped columns are few)
                _bias_act_row(buf[o * n:(o + 1) * n], b[o], code, fast, n)
            _narrow(buf, zero, f, y0, R, ow, w, n, y)
            if post:
                gemm(False, False, K, n, O, 1.0, wp, O, buf, n, 0.0, zbuf, n)
                _narrow(zbuf, bp, f, y0, R, ow, w, n, z)


@pjit(cache=True)
def conv_bwd_taps(x, wt, g, rows, need_dx, dwparts, dx, post, y, wp, code, dbparts, dwpparts, dbpparts):
    """Weight gradient into dwparts (T, k*k, Cout, C) float64 (one slab per thread, tap-major like wt) and, if
    need_dx, the input gradient added into dx (C, F, h, w) (zeroed by the caller). With need_dx thread t owns
    fragments t, t+T, ...; without, blocks go round-robin.

    Without ``post``, g (Cout, F, oh, ow) is the gradient w.r.t. the pre-activation (the caller applied act').
    With ``post``, g (K, F, oh, ow) is the gradient w.r.t. z = wp @ y + bp of a following linear 1x1 layer (see
    conv_fwd_taps): per block, that layer's gradients go to dwpparts (T, K, Cout) / dbpparts (T, K) and the
    pre-activation gradient wp^T dz * act'(y) is formed in cache (its bias gradient into dbparts (T, Cout))."""
    C, F, h, w = x.shape
    kk, O, _ = wt.shape
    oh, ow = g.shape[2], g.shape[3]
    k = w - ow + 1
    K = wp.shape[0]
    xf = x.reshape(-1)
    dxf = dx.reshape(-1)
    cs = F * h * w
    per_f = (oh + rows - 1) // rows
    nblk = F * per_f
    T = dwparts.shape[0]
    for t in prange(T):
        gw = np.empty(O * rows * w, x.dtype)
        zw = np.empty(K * rows * w if post else 1, x.dtype)
        yw = np.empty(O * rows * w if post else 1, x.dtype)
        part = np.empty((O, C), x.dtype)
        partp = np.empty((K, O), x.dtype)
        njobs = F if need_dx else nblk
        for job in range(t, njobs, T):
            b0, b1 = (job * per_f, (job + 1) * per_f) if need_dx else (job, job + 1)
            for blk in range(b0, b1):
                f = blk // per_f
                y0 = (blk % per_f) * rows
                R = min(rows, oh - y0)
                n = R * w - (k - 1)
                if post:
                    _widen(g, f, y0, R, ow, w, n, zw)
                    _widen(y, f, y0, R, ow, w, n, yw)
                    for q in range(K):
                        dbpparts[t, q] += row_sum(zw[q * n:(q + 1) * n], n)
                    gemm(False, True, K, O, n, 1.0, zw, n, yw, n, 0.0, partp, O)
                    for q in range(K):
                        for o in range(O):
                            dwpparts[t, q, o] += partp[q, o]
                    gemm(True, False, O, n, K, 1.0, wp, O, zw, n, 0.0, gw, n)
                    for o in range(O):
                        r = gw[o * n:(o + 1) * n]
                        _act_grad_row(r, yw[o * n:(o + 1) * n], code, n)
                        dbparts[t, o] += row_sum(r, n)
                else:
                    _widen(g, f, y0, R, ow, w, n, gw)
                for tap in range(kk):
                    off = f * h * w + (y0 + tap // k) * w + tap % k
                    gemm(False, True, O, C, n, 1.0, gw, n, xf[off:], cs, 0.0, part, C)
                    acc = dwparts[t, tap]
                    for o in range(O):
                        for c in range(C):
                            acc[o, c] += part[o, c]
                    if need_dx:
                        gemm(True, False, C, n, O, 1.0, wt[tap], C, gw, n, 1.0, dxf[off:], cs)
