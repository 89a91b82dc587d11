"""The head: a net's trailing 1x1 layers (its fc layers once the last conv has left a 1x1 extent, e.g. steel's
fc 100 -> fc 2) fused into one per-pixel MLP over blocks of pixels (network.head_start: two layers or more).

As separate 1x1 convolutions these layers are the worst case of im2col + GEMM: a short column (8 rows for steel's
fc1), a tall output (100 maps of every pixel written to memory and read back for the activation, the next layer and
the backward pass) and BLAS at 3-7 GFLOP/s on such shapes (measured: steel's two fc layers at 137x60 took
4.6-7.7 ms per training step that way, 1.6 ms here). Here a thread takes a block of BLOCK pixels through
all head layers with the hidden maps in its cache; the backward pass recomputes them block by block (the head's
forward costs a third of its backward) instead of keeping them on the tape.

Layers are passed flattened: ``dims`` (L+1,) = (C, n1, ..., nL); ``wflat`` / ``bflat`` the weights (out, in) and
biases one after another; ``codes`` the activation codes. Each layer of a block is one small GEMM (kernels._blas;
one thread, steel's head forward + backward per 137x60 training step: 3.3 ms with the hand-written loops it
replaced, 2.1 ms); weight gradients are accumulated per thread in float64 and summed in thread order:
deterministic for a given thread count, like the other kernels.
"""
import numpy as np
from numba import get_num_threads, njit, prange  # get_num_threads outside kernels: keeps them cacheable

from . import _arena
from ._act import ACT_CODES, _act_grad_rows, _bias_act_row
from ._blas import gemm
from ._par import pjit
from ._simd import vadd, vload64, vsum, vzero64

BLOCK = 512  # pixels per block: a 100-map hidden block is 200 KiB in float32 (L2)
# Gradient reductions accumulate into SLABS float64 slabs, a fixed number whatever the thread count: slab s always
# gets the same blocks (s, s + SLABS, ...) and the slabs are summed in order, so a gradient is bit-identical on 1, 2
# or 64 threads (one slab per thread made the summation order follow the thread count). The price: a backward
# pass uses at most SLABS threads, and SLABS zeroed slabs per layer (a few MB for n4's widest layer).
SLABS = 16


@njit(cache=True, nogil=True)
def _dense(w, b, code, fast, src, dst, n):
    """dst[o, :n] = act(b[o] + sum_c w[o, c] * src[c, :n]): one GEMM on the block (rows BLOCK apart), then bias
    and activation row by row while the block is in cache."""
    cout, cin = w.shape
    gemm(False, False, cout, n, cin, 1.0, w, cin, src, BLOCK, 0.0, dst, BLOCK)
    for o in range(cout):
        _bias_act_row(dst[o], b[o], code, fast, n)


@njit(cache=True, nogil=True)
def row_sum(r, n):
    """sum(r[:n]) in float64 (r contiguous), with 4 x 8 explicit float64 lanes (`_simd`): independent partial sums
    run at vector speed (a plain loop is one chain of dependent adds, ~4 cycles each: steel's fc1 weight-and-bias
    gradient of a 512-pixel block took 48 us with it, 12 us with fastmath reassociation), and unlike fastmath
    reassociation, where LLVM picks the vector width and the tree per CPU, the order is part of the code: element
    i goes to lane i mod 32, lanes are summed in a fixed order (`vsum`), the tail last. The same bits on AVX2 and
    AVX-512."""
    a0, a1, a2, a3 = vzero64(r), vzero64(r), vzero64(r), vzero64(r)
    i = 0
    while i + 32 <= n:
        a0 = vadd(a0, vload64(r, i))
        a1 = vadd(a1, vload64(r, i + 8))
        a2 = vadd(a2, vload64(r, i + 16))
        a3 = vadd(a3, vload64(r, i + 24))
        i += 32
    s = vsum(vadd(vadd(a0, a1), vadd(a2, a3)))
    while i < n:
        s += r[i]
        i += 1
    return s


