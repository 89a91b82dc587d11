"""Register-tiled direct convolution over stacked fragments ``(C, F, h, w)``, forward and both backward passes.

Why. A layer with many channels (n3, n4, fc-as-convolution) was one BLAS GEMM per kernel tap with K = C_in: each
tap re-read and re-wrote the output block and re-packed the input, which held those layers to ~70 % of the GEMM
peak. Here a tile of 6 output channels x 4 vectors of positions keeps its 24 accumulators in vector registers
(`_simd`) through the whole reduction over input channels and taps, reads each input vector once for 6 channels
and each weight once (broadcast) for 4 vectors, and is stored once: 24 FMAs per 10 loads.

Positions are the fragments' *flattened rows*, as in `_taps` and `_direct`: with the input's row stride w, output
position p = y*w + x reads input p + ky*w + kx, so a block of R rows is one contiguous stretch of every channel;
its last k-1 columns per row mix the next row and are dropped. A block's tiles cover [0, n) in steps of one tile; the
last tile is moved back to end at n (it recomputes a few positions, the same sums in the same order, so the same
bits). Channel blocks past the last full one are moved back the same way, so any C_in, C_out >= 6 works.

Backward:
- the input gradient is the same forward tile run on the output gradient laid out wide (row stride w, zeros in the
  dropped columns) with (k-1)*w + k-1 zeros before and after each fragment, and the taps flipped: dx[c, q] =
  sum_o,ky,kx W[o, c, k-1-ky, k-1-kx] * g[o, q + ky*w + kx] over that padded layout. Each dx element is computed
  once, in one tile: no accumulation, and fragments' row blocks are independent.
- the weight gradient of a tap is a reduction over positions: a 4 x 6 (output x input channel) tile of 24 vector
  accumulators, one lane per residue of the position modulo the vector width, summed across lanes in a fixed order
  into float64, then into the layer's slabs (`_head.SLABS`) in a fixed order. Blocks go to slabs, not threads.

Every multiply-add is an explicit ``llvm.fma`` on fixed-width vectors, so results are the same bits on 1 or many
threads and on any x86-64 instruction set with FMA (AVX2 or AVX-512). The fused output layer's small GEMMs go
through `_blas.gemm`: OpenBLAS, or in reproducible mode the fixed-order `_rgemm`.
"""
import numpy as np
from numba import njit, prange

from ._act import _act_grad_row, _bias_act_row
from ._blas import gemm
from ._head import row_sum
from ._par import pjit
from ._simd import lanes, vadd, vbcast, vfma, vload, vstore, vzero

OB = 6  # output channels of a forward tile
NV = 4  # vectors of positions of a forward tile
DW_O, DW_C = 4, 6  # output x input channels of a weight-gradient tile
DW_CHUNK = 32  # vectors of positions per weight-gradient tile call: its g and x rows stay in L1
BLOCK_COLS = 2048  # positions of a row block: its input slab stays in L2 (n4: 48 x 2.4k floats)


def tile_positions(dtype) -> int:
    """Positions one forward tile covers (4 vectors of 64 bytes)."""
    return NV * 64 // np.dtype(dtype).itemsize


def rows_per_block(w: int, k: int, dtype) -> int:
    """Output rows of a forward block: about BLOCK_COLS positions, and never fewer than one tile."""
    return max(BLOCK_COLS // w, -(-(tile_positions(dtype) + k - 1) // w), 1)


def span(dtype) -> int:
    """Positions of a backward block (of the whole signal): about BLOCK_COLS, at least two tiles."""
    return max(BLOCK_COLS, 2 * tile_positions(dtype))


def usable(cin: int, cout: int, oh: int, ow: int, w: int, k: int, dtype) -> bool:
    """Whether a layer can run on the tiles: 6+ channels either way, and every fragment's output (and, for the
    input gradient, its input) at least one tile long. Smaller fragments (patch mode) use the tap GEMMs."""
    return cin >= OB and cout >= OB and oh * w - (k - 1) >= tile_positions(dtype)


def pack_forward(weight: np.ndarray, dtype) -> np.ndarray:
    """(Cout, C, k, k) -> flat blocks of OB output channels, (nblocks, C, k, k, OB): what `_fwd_tile` walks in order.
    Block j holds channels o0 .. o0+OB-1 with o0 = min(j*OB, Cout-OB)."""
    cout, C, k, _ = weight.shape
    nob = -(-cout // OB)
    out = np.empty((nob, C, k, k, OB), dtype)
    for j in range(nob):
        o0 = min(j * OB, cout - OB)
        out[j] = weight[o0:o0 + OB].transpose(1, 2, 3, 0)
    return out.reshape(-1)


def pack_dinput(weight: np.ndarray, dtype) -> np.ndarray:
    """The input gradient's weights: the transposed, tap-flipped kernel, packed like `pack_forward`."""
    return pack_forward(np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]), dtype)


