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

Weight gradients are dot products, vectorised with explicit fixed-width vectors (`_simd`: 16 float32 / 8 float64
lanes, ``llvm.fma``, lanes summed in a fixed order) rather than fastmath reassociation, whose vector width and
summation tree LLVM chose per CPU (an AVX2 and an AVX-512 node then gave different bits). Lane sums are in the
input dtype within a chunk, accumulated in float64. The forward and input-gradient loops are not reassociated nor
contracted (no fastmath): each element is the same sequence of roundings at any vector width.
"""
import numpy as np
from numba import njit, prange

from ._par import pjit
from ._simd import lanes, vadd, vfma, vload, vsum, vzero

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


@njit(cache=True, inline="always")
def _dots4(g, src, s0, L):
    """(sum_p g[p] * src[s0 + p], same at s0 + 1, s0 + 2, s0 + 3) for p < L, each in float64: explicit vectors
    of fixed width (`_simd`), two per tap for independent FMA chains, lane sums in a fixed order, the tail last."""
    V = lanes(g)
    a0, a1, a2, a3 = vzero(g), vzero(g), vzero(g), vzero(g)
    b0, b1, b2, b3 = vzero(g), vzero(g), vzero(g), vzero(g)
    p = 0
    while p + 2 * V <= L:
        gv = vload(g, p)
        a0, a1 = vfma(gv, vload(src, s0 + p), a0), vfma(gv, vload(src, s0 + 1 + p), a1)
        a2, a3 = vfma(gv, vload(src, s0 + 2 + p), a2), vfma(gv, vload(src, s0 + 3 + p), a3)
        gv = vload(g, p + V)
        b0, b1 = vfma(gv, vload(src, s0 + V + p), b0), vfma(gv, vload(src, s0 + 1 + V + p), b1)
        b2, b3 = vfma(gv, vload(src, s0 + 2 + V + p), b2), vfma(gv, vload(src, s0 + 3 + V + p), b3)
        p += 2 * V
    if p + V <= L:
        gv = vload(g, p)
        a0, a1 = vfma(gv, vload(src, s0 + p), a0), vfma(gv, vload(src, s0 + 1 + p), a1)
        a2, a3 = vfma(gv, vload(src, s0 + 2 + p), a2), vfma(gv, vload(src, s0 + 3 + p), a3)
        p += V
    t0, t1, t2, t3 = vsum(vadd(a0, b0)), vsum(vadd(a1, b1)), vsum(vadd(a2, b2)), vsum(vadd(a3, b3))
    while p < L:
        gp = g[p]
        t0 += gp * src[s0 + p]
        t1 += gp * src[s0 + 1 + p]
        t2 += gp * src[s0 + 2 + p]
        t3 += gp * src[s0 + 3 + p]
        p += 1
    return t0, t1, t2, t3


@njit(cache=True, inline="always")
def _dot1(g, src, s0, L):
    """sum_p g[p] * src[s0 + p] for p < L in float64, in `_dots4`'s order."""
    V = lanes(g)
    a0, b0 = vzero(g), vzero(g)
    p = 0
    while p + 2 * V <= L:
        a0 = vfma(vload(g, p), vload(src, s0 + p), a0)
        b0 = vfma(vload(g, p + V), vload(src, s0 + V + p), b0)
        p += 2 * V
    if p + V <= L:
        a0 = vfma(vload(g, p), vload(src, s0 + p), a0)
        p += V
    t = vsum(vadd(a0, b0))
    while p < L:
        t += g[p] * src[s0 + p]
        p += 1
    return t


@pjit(cache=True)
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
                        t0, t1, t2, t3 = _dots4(g, src, b + kx, L)
                        t = ky * k + kx
                        acc[t] += t0
                        acc[t + 1] += t1
                        acc[t + 2] += t2
                        acc[t + 3] += t3
                        kx += 4
                    while kx < k:
                        acc[ky * k + kx] += _dot1(g, src, b + kx, L)
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