@njit(cache=True, nogil=True)
def _accumulate_dw(g, a, part, dw, db, n):
    """dw[o, c] += sum_i g[o, i] a[c, i] (a GEMM into the float32 ``part``, then float64); db[o] += sum_i g[o, i]."""
    cout, cin = dw.shape
    gemm(False, True, cout, cin, n, 1.0, g, BLOCK, a, BLOCK, 0.0, part, cin)
    for o in range(cout):
        db[o] += row_sum(g[o], n)
        for c in range(cin):
            dw[o, c] += part[o * cin + c]


@njit(cache=True, nogil=True)
def _offsets(dims):
    L = dims.shape[0] - 1
    woff = np.zeros(L + 1, np.int64)
    boff = np.zeros(L + 1, np.int64)
    aoff = np.zeros(L + 2, np.int64)
    for l in range(L):
        woff[l + 1] = woff[l] + dims[l + 1] * dims[l]
        boff[l + 1] = boff[l] + dims[l + 1]
    for l in range(L + 1):
        aoff[l + 1] = aoff[l] + dims[l] * BLOCK
    return woff, boff, aoff


@njit(cache=True, nogil=True)
def _block_forward(x2, i0, n, dims, wflat, bflat, codes, fast, woff, boff, aoff, abuf):
    """Load pixels i0:i0+n of x2 (C, N) into activation slot 0 and run every layer; slot l holds layer l's output."""
    C = dims[0]
    a0 = abuf[aoff[0]:aoff[1]].reshape(C, BLOCK)
    for c in range(C):
        for i in range(n):
            a0[c, i] = x2[c, i0 + i]
    L = dims.shape[0] - 1
    for l in range(L):
        cin, cout = dims[l], dims[l + 1]
        w = wflat[woff[l]:woff[l + 1]].reshape(cout, cin)
        src = abuf[aoff[l]:aoff[l + 1]].reshape(cin, BLOCK)
        dst = abuf[aoff[l + 1]:aoff[l + 2]].reshape(cout, BLOCK)
        _dense(w, bflat[boff[l]:boff[l + 1]], codes[l], fast, src, dst, n)


@pjit(cache=True)
def head_forward(x2, dims, wflat, bflat, codes, fast, T, out2):
    """out2 (K, N) = the head on every pixel (column) of x2 (C, N), blocks dealt round-robin to T threads."""
    N = x2.shape[1]
    L = dims.shape[0] - 1
    K = dims[L]
    woff, boff, aoff = _offsets(dims)
    nblk = (N + BLOCK - 1) // BLOCK
    for t in prange(T):
        abuf = np.empty(aoff[L + 1], dtype=x2.dtype)
        last = abuf[aoff[L]:aoff[L + 1]].reshape(K, BLOCK)
        for blk in range(t, nblk, T):
            i0 = blk * BLOCK
            n = min(BLOCK, N - i0)
            _block_forward(x2, i0, n, dims, wflat, bflat, codes, fast, woff, boff, aoff, abuf)
            for k in range(K):
                for i in range(n):
                    out2[k, i0 + i] = last[k, i]


@pjit(cache=True)
def head_backward(x2, dims, wflat, bflat, codes, fast, dout2, need_dx, dwparts, dbparts, dx2):
    """Gradients of the head given d loss / d head output ``dout2`` (K, N): weights and biases into the
    float64 slabs dwparts (T, sum out*in) / dbparts (T, sum out); if need_dx, the input gradient into dx2 (C, N)."""
    N = x2.shape[1]
    L = dims.shape[0] - 1
    K = dims[L]
    woff, boff, aoff = _offsets(dims)
    nblk = (N + BLOCK - 1) // BLOCK
    T = dwparts.shape[0]
    wmax = 0
    for l in range(L):
        wmax = max(wmax, dims[l] * dims[l + 1])
    for t in prange(T):
        abuf = np.empty(aoff[L + 1], dtype=x2.dtype)
        part = np.empty(wmax, dtype=x2.dtype)
        gmax = 0
        for l in range(L + 1):
            gmax = max(gmax, dims[l])
        gbuf = np.empty(2 * gmax * BLOCK, dtype=x2.dtype)
        for blk in range(t, nblk, T):
            i0 = blk * BLOCK
            n = min(BLOCK, N - i0)
            _block_forward(x2, i0, n, dims, wflat, bflat, codes, fast, woff, boff, aoff, abuf)
            g = gbuf[:K * BLOCK].reshape(K, BLOCK)
            for k in range(K):
                for i in range(n):
                    g[k, i] = dout2[k, i0 + i]
            cur = 0
            for l in range(L - 1, -1, -1):
                cin, cout = dims[l], dims[l + 1]
                a_out = abuf[aoff[l + 1]:aoff[l + 2]].reshape(cout, BLOCK)
                a_in = abuf[aoff[l]:aoff[l + 1]].reshape(cin, BLOCK)
                _act_grad_rows(g, a_out, codes[l], cout, n)
                dw = dwparts[t, woff[l]:woff[l + 1]].reshape(cout, cin)
                _accumulate_dw(g, a_in, part, dw, dbparts[t, boff[l]:boff[l + 1]], n)
                if l > 0 or need_dx:
                    nxt = 1 - cur
                    gin = gbuf[nxt * gmax * BLOCK:nxt * gmax * BLOCK + cin * BLOCK].reshape(cin, BLOCK)
                    gemm(True, False, cin, n, cout, 1.0, wflat[woff[l]:], cin, g, BLOCK, 0.0, gin, BLOCK)
                    g, cur = gin, nxt
            if need_dx:
                C = dims[0]
                for c in range(C):
                    for i in range(n):
                        dx2[c, i0 + i] = g[c, i]


