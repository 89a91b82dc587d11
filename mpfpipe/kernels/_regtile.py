"""The register tiles of `_tiles`, written out: every accumulator a named local, so that LLVM keeps all 24 in vector
registers (a loop over an array of accumulators would keep them in memory).

- `_fwd_tile`: 6 output maps x 4 vectors of positions of a convolution (forward, and the input gradient);
- `_fwd_tile1` and `_fwd_tile4`: the same for a block's last vector(s) and a layer's last 4 maps;
- `_dw_tile`: 4 x 6 (output x input maps) lane partial sums of a weight gradient over a run of positions.

All are inlined into their callers (`_block._conv_block`, `_tiles._dw_block`).
"""
from numba import njit

from ._simd import lanes, vadd, vbcast, vfma, vload, vstore, vzero


@njit(cache=True, inline='always')
def _fwd_tile(xf, xb, W, k, kw, C, cs, wf, wi, buf, b0, nb, v2):
    """buf[b0 + o*nb + j] (o < 6, j in the 4 vectors at 0, L, v2, v2 + L) = sum over c < C, taps (ky < k, kx < kw)
    of wf[wi + ((c*k + ky)*kw + kx)*6 + o] * xf[xb + c*cs + ky*W + kx + j]: a 6-channel x 4-vector tile of a
    convolution, its 24 accumulators in registers through the whole reduction. v2 = 2L: 4 consecutive vectors;
    v2 = W: 2 vectors in each of two rows (a fragment row of 2L positions is then covered without dropped columns)."""
    L = lanes(xf)
    a00, a01, a02, a03 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a10, a11, a12, a13 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a20, a21, a22, a23 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a30, a31, a32, a33 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a40, a41, a42, a43 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a50, a51, a52, a53 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    for c in range(C):
        for ky in range(k):
            p = xb + c * cs + ky * W
            for kx in range(kw):
                x0, x1, x2, x3 = vload(xf, p), vload(xf, p + L), vload(xf, p + v2), vload(xf, p + v2 + L)
                w = vbcast(wf, wi + 0)
                a00, a01, a02, a03 = vfma(w, x0, a00), vfma(w, x1, a01), vfma(w, x2, a02), vfma(w, x3, a03)
                w = vbcast(wf, wi + 1)
                a10, a11, a12, a13 = vfma(w, x0, a10), vfma(w, x1, a11), vfma(w, x2, a12), vfma(w, x3, a13)
                w = vbcast(wf, wi + 2)
                a20, a21, a22, a23 = vfma(w, x0, a20), vfma(w, x1, a21), vfma(w, x2, a22), vfma(w, x3, a23)
                w = vbcast(wf, wi + 3)
                a30, a31, a32, a33 = vfma(w, x0, a30), vfma(w, x1, a31), vfma(w, x2, a32), vfma(w, x3, a33)
                w = vbcast(wf, wi + 4)
                a40, a41, a42, a43 = vfma(w, x0, a40), vfma(w, x1, a41), vfma(w, x2, a42), vfma(w, x3, a43)
                w = vbcast(wf, wi + 5)
                a50, a51, a52, a53 = vfma(w, x0, a50), vfma(w, x1, a51), vfma(w, x2, a52), vfma(w, x3, a53)
                wi += 6
                p += 1
    vstore(buf, b0, a00)
    vstore(buf, b0 + 0 * nb + 1 * L, a01)
    vstore(buf, b0 + 0 * nb + v2, a02)
    vstore(buf, b0 + 0 * nb + v2 + L, a03)
    vstore(buf, b0 + 1 * nb + 0 * L, a10)
    vstore(buf, b0 + 1 * nb + 1 * L, a11)
    vstore(buf, b0 + 1 * nb + v2, a12)
    vstore(buf, b0 + 1 * nb + v2 + L, a13)
    vstore(buf, b0 + 2 * nb + 0 * L, a20)
    vstore(buf, b0 + 2 * nb + 1 * L, a21)
    vstore(buf, b0 + 2 * nb + v2, a22)
    vstore(buf, b0 + 2 * nb + v2 + L, a23)
    vstore(buf, b0 + 3 * nb + 0 * L, a30)
    vstore(buf, b0 + 3 * nb + 1 * L, a31)
    vstore(buf, b0 + 3 * nb + v2, a32)
    vstore(buf, b0 + 3 * nb + v2 + L, a33)
    vstore(buf, b0 + 4 * nb + 0 * L, a40)
    vstore(buf, b0 + 4 * nb + 1 * L, a41)
    vstore(buf, b0 + 4 * nb + v2, a42)
    vstore(buf, b0 + 4 * nb + v2 + L, a43)
    vstore(buf, b0 + 5 * nb + 0 * L, a50)
    vstore(buf, b0 + 5 * nb + 1 * L, a51)
    vstore(buf, b0 + 5 * nb + v2, a52)
    vstore(buf, b0 + 5 * nb + v2 + L, a53)


