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

from . import _arena
from ._act import _act_grad_row, _bias_act_row
from ._blas import gemm
from ._head import row_sum
from ._par import pjit
from ._block import NV, OB, _conv_block, _pack_rows, _packed_stride, tile_positions
from ._regtile import _dw_tile
from ._simd import lanes
from ._wtrans import wino_block, wino_work

DW_O, DW_C = 4, 6  # output x input channels of a weight-gradient tile
DW_CHUNK = 32  # vectors of positions per weight-gradient tile call: its g and x rows stay in L1
BLOCK_COLS = 2048  # positions of a row block: its input slab stays in L2 (n4: 48 x 2.4k floats)


def rows_per_block(w: int, k: int, dtype, cols: int | None = None) -> int:
    """Output rows of a forward block: about ``cols`` (default BLOCK_COLS) positions, and never fewer than one
    tile."""
    return max((cols or BLOCK_COLS) // w, -(-(tile_positions(dtype) + k - 1) // w), 1)


def span(dtype) -> int:
    """Positions of a backward block (of the whole signal): about BLOCK_COLS, at least two tiles."""
    return max(BLOCK_COLS, 2 * tile_positions(dtype))


def usable(cin: int, cout: int, oh: int, ow: int, w: int, k: int, dtype) -> bool:
    """Whether a layer can run on the tiles: 6+ channels either way, and every fragment's output (and, for the
    input gradient, its input) at least one tile long. Smaller fragments (patch mode) use the tap GEMMs."""
    return cin >= OB and usable_forward(cout, oh, w, k, dtype)


def usable_forward(cout: int, oh: int, w: int, k: int, dtype) -> bool:
    """Whether a layer's forward pass can run on the tiles: `usable` without the input maps' rule (that one is for
    the backward passes, whose input-gradient and weight-gradient tiles run over 6 input maps)."""
    return cout >= OB and oh * w - (k - 1) >= tile_positions(dtype)


def pack_forward(weight: np.ndarray, dtype) -> np.ndarray:
    """(Cout, C, k, k) -> flat blocks of OB output channels, (nblocks, C, k, k, OB): what `_fwd_tile` walks in order.
    Block j holds channels o0 .. o0+OB-1 with o0 = min(j*OB, Cout-OB)."""
    cout, C, k, kw = weight.shape
    nob = -(-cout // OB)
    out = np.empty((nob, C, k, kw, OB), dtype)
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


@pjit(cache=True)
def conv_fwd_tiles(x, wf, b, code, fast, rows, y, threads, post, wp, bp, z, keep, wz):
    """y (Cout, F, oh, ow) = act(conv(x, W) + b) for x (C, F, h, w), W packed by `pack_forward`. Row blocks are
    dealt round-robin to ``threads`` threads. With ``post``, also z (K, F, oh, ow) = wp (K, Cout) @ y + bp, a
    following linear 1x1 layer (n3 / n4's output layer after fc1), computed on each block while it is in cache;
    then without ``keep`` y is not written at all (inference: n4's fc1 output is 210 MB on a 512x512 slice that
    nobody reads) and may be any array. With ``wz`` (`_wino.pack`(W); else None), each block's convolution runs by
    F(2, k) (`_wtrans.wino_block`); with None, Numba prunes that branch, so the direct build never compiles it."""
    C, F, h, W = x.shape
    O = b.shape[0]
    oh, ow = (z.shape[2], z.shape[3]) if post and not keep else (y.shape[2], y.shape[3])
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
        buf = np.zeros(O * nb, x.dtype)  # zeros: columns the row-pair tiles leave unwritten go through act and post
        zbuf = np.empty(K * nb if post else 1, x.dtype)
        ps = _packed_stride(nb + (k - 1) * W, L)
        if wz is None:
            xp = np.empty(C * ps, x.dtype)
            work = wino_work(0, 0, 0, 0, 0, xf)
        else:
            xp = np.empty(0, x.dtype)
            work = wino_work(k, C, O, oh // per_f + 1, (ow + 1) // 2, xf)
        for blk in range(t, nblk, T):
            f = blk // per_f
            j = blk % per_f
            y0 = j * oh // per_f
            R = (j + 1) * oh // per_f - y0
            n = R * W - (k - 1)
            if wz is None:
                _pack_rows(xf, f * h * W + y0 * W, cs, C, (R + k - 1) * W, xp, ps)
                _conv_block(xp, 0, W, k, k, C, ps, wf, O, buf, n, nb, NV * L, ow)
            else:
                wino_block(xf, f * h * W + y0 * W, W, R, C, cs, wz, k, O, work, oh // per_f + 1, buf, nb, W, ow)
            for o in range(O):
                _bias_act_row(buf[o * nb:o * nb + n], b[o], code, fast, n)
                if post and not keep:
                    continue
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
    raw = _arena.empty(n + 64 // dtype.itemsize, dtype)
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


@njit(cache=True, nogil=True)
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
    pad = (k - 1) * W + k - 1
    for j in prange(nblk):
        a, b = _span(cs, nblk, j, L)
        n = b - a
        nb = n + L
        buf = np.empty(C * nb, dx.dtype)
        ps = _packed_stride(n + 2 * pad, L)
        gpk = np.empty(O * ps, dx.dtype)
        _pack_rows(gf, a + lead - pad, Ls, O, n + 2 * pad, gpk, ps)
        # ow = 0 (flat tiles) as a run-time int: a literal 0 made Numba build and inline a second variant
        _conv_block(gpk, 0, W, k, k, O, ps, wf, C, buf, n, nb, NV * L, n - n)
        for c in range(C):
            d = dxf[c * cs + a:c * cs + b]
            src = buf[c * nb:c * nb + n]
            for i in range(n):
                d[i] = src[i]
