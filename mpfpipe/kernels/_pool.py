"""Max pooling over fragments: MPF (all p*p offsets) in dense mode, plain pooling (offset 0 only) in patch mode.

Forward on ``(C, F, h, w)``: for each offset (a, b) (all of [0, p)^2 when ``dense``, only (0, 0) otherwise) pool
``x[:, f, a:a+m*p, b:b+m*p]`` with non-overlapping p x p windows into fragment ``f*noff^2 + a*noff + b``. The arg-max
is the *first* maximum in row-major order inside the window (strict >), the same rule in both modes, so ties
(ReLU zeros, saturated tanh) route the gradient identically. Backward accumulates: offsets that share a maximum
add their gradients into the same input position.
"""
import numpy as np
from numba import njit, prange

from . import _arena
from ._par import pjit
from ._simd import lanes, vload, vmaxgt, veven, vodd, vstore


@njit(cache=True, nogil=True)
def _window_max_row(xs, y0, p, L, best, arg):
    """best[x], arg[x] = the max and its first position (row-major, strict >) in the p x p window of xs at (y0, x),
    for every x < L: contiguous row passes that LLVM vectorises (selects, no branches). The MPF offsets then read
    every p-th entry: computed window by window and offset by offset, the same work ran 1.2-2.4x slower."""
    r0 = xs[y0, 0:L]
    for x in range(L):
        best[x] = r0[x]
        arg[x] = 0
    for ry in range(p):
        for rx in range(p):
            if ry == 0 and rx == 0:
                continue
            r = xs[y0 + ry, rx:rx + L]
            code = ry * p + rx
            for x in range(L):
                v = r[x]
                bx = best[x]
                better = v > bx
                best[x] = v if better else bx
                arg[x] = code if better else arg[x]


@njit(cache=True, inline="always")
def _deal(src, out, c, g, i, noff, n):
    """out[c, g + b, i, j] = src[j*noff + b] for b < noff, j < n, when noff is 2 or 3 (n3 / n4's pools): the MPF
    column offsets of one window row in one de-interleaving pass. Copied through strided views, element by element,
    they made those pools 1.4-1.6x slower. Returns False (nothing written) for other noff."""
    if noff == 2:
        d0, d1 = out[c, g, i], out[c, g + 1, i]
        for j in range(n):
            d0[j] = src[2 * j]
            d1[j] = src[2 * j + 1]
        return True
    if noff == 3:
        d0, d1, d2 = out[c, g, i], out[c, g + 1, i], out[c, g + 2, i]
        for j in range(n):
            d0[j] = src[3 * j]
            d1[j] = src[3 * j + 1]
            d2[j] = src[3 * j + 2]
        return True
    return False


@pjit(cache=True)
def _pool_fwd(x, p, noff, y, idx):
    C, F, h, w = x.shape
    m, n = y.shape[2], y.shape[3]
    L = (noff - 1) + (n - 1) * p + 1  # window columns used: b + j*p for b < noff, j < n
    for cf in prange(C * F):
        c = cf // F
        f = cf % F
        xs = x[c, f]
        best = np.empty(L + p, x.dtype)
        arg = np.empty(L + p, np.int32)
        for a in range(noff):
            for i in range(m):
                _window_max_row(xs, a + i * p, p, L, best, arg)
                if _deal(best, y, c, f * noff * noff + a * noff, i, noff, n):
                    _deal(arg, idx, c, f * noff * noff + a * noff, i, noff, n)
                    continue
                for b in range(noff):
                    g = f * noff * noff + a * noff + b
                    yr = y[c, g, i]
                    ir = idx[c, g, i]
                    bs = best[b:b + n * p:p]
                    ia = arg[b:b + n * p:p]
                    for j in range(n):
                        yr[j] = bs[j]
                        ir[j] = ia[j]


