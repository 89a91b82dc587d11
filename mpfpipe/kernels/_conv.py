"""Valid convolution (cross-correlation) over stacked fragments as blocked im2col + GEMM.

The output positions of a ``(C, F, h, w)`` input are taken in *row units* (fragment f, output row y); a block of
consecutive units is unrolled into a ``(C*k*k, units*ow)`` column buffer and multiplied by the ``(Cout, C*k*k)``
weight matrix with BLAS. Blocking keeps the buffer at a few MiB whatever the image size (the unblocked im2col of an
n4 512x512 layer would take gigabytes) and lets the GEMM work on data still in cache. Gradients of the weights are
accumulated block by block in float64, in a fixed order, so they are deterministic and accurate in float32 runs.
"""
import numpy as np
from numba import njit, prange

from ._act import act_backward, bias_act_forward
from ._direct import conv_direct_dinput, conv_direct_dweight, conv_direct_forward

# Elements of the im2col buffer per block (1 Mi elements = 4 MiB in float32: measured best of 2^18..2^22 on
# the n4 layers, the GEMM reading its operand from L2/L3).
COL_BUDGET = 1 << 20
# Layers with C_in * C_out up to this use the direct kernels (few channels: im2col + GEMM does not pay).
DIRECT_MAX = 128


def use_direct(cin: int, cout: int, k: int) -> bool:
    return k > 1 and cin * cout <= DIRECT_MAX


@njit(parallel=True, cache=True)
def _im2col(x, k, u0, u1, oh, ow, col):
    C = x.shape[0]
    kk = k * k
    for r in prange(C * kk):
        c = r // kk
        ky = (r % kk) // k
        kx = r % k
        pos = 0
        for u in range(u0, u1):
            f = u // oh
            y = u - f * oh
            for xx in range(ow):
                col[r, pos + xx] = x[c, f, y + ky, xx + kx]
            pos += ow


@njit(parallel=True, cache=True)
def _col2im(dcol, k, u0, u1, oh, ow, dx):
    C = dx.shape[0]
    kk = k * k
    # parallel over input channels only: every write of an iteration lands in its own channel
    for c in prange(C):
        for ky in range(k):
            for kx in range(k):
                r = c * kk + ky * k + kx
                pos = 0
                for u in range(u0, u1):
                    f = u // oh
                    y = u - f * oh
                    for xx in range(ow):
                        dx[c, f, y + ky, xx + kx] += dcol[r, pos + xx]
                    pos += ow


def _blocks(C, k, F, oh, ow):
    units = F * oh
    per = max(1, min(units, COL_BUDGET // max(1, C * k * k * ow)))
    return [(u0, min(units, u0 + per)) for u0 in range(0, units, per)], per


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, act: str) -> np.ndarray:
    """y = act(conv(x, weight) + bias) for x (C, F, h, w), weight (Cout, C, k, k) -> y (Cout, F, h-k+1, w-k+1)."""
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    assert cin == C, "channel mismatch"
    oh, ow = h - k + 1, w - k + 1
    y = np.empty((cout, F, oh, ow), dtype=x.dtype)
    y2 = y.reshape(cout, F * oh * ow)
    w2 = np.ascontiguousarray(weight.reshape(cout, C * k * k), dtype=x.dtype)
    b = np.ascontiguousarray(bias, dtype=x.dtype)
    if k == 1:
        np.matmul(w2, x.reshape(C, F * h * w), out=y2)
        bias_act_forward(y2, b, act)
        return y
    if use_direct(C, cout, k):
        conv_direct_forward(x, np.ascontiguousarray(weight, dtype=x.dtype), y)
        bias_act_forward(y2, b, act)
        return y
    blocks, per = _blocks(C, k, F, oh, ow)
    buf = np.empty(C * k * k * per * ow, dtype=x.dtype)
    for u0, u1 in blocks:
        n = (u1 - u0) * ow
        col = buf[:C * k * k * n].reshape(C * k * k, n)
        _im2col(x, k, u0, u1, oh, ow, col)
        out = y2[:, u0 * ow:u1 * ow]
        np.matmul(w2, col, out=out)
        bias_act_forward(out, b, act)
    return y


def conv_backward(x: np.ndarray, weight: np.ndarray, y: np.ndarray, dy: np.ndarray, act: str, need_dx: bool):
    """Gradients of a conv layer given its input x, output y and the loss gradient dy w.r.t. y.

    ``dy`` is overwritten (multiplied by the activation derivative). Returns (dweight float64, dbias float64,
    dx or None)."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    oh, ow = h - k + 1, w - k + 1
    dy2 = dy.reshape(cout, F * oh * ow)
    act_backward(dy2, y.reshape(cout, F * oh * ow), act)
    db = dy2.sum(axis=1, dtype=np.float64)
    w2 = np.ascontiguousarray(weight.reshape(cout, C * k * k), dtype=x.dtype)
    dw = np.zeros((cout, C * k * k), dtype=np.float64)
    if k == 1:
        x2 = x.reshape(C, F * h * w)
        dw += dy2 @ x2.T
        dx = (w2.T @ dy2).reshape(C, F, h, w) if need_dx else None
        return dw.reshape(weight.shape), db, dx
    dx = np.zeros_like(x) if need_dx else None
    if use_direct(C, cout, k):
        wc = np.ascontiguousarray(weight, dtype=x.dtype)
        dwd = np.zeros(weight.shape, dtype=np.float64)
        conv_direct_dweight(x, dy, dwd)
        if need_dx:
            conv_direct_dinput(dy, wc, dx)
        return dwd, db, dx
    blocks, per = _blocks(C, k, F, oh, ow)
    buf = np.empty(C * k * k * per * ow, dtype=x.dtype)
    for u0, u1 in blocks:
        n = (u1 - u0) * ow
        col = buf[:C * k * k * n].reshape(C * k * k, n)
        _im2col(x, k, u0, u1, oh, ow, col)
        g = dy2[:, u0 * ow:u1 * ow]
        dw += g @ col.T
        if need_dx:
            _col2im(w2.T @ g, k, u0, u1, oh, ow, dx)
    return dw.reshape(weight.shape), db, dx
