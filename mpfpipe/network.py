"""The layer loop shared by fragment (dense) and patch mode: forward with a tape, backward from the tape.

Inputs are channel-major stacks ``(C, F, h, w)``. In dense mode F starts at 1 (the padded image) and every pool
layer is an MPF layer multiplying F by p^2; in patch mode F is the batch of windows and pools are plain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._runtime import apply_thread_limit
from .arch import ConvOp, Net
from .network3 import backward3, forward3
from .plan import body_end, fused_output, head_start  # head_start, fused_output: also their old import path
from .warmup import ensure_warm
from .kernels import (backward_head, conv_backward, conv_backward_post, conv_forward, conv_forward_post,
                      conv_pool_forward, forward_head, pool_backward, pool_forward, single_threaded_blas)


@dataclass
class Tape:
    """What the backward pass needs: per op, (input, output) for convs, (argmax, input shape) for pools; the
    head (see `head_start`) is one entry, its input; a fused output layer (`fused_output`) has None, its input
    being the output kept in the entry before."""
    dense: bool
    entries: list = field(default_factory=list)


def cast_params(params: dict, dtype) -> dict:
    return {name: np.ascontiguousarray(value, dtype=dtype) for name, value in params.items()}


def _head_layers(net: Net, params: dict, start: int) -> list:
    return [(params[f"{op.name}.weight"], params[f"{op.name}.bias"], op.act) for op in net.ops[start:]]


def forward(net: Net, params: dict, x: np.ndarray, dense: bool, tape: Tape | None = None,
            winograd: bool = False) -> np.ndarray:
    """Run all ops on x (C, F, h, w); returns the logits (K, F', h', w'). Records a tape if one is given.
    A 3D net: x (C, D, F, h, w) -> (K, D', F', h', w'), by `network3`.

    ``winograd``: a prediction (no tape, a 2D net) may run its many-map convolutions by F(2, k)
    (`kernels._wino`): ~20 % faster, and other bits than the training forward pass by rounding. Predictions
    (`fragment.dense_logits`: segment, evaluate, export's test output) ask for it; the training loss never does, so
    that a line search compares losses of one pass."""
    apply_thread_limit()
    wino = winograd and tape is None and net.ndim == 2
    ensure_warm(net, x.dtype, wino)
    with single_threaded_blas():
        if net.ndim == 3:
            return forward3(net, params, x, dense, tape)
        return _forward(net, params, x, dense, tape, wino)


def _forward(net, params, x, dense, tape, winograd=False):
    hs = head_start(net)
    fused = fused_output(net)
    body = net.ops[:body_end(net)]
    pos = 0
    while pos < len(body):
        op = body[pos]
        if isinstance(op, ConvOp):
            after = body[pos + 1] if pos + 1 < len(body) else None
            if tape is None and after is not None and not isinstance(after, ConvOp):
                # inference: the pool on the convolution's blocks while they are in cache (None: not on the tiles)
                y = conv_pool_forward(x, params[f"{op.name}.weight"], params[f"{op.name}.bias"], op.act, after.p,
                                      dense, winograd)
                if y is not None:
                    x = y
                    pos += 2
                    continue
            y = conv_forward(x, params[f"{op.name}.weight"], params[f"{op.name}.bias"], op.act)
            if tape is not None:
                tape.entries.append((x, y))
        else:
            y, idx = pool_forward(x, op.p, dense, need_idx=tape is not None)
            if tape is not None:
                tape.entries.append((idx, x.shape))
        x = y
        pos += 1
    if fused:
        a, b = net.ops[-2], net.ops[-1]
        y, z = conv_forward_post(x, params[f"{a.name}.weight"], params[f"{a.name}.bias"], a.act,
                                 params[f"{b.name}.weight"], params[f"{b.name}.bias"], keep=tape is not None,
                                 winograd=winograd)
        if tape is not None:
            tape.entries.append((x, y))
            tape.entries.append(None)  # the output layer's input is y, kept in the entry before
        return z
    if hs < len(net.ops):
        if tape is not None:
            tape.entries.append(x)
        x = forward_head(x, _head_layers(net, params, hs))
    return x


def backward(net: Net, params: dict, tape: Tape, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients (float64) of the loss w.r.t. every parameter, given d loss / d logits. Consumes ``dlogits``."""
    apply_thread_limit()
    with single_threaded_blas():
        if net.ndim == 3:
            return backward3(net, params, tape, dlogits)
        return _backward(net, params, tape, dlogits)


def _backward(net, params, tape, dlogits):
    grads = {}
    g = dlogits
    hs = head_start(net)
    if hs < len(net.ops):
        x = tape.entries[hs]
        layer_grads, g = backward_head(x, _head_layers(net, params, hs), g, need_dx=hs > 0)
        for op, (dw, db) in zip(net.ops[hs:], layer_grads):
            grads[f"{op.name}.weight"], grads[f"{op.name}.bias"] = dw, db
        tape.entries[hs] = None
    if fused_output(net):
        n = len(net.ops)
        a, b = net.ops[-2], net.ops[-1]
        x, y = tape.entries[n - 2]
        dw, db, g, dwp, dbp = conv_backward_post(x, params[f"{a.name}.weight"], y, g, a.act, n - 2 > 0,
                                                 params[f"{b.name}.weight"])
        grads[f"{a.name}.weight"], grads[f"{a.name}.bias"] = dw, db
        grads[f"{b.name}.weight"], grads[f"{b.name}.bias"] = dwp, dbp
        tape.entries[n - 2] = None
        hs = n - 2
    for pos in range(hs - 1, -1, -1):
        op = net.ops[pos]
        entry = tape.entries[pos]
        if isinstance(op, ConvOp):
            x, y = entry
            dw, db, g = conv_backward(x, params[f"{op.name}.weight"], y, g, op.act, need_dx=pos > 0)
            grads[f"{op.name}.weight"] = dw
            grads[f"{op.name}.bias"] = db
        else:
            idx, in_shape = entry
            g = pool_backward(g, idx, op.p, tape.dense, in_shape)
        tape.entries[pos] = None  # free activations as soon as they are used
    return grads