@njit(cache=True, nogil=True)
def _window_max_only_row(xs, y0, p, L, col, best):
    """best[x] = the max of the p x p window of xs at (y0, x) for x < L: `_window_max_row` without the arg-max, for
    inference (no backward pass): max of the p rows first (into ``col``, L + p - 1 long), then of p neighbouring
    columns, all contiguous passes."""
    r0 = xs[y0, 0:L + p - 1]
    for x in range(L + p - 1):
        col[x] = r0[x]
    for ry in range(1, p):
        r = xs[y0 + ry, 0:L + p - 1]
        for x in range(L + p - 1):
            v = r[x]
            col[x] = v if v > col[x] else col[x]  # strict >: the same value as `_window_max_row`, NaN too
    for x in range(L):
        best[x] = col[x]
    for rx in range(1, p):
        c = col[rx:rx + L]
        for x in range(L):
            v = c[x]
            best[x] = v if v > best[x] else best[x]


@njit(cache=True, inline="always")
def _pool2_row(r0, r1, d0, d1, n):
    """d0[j], d1[j] = the max of the 2 x 2 windows at columns 2j and 2j + 1 of rows r0, r1 (MPF p = 2's two column
    offsets of one window row), for j < n; r0 and r1 are at least 2n + 1 long, all four C-contiguous.

    The column maxima col[x] = (r1[x] if r1[x] > r0[x] else r0[x]), then e[x] = (col[x+1] if col[x+1] > col[x]
    else col[x]), so d0[j] = e[2j] and d1[j] = e[2j + 1]: the same strict comparisons in the same order as
    `_window_max_only_row` then `_deal` (rows first, then columns), so the same values, NaN included. Whole vectors
    of outputs take 8 loads, 6 selects and 2 de-interleaving shuffles (`_simd`); left to LLVM, the stride-2 reads
    stayed scalar, and the pool was 3-6 % of n4's conv + pool layers (one thread: conv4 14.7 of 228 ms)."""
    L = lanes(r0)
    nv = n // L
    for v in range(nv):
        x = 2 * v * L
        ca = vmaxgt(vload(r1, x), vload(r0, x))
        ca1 = vmaxgt(vload(r1, x + 1), vload(r0, x + 1))
        cb = vmaxgt(vload(r1, x + L), vload(r0, x + L))
        cb1 = vmaxgt(vload(r1, x + L + 1), vload(r0, x + L + 1))
        ea = vmaxgt(ca1, ca)
        eb = vmaxgt(cb1, cb)
        vstore(d0, v * L, veven(ea, eb))
        vstore(d1, v * L, vodd(ea, eb))
    for j in range(nv * L, n):
        x = 2 * j
        c0 = r0[x]
        v = r1[x]
        c0 = v if v > c0 else c0
        c1 = r0[x + 1]
        v = r1[x + 1]
        c1 = v if v > c1 else c1
        c2 = r0[x + 2]
        v = r1[x + 2]
        c2 = v if v > c2 else c2
        d0[j] = c1 if c1 > c0 else c0
        d1[j] = c2 if c2 > c1 else c1


@njit(cache=True, inline="always")
def _max_only_row_out(xs, y0, p, noff, L, col, best, y, c, g, i, n):
    """Inference pooling of one window row: the windows on rows y0 .. y0+p-1 of xs into y[c, g + b, i] for the
    column offsets b < noff (the row passes, de-interleaved; p = 2 in one pass). Shared by `_pool_fwd_only` and the
    fused conv + pool (`_convpool`)."""
    if p == 2 and noff == 2:
        _pool2_row(xs[y0], xs[y0 + 1], y[c, g, i], y[c, g + 1, i], n)
        return
    _window_max_only_row(xs, y0, p, L, col, best)
    if _deal(best, y, c, g, i, noff, n):
        return
    for b in range(noff):
        yr = y[c, g + b, i]
        bs = best[b:b + n * p:p]
        for j in range(n):
            yr[j] = bs[j]


