"""Valid convolution (cross-correlation) over stacked fragments ``(C, F, h, w)``: which kernel runs a layer.

- 6 or more maps in and out, on fragments of at least one tile: register-tiled direct convolution (_tiles), forward
  and both backward passes (the forward pass also for fewer input maps: every first layer); a layer followed by a
  linear 1x1 output layer (n3 / n4: fc1 then fc2) runs with the output layer fused per block, so fc1's 200 maps
  are never re-read from memory;
- otherwise few channels (C_in * C_out <= DIRECT_MAX: every first layer's backward passes, and patch mode's small
  fragments of the steel net): direct kernels over flattened fragment rows (_direct);
- and the rest (patch mode's many-channel layers) one GEMM per kernel tap on the input in place (_taps).
Weight gradients are accumulated block by block in float64, into a fixed number of slabs (`_head.SLABS`) summed in
order: bit-identical for any thread count, and accurate in float32 runs.
"""
from math import gcd

import numpy as np
from numba import get_num_threads

from . import _arena, _taps, _tiles, _wino
from ._act import ACT_CODES, act_backward, bias_act_forward
from ._convpool import conv_pool_fwd_tiles
from ._direct import conv_direct_dinput, conv_direct_dweight, conv_direct_forward
from ._head import SLABS, sum_parts
from ._taps import conv_bwd_taps, conv_fwd_taps

# Layers with C_in * C_out up to this use the direct kernels (few channels: GEMMs do not pay).
DIRECT_MAX = 128
# Positions of a fused conv + pool block (`conv_pool_forward`): longer than the plain tiles' blocks, because each
# block also copies p - 1 carried rows and pools its rows. n4's four conv + pool layers at 2 threads, 2048 -> 8192:
# 13.6 -> 11.8, 195.4 -> 191.7, 124.7 -> 119.3, 117.4 -> 113.7 ms (2 rounds each).
POOL_BLOCK_COLS = 8192
WINO_ROWS = 12  # rows of a conv + pool block by F(2, k): best of 4-24 for n3's and n4's layers at 1 thread


def use_direct(cin: int, cout: int, k: int) -> bool:
    return k > 1 and cin * cout <= DIRECT_MAX


def _tiled(x, weight) -> bool:
    """Whether a layer runs on the register tiles: 6+ maps in and out, fragments of a tile or more. That includes
    the steel net's 8 -> 8 layers, which the tiles run ~1.4x faster than the direct kernels even with 6-channel
    tiles on 8 maps (a steel training step at 137x60 on one core: 12.9 -> 9.1 ms)."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    return _tiles.usable(C, cout, h - k + 1, w - k + 1, w, k, x.dtype)


def _tiled_forward(x, weight) -> bool:
    """Whether a layer's forward pass runs on the register tiles: `_tiled` for any number of input maps. A first
    layer (1 -> 48 maps) ran 1.3-1.6x faster there than on the direct kernel, whose output then took a second pass
    through memory for the bias and activation (n3: 33 -> 21 ms on a 512x512 slice, one core)."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    return _tiles.usable_forward(cout, h - k + 1, w, k, x.dtype)


def _taps_weight(weight, dtype):
    """(Cout, C, k, k) -> (k*k, Cout, C): one (Cout, C) matrix per tap, for the tap GEMMs."""
    cout, C, k, _ = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(k * k, cout, C), dtype=dtype)


def _from_taps(dwparts, weight_shape):
    """Tap-major float64 slabs (SLABS, k*k, Cout, C) -> their sum as a (Cout, C, k, k) gradient."""
    cout, C, k, _ = weight_shape
    return np.ascontiguousarray(sum_parts(dwparts).reshape(k, k, cout, C).transpose(2, 3, 0, 1))


