"""Direct convolution for layers with few channels (the steel net, the first layer of every net).

With C_in * C_out small, im2col + GEMM is a poor fit: the column buffer costs as much as the multiply and BLAS runs
at a fraction of its speed on 8-row matrices. Here outputs are accumulated in place by axpy loops, which LLVM
vectorises.

The loops run over *flattened rows*: a fragment (h, W) is one contiguous signal, and output position p = y*W + x
(x < ow valid, W - ow "wrap-around" columns computed and dropped) reads input p + ky*W + kx. A chunk of R output
rows is then one loop of about R*W iterations instead of R loops of ow: MPF fragments are small (the steel net's
last conv sees 16 fragments of 19 columns for a 137x60 image, ow = 15 - shorter than one AVX-512 vector), and
the flattened loop runs at vector speed whatever the fragment width, for (k-1)/W extra work. Chunks keep the
accumulator in L1. In the backward passes the output gradient is laid out the same way with zeros in the dropped
columns, so they contribute nothing.

Weight gradients are dot products; they are allowed to reassociate (``fastmath`` reassoc/contract only, so
NaN/inf semantics stay) to vectorise, and are still deterministic: the same code sums in the same order on every
run. Chunk sums are in the input dtype, accumulated in float64.
"""
import numpy as np
from numba import njit, prange

from ._par import pjit

_FM = {"reassoc", "contract"}
CHUNK = 2048  # flattened output positions per chunk: an 8 KiB float32 accumulator


