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
from ._head import sum_parts

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
    none = np.zeros((1, 1), dtype=x.dtype)
    conv_fwd_blocked(x, w2, b, ACT_CODES[act], x.dtype == np.float32, k, oh, ow, per, y2, False, none,
                     none[0], none, get_num_threads())
    return y


def conv_forward_post(x, weight, bias, act, wpost, bpost):
    """A blocked conv layer followed by a linear 1x1 layer (the output layer of n3 / n4: fc1 then fc2), the
    second computed block by block in cache. Returns (y, z): the first layer's output (kept for its backward
    pass) and the second's (K, F, oh, ow)."""
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    assert cin == C and not use_direct(C, cout, k), "conv_forward_post is for blocked layers"
    K = wpost.shape[0]
    oh, ow = h - k + 1, w - k + 1
    y = np.empty((cout, F, oh, ow), dtype=x.dtype)
    z = np.empty((K, F, oh, ow), dtype=x.dtype)
    per = _units_per_block(C, k, F, oh, ow, cout)
    conv_fwd_blocked(x, np.ascontiguousarray(weight.reshape(cout, C * k * k), dtype=x.dtype),
                     np.ascontiguousarray(bias, dtype=x.dtype), ACT_CODES[act], x.dtype == np.float32, k, oh, ow,
                     per, y.reshape(cout, -1), True, np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype),
                     np.ascontiguousarray(bpost, dtype=x.dtype), z.reshape(K, -1), get_num_threads())
    return y, z


def conv_backward_post(x, weight, y, dz, act, need_dx, wpost):
    """Gradients of `conv_forward_post`'s two layers given d loss / d z. Returns (dweight, dbias, dx or None,
    dweight_post, dbias_post), float64 except dx."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    K = wpost.shape[0]
    oh, ow = h - k + 1, w - k + 1
    per = _units_per_block(C, k, F, oh, ow, cout)
    T = min(get_num_threads(), F) if need_dx else get_num_threads()
    dwparts = np.zeros((T, cout, C * k * k), dtype=np.float64)
    dbparts = np.zeros((T, cout), dtype=np.float64)
    dwpparts = np.zeros((T, K, cout), dtype=np.float64)
    dbpparts = np.zeros((T, K), dtype=np.float64)
    dx = np.zeros_like(x) if need_dx else None
    conv_bwd_blocked(x, np.ascontiguousarray(weight.reshape(cout, C * k * k), dtype=x.dtype),
                     np.ascontiguousarray(dz.reshape(K, -1)), k, oh, ow, per, need_dx, dwparts,
                     dx if need_dx else np.zeros((1, 1, 1, 1), dtype=x.dtype), True, y.reshape(cout, -1),
                     np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype), ACT_CODES[act], dbparts, dwpparts,
                     dbpparts)
    return (sum_parts(dwparts).reshape(weight.shape), sum_parts(dbparts), dx, sum_parts(dwpparts).reshape(wpost.shape),
            sum_parts(dbpparts))


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
    none = np.zeros((1, 1), dtype=x.dtype)
    n64 = np.zeros((1, 1), dtype=np.float64)
    conv_bwd_blocked(x, w2, np.ascontiguousarray(dy2), k, oh, ow, per, need_dx, dwparts,
                     dx if need_dx else np.zeros((1, 1, 1, 1), dtype=x.dtype), False, none, none, 0, n64,
                     np.zeros((1, 1, 1), dtype=np.float64), n64)
    return sum_parts(dwparts).reshape(weight.shape), db, dx