def _tiled_backward(x, weight, gp, lead, need_dx):
    """Weight gradient (float64, (Cout, C, k, k)) and input gradient (or None) of a tiled layer from its
    pre-activation gradient laid out by `_tiles.widen_pad`."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    dwparts = np.zeros((SLABS, k * k, cout, C), dtype=np.float64)
    _tiles.conv_dw_tiles(x, gp, k, lead, _tiles.span(x.dtype), dwparts)
    dx = None
    if need_dx:
        dx = _arena.empty(x.shape, x.dtype)
        _tiles.conv_dx_tiles(gp, _tiles.pack_dinput(weight, x.dtype), k, lead, _tiles.span(x.dtype), dx)
    return _from_taps(dwparts, weight.shape), dx


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, act: str) -> np.ndarray:
    """y = act(conv(x, weight) + bias) for x (C, F, h, w), weight (Cout, C, k, k) -> y (Cout, F, h-k+1, w-k+1)."""
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    assert cin == C, "channel mismatch"
    y = _arena.empty((cout, F, h - k + 1, w - k + 1), x.dtype)
    b = np.ascontiguousarray(bias, dtype=x.dtype)
    none = np.zeros((1, 1), dtype=x.dtype)
    if _tiled_forward(x, weight):
        _tiles.conv_fwd_tiles(x, _tiles.pack_forward(weight, x.dtype), b, ACT_CODES[act], x.dtype == np.float32,
                              _tiles.rows_per_block(w, k, x.dtype), y, get_num_threads(), False, none, none[0],
                              none.reshape(1, 1, 1, 1), True, None)
        return y
    if use_direct(C, cout, k):
        conv_direct_forward(x, np.ascontiguousarray(weight, dtype=x.dtype), y)
        bias_act_forward(y.reshape(cout, -1), b, act)
        return y
    conv_fwd_taps(x, _taps_weight(weight, x.dtype), b, ACT_CODES[act], x.dtype == np.float32,
                  _taps.rows_per_block(w), y, get_num_threads(), False, none, none[0], none.reshape(1, 1, 1, 1))
    return y


def conv_pool_forward(x, weight, bias, act, p: int, dense: bool, winograd: bool = False):
    """pool_forward(conv_forward(x, weight, bias, act), p, dense) without its arg-max (inference), in one pass on
    the tiles (`_convpool`): the same bits. With ``winograd`` and a layer `_wino.applies` to, the convolution runs
    by F(2, k) instead (other bits: see `_wino`). None when the layer does not run on the tiles or the pool does not
    fit (the caller then runs the two apart, which raise the usual errors)."""
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    noff = p if dense else 1
    oh, ow = h - k + 1, w - k + 1
    if cin != C or not _tiled_forward(x, weight) or (oh - noff + 1) % p or (ow - noff + 1) % p:
        return None
    m, n = (oh - noff + 1) // p, (ow - noff + 1) // p
    T = get_num_threads()
    starts = (noff - 1) + (m - 1) * p + 1
    cpf = T // gcd(F, T)  # chunks per fragment: F * cpf is a multiple of the thread count
    if (starts // cpf + p - 1) * w - (k - 1) < _tiles.tile_positions(x.dtype):
        cpf = 1  # chunks too short for a tile: one per fragment
    y = _arena.empty((cout, F * noff * noff, m, n), x.dtype)
    wz = _wino.pack(weight, x.dtype) if winograd and _wino.applies(C, cout, k) else None
    # F(2, k): blocks of WINO_ROWS rows (its scratch grows with the rows; the bits do not depend on them)
    rows = WINO_ROWS if wz is not None else _tiles.rows_per_block(w, k, x.dtype, POOL_BLOCK_COLS)
    conv_pool_fwd_tiles(x, _tiles.pack_forward(weight, x.dtype) if wz is None else wz[:0],
                        np.ascontiguousarray(bias, dtype=x.dtype), ACT_CODES[act], x.dtype == np.float32, k, rows, p,
                        noff, cpf, y, T, wz)
    return y


def conv_forward_post(x, weight, bias, act, wpost, bpost, keep: bool = True, winograd: bool = False):
    """A conv layer followed by a linear 1x1 layer (the output layer of n3 / n4: fc1 then fc2), the second
    computed block by block in cache. Returns (y, z): the first layer's output (kept for its backward pass; None
    without ``keep`` when the tiles run, which then never write it) and the second's (K, F, oh, ow). With
    ``winograd``, no ``keep`` and a layer `_wino.applies` to, the first runs by F(2, k) (other bits: `_wino`)."""
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    assert cin == C and not use_direct(C, cout, k), "conv_forward_post is for GEMM layers"
    K = wpost.shape[0]
    z = _arena.empty((K, F, h - k + 1, w - k + 1), x.dtype)
    if _tiled(x, weight):
        y = _arena.empty((cout, F, h - k + 1, w - k + 1) if keep else (1, 1, 1, 1), x.dtype)
        wz = _wino.pack(weight, x.dtype) if winograd and not keep and _wino.applies(C, cout, k) else None
        _tiles.conv_fwd_tiles(x, _tiles.pack_forward(weight, x.dtype) if wz is None else wz[:0],
                              np.ascontiguousarray(bias, dtype=x.dtype), ACT_CODES[act], x.dtype == np.float32,
                              _tiles.rows_per_block(w, k, x.dtype), y, get_num_threads(), True,
                              np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype),
                              np.ascontiguousarray(bpost, dtype=x.dtype), z, keep, wz)
        return (y if keep else None), z
    y = np.empty((cout, F, h - k + 1, w - k + 1), dtype=x.dtype)
    conv_fwd_taps(x, _taps_weight(weight, x.dtype), np.ascontiguousarray(bias, dtype=x.dtype), ACT_CODES[act],
                  x.dtype == np.float32, _taps.rows_per_block(w), y, get_num_threads(), True,
                  np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype),
                  np.ascontiguousarray(bpost, dtype=x.dtype), z)
    return y, z


def conv_backward_post(x, weight, y, dz, act, need_dx, wpost):
    """Gradients of `conv_forward_post`'s two layers given d loss / d z. Returns (dweight, dbias, dx or None,
    dweight_post, dbias_post), float64 except dx."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    K = wpost.shape[0]
    T = min(SLABS, F) if need_dx else SLABS
    dwparts = np.zeros((T, k * k, cout, C), dtype=np.float64)
    dbparts = np.zeros((T, cout), dtype=np.float64)
    dwpparts = np.zeros((T, K, cout), dtype=np.float64)
    dbpparts = np.zeros((T, K), dtype=np.float64)
    if _tiled(x, weight):
        lead, Ls = _tiles.grad_layout(F, h, w, k, x.dtype)
        gp = _tiles.aligned_empty((cout, Ls), x.dtype)
        _tiles.post_grad(np.ascontiguousarray(dz), y, np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype),
                         ACT_CODES[act], h, w, lead, gp, dbparts, dwpparts, dbpparts)
        dw, dx = _tiled_backward(x, weight, gp, lead, need_dx)
        return dw, sum_parts(dbparts), dx, sum_parts(dwpparts).reshape(wpost.shape), sum_parts(dbpparts)
    dx = np.zeros_like(x) if need_dx else None
    conv_bwd_taps(x, _taps_weight(weight, x.dtype), np.ascontiguousarray(dz), _taps.rows_per_block(w), need_dx,
                  dwparts, dx if need_dx else np.zeros((1, 1, 1, 1), dtype=x.dtype), True, y,
                  np.ascontiguousarray(wpost.reshape(K, cout), dtype=x.dtype), ACT_CODES[act], dbparts, dwpparts,
                  dbpparts)
    return (_from_taps(dwparts, weight.shape), sum_parts(dbparts), dx, sum_parts(dwpparts).reshape(wpost.shape),
            sum_parts(dbpparts))


