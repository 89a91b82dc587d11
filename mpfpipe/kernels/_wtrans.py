"""A block's convolution by F(2, k) along the rows (`_wino` has the method, the matrices and the packing): the
input transform into alpha planes of half-width rows, each plane's (k x 1) convolution on the register tiles
(`_block._conv_block`), the output transform. The inference kernels (`_tiles.conv_fwd_tiles`,
`_convpool.conv_pool_fwd_tiles`) call `wino_block` in place of their direct block convolution when given a
packed layer (``wz``), and never compile it otherwise.

Bits. Each transformed value, each plane's output (one tile's sum in a fixed order) and each output is computed
from the same inputs in the same order wherever a block starts or ends and whichever thread runs it, so the
results do not depend on the blocking or the thread count. A plane shorter than one tile is computed one tile long
(the extra positions read the scratch's slack and are never used), so no layer needs a fallback that would.
"""
import numpy as np
from numba import njit

from ._block import NV, _conv_block
from ._simd import lanes, vbcast, veven, vfma, vload, vodd, vstore, vzero, vzip_hi, vzip_lo


@njit(cache=True, inline="always")
def _transform_row(src, s0, BTf, al, tw, V, v0, ps, L):
    """V[v0 + a*ps + t] = sum_i B^T[a, i] src[s0 + 2t + i] for a < al, t < tw (and up to L - 1 more t after tw,
    which the next row overwrites or the plane's padding takes); src must hold 2*tw + 2L + 4 values from s0."""
    for t0 in range(0, tw, L):
        p = s0 + 2 * t0
        u0, u1 = vload(src, p), vload(src, p + L)
        w0, w1 = vload(src, p + 2), vload(src, p + 2 + L)
        z0, z1 = vload(src, p + 4), vload(src, p + 4 + L)
        d0, d1, d2, d3, d4, d5 = veven(u0, u1), vodd(u0, u1), veven(w0, w1), vodd(w0, w1), veven(z0, z1), vodd(z0, z1)
        for a in range(al):
            b = a * al
            acc = vfma(vbcast(BTf, b), d0, vzero(src))
            acc = vfma(vbcast(BTf, b + 1), d1, acc)
            acc = vfma(vbcast(BTf, b + 2), d2, acc)
            if al > 3:
                acc = vfma(vbcast(BTf, b + 3), d3, acc)
            if al > 4:
                acc = vfma(vbcast(BTf, b + 4), d4, acc)
            if al > 5:
                acc = vfma(vbcast(BTf, b + 5), d5, acc)
            vstore(V, v0 + a * ps + t0, acc)


@njit(cache=True, nogil=True)
def _transform_rows(xf, xb, W, rows, C, cs, BTf, al, tw, V, ps, tail):
    """The input transform of ``rows`` rows of C channels (channel c's row r at xf[xb + c*cs + r*W]) into the
    planes V[(a*C + c)*ps + r*tw + t]. Values past a row's W inputs are taken as 0 (through ``tail``), so an output
    never reads another row."""
    L = lanes(xf)
    full = max(0, (W - 2 * L - 4) // (2 * L))  # whole vectors whose inputs lie inside the row
    for c in range(C):
        for r in range(rows):
            s0 = xb + c * cs + r * W
            v0 = c * ps + r * tw
            if full > 0:
                _transform_row(xf, s0, BTf, al, min(full * L, tw), V, v0, C * ps, L)
            t0 = full * L
            if t0 < tw:
                for i in range(tail.size):
                    j = 2 * t0 + i
                    tail[i] = xf[s0 + j] if j < W else 0.0
                _transform_row(tail, 0, BTf, al, tw - t0, V, v0 + t0, C * ps, L)


@njit(cache=True, nogil=True)
def _untransform_rows(M, al, O, nbm, rows, tw, ATf, buf, nb, W, ow, tmp):
    """buf[o*nb + r*W + x] = sum_a A^T[x % 2, a] M[(a*O + o)*nbm + r*tw + x // 2] for o < O, r < rows, x < ow."""
    L = lanes(M)
    for o in range(O):
        for r in range(rows):
            m0 = o * nbm + r * tw
            y0 = o * nb + r * W
            for t0 in range(0, tw, L):
                ev = vzero(M)
                od = vzero(M)
                for a in range(al):
                    mv = vload(M, a * O * nbm + m0 + t0)
                    ev = vfma(vbcast(ATf, a), mv, ev)
                    od = vfma(vbcast(ATf, al + a), mv, od)
                lo, hi = vzip_lo(ev, od), vzip_hi(ev, od)
                if 2 * t0 + 2 * L <= ow:
                    vstore(buf, y0 + 2 * t0, lo)
                    vstore(buf, y0 + 2 * t0 + L, hi)
                else:
                    vstore(tmp, 0, lo)
                    vstore(tmp, L, hi)
                    for i in range(ow - 2 * t0):
                        buf[y0 + 2 * t0 + i] = tmp[i]


@njit(cache=True, inline="always")
def wino_strides(k, R, tw, L):
    """(plane stride, map stride) of a block of up to R output rows of tw transformed positions: every plane at
    least one tile long (`wino_block`), plus the k - 1 rows below and a vector of slack for the transforms."""
    n = max(R * tw, NV * L)
    return ((n + (k - 1) * tw + L - 1) // L + 1) * L, n + L


@njit(cache=True, inline="always")
def wino_work(k, C, O, R, tw, xf):
    """A thread's scratch for `wino_block` (values of xf's type): the input planes V, the output planes M, the
    zero-padded row end and the output transform's two vectors."""
    L = lanes(xf)
    ps, nbm = wino_strides(k, R, tw, L)
    return (np.zeros((k + 1) * C * ps, xf.dtype), np.empty((k + 1) * O * nbm, xf.dtype),
            np.zeros(6 * L + 8, xf.dtype), np.empty(2 * L, xf.dtype))


@njit(cache=True, nogil=True)
def wino_block(xf, xb, W, R, C, cs, wz, k, O, work, Rmax, buf, nb, bw, ow):
    """buf[o*nb + r*bw + x] for o < O, r < R, x < ow: the convolution of the R output rows whose first input element
    is xf[xb] (channel stride cs, row stride W), by F(2, k) with wz = `_wino.pack`(weight). ``work`` is
    `wino_work` for blocks of up to Rmax rows."""
    V, M, tail, tmp = work
    L = lanes(xf)
    al = k + 1
    tw = (ow + 1) // 2
    ps, nbm = wino_strides(k, Rmax, tw, L)
    BTf = wz[:al * al]
    ATf = wz[al * al:al * al + 2 * al]
    uf = wz[al * al + 2 * al:]
    usz = uf.size // al
    n = max(R * tw, NV * L)
    _transform_rows(xf, xb, W, R + k - 1, C, cs, BTf, al, tw, V, ps, tail)
    for a in range(al):
        _conv_block(V, a * C * ps, tw, k, 1, C, ps, uf[a * usz:(a + 1) * usz], O, M[a * O * nbm:], n, nbm, NV * L, 0)
    _untransform_rows(M, al, O, nbm, R, tw, ATf, buf, nb, bw, ow, tmp)