@pjit(cache=True)
def _pool_fwd_only(x, p, noff, y):
    """`_pool_fwd` without the arg-max (inference)."""
    C, F, h, w = x.shape
    m, n = y.shape[2], y.shape[3]
    L = (noff - 1) + (n - 1) * p + 1
    for cf in prange(C * F):
        c = cf // F
        f = cf % F
        xs = x[c, f]
        best = np.empty(L + p, x.dtype)
        col = np.empty(L + p, x.dtype)
        for a in range(noff):
            for i in range(m):
                _max_only_row_out(xs, a + i * p, p, noff, L, col, best, y, c, f * noff * noff + a * noff, i, n)


@njit(cache=True, inline="always")
def _add2(d, g, ids, code, n, zero):
    """d[2j + rx] += g[j] where ids[j] == code + rx (rx < 2), for j < n: one window row of a p = 2 pool's gradient
    as a contiguous pass (zeros added elsewhere, so no scattered stores). Per element the same adds in the same
    offset order as the scatter, so the same sums (a -0.0 may become +0.0)."""
    for j in range(n):
        r = ids[j]
        v = g[j]
        d[2 * j] += v if r == code else zero  # zero of d's dtype: a float64 0.0 would widen the add
        d[2 * j + 1] += v if r == code + 1 else zero


@pjit(cache=True)
def _pool_bwd(dy, idx, p, noff, dx):
    C, F, h, w = dx.shape
    m, n = dy.shape[2], dy.shape[3]
    # the arg-max's row and column by table: an integer division per element cost as much as the rest
    ry_of = np.empty(p * p, np.int64)
    rx_of = np.empty(p * p, np.int64)
    for r in range(p * p):
        ry_of[r] = r // p
        rx_of[r] = r % p
    zero = np.zeros(1, dx.dtype)[0]
    # one (channel, input fragment) per thread: all writes of an iteration stay in its own slice, no races
    for cf in prange(C * F):
        c = cf // F
        f = cf % F
        dxs = dx[c, f]
        for a in range(noff):
            for b in range(noff):
                g = f * noff * noff + a * noff + b
                dys = dy[c, g]
                ids = idx[c, g]
                if noff == 2:  # dense p = 2 (patch mode has one offset)
                    for i in range(m):
                        for ry in range(2):
                            _add2(dxs[a + 2 * i + ry, b:], dys[i], ids[i], 2 * ry, n, zero)
                    continue
                for i in range(m):
                    y0 = a + i * p
                    for j in range(n):
                        r = ids[i, j]
                        dxs[y0 + ry_of[r], b + j * p + rx_of[r]] += dys[i, j]


def pool_forward(x: np.ndarray, p: int, dense: bool, need_idx: bool = True):
    """Returns (y, argmax), the argmax None unless ``need_idx`` (a backward pass follows). ``dense``: MPF, h must
    equal m*p + p - 1; patch mode: h must equal m*p."""
    C, F, h, w = x.shape
    noff = p if dense else 1
    if (h - noff + 1) % p or (w - noff + 1) % p:
        raise ValueError(f"pool {p}: input {h}x{w} is not exact for {'MPF' if dense else 'patch'} pooling")
    m, n = (h - noff + 1) // p, (w - noff + 1) // p
    y = _arena.empty((C, F * noff * noff, m, n), x.dtype)
    if not need_idx:
        _pool_fwd_only(x, p, noff, y)
        return y, None
    idx = _arena.empty((C, F * noff * noff, m, n), np.uint8)
    _pool_fwd(x, p, noff, y, idx)
    return y, idx


def pool_backward(dy: np.ndarray, idx: np.ndarray, p: int, dense: bool, in_shape) -> np.ndarray:
    dx = _arena.empty(in_shape, dy.dtype)
    dx.fill(0)  # the backward pass accumulates
    _pool_bwd(np.ascontiguousarray(dy), idx, p, p if dense else 1, dx)
    return dx
