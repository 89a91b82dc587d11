"""ONNX export: a trained model as a standard ONNX graph that any ONNX runtime runs without mpfpipe.

The graph computes what `mpfpipe segment` computes, from raw pixels to class probabilities:

    raw (N, C, H, W) float32 -> (raw - mean[c]) * (1 / std[c])       the model's input normalisation
        -> mirror padding by the window halo, ``numpy.pad(mode="symmetric")`` exactly (Gather of reflected
           indices: ONNX's Pad has no symmetric mode, and the indices repeat the reflection for any image size)
        -> the dense network: MPF (max-pooling fragments) is the same as stride-1 max pooling, with every later
           convolution and pooling dilated by the product of the pool sizes before it ("a trous"); the first
           fc layer is an e x e convolution, later fc layers 1 x 1 convolutions
        -> Softmax over the classes -> probabilities (N, K, H, W)

The fragments never exist in the graph: a dilated network yields the same stitched map directly, one output per
input pixel. H and W are free (any size; N too). Requires the ``onnx`` package (``pip install 'mpfpipe[onnx]'``).

A 3D net (issue 26) exports the same way with one more axis: raw (N, C, D, H, W), mirror padding by ``net.halo3``
in z, y and x, Conv with (kz, k, k) kernels and MaxPool with (pz, p, p) windows, each dilated by the product of
the pools before it per axis (dz, d, d), probabilities (N, K, D, H, W). D is free too.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arch import ConvOp, PoolOp
from .. import _safety
from ..data.context import map_names
from ..errors import ExportError
from ..fragment import PAD_MODE
from ..model import Model, load_model, read_metadata

OPSET = 17  # Conv / MaxPool with dilations, Softmax over one axis (13+), GreaterOrEqual (12+)
IR_VERSION = 8  # the IR of opset 17, so that runtimes older than the installed onnx package still load the file
_A, _B = 1.7159, 2.0 / 3.0  # Ciresan's scaled tanh A tanh(B x), as mpfpipe.kernels._act


@dataclass
class ExportResult:
    output: str
    nodes: int
    opset: int
    seconds: float
    window: int | tuple
    classes: list

    def summary(self) -> str:
        space = "D, H, W" if isinstance(self.window, tuple) else "H, W"
        window = "x".join(map(str, self.window)) if isinstance(self.window, tuple) else self.window
        return (f"{self.output}: ONNX opset {self.opset}, {self.nodes} nodes, input 'raw' float32 (N, C, {space}) "
                f"-> output 'probabilities' (N, {len(self.classes)}, {space}), window {window}; "
                f"{self.seconds:.2f} s")


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'mpfpipe[onnx]' (or pip install onnx)") \
            from None
    return onnx, helper, numpy_helper


class _Graph:
    """Accumulates nodes and initialisers with unique names."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value) -> str:
        name = self.name(stem)
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, inputs, stem: str | None = None, out: str | None = None, **attrs) -> str:
        out = out or self.name(stem or kind.lower())
        self.nodes.append(self.h.make_node(kind, list(inputs), [out], name=self.name(f"n_{kind.lower()}"), **attrs))
        return out


def _reflect_axis(g: _Graph, x: str, axis: int, before: int, after: int) -> str:
    """x with axis ``axis`` extended by ``before`` / ``after`` entries mirrored as numpy's "symmetric" mode:
    index i maps to m = i mod 2n, then m if m < n else 2n - 1 - m (as `mpfpipe.segment.blocks.reflect`)."""
    shape = g.op("Shape", [x], "shape")
    n = g.op("Gather", [shape, g.const("axis", np.int64(axis))], "n", axis=0)  # scalar int64
    idx = g.op("Range", [g.const("start", np.int64(-before)), g.op("Add", [n, g.const("after", np.int64(after))]),
                         g.const("one", np.int64(1))], "idx")
    two_n = g.op("Mul", [n, g.const("two", np.int64(2))], "two_n")
    m = g.op("Mod", [idx, two_n], "m")  # integer Mod takes the divisor's sign: 0 <= m < 2n
    mirrored = g.op("Sub", [g.op("Sub", [two_n, g.const("one", np.int64(1))]), m], "mirrored")
    src = g.op("Where", [g.op("GreaterOrEqual", [m, n]), mirrored, m], "src")
    return g.op("Gather", [x, src], "padded", axis=axis)


def _activation(g: _Graph, x: str, act: str) -> str:
    if act == "tanh":
        return g.op("Tanh", [x])
    if act == "stanh":
        inner = g.op("Tanh", [g.op("Mul", [x, g.const("stanh_b", np.float32(_B))])])
        return g.op("Mul", [inner, g.const("stanh_a", np.float32(_A))], "stanh")
    if act == "relu":
        return g.op("Relu", [x])
    if act == "linear":
        return x
    raise ExportError(f"activation {act!r} has no ONNX export")


