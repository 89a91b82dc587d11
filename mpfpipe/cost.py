"""The work of a net's conv ops: multiply-accumulates per layer and flops of a dense job or a patch batch.

The chunk plan of training (`mpfpipe.train.chunks`) estimates each image's cost from these counts, and the chunk
plan fixes the summation order of the gradients: so they live with the engine, and a benchmark edit cannot
change training results. `mpfpipe bench` reports its ``gflops`` with the same counts.
"""
from __future__ import annotations

from .arch import ConvOp, Net, PoolOp


def layer_macs(net: Net, dense: bool, shape: tuple, batch: int = 1) -> list[int]:
    """Multiply-accumulates of every conv op for a dense H x W (or D x H x W: a 3D net, per axis alike) job, or
    for ``batch`` windows in patch mode. A 2D net is the depth-1 case (kernel and pool depth 1)."""
    shape = (1, *shape) if len(shape) == 2 else tuple(shape)
    if dense:
        dims = [-(-int(n) // s) * s + w - 1 for n, s, w in zip(shape, net.stride3, net.window3)]
    else:
        dims = list(net.window3)
    frags, macs = batch, []
    for op in net.ops:
        if isinstance(op, ConvOp):
            k3 = (op.kz, op.k, op.k)
            dims = [d - k + 1 for d, k in zip(dims, k3)]
            macs.append(frags * dims[0] * dims[1] * dims[2] * k3[0] * op.k * op.k * op.cin * op.cout)
        elif isinstance(op, PoolOp):
            p3 = (op.pz, op.p, op.p)
            if dense:
                frags *= p3[0] * p3[1] * p3[2]
                dims = [(d - p + 1) // p for d, p in zip(dims, p3)]
            else:
                dims = [d // p for d, p in zip(dims, p3)]
    return macs


def flops(net: Net, dense: bool, shape, phase: str, batch: int = 1) -> float:
    macs = layer_macs(net, dense, shape, batch)
    if phase == "infer":
        return 2.0 * sum(macs)
    # backward: weight gradient for every layer, input gradient for all but the first
    return 2.0 * (sum(macs) + sum(macs) + sum(macs[1:]))