@njit(cache=True, inline="always")
def _rows_per_chunk(W):
    return max(1, CHUNK // W)


@njit(cache=True, inline="always")
def _load_rows(dy_of, y0, r, ow, W, buf):
    """buf[yy*W + x] = dy_of[y0+yy, x] for x < ow, 0 in the dropped columns; returns the flattened length."""
    for yy in range(r):
        row = dy_of[y0 + yy]
        b = yy * W
        for xx in range(ow):
            buf[b + xx] = row[xx]
        if yy < r - 1:
            for xx in range(ow, W):
                buf[b + xx] = 0.0
    return (r - 1) * W + ow


@pjit(cache=True)
def conv_direct_forward(x, w, y):
    """y[o, f] = sum_c,ky,kx w[o, c, ky, kx] * x[c, f, ky:, kx:] (no bias, no activation)."""
    O, C, k, _ = w.shape
    F, h, W = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    R = _rows_per_chunk(W)
    for job in prange(O * F):
        o = job // F
        f = job % F
        acc = np.empty(R * W, dtype=y.dtype)
        for y0 in range(0, oh, R):
            r = min(R, oh - y0)
            L = (r - 1) * W + ow
            acc[:L] = 0.0
            for c in range(C):
                src = x[c, f].reshape(h * W)
                for ky in range(k):
                    b = (y0 + ky) * W
                    kx = 0
                    while kx + 4 <= k:  # four taps per pass: one accumulator load/store feeds four FMAs
                        w0, w1, w2, w3 = w[o, c, ky, kx], w[o, c, ky, kx + 1], w[o, c, ky, kx + 2], w[o, c, ky, kx + 3]
                        s0 = src[b + kx:b + kx + L]  # views indexed from 0: no negative-index fix-up in the loop
                        s1 = src[b + kx + 1:b + kx + 1 + L]
                        s2 = src[b + kx + 2:b + kx + 2 + L]
                        s3 = src[b + kx + 3:b + kx + 3 + L]
                        for p in range(L):
                            acc[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]
                        kx += 4
                    while kx < k:
                        wv = w[o, c, ky, kx]
                        s0 = src[b + kx:b + kx + L]
                        for p in range(L):
                            acc[p] += wv * s0[p]
                        kx += 1
            for yy in range(r):
                dst = y[o, f, y0 + yy]
                b = yy * W
                for xx in range(ow):
                    dst[xx] = acc[b + xx]


@pjit(cache=True, fastmath=_FM)
def conv_direct_dweight(x, dy, dw):
    """dw[o, c, ky, kx] = sum_f,y,x dy[o, f, y, x] * x[c, f, y+ky, x+kx]; dw is float64."""
    O, C, k, _ = dw.shape
    F, h, W = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    R = _rows_per_chunk(W)
    for job in prange(O * C):
        o = job // C
        c = job % C
        acc = np.zeros(k * k, dtype=np.float64)
        g = np.empty(R * W, dtype=dy.dtype)
        for f in range(F):
            src = x[c, f].reshape(h * W)
            for y0 in range(0, oh, R):
                r = min(R, oh - y0)
                L = _load_rows(dy[o, f], y0, r, ow, W, g)
                for ky in range(k):
                    b = (y0 + ky) * W
                    kx = 0
                    while kx + 4 <= k:  # four taps per pass: each g load feeds four FMAs
                        s0 = src[b + kx:b + kx + L]
                        s1 = src[b + kx + 1:b + kx + 1 + L]
                        s2 = src[b + kx + 2:b + kx + 2 + L]
                        s3 = src[b + kx + 3:b + kx + 3 + L]
                        a0 = g[0] * s0[0]
                        a1 = g[0] * s1[0]
                        a2 = g[0] * s2[0]
                        a3 = g[0] * s3[0]
                        for p in range(1, L):
                            gp = g[p]
                            a0 += gp * s0[p]
                            a1 += gp * s1[p]
                            a2 += gp * s2[p]
                            a3 += gp * s3[p]
                        t = ky * k + kx
                        acc[t] += a0
                        acc[t + 1] += a1
                        acc[t + 2] += a2
                        acc[t + 3] += a3
                        kx += 4
                    while kx < k:
                        s0 = src[b + kx:b + kx + L]
                        a0 = g[0] * s0[0]
                        for p in range(1, L):
                            a0 += g[p] * s0[p]
                        acc[ky * k + kx] += a0
                        kx += 1
        for t in range(k * k):
            dw[o, c, t // k, t % k] = acc[t]


@pjit(cache=True)
def conv_direct_dinput(dy, w, dx):
    """dx[c, f, y+ky, x+kx] += w[o, c, ky, kx] * dy[o, f, y, x], computed as a gather, like the forward pass:
    dx_flat[q] = sum_o,ky,kx w[o, c, ky, kx] * g_o[q - ky*W - kx] over each map's gradient g_o laid out with row
    stride W, zeros in the dropped columns (so a tap reaching across a row edge reads zero) and zero margins of
    (k-1)*W + k-1 before and after. Each dx element is then summed in registers and written once, instead of k*k
    read-modify-writes. One (c, f) slice per job."""
    O, C, k, _ = w.shape
    F, h, W = dx.shape[1], dx.shape[2], dx.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    R = _rows_per_chunk(W)
    pad = (k - 1) * W + (k - 1)
    Lp = pad + oh * W + pad
    for job in prange(C * F):
        c = job // F
        f = job % F
        gp = np.zeros((O, Lp), dtype=dy.dtype)
        for o in range(O):
            _load_rows(dy[o, f], 0, oh, ow, W, gp[o, pad:pad + oh * W])
        dst = dx[c, f].reshape(h * W)
        acc = np.empty(R * W, dtype=dy.dtype)
        for q0 in range(0, h * W, R * W):
            L = min(R * W, h * W - q0)
            acc[:L] = 0.0
            for o in range(O):
                g = gp[o]
                for ky in range(k):
                    b = q0 + pad - ky * W
                    kx = 0
                    while kx + 4 <= k:
                        w0, w1, w2, w3 = w[o, c, ky, kx], w[o, c, ky, kx + 1], w[o, c, ky, kx + 2], w[o, c, ky, kx + 3]
                        s0 = g[b - kx:b - kx + L]
                        s1 = g[b - kx - 1:b - kx - 1 + L]
                        s2 = g[b - kx - 2:b - kx - 2 + L]
                        s3 = g[b - kx - 3:b - kx - 3 + L]
                        for p in range(L):
                            acc[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]
                        kx += 4
                    while kx < k:
                        wv = w[o, c, ky, kx]
                        s0 = g[b - kx:b - kx + L]
                        for p in range(L):
                            acc[p] += wv * s0[p]
                        kx += 1
            d = dst[q0:q0 + L]
            for p in range(L):
                d[p] += acc[p]
