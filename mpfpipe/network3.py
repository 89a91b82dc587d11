"""The layer loop of volume (3D) nets on the 2D engine's kernels: forward with a tape, backward from the tape.

Tensors are ``(C, D, F, h, w)``: channel, depth (z), fragment, row, column. Depth comes before the fragments so that
the 2D kernels run on the ``(C, D*F, h, w)`` view without copies:

- a conv (kz, k, k) is a 2D conv whose input channels are the kz shifted z-slabs, ``(C*kz, D', F, h, w)`` with
  slab ``c*kz + dz = x[c, dz:dz+D']`` (one contiguous copy each; none when kz = 1), and whose weight is the
  (O, C, kz, k, k) kernel viewed as (O, C*kz, k, k): the register tiles, direct kernels or tap GEMMs, as the 2D
  dispatch picks them. The input gradient of the slabs folds back by z shift in the fixed order dz = 0..kz-1,
  so any thread count gives the same bits; the weight gradient is the 2D one, reshaped;
- a pool (pz, p, p) is the 2D MPF kernel on every depth plane (fragment f -> f*p*p + a*p + b), then the z MPF of
  `kernels._zpool` (-> fragment*pz + c), which keeps the arg-max rule of the naive net (first in z, y, x order);
- the trailing 1x1x1 layers (head) and a fused output pair run as in 2D on the same view.
The slabs take kz times the layer's input, so both passes unfold at most ``UNFOLD_BYTES`` of them at a time, a run of
output planes after another. Forward, that gives the same bits as one call (a kernel's sum for an output element does
not depend on how many fragments it is given); backward, the runs' weight gradients add up in float64 in run order
and their input gradients fold back run by run, a fixed order for given shapes.
A 2D net never comes here (`network.forward` sends 3D nets only), so 2D runs exactly as before.
"""
from __future__ import annotations

import numpy as np

from .arch import ConvOp, Net
from .kernels import (backward_head, conv_backward, conv_backward_post, conv_forward, conv_forward_post, forward_head,
                      pool_backward, pool_forward, zpool_backward, zpool_forward)
from .plan import body_end, fused_output, head_start

UNFOLD_BYTES = 256 * 2**20  # z-slabs per conv call (n337's conv2 on 32x128x128 would unfold to 4.6 GB at once)


def unfold(x: np.ndarray, kz: int) -> np.ndarray:
    """(C, D, F, h, w) -> (C*kz, (D-kz+1)*F, h, w): the kz shifted z-slabs as input channels."""
    C, D, F, h, w = x.shape
    if kz == 1:
        return x.reshape(C, D * F, h, w)
    d = D - kz + 1
    out = np.empty((C, kz, d, F, h, w), x.dtype)
    for dz in range(kz):
        out[:, dz] = x[:, dz:dz + d]
    return out.reshape(C * kz, d * F, h, w)


def fold(g: np.ndarray, kz: int, shape) -> np.ndarray:
    """Adjoint of `unfold`: the slabs' gradient (C*kz, d*F, h, w) summed back into (C, D, F, h, w), dz in order."""
    if kz == 1:
        return g.reshape(shape)
    C, D, F, h, w = shape
    d = D - kz + 1
    slabs = g.reshape(C, kz, d, F, h, w)
    out = np.zeros(shape, g.dtype)
    for dz in range(kz):
        out[:, dz:dz + d] += slabs[:, dz]
    return out


def _w(params: dict, op: ConvOp) -> np.ndarray:
    """The (O, C, kz, k, k) weight as the 2D kernels' (O, C*kz, k, k)."""
    return params[f"{op.name}.weight"].reshape(op.cout, op.cin * op.kz, op.k, op.k)


def _b(params: dict, op: ConvOp) -> np.ndarray:
    return params[f"{op.name}.bias"]


def _flat(x: np.ndarray) -> np.ndarray:
    C, D, F, h, w = x.shape
    return x.reshape(C, D * F, h, w)


