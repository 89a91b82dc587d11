"""Direct convolution for layers with few channels (the steel net, the first layer of every net).

With C_in * C_out small, im2col + GEMM is a poor fit: the column buffer costs as much as the multiply and BLAS runs
at a fraction of its speed on 8-row matrices. Here every output row is accumulated in place (it stays in L1) by
axpy loops over contiguous input rows, which LLVM vectorises. Weight gradients are dot products of rows; they are
allowed to reassociate (``fastmath`` reassoc/contract only, so NaN/inf semantics stay) to vectorise, and are still
deterministic: the same code sums in the same order on every run.
"""
import numpy as np
from numba import njit, prange

_FM = {"reassoc", "contract"}


@njit(parallel=True, cache=True)
def conv_direct_forward(x, w, y):
    """y[o, f] = sum_c,ky,kx w[o, c, ky, kx] * x[c, f, ky:, kx:] (no bias, no activation)."""
    O, C, k, _ = w.shape
    F = x.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    for job in prange(O * F):
        o = job // F
        f = job % F
        for yy in range(oh):
            acc = y[o, f, yy]
            acc[:] = 0.0
            for c in range(C):
                for ky in range(k):
                    src = x[c, f, yy + ky]
                    for kx in range(k):
                        wv = w[o, c, ky, kx]
                        for xx in range(ow):
                            acc[xx] += wv * src[xx + kx]


@njit(parallel=True, cache=True, fastmath=_FM)
def conv_direct_dweight(x, dy, dw):
    """dw[o, c, ky, kx] = sum_f,y,x dy[o, f, y, x] * x[c, f, y+ky, x+kx]; dw is float64."""
    O, C, k, _ = dw.shape
    F = x.shape[1]
    oh, ow = dy.shape[2], dy.shape[3]
    for job in prange(O * C):
        o = job // C
        c = job % C
        acc = np.zeros(k * k, dtype=np.float64)
        for f in range(F):
            for yy in range(oh):
                g = dy[o, f, yy]
                for ky in range(k):
                    src = x[c, f, yy + ky]
                    for kx in range(k):
                        r = g[0] * src[kx]
                        for xx in range(1, ow):
                            r += g[xx] * src[xx + kx]
                        acc[ky * k + kx] += r
        for t in range(k * k):
            dw[o, c, t // k, t % k] = acc[t]


@njit(parallel=True, cache=True)
def conv_direct_dinput(dy, w, dx):
    """dx[c, f, y+ky, x+kx] += w[o, c, ky, kx] * dy[o, f, y, x]; each (c, f) slice is one thread's."""
    O, C, k, _ = w.shape
    F = dx.shape[1]
    oh, ow = dy.shape[2], dy.shape[3]
    for job in prange(C * F):
        c = job // F
        f = job % F
        for yy in range(oh):
            for o in range(O):
                g = dy[o, f, yy]
                for ky in range(k):
                    dst = dx[c, f, yy + ky]
                    for kx in range(k):
                        wv = w[o, c, ky, kx]
                        for xx in range(ow):
                            dst[xx + kx] += wv * g[xx]