def build_graph(model: Model, *, opset: int = OPSET, source: dict | None = None):
    """The ONNX ModelProto of ``model`` (see the module docstring)."""
    onnx, helper, numpy_helper = _onnx()
    net = model.net
    if model.padding != PAD_MODE:
        raise ExportError(f"padding mode {model.padding!r} has no ONNX export (only {PAD_MODE!r})")
    if opset < 13:
        raise ExportError(f"opset {opset} is too old: the graph needs opset 13 or newer (Softmax over one axis)")
    C, K = net.in_channels, net.n_classes
    g = _Graph(helper, numpy_helper)
    mean = np.asarray(model.normalisation["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(model.normalisation["std"], dtype=np.float64).reshape(-1)
    if mean.size != C or std.size != C:
        raise ExportError(f"the normalisation has {mean.size} mean(s) / {std.size} std(s) for {C} channel(s)")
    std = np.where(std > 1e-12, std, 1.0)  # as mpfpipe.data.normalise: a constant channel is only centred
    three = net.ndim == 3
    spatial = ["D", "H", "W"] if three else ["H", "W"]
    ones = (1,) * len(spatial)
    x = g.op("Sub", ["raw", g.const("mean", mean.astype(np.float32).reshape(1, C, *ones))], "centred")
    x = g.op("Mul", [x, g.const("inv_std", (1.0 / std).astype(np.float32).reshape(1, C, *ones))], "normalised")
    halos = net.halo3 if three else (net.halo, net.halo)
    for axis, (before, after) in enumerate(halos, start=2):
        x = _reflect_axis(g, x, axis, before, after)
    d = [1] * len(spatial)  # dilation per axis: the product of the pool sizes so far (MPF's fragment spacing)
    for op in net.ops:
        if isinstance(op, ConvOp):
            w = g.const(f"{op.name}.weight", np.ascontiguousarray(model.params[f"{op.name}.weight"], np.float32))
            b = g.const(f"{op.name}.bias", np.ascontiguousarray(model.params[f"{op.name}.bias"], np.float32))
            kernel = [op.kz, op.k, op.k] if three else [op.k, op.k]
            x = g.op("Conv", [x, w, b], op.name, kernel_shape=kernel, dilations=list(d), strides=[1] * len(d))
            x = _activation(g, x, op.act)
        elif isinstance(op, PoolOp):
            window = [op.pz, op.p, op.p] if three else [op.p, op.p]
            x = g.op("MaxPool", [x], f"mpf_pool{'x'.join(map(str, window)) if three else op.p}", kernel_shape=window,
                     strides=[1] * len(d), dilations=list(d))
            d = [a * b for a, b in zip(d, window)]
    g.op("Softmax", [x], out="probabilities", axis=1)
    graph = helper.make_graph(
        g.nodes, f"mpfpipe_{net.name}",
        [helper.make_tensor_value_info("raw", onnx.TensorProto.FLOAT, ["N", C, *spatial])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["N", K, *spatial])],
        initializer=g.inits)
    dims = ", ".join(["N", "C", *spatial])
    graph.doc_string = (f"{net.describe()}. Input: raw pixels ({dims}) float32; normalisation and mirror "
                        f"padding ({PAD_MODE}) are inside the graph. Output: class probabilities "
                        f"({dims.replace('C', 'K')}) for classes {list(model.class_names)}."
                        + _context_doc(model))
    proto = helper.make_model(graph, producer_name="mpfpipe", opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = IR_VERSION
    meta = {"class_names": json.dumps(list(model.class_names)), "normalisation": json.dumps(model.normalisation),
            "padding": PAD_MODE, "window": str(net.window), "stride": str(net.stride),
            "architecture": json.dumps(net.to_dict()),
            # the graph takes pixels at the model's resolution: images must be down-sampled (F x F means) first
            "downsample": str(model.downsample),
            # the input maps of a section are it and its neighbours (mpfpipe.data.context)
            "section_context": str(model.section_context)}
    if source:
        meta["source_model"] = json.dumps(source)
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, output, *, opset: int = OPSET, overwrite: bool = False) -> ExportResult:
    """Write ``model`` (a model file path or a `Model`) as an ONNX file at ``output`` (atomically: temp file in
    the same folder, then rename). Refuses an existing ``output`` unless ``overwrite``."""
    t0 = time.perf_counter()
    output = Path(output)
    _safety.check_outputs([("output", output, ("onnx",))], overwrite=overwrite,
                          inputs=[] if isinstance(model, Model) else [model])
    source = None
    if not isinstance(model, Model):
        meta = read_metadata(model)
        source = {"path": str(model), "sha256": meta.get("sha256"),
                  "mpfpipe_version": meta.get("provenance", {}).get("mpfpipe_version")}
        model = load_model(model)
    proto = build_graph(model, opset=opset, source=source)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(proto.SerializeToString())
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportResult(str(output), len(proto.graph.node), opset, time.perf_counter() - t0, model.net.window,
                        list(model.class_names))


def _context_doc(model) -> str:
    k = model.section_context
    if not k:
        return ""
    names = map_names(k, model.net.in_channels)
    return (f" Section context {k}: the input maps of section z are sections z-{k} .. z+{k} of the stack, in the "
            f"order {', '.join(names)}, mirrored (symmetric) at the stack's ends.")
