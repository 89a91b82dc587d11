"""Inference: a convolution and the max pooling after it in one pass, the pooling done on each block while the
block's convolution output is still in cache.

Why. Run apart, the convolution writes its whole output to memory and the pool reads it back and writes its own
output, which for MPF is as large again (p*p fragments of 1/p^2 each): three passes over memory where one is needed.
Those passes were 4-5 % of an n4 or n3 slice's inference at two threads, and they scale worse than the tiles.

How. The pool's windows are indexed by their first row s = a + i*p (offset a < noff, output row i < m). The start rows
of a fragment are split into runs ("chunks"); a chunk computes the convolution's rows [s0, s1 + p - 1) block by block
on the register tiles (`_block._conv_block`), adds bias and activation, and pools every window whose rows are all
in the buffer; the last p - 1 rows move to the front of the buffer for the next block. Chunks of one fragment
overlap by p - 1 rows, computed twice (so that the chunks are independent): with chunks per fragment = T / gcd(F, T),
every thread gets the same number of chunks.

Exactness. Every convolution output is the same sum in the same order as in `_tiles.conv_fwd_tiles`, whichever
block or chunk computes it, and the window max is `_pool`'s own row (`_pool._max_only_row_out`): the result is bit
for bit the one of `conv_forward` then `pool_forward` (tests/kernels/test_convpool.py). A prediction's many-map
layers compute each block's convolution by F(2, k) instead (`_wino`, `_wtrans.wino_block`): bit for bit that
convolution, then the same bias, activation and pool (tests/kernels/test_wino.py).
"""
import numpy as np
from numba import njit, prange

from ._act import _bias_act_row
from ._par import pjit
from ._pool import _max_only_row_out
from ._simd import lanes
from ._block import NV, _conv_block, _pack_rows, _packed_stride
from ._wtrans import wino_block, wino_work


@njit(cache=True, inline="always")
def _chunk(c, cpf, S, p, oh):
    """(fragment, s0, s1, r0, r1) of chunk c: its window start rows [s0, s1) and convolution rows [r0, r1)."""
    f = c // cpf
    j = c % cpf
    s0 = j * S // cpf
    s1 = (j + 1) * S // cpf
    return f, s0, s1, s0, min(s1 + p - 1, oh)


@njit(cache=True, nogil=True)
def _max_block_rows(nchunks, cpf, S, p, oh, rows):
    """The most rows any block of any chunk has (a chunk's rows are split into max(1, len // rows) even blocks)."""
    most = 1
    for c in range(nchunks):
        _, _, _, r0, r1 = _chunk(c, cpf, S, p, oh)
        nbk = max(1, (r1 - r0) // rows)
        most = max(most, -(-(r1 - r0) // nbk))
    return most


@njit(cache=True, nogil=True)
def _pool_rows(buf, nb, base, nrows, W, O, s_lo, s_hi, p, noff, m, n, y, g0, col, best):
    """Pool the windows with start rows s in [s_lo, s_hi) from buf, which holds convolution rows [base, base +
    nrows) of every output map o at buf[o*nb + (row - base)*W + column]."""
    L = (noff - 1) + (n - 1) * p + 1
    for o in range(O):
        xs = buf[o * nb:o * nb + nrows * W].reshape((nrows, W))
        for s in range(s_lo, s_hi):
            a = s % p
            i = s // p
            if a < noff and i < m:
                _max_only_row_out(xs, s - base, p, noff, L, col, best, y, o, g0 + a * noff, i, n)


@pjit(cache=True)
def conv_pool_fwd_tiles(x, wf, b, code, fast, k, rows, p, noff, cpf, y, threads, wz):
    """y (Cout, F*noff^2, m, n) = MPF pool p (noff offsets per axis) of act(conv(x, W) + b), for x (C, F, h, w)
    and W packed by `_tiles.pack_forward`; ``cpf`` chunks per fragment, dealt round-robin to ``threads`` threads.
    With ``wz`` (`_wino.pack`(W); else None), each block's convolution runs by F(2, k) (`_wtrans.wino_block`); with
    None, Numba prunes that branch, so the direct build never compiles it."""
    C, F, h, W = x.shape
    O = b.shape[0]
    m, n = y.shape[2], y.shape[3]
    oh = h - k + 1
    S = (noff - 1) + (m - 1) * p + 1  # window start rows 0 .. S-1 (some skipped when noff < p)
    xf = x.reshape(-1)
    cs = F * h * W
    L = lanes(xf)
    nchunks = F * cpf
    T = min(threads, nchunks)
    R = _max_block_rows(nchunks, cpf, S, p, oh, rows)
    nb = (R + p) * W  # a block's rows plus up to p - 1 carried rows
    for t in prange(T):
        buf = np.zeros(O * nb, x.dtype)  # the row-pair tiles leave dropped columns unwritten
        ps = _packed_stride((R + k - 1) * W, L)
        col = np.empty(W + p, x.dtype)
        best = np.empty(W + p, x.dtype)
        if wz is None:
            xp = np.empty(C * ps, x.dtype)
            work = wino_work(0, 0, 0, 0, 0, xf)
        else:
            xp = np.empty(0, x.dtype)
            work = wino_work(k, C, O, R, (W - k + 2) // 2, xf)
        for c in range(t, nchunks, T):
            f, s0, s1, r0, r1 = _chunk(c, cpf, S, p, oh)
            nbk = max(1, (r1 - r0) // rows)
            carry = 0  # rows at the front of buf from the block before: convolution rows [rb - carry, rb)
            s = s0  # the first window not pooled yet
            for j in range(nbk):
                rb = r0 + j * (r1 - r0) // nbk
                Rb = r0 + (j + 1) * (r1 - r0) // nbk - rb
                cnt = Rb * W - (k - 1)
                if wz is None:
                    _pack_rows(xf, f * h * W + rb * W, cs, C, (Rb + k - 1) * W, xp, ps)
                    _conv_block(xp, 0, W, k, k, C, ps, wf, O, buf[carry * W:], cnt, nb, NV * L, W - k + 1)
                else:
                    wino_block(xf, f * h * W + rb * W, W, Rb, C, cs, wz, k, O, work, R, buf[carry * W:], nb,
                               W, W - k + 1)
                for o in range(O):
                    q = o * nb + carry * W
                    _bias_act_row(buf[q:q + cnt], b[o], code, fast, cnt)
                base = rb - carry
                top = rb + Rb  # rows [base, top) are in buf
                s_hi = min(s1, top - p + 1)
                _pool_rows(buf, nb, base, top - base, W, O, s, s_hi, p, noff, m, n, y, f * noff * noff, col, best)
                s = max(s, s_hi)
                keep = top - s if s < s1 else 0
                for o in range(O):
                    d = o * nb
                    src = d + (top - base - keep) * W
                    for i in range(keep * W):
                        buf[d + i] = buf[src + i]
                carry = keep