@njit(cache=True, inline="always")
def _blocks(oh, rows):
    """Row blocks of a fragment: as many as whole blocks of ``rows`` fit (at least one), rows spread evenly, so
    every block is at least min(rows, oh) rows long."""
    return max(1, oh // rows)


@njit(cache=True, inline='always')
def _fwd_tile(xf, xb, W, k, C, cs, wf, wi, buf, b0, nb):
    """buf[b0 + o*nb + j] (o < 6, j < 4 lanes) = sum over c < C, taps (ky, kx) of wf[wi + ((c*k + ky)*k + kx)*6 + o]
    * xf[xb + c*cs + ky*W + kx + j]: a 6-channel x 4-vector tile of a convolution, its 24 accumulators in
    registers through the whole reduction."""
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
            for kx in range(k):
                x0, x1, x2, x3 = vload(xf, p), vload(xf, p + L), vload(xf, p + 2 * L), vload(xf, p + 3 * L)
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
    vstore(buf, b0 + 0 * nb + 0 * L, a00); vstore(buf, b0 + 0 * nb + 1 * L, a01)
    vstore(buf, b0 + 0 * nb + 2 * L, a02); vstore(buf, b0 + 0 * nb + 3 * L, a03)
    vstore(buf, b0 + 1 * nb + 0 * L, a10); vstore(buf, b0 + 1 * nb + 1 * L, a11)
    vstore(buf, b0 + 1 * nb + 2 * L, a12); vstore(buf, b0 + 1 * nb + 3 * L, a13)
    vstore(buf, b0 + 2 * nb + 0 * L, a20); vstore(buf, b0 + 2 * nb + 1 * L, a21)
    vstore(buf, b0 + 2 * nb + 2 * L, a22); vstore(buf, b0 + 2 * nb + 3 * L, a23)
    vstore(buf, b0 + 3 * nb + 0 * L, a30); vstore(buf, b0 + 3 * nb + 1 * L, a31)
    vstore(buf, b0 + 3 * nb + 2 * L, a32); vstore(buf, b0 + 3 * nb + 3 * L, a33)
    vstore(buf, b0 + 4 * nb + 0 * L, a40); vstore(buf, b0 + 4 * nb + 1 * L, a41)
    vstore(buf, b0 + 4 * nb + 2 * L, a42); vstore(buf, b0 + 4 * nb + 3 * L, a43)
    vstore(buf, b0 + 5 * nb + 0 * L, a50); vstore(buf, b0 + 5 * nb + 1 * L, a51)
    vstore(buf, b0 + 5 * nb + 2 * L, a52); vstore(buf, b0 + 5 * nb + 3 * L, a53)


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


@njit(cache=True)
def _conv_block(xf, xb, W, k, C, cs, wf, cout, buf, n, nb, T):
    """buf[o*nb + q] for o < cout, q < n: the convolution of the block whose first input element is xf[xb]."""
    nob = (cout + OB - 1) // OB
    wsz = C * k * k * OB
    for j in range(nob):
        o0 = min(j * OB, cout - OB)
        for q in range(0, n, T):
            q = min(q, n - T)
            _fwd_tile(xf, xb + q, W, k, C, cs, wf, j * wsz, buf, o0 * nb + q, nb)


@pjit(cache=True)
def conv_fwd_tiles(x, wf, b, code, fast, rows, y, threads, post, wp, bp, z):
    """y (Cout, F, oh, ow) = act(conv(x, W) + b) for x (C, F, h, w), W packed by `pack_forward`. Row blocks are
    dealt round-robin to ``threads`` threads. With ``post``, also z (K, F, oh, ow) = wp (K, Cout) @ y + bp, a
    following linear 1x1 layer (n3 / n4's output layer after fc1), computed on each block while it is in cache."""
    C, F, h, W = x.shape
    O, _, oh, ow = y.shape
    k = W - ow + 1
    K = wp.shape[0]
    xf = x.reshape(-1)
    cs = F * h * W
    per_f = _blocks(oh, rows)
    nblk = F * per_f
    T = min(threads, nblk)
    L = lanes(xf)
    for t in prange(T):
        nb = (oh // per_f + 1) * W
        buf = np.empty(O * nb, x.dtype)
        zbuf = np.empty(K * nb if post else 1, x.dtype)
        for blk in range(t, nblk, T):
            f = blk // per_f
            j = blk % per_f
            y0 = j * oh // per_f
            R = (j + 1) * oh // per_f - y0
            n = R * W - (k - 1)
            _conv_block(xf, f * h * W + y0 * W, W, k, C, cs, wf, O, buf, n, nb, NV * L)
            for o in range(O):
                _bias_act_row(buf[o * nb:o * nb + n], b[o], code, fast, n)
                for r in range(R):
                    d = y[o, f, y0 + r]
                    s = o * nb + r * W
                    for i in range(ow):
                        d[i] = buf[s + i]
            if post:
                gemm(False, False, K, n, O, 1.0, wp, O, buf, nb, 0.0, zbuf, nb)
                for q in range(K):
                    bq = bp[q]
                    for r in range(R):
                        d = z[q, f, y0 + r]
                        s = q * nb + r * W
                        for i in range(ow):
                            d[i] = zbuf[s + i] + bq


def grad_layout(F: int, h: int, w: int, k: int, dtype) -> tuple[int, int]:
    """(lead, length) of a channel of the backward passes' gradient layout (`widen_pad`): ``lead`` zeros (at least
    (k-1)*w + k-1, rounded up to whole vectors so that the weight gradient's loads of it are aligned), then the F
    fragments with the *input's* fragment stride h*w, then zeros; the length is a whole number of vectors."""
    L = 64 // np.dtype(dtype).itemsize
    pad = (k - 1) * w + k - 1
    lead = -(-pad // L) * L
    return lead, -(-(lead + F * h * w + pad + L) // L) * L


def aligned_empty(shape, dtype) -> np.ndarray:
    """np.empty whose data starts on a 64-byte boundary (whole-vector loads of it then never split a cache line)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n + 64 // dtype.itemsize, dtype)
    skip = (-raw.ctypes.data % 64) // dtype.itemsize
    return raw[skip:skip + n].reshape(shape)


@njit(cache=True, inline="always")
def _put_rows(src, R, ow, W, dst, d0):
    """dst[d0 + r*W + i] = src[r*ow + i] for r < R, i < ow; zeros in the other W - ow columns of each row."""
    for r in range(R):
        b = d0 + r * W
        for i in range(ow):
            dst[b + i] = src[r * ow + i]
        for i in range(ow, W):
            dst[b + i] = 0.0


@pjit(cache=True)
def widen_pad(g, h, W, lead, out):
    """The backward passes' gradient layout: out (O, Ls)[pad + f*h*W + r*W + i] = g (O, F, oh, ow)[o, f, r, i];
    zeros in the dropped columns, the k-1 rows after each fragment, and before and after all fragments. With the
    input's fragment stride the gradient and the input line up as two long signals, so the weight gradient reduces
    over whole blocks of positions regardless of fragment edges: the zeros contribute nothing."""
    O, F, oh, ow = g.shape
    gf = g.reshape(O, -1)
    for o in prange(O):
        d = out[o]
        d[:lead] = 0.0
        for f in range(F):
            b = lead + f * h * W
            _put_rows(gf[o, f * oh * ow:(f + 1) * oh * ow], oh, ow, W, d, b)
            d[b + oh * W:b + h * W] = 0.0
        d[lead + F * h * W:] = 0.0


@pjit(cache=True)
def post_grad(dz, y, wp, code, h, W, lead, gp, dbparts, dwpparts, dbpparts):
    """The backward pass of conv_fwd_tiles' ``post`` layer: from dz (K, F, oh, ow) and y (Cout, F, oh, ow), the
    pre-activation gradient of the conv layer, wp^T dz * act'(y), into gp (Cout, Ls) laid out as `widen_pad` does;
    its bias gradient and the post layer's gradients into the float64 slabs dbparts (S, Cout), dwpparts (S, K,
    Cout), dbpparts (S, K). Fragment f goes to slab f mod S; in the narrow layout every row is contiguous."""
    K, F, oh, ow = dz.shape
    O = y.shape[0]
    cs = F * oh * ow
    m = oh * ow
    dzf = dz.reshape(-1)
    yf = y.reshape(-1)
    S = dbparts.shape[0]
    for s in prange(S):
        gn = np.empty(O * m, y.dtype)
        partp = np.empty((K, O), y.dtype)
        for f in range(s, F, S):
            z0 = f * m
            for q in range(K):
                dbpparts[s, q] += row_sum(dzf[q * cs + z0:q * cs + z0 + m], m)
            gemm(False, True, K, O, m, 1.0, dzf[z0:], cs, yf[z0:], cs, 0.0, partp, O)
            for q in range(K):
                for o in range(O):
                    dwpparts[s, q, o] += partp[q, o]
            gemm(True, False, O, m, K, 1.0, wp, O, dzf[z0:], cs, 0.0, gn, m)
            for o in range(O):
                r_ = gn[o * m:(o + 1) * m]
                _act_grad_row(r_, yf[o * cs + z0:o * cs + z0 + m], code, m)
                dbparts[s, o] += row_sum(r_, m)
                d = gp[o]
                b = lead + f * h * W
                _put_rows(r_, oh, ow, W, d, b)
                d[b + oh * W:b + h * W] = 0.0
                if f == 0:
                    d[:lead] = 0.0
                if f == F - 1:
                    d[lead + F * h * W:] = 0.0


@njit(cache=True)
def _dw_block(gf, gb, gs, xf, xb, cs, W, k, O, C, n, lb, dst):
    """dst (k*k, O, C) float64 += the weight gradient of positions [0, n) of one block: gf[gb + o*gs + p] times
    xf[xb + c*cs + p + ky*W + kx]. Per 4 x 6 channel tile, chunks of DW_CHUNK vectors (their g and x rows stay in
    L1 across the k*k taps) add lane partial sums into lb (k*k*24 vectors, the input dtype); the lanes are then
    summed in order into float64, and a tail shorter than a vector in scalars."""
    L = lanes(gf)
    nv = n // L
    T = DW_O * DW_C * L
    for on in range(0, O, DW_O):
        o0 = min(on, O - DW_O)  # a tile moved back to end at O: its first rows were done by the tile before
        for cn in range(0, C, DW_C):
            c0 = min(cn, C - DW_C)
            lb[:k * k * T] = 0.0
            for v0 in range(0, nv, DW_CHUNK):
                m = min(DW_CHUNK, nv - v0)
                for tap in range(k * k):
                    off = (tap // k) * W + tap % k
                    _dw_tile(gf, gb + o0 * gs + v0 * L, gs, xf, xb + c0 * cs + off + v0 * L, cs, m, lb, tap * T)
            for tap in range(k * k):
                off = (tap // k) * W + tap % k
                a = dst[tap]
                for o in range(on - o0, DW_O):
                    for c in range(cn - c0, DW_C):
                        s = 0.0
                        v = lb[tap * T + (o * DW_C + c) * L:tap * T + (o * DW_C + c + 1) * L]
                        for i in range(L):
                            s += v[i]
                        for p in range(nv * L, n):
                            s += gf[gb + (o0 + o) * gs + p] * xf[xb + (c0 + c) * cs + off + p]
                        a[o0 + o, c0 + c] += s


@njit(cache=True, inline="always")
def _span(N, nblk, j, L):
    """Block j of nblk over [0, N): whole vectors per block except the last, which ends at N."""
    per = (N // nblk) // L * L
    a = j * per
    return a, (N if j == nblk - 1 else a + per)


@pjit(cache=True)
def conv_dw_tiles(x, gp, k, lead, cols, dwparts):
    """Weight gradient of a conv layer into the float64 slabs dwparts (S, k*k, Cout, C), from its input x (C, F, h,
    w) and its pre-activation gradient gp (Cout, Ls) laid out by `widen_pad`. The positions of all fragments form
    one signal, cut into blocks of about ``cols`` (`span`); block j goes to slab j mod S."""
    C, F, h, W = x.shape
    O = gp.shape[0]
    Ls = gp.shape[1]
    oh = h - k + 1
    xf = x.reshape(-1)
    gf = gp.reshape(-1)
    cs = F * h * W
    N = (F - 1) * h * W + oh * W - (k - 1)  # past the last valid output the input would be read out of bounds
    L = lanes(xf)
    nblk = max(1, N // cols)
    S = dwparts.shape[0]
    for s in prange(S):
        lb = np.empty(k * k * DW_O * DW_C * L, x.dtype)
        for j in range(s, nblk, S):
            a, b = _span(N, nblk, j, L)
            _dw_block(gf, lead + a, Ls, xf, a, cs, W, k, O, C, b - a, lb, dwparts[s])


@pjit(cache=True)
def conv_dx_tiles(gp, wf, k, lead, cols, dx):
    """dx (C, F, h, w) = the input gradient of a conv layer, from its pre-activation gradient gp (Cout, Ls) laid out
    by `widen_pad` and its weights packed by `pack_dinput`. All fragments form one signal, cut into blocks; every
    element is computed once, in one tile (tiles overlapping at a block's end write the same bits)."""
    C, F, h, W = dx.shape
    O, Ls = gp.shape
    gf = gp.reshape(-1)
    dxf = dx.reshape(-1)
    cs = F * h * W
    L = lanes(gf)
    nblk = max(1, cs // cols)
    for j in prange(nblk):
        a, b = _span(cs, nblk, j, L)
        n = b - a
        nb = n + L
        buf = np.empty(C * nb, dx.dtype)
        _conv_block(gf, a + lead - ((k - 1) * W + k - 1), W, k, O, Ls, wf, C, buf, n, nb, NV * L)
        for c in range(C):
            d = dxf[c * cs + a:c * cs + b]
            src = buf[c * nb:c * nb + n]
            for i in range(n):
                d[i] = src[i]