@njit(cache=True, inline='always')
def _fwd_tile1(xf, xb, W, k, kw, C, cs, wf, wi, buf, b0, nb):
    """`_fwd_tile` for one vector of positions (6 maps x 1 vector): a block's last few positions, which a whole
    4-vector tile moved back would mostly recompute (n3's fc1: 1933 positions a fragment, 31 tiles of 64 covered
    1984; with this tile 1936). The same sums in the same order, so the same bits."""
    a0, a1, a2, a3, a4, a5 = vzero(xf), vzero(xf), vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    for c in range(C):
        for ky in range(k):
            p = xb + c * cs + ky * W
            for kx in range(kw):
                x0 = vload(xf, p)
                a0, a1 = vfma(vbcast(wf, wi), x0, a0), vfma(vbcast(wf, wi + 1), x0, a1)
                a2, a3 = vfma(vbcast(wf, wi + 2), x0, a2), vfma(vbcast(wf, wi + 3), x0, a3)
                a4, a5 = vfma(vbcast(wf, wi + 4), x0, a4), vfma(vbcast(wf, wi + 5), x0, a5)
                wi += 6
                p += 1
    vstore(buf, b0, a0)
    vstore(buf, b0 + nb, a1)
    vstore(buf, b0 + 2 * nb, a2)
    vstore(buf, b0 + 3 * nb, a3)
    vstore(buf, b0 + 4 * nb, a4)
    vstore(buf, b0 + 5 * nb, a5)


@njit(cache=True, inline='always')
def _fwd_tile4(xf, xb, W, k, kw, C, cs, wf, wi, buf, b0, nb, v2):
    """`_fwd_tile` for 4 maps (4 maps x 4 vectors), the weights read from a 6-map packed block (stride 6 from wi):
    the last maps of a layer whose map count is not a multiple of 6, which a whole tile moved back would partly
    recompute (n3's fc1: 100 maps computed as 102)."""
    L = lanes(xf)
    a00, a01, a02, a03 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a10, a11, a12, a13 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a20, a21, a22, a23 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    a30, a31, a32, a33 = vzero(xf), vzero(xf), vzero(xf), vzero(xf)
    for c in range(C):
        for ky in range(k):
            p = xb + c * cs + ky * W
            for kx in range(kw):
                x0, x1, x2, x3 = vload(xf, p), vload(xf, p + L), vload(xf, p + v2), vload(xf, p + v2 + L)
                w = vbcast(wf, wi + 0)
                a00, a01, a02, a03 = vfma(w, x0, a00), vfma(w, x1, a01), vfma(w, x2, a02), vfma(w, x3, a03)
                w = vbcast(wf, wi + 1)
                a10, a11, a12, a13 = vfma(w, x0, a10), vfma(w, x1, a11), vfma(w, x2, a12), vfma(w, x3, a13)
                w = vbcast(wf, wi + 2)
                a20, a21, a22, a23 = vfma(w, x0, a20), vfma(w, x1, a21), vfma(w, x2, a22), vfma(w, x3, a23)
                w = vbcast(wf, wi + 3)
                a30, a31, a32, a33 = vfma(w, x0, a30), vfma(w, x1, a31), vfma(w, x2, a32), vfma(w, x3, a33)
                wi += 6
                p += 1
    vstore(buf, b0, a00)
    vstore(buf, b0 + L, a01)
    vstore(buf, b0 + v2, a02)
    vstore(buf, b0 + v2 + L, a03)
    vstore(buf, b0 + nb, a10)
    vstore(buf, b0 + nb + L, a11)
    vstore(buf, b0 + nb + v2, a12)
    vstore(buf, b0 + nb + v2 + L, a13)
    vstore(buf, b0 + 2 * nb, a20)
    vstore(buf, b0 + 2 * nb + L, a21)
    vstore(buf, b0 + 2 * nb + v2, a22)
    vstore(buf, b0 + 2 * nb + v2 + L, a23)
    vstore(buf, b0 + 3 * nb, a30)
    vstore(buf, b0 + 3 * nb + L, a31)
    vstore(buf, b0 + 3 * nb + v2, a32)
    vstore(buf, b0 + 3 * nb + v2 + L, a33)