def sum_parts(parts: np.ndarray) -> np.ndarray:
    """Sum of the float64 slabs parts[0] + parts[1] + ... in slab order (the kernels accumulate into separate slabs
    to avoid races; a fixed number of them, see SLABS, so the order does not depend on the thread count)."""
    total = parts[0].copy()
    for t in range(1, parts.shape[0]):
        total += parts[t]
    return total


def _flatten(layers, dtype):
    dims = np.array([layers[0][0].shape[1]] + [w.shape[0] for w, _, _ in layers], dtype=np.int64)
    wflat = np.concatenate([np.asarray(w, dtype).reshape(-1) for w, _, _ in layers])
    bflat = np.concatenate([np.asarray(b, dtype).reshape(-1) for _, b, _ in layers])
    codes = np.array([ACT_CODES[a] for _, _, a in layers], dtype=np.int64)
    return dims, wflat, bflat, codes


def forward_head(x: np.ndarray, layers) -> np.ndarray:
    """x (C, F, h, w) through ``layers`` = [(weight (out, in, 1, 1), bias (out,), act), ...] -> (K, F, h, w)."""
    C, F, h, w = x.shape
    dims, wflat, bflat, codes = _flatten(layers, x.dtype)
    assert dims[0] == C, "channel mismatch"
    out = _arena.empty((int(dims[-1]), F, h, w), x.dtype)
    T = max(1, min(get_num_threads(), (F * h * w + BLOCK - 1) // BLOCK))
    head_forward(np.ascontiguousarray(x).reshape(C, -1), dims, wflat, bflat, codes, x.dtype == np.float32, T,
                 out.reshape(out.shape[0], -1))
    return out


def backward_head(x: np.ndarray, layers, dout: np.ndarray, need_dx: bool):
    """Gradients of the head: ([(dweight, dbias) float64 per layer], dx or None) given d loss / d output."""
    C, F, h, w = x.shape
    dims, wflat, bflat, codes = _flatten(layers, x.dtype)
    N = F * h * w
    T = max(1, min(SLABS, (N + BLOCK - 1) // BLOCK))
    dwparts = np.zeros((T, wflat.size), np.float64)
    dbparts = np.zeros((T, bflat.size), np.float64)
    dx = np.empty_like(x) if need_dx else None
    head_backward(np.ascontiguousarray(x).reshape(C, N), dims, wflat, bflat, codes, x.dtype == np.float32,
                  np.ascontiguousarray(dout).reshape(dout.shape[0], N), need_dx, dwparts, dbparts,
                  dx.reshape(C, N) if need_dx else np.zeros((1, 1), x.dtype))
    dw, db = sum_parts(dwparts), sum_parts(dbparts)
    grads, wo, bo = [], 0, 0
    for wl, bl, _ in layers:
        grads.append((dw[wo:wo + wl.size].reshape(wl.shape), db[bo:bo + bl.size]))
        wo += wl.size
        bo += bl.size
    return grads, dx
