"""Valid convolution (cross-correlation) over stacked fragments as blocked im2col + GEMM.

The output positions of a ``(C, F, h, w)`` input are taken in *row units* (fragment f, output row y); a block of
consecutive units is unrolled into a ``(C*k*k, units*ow)`` column buffer and multiplied by the ``(Cout, C*k*k)``
weight matrix with BLAS. Blocking keeps the buffer at a few MiB whatever the image size (the unblocked im2col of an
n4 512x512 layer would take gigabytes) and lets the GEMM work on data still in cache. Gradients of the weights are
accumulated block by block in float64, in a fixed order, so they are deterministic and accurate in float32 runs.
"""
import numpy as np
from numba import get_num_threads

from ._act import ACT_CODES, act_backward, bias_act_forward
from ._blocked import conv_bwd_blocked, conv_fwd_blocked
from ._direct import conv_direct_dinput, conv_direct_dweight, conv_direct_forward

# Elements of the im2col buffer per block (1 Mi elements = 4 MiB in float32: measured best of 2^18..2^22 on
# the n4 layers, the GEMM reading its operand from L2/L3).
COL_BUDGET = 1 << 20
# Layers with C_in * C_out up to this use the direct kernels (few channels: im2col + GEMM does not pay).
DIRECT_MAX = 128


def use_direct(cin: int, cout: int, k: int) -> bool:
    return k > 1 and cin * cout <= DIRECT_MAX


def _units_per_block(C, k, F, oh, ow, cout):
    """Row units per im2col block so that the column buffer and the block's output (or output gradient) each
    hold about COL_BUDGET elements at most (an fc layer as a 1x1 conv has a short column and a tall output)."""
    return max(1, min(F * oh, COL_BUDGET // max(1, max(C * k * k, cout) * ow)))


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
    if use_direct(C, cout, k):
        conv_direct_forward(x, np.ascontiguousarray(weight, dtype=x.dtype), y)
        bias_act_forward(y2, b, act)
        return y
    per = _units_per_block(C, k, F, oh, ow, cout)
    conv_fwd_blocked(x, w2, b, ACT_CODES[act], x.dtype == np.float32, k, oh, ow, per, y2)
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
    dx = np.zeros_like(x) if need_dx else None
    if use_direct(C, cout, k):
        dwd = np.zeros(weight.shape, dtype=np.float64)
        conv_direct_dweight(x, dy, dwd)
        if need_dx:
            conv_direct_dinput(dy, np.ascontiguousarray(weight, dtype=x.dtype), dx)
        return dwd, db, dx
    per = _units_per_block(C, k, F, oh, ow, cout)
    T = get_num_threads()
    if need_dx:
        T = min(T, F)
    dwparts = np.zeros((T, cout, C * k * k), dtype=np.float64)
    conv_bwd_blocked(x, w2, np.ascontiguousarray(dy2), k, oh, ow, per, need_dx, dwparts,
                     dx if need_dx else np.zeros((1, 1, 1, 1), dtype=x.dtype))
    dw = dwparts[0]
    for t in range(1, T):  # fixed order: deterministic for a given thread count
        dw += dwparts[t]
    return dw.reshape(weight.shape), db, dx