@njit(cache=True, inline='always')
def _dw_tile(gf, gb, gs, xf, xb, xs, nv, lb, li):
    """lb[li + (o*6 + c)*L : +L] += lane partial sums over v < nv of gf[gb + o*gs + v*L + i] * xf[xb + c*xs + v*L + i]
    (o < 4, c < 6): a 4 x 6 tile of a weight gradient, 24 vector accumulators in registers."""
    L = lanes(gf)
    a00, a01, a02, a03, a04, a05 = vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf)
    a10, a11, a12, a13, a14, a15 = vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf)
    a20, a21, a22, a23, a24, a25 = vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf)
    a30, a31, a32, a33, a34, a35 = vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf), vzero(gf)
    p = 0
    for v in range(nv):
        g0, g1 = vload(gf, gb + p), vload(gf, gb + gs + p)
        g2, g3 = vload(gf, gb + 2 * gs + p), vload(gf, gb + 3 * gs + p)
        x = vload(xf, xb + p)
        a00, a10, a20, a30 = vfma(g0, x, a00), vfma(g1, x, a10), vfma(g2, x, a20), vfma(g3, x, a30)
        x = vload(xf, xb + xs + p)
        a01, a11, a21, a31 = vfma(g0, x, a01), vfma(g1, x, a11), vfma(g2, x, a21), vfma(g3, x, a31)
        x = vload(xf, xb + 2 * xs + p)
        a02, a12, a22, a32 = vfma(g0, x, a02), vfma(g1, x, a12), vfma(g2, x, a22), vfma(g3, x, a32)
        x = vload(xf, xb + 3 * xs + p)
        a03, a13, a23, a33 = vfma(g0, x, a03), vfma(g1, x, a13), vfma(g2, x, a23), vfma(g3, x, a33)
        x = vload(xf, xb + 4 * xs + p)
        a04, a14, a24, a34 = vfma(g0, x, a04), vfma(g1, x, a14), vfma(g2, x, a24), vfma(g3, x, a34)
        x = vload(xf, xb + 5 * xs + p)
        a05, a15, a25, a35 = vfma(g0, x, a05), vfma(g1, x, a15), vfma(g2, x, a25), vfma(g3, x, a35)
        p += L
    q = li + 0 * L
    vstore(lb, q, vadd(vload(lb, q), a00))
    q = li + 1 * L
    vstore(lb, q, vadd(vload(lb, q), a01))
    q = li + 2 * L
    vstore(lb, q, vadd(vload(lb, q), a02))
    q = li + 3 * L
    vstore(lb, q, vadd(vload(lb, q), a03))
    q = li + 4 * L
    vstore(lb, q, vadd(vload(lb, q), a04))
    q = li + 5 * L
    vstore(lb, q, vadd(vload(lb, q), a05))
    q = li + 6 * L
    vstore(lb, q, vadd(vload(lb, q), a10))
    q = li + 7 * L
    vstore(lb, q, vadd(vload(lb, q), a11))
    q = li + 8 * L
    vstore(lb, q, vadd(vload(lb, q), a12))
    q = li + 9 * L
    vstore(lb, q, vadd(vload(lb, q), a13))
    q = li + 10 * L
    vstore(lb, q, vadd(vload(lb, q), a14))
    q = li + 11 * L
    vstore(lb, q, vadd(vload(lb, q), a15))
    q = li + 12 * L
    vstore(lb, q, vadd(vload(lb, q), a20))
    q = li + 13 * L
    vstore(lb, q, vadd(vload(lb, q), a21))
    q = li + 14 * L
    vstore(lb, q, vadd(vload(lb, q), a22))
    q = li + 15 * L
    vstore(lb, q, vadd(vload(lb, q), a23))
    q = li + 16 * L
    vstore(lb, q, vadd(vload(lb, q), a24))
    q = li + 17 * L
    vstore(lb, q, vadd(vload(lb, q), a25))
    q = li + 18 * L
    vstore(lb, q, vadd(vload(lb, q), a30))
    q = li + 19 * L
    vstore(lb, q, vadd(vload(lb, q), a31))
    q = li + 20 * L
    vstore(lb, q, vadd(vload(lb, q), a32))
    q = li + 21 * L
    vstore(lb, q, vadd(vload(lb, q), a33))
    q = li + 22 * L
    vstore(lb, q, vadd(vload(lb, q), a34))
    q = li + 23 * L
    vstore(lb, q, vadd(vload(lb, q), a35))