def conv_backward(x: np.ndarray, weight: np.ndarray, y: np.ndarray, dy: np.ndarray, act: str, need_dx: bool):
    """Gradients of a conv layer given its input x, output y and the loss gradient dy w.r.t. y.

    ``dy`` is overwritten (multiplied by the activation derivative). Returns (dweight float64, dbias float64,
    dx or None)."""
    C, F, h, w = x.shape
    cout, _, k, _ = weight.shape
    dy2 = dy.reshape(cout, -1)
    act_backward(dy2, y.reshape(cout, -1), act)
    db = dy2.sum(axis=1, dtype=np.float64)
    if _tiled(x, weight):
        lead, Ls = _tiles.grad_layout(F, h, w, k, x.dtype)
        gp = _tiles.aligned_empty((cout, Ls), x.dtype)
        _tiles.widen_pad(dy, h, w, lead, gp)
        dw, dx = _tiled_backward(x, weight, gp, lead, need_dx)
        return dw, db, dx
    dx = np.zeros_like(x) if need_dx else None
    if use_direct(C, cout, k):
        dwd = np.zeros(weight.shape, dtype=np.float64)
        conv_direct_dweight(x, dy, dwd)
        if need_dx:
            conv_direct_dinput(dy, np.ascontiguousarray(weight, dtype=x.dtype), dx)
        return dwd, db, dx
    T = min(SLABS, F) if need_dx else SLABS
    dwparts = np.zeros((T, k * k, cout, C), dtype=np.float64)
    n1 = np.zeros((1, 1), dtype=np.float64)
    conv_bwd_taps(x, _taps_weight(weight, x.dtype), dy, _taps.rows_per_block(w), need_dx, dwparts,
                  dx if need_dx else np.zeros((1, 1, 1, 1), dtype=x.dtype), False, dy,
                  np.zeros((1, 1), dtype=x.dtype), 0, n1, np.zeros((1, 1, 1), dtype=np.float64), n1)
    return _from_taps(dwparts, weight.shape), db, dx
