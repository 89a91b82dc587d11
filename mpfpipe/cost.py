"""The work of a net's conv ops: multiply-accumulates per layer and flops of a dense job or a patch batch.

The chunk plan of training (`mpfpipe.train.chunks`) estimates each image's cost from these counts, and the chunk
plan fixes the summation order of the gradients: so they live with the engine, and a benchmark edit cannot
change training results. `mpfpipe bench` reports its ``gflops`` with the same counts.
"""
from __future__ import annotations

from .arch import ConvOp, Net, PoolOp


def layer_macs(net: Net, dense: bool, shape: tuple[int, int], batch: int = 1) -> list[int]:
    """Multiply-accumulates of every conv op for a dense H x W job, or for ``batch`` windows in patch mode; a 3D
    net's dense job is Z x Y x X."""
    if net.ndim == 3:
        return _layer_macs3(net, dense, shape, batch)
    if dense:
        S = net.stride
        h = -(-shape[0] // S) * S + net.window - 1
        w = -(-shape[1] // S) * S + net.window - 1
    else:
        h = w = net.window
    frags, macs = batch, []
    for op in net.ops:
        if isinstance(op, ConvOp):
            h, w = h - op.k + 1, w - op.k + 1
            macs.append(frags * h * w * op.k * op.k * op.cin * op.cout)
        elif isinstance(op, PoolOp):
            if dense:
                frags *= op.p * op.p
                h, w = (h - op.p + 1) // op.p, (w - op.p + 1) // op.p
            else:
                h, w = h // op.p, w // op.p
    return macs


def _layer_macs3(net: Net, dense: bool, shape, batch: int) -> list[int]:
    if dense:
        dims = [-(-n // s) * s + w - 1 for n, s, w in zip(shape, net.stride3, net.window3)]
    else:
        dims = list(net.window3)
    frags, macs = batch, []
    for op in net.ops:
        if isinstance(op, ConvOp):
            kernel = (op.kz, op.k, op.k)
            dims = [d - k + 1 for d, k in zip(dims, kernel)]
            macs.append(frags * dims[0] * dims[1] * dims[2] * op.kz * op.k * op.k * op.cin * op.cout)
        else:
            pool = (op.pz, op.p, op.p)
            if dense:
                frags *= op.pz * op.p * op.p
                dims = [(d - p + 1) // p for d, p in zip(dims, pool)]
            else:
                dims = [d // p for d, p in zip(dims, pool)]
    return macs


def flops(net: Net, dense: bool, shape, phase: str, batch: int = 1) -> float:
    macs = layer_macs(net, dense, shape, batch)
    if phase == "infer":
        return 2.0 * sum(macs)
    # backward: weight gradient for every layer, input gradient for all but the first
    return 2.0 * (sum(macs) + sum(macs) + sum(macs[1:]))
