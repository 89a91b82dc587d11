"""One plan of a net's operations: which kernel runs each op. The forward and backward passes (`network`) follow it,
and the warm-up (`warmup.jobs_for`) compiles what it names, so a change to the fusion rules reaches both.

- ops ``[0, body_end)``: one by one, each conv on its own kernel (register tiles, direct or tap GEMMs, chosen by
  `kernels` from the fragment size) and each pool as MPF;
- with `fused_output`, the last two ops (fc1, then the linear output layer) as one kernel;
- ops ``[head_start, n)``: the trailing 1x1 layers as one per-pixel MLP (`kernels._head`).
"""
from __future__ import annotations

from .arch import ConvOp, Net
from .kernels import TILE_MIN_MAPS, use_direct, winograd_applies


def head_start(net: Net) -> int:
    """Index of the first of the net's trailing 1x1 conv ops (its fc layers on a 1x1 extent and the output layer),
    which run fused as one per-pixel MLP (kernels._head); len(net.ops) if there are fewer than two. A lone output
    layer has no hidden maps to keep in cache: after a GEMM layer it is fused into that layer's kernel instead
    (`fused_output`), and as a head of its own it measured ~10 % slower than the GEMM path (n4's fc2)."""
    i = len(net.ops)
    while i > 0 and isinstance(net.ops[i - 1], ConvOp) and net.ops[i - 1].k == 1 and net.ops[i - 1].kz == 1:
        i -= 1
    return i if len(net.ops) - i >= 2 else len(net.ops)


def fused_output(net: Net) -> bool:
    """Whether the last two ops run as one kernel (`conv_forward_post`): a many-channel conv layer (register tiles
    or tap GEMMs), then a linear 1x1 output layer, and no head (n3 / n4: fc1 then fc2). The output layer is then
    computed on each block of fc1's output while it is in cache."""
    if head_start(net) < len(net.ops) or len(net.ops) < 2:
        return False
    a, b = net.ops[-2], net.ops[-1]
    return (isinstance(a, ConvOp) and isinstance(b, ConvOp) and b.k == 1 and b.kz == 1 and b.act == "linear"
            and not use_direct(a.cin * a.kz, a.cout, a.k))


def body_end(net: Net) -> int:
    """The ops before the fused pair or the head: run one by one."""
    return len(net.ops) - 2 if fused_output(net) else head_start(net)


def _pool_fused(net: Net, body, pos: int) -> bool:
    """Whether inference fuses the conv at body[pos] with the pool after it: a 2D conv of 6+ maps before a pool."""
    op = body[pos]
    return net.ndim == 2 and isinstance(op, ConvOp) and op.cout >= TILE_MIN_MAPS and pos + 1 < len(body) and \
        not isinstance(body[pos + 1], ConvOp)


def winograd_layers(net: Net) -> list[str]:
    """The convolutions a prediction runs by F(2, k) (`kernels._wino`): a 2D net's fused conv + pool layers and the
    first layer of its fused output pair, where the layer qualifies (`winograd_applies`; empty when
    MPFPIPE_WINOGRAD=0)."""
    if net.ndim != 2:
        return []
    body = net.ops[:body_end(net)]
    convs = [op for pos, op in enumerate(body) if _pool_fused(net, body, pos)]
    if fused_output(net):
        convs.append(net.ops[-2])
    return [op.name for op in convs if winograd_applies(op.cin, op.cout, op.k)]


def kernel_families(net: Net) -> set[str]:
    """The kernel families (`warmup.JOBS`) the net's forward and backward passes call: per conv of the body the
    direct kernels or the tap GEMMs (fragments shorter than a tile, e.g. patch mode) and, with 6+ maps in and out,
    the register tiles, and a direct conv's input gradient only past the first layer; inference's conv + pool (a
    2D conv of 6+ maps before a pool), else inference's own pool; the fused pair; the head; training's pooling and
    activations always; z pooling for 3D pools. A 3D conv runs on the 2D kernels with C_in * kz input
    channels (`network3`)."""
    need = {"pool", "act"}
    body = net.ops[:body_end(net)]
    for pos, op in enumerate(body):
        if isinstance(op, ConvOp):
            direct = use_direct(op.cin * op.kz, op.cout, op.k)
            need.add("direct" if direct else "taps")
            if direct and pos > 0:
                need.add("direct_dx")  # only a conv past the first layer passes a gradient on
            if op.cin * op.kz >= TILE_MIN_MAPS and op.cout >= TILE_MIN_MAPS:
                need.add("tiles")
            if _pool_fused(net, body, pos):
                need.add("convpool")  # inference's conv + pool (`network._forward`)
        else:
            if not (pos > 0 and _pool_fused(net, body, pos - 1)):
                need.add("poolfwd")  # inference's own pool
            if op.pz > 1:
                need.add("zpool")
    if fused_output(net):
        need.add("post")
    if head_start(net) < len(net.ops):
        need.add("head")
    return need
