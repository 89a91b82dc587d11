"""A block's forward convolution on the register tiles (`_regtile`): the walk over tiles that the direct
convolution (`_tiles`, `_convpool`) and the transformed planes of F(2, k) (`_wtrans`) share.

A block's positions are flattened rows: with the input's row stride W, output position p reads input
p + ky*W + kx. Every output is one tile's sum in a fixed order (input maps, kernel rows, kernel columns),
whichever tile computes it, so a block's split into tiles never changes the bits.
"""
import numpy as np
from numba import njit

from ._regtile import _fwd_tile, _fwd_tile1, _fwd_tile4

OB = 6  # output channels of a forward tile
NV = 4  # vectors of positions of a forward tile


def tile_positions(dtype) -> int:
    """Positions one forward tile covers (4 vectors of 64 bytes)."""
    return NV * 64 // np.dtype(dtype).itemsize


@njit(cache=True, inline="always")
def _packed_stride(m, L):
    """Channel stride of a block's packed input: at least m, whole vectors, and an odd number of vectors so that
    the channels' rows do not all fall into the same cache sets (a stride of a multiple of 4 KiB would)."""
    v = (m + L - 1) // L
    return (v + 1 - v % 2) * L


@njit(cache=True, inline="always")
def _pack_rows(xf, xb, cs, C, m, xp, ps):
    """xp[c*ps + i] = xf[xb + c*cs + i] for c < C, i < m: a block's input rows, its channels close together. The
    tiles then read one compact slab that stays in L2; read in place, a layer whose channel stride is a multiple of
    4 KiB (n3's conv2: 1.3 MB) put every channel's row into the same cache sets, and it ran 6 % slower."""
    for c in range(C):
        d = xp[c * ps:c * ps + m]
        s = xf[xb + c * cs:xb + c * cs + m]
        for i in range(m):
            d[i] = s[i]


@njit(cache=True, nogil=True)
def _conv_block(xf, xb, W, k, kw, C, cs, wf, cout, buf, n, nb, T, ow):
    """buf[o*nb + q] for o < cout, q < n: the convolution (kernel k rows x kw columns: kw = k, or 1 for a plane of
    `_wino`) of the block whose first input element is xf[xb]. With
    ``ow`` > 0 (rows of a fragment: positions r*W + i, i < ow, are wanted; the others are dropped) and ow a multiple
    of half a tile, the tiles cover two rows' ow positions each and leave the dropped columns unwritten: n4's fc1
    (ow = 32 of W = 34) computed 6 % of its positions for nothing.

    Remainders. Positions past the last whole tile go to one-vector tiles (`_fwd_tile1`, the last moved back to
    end at n) when they fit in 3 vectors, else to a whole tile moved back; a last block of at most 4 maps goes to
    the 4-map tile (`_fwd_tile4`, moved back to end at cout). Every output is one tile's sum in the fixed order
    (maps, rows, columns of the kernel), whichever tile computes it: the same bits."""
    nob = (cout + OB - 1) // OB
    wsz = C * k * kw * OB
    L = T // NV
    rows = (n + kw - 1) // W
    pairs = ow > 0 and ow % (2 * L) == 0 and rows >= 2
    per_row = ow // (2 * L)
    ntail = 0
    if pairs:
        ntiles = ((rows + 1) // 2) * per_row
    else:
        ntiles = n // T
        r = n - ntiles * T
        if r > (NV - 1) * L or ntiles == 0:
            ntiles += 1
        else:
            ntail = (r + L - 1) // L
    v2 = W if pairs else 2 * L
    nfull = cout // OB
    for j in range(nob):
        o0 = min(j * OB, cout - OB)
        narrow = j == nfull and cout - nfull * OB <= 4
        for t in range(ntiles):  # one call site per tile: each is inlined once (compile time)
            if pairs:  # an odd last row: its pair moved back (the row before computed again, the same bits)
                q = min(2 * (t // per_row), rows - 2) * W + (t % per_row) * 2 * L
            else:
                q = min(t * T, n - T)
            if narrow:  # maps cout-4 .. cout-1: the last 4 of the packed block (which holds cout-6 .. cout-1)
                _fwd_tile4(xf, xb + q, W, k, kw, C, cs, wf, j * wsz + OB - 4, buf, (cout - 4) * nb + q, nb, v2)
            else:
                _fwd_tile(xf, xb + q, W, k, kw, C, cs, wf, j * wsz, buf, o0 * nb + q, nb, v2)
        for v in range(ntail):
            q = min(ntiles * T + v * L, n - L)
            _fwd_tile1(xf, xb + q, W, k, kw, C, cs, wf, j * wsz, buf, o0 * nb + q, nb)