def _planes(x: np.ndarray, kz: int) -> int:
    """Output planes per conv call: their slabs fit in ``UNFOLD_BYTES`` (at least one plane)."""
    C, D, F, h, w = x.shape
    return max(1, UNFOLD_BYTES // (C * kz * F * h * w * x.itemsize))


def _conv(x: np.ndarray, op: ConvOp, params: dict) -> np.ndarray:
    """A conv layer's output (O, D', F, h', w'), on runs of output planes whose slabs fit in ``UNFOLD_BYTES``."""
    C, D, F, h, w = x.shape
    d = D - op.kz + 1
    planes = _planes(x, op.kz)
    if op.kz == 1 or planes >= d:
        y = conv_forward(unfold(x, op.kz), _w(params, op), _b(params, op), op.act)
        return y.reshape(op.cout, d, F, *y.shape[2:])
    y = None
    for d0 in range(0, d, planes):
        d1 = min(d, d0 + planes)
        part = conv_forward(unfold(x[:, d0:d1 + op.kz - 1], op.kz), _w(params, op), _b(params, op), op.act)
        if y is None:
            y = np.empty((op.cout, d, F, *part.shape[2:]), x.dtype)
        y[:, d0:d1] = part.reshape(op.cout, d1 - d0, F, *part.shape[2:])
    return y


def _conv_backward(x, y, g, op, params, need_dx):
    """(dweight float64 (O, C*kz, k, k), dbias float64, dx or None) of a conv layer, run by run as `_conv`."""
    d = x.shape[1] - op.kz + 1
    planes = _planes(x, op.kz)
    if op.kz == 1 or planes >= d:
        dw, db, gx = conv_backward(unfold(x, op.kz), _w(params, op), _flat(y), _flat(g), op.act, need_dx=need_dx)
        return dw, db, None if gx is None else fold(gx, op.kz, x.shape)
    dw = db = None
    dx = np.zeros_like(x) if need_dx else None
    for d0 in range(0, d, planes):
        d1 = min(d, d0 + planes)
        xr = x[:, d0:d1 + op.kz - 1]
        gy = np.ascontiguousarray(g[:, d0:d1])  # overwritten by conv_backward
        dwr, dbr, gx = conv_backward(unfold(xr, op.kz), _w(params, op), _flat(np.ascontiguousarray(y[:, d0:d1])),
                                     _flat(gy), op.act, need_dx=need_dx)
        dw = dwr if dw is None else dw + dwr
        db = dbr if db is None else db + dbr
        if need_dx:
            dx[:, d0:d1 + op.kz - 1] += fold(gx, op.kz, xr.shape)
    return dw, db, dx


def _pool(x, op, dense, need_idx):
    """A (pz, p, p) pool: 2D MPF per depth plane, then z MPF. Returns (y, (arg-max yx, arg-max z, mid shape))."""
    C, D, F, h, w = x.shape
    idx = idz = None
    if op.p > 1:
        y, idx = pool_forward(_flat(x), op.p, dense, need_idx)
        x = y.reshape(C, D, -1, *y.shape[2:])
    mid = x.shape
    if op.pz > 1:
        x, idz = zpool_forward(x, op.pz, dense, need_idx)
    return x, (idx, idz, mid)


def _unpool(g, entry, op, dense):
    (idx, idz, mid), in_shape = entry
    if op.pz > 1:
        g = zpool_backward(g, idz, op.pz, dense, mid)
    if op.p > 1:
        C, D, F, h, w = in_shape
        g = pool_backward(_flat(g), idx, op.p, dense, (C, D * F, h, w)).reshape(in_shape)
    return g


def forward3(net: Net, params: dict, x: np.ndarray, dense: bool, tape=None) -> np.ndarray:
    """Run all ops on x (C, D, F, h, w); returns the logits (K, D', F', h', w'). ``tape``: a `network.Tape`."""
    hs = head_start(net)
    for op in net.ops[:body_end(net)]:
        if isinstance(op, ConvOp):
            y = _conv(x, op, params)
            if tape is not None:
                tape.entries.append((x, y))
        else:
            y, idx = _pool(x, op, dense, tape is not None)
            if tape is not None:
                tape.entries.append((idx, x.shape))
        x = y
    if fused_output(net):
        a, b = net.ops[-2], net.ops[-1]
        D, F = x.shape[1:3]
        y, z = conv_forward_post(unfold(x, a.kz), _w(params, a), _b(params, a), a.act, _w(params, b), _b(params, b))
        d = D - a.kz + 1
        if tape is not None:
            tape.entries.append((x, y.reshape(a.cout, d, F, *y.shape[2:])))
            tape.entries.append(None)  # the output layer's input is y, kept in the entry before
        return z.reshape(b.cout, d, F, *z.shape[2:])
    if hs < len(net.ops):
        if tape is not None:
            tape.entries.append(x)
        out = forward_head(_flat(x), [(_w(params, op), _b(params, op), op.act) for op in net.ops[hs:]])
        x = out.reshape(out.shape[0], *x.shape[1:])
    return x


def backward3(net: Net, params: dict, tape, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients (float64) of the loss w.r.t. every parameter, given d loss / d logits (K, D', F', h', w')."""
    grads = {}
    g = dlogits
    hs = head_start(net)

    def put(op, dw, db):
        grads[f"{op.name}.weight"] = dw.reshape(params[f"{op.name}.weight"].shape)
        grads[f"{op.name}.bias"] = db

    if hs < len(net.ops):
        x = tape.entries[hs]
        layers = [(_w(params, op), _b(params, op), op.act) for op in net.ops[hs:]]
        layer_grads, g = backward_head(_flat(x), layers, _flat(g), need_dx=hs > 0)
        for op, (dw, db) in zip(net.ops[hs:], layer_grads):
            put(op, dw, db)
        g = None if g is None else g.reshape(x.shape)
        tape.entries[hs] = None
    if fused_output(net):
        n = len(net.ops)
        a, b = net.ops[-2], net.ops[-1]
        x, y = tape.entries[n - 2]
        dw, db, gx, dwp, dbp = conv_backward_post(unfold(x, a.kz), _w(params, a), _flat(y), _flat(g), a.act, n > 2,
                                                  _w(params, b))
        put(a, dw, db)
        put(b, dwp, dbp)
        g = None if gx is None else fold(gx, a.kz, x.shape)
        tape.entries[n - 2] = None
        hs = n - 2
    for pos in range(hs - 1, -1, -1):
        op = net.ops[pos]
        entry = tape.entries[pos]
        if isinstance(op, ConvOp):
            x, y = entry
            dw, db, g = _conv_backward(x, y, g, op, params, pos > 0)
            put(op, dw, db)
        else:
            g = _unpool(g, entry, op, tape.dense)
        tape.entries[pos] = None  # free activations as soon as they are used
    return grads
