"""The layer types of a network (`arch` builds a `Net` of them) and their checks.

``conv(k, maps, act)``, ``pool(p)``, ``fc(n, act)``: a kernel or pool size is an integer (2D) or a triple (z, y, x)
(3D, `Conv.k3` / `Pool.p3`; an integer inside a 3D net is ``(1, k, k)``). `ConvOp` / `PoolOp` are the dense ops a
net compiles to; their ``kz`` / ``pz`` are 1 in a 2D net.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from .errors import ArchitectureError

ACTIVATIONS = ("tanh", "stanh", "relu", "linear")


def triple(v) -> tuple:
    """A size as (z, y, x): an integer is the 2D size, (1, v, v)."""
    return tuple(v) if isinstance(v, (tuple, list)) else (1, v, v)


@dataclass(frozen=True)
class Conv:
    k: int | tuple  # k, or (kz, ky, kx) in a 3D net
    maps: int
    act: str = "tanh"

    def __post_init__(self):
        if isinstance(self.k, list):
            object.__setattr__(self, "k", tuple(self.k))

    @property
    def k3(self) -> tuple:
        return triple(self.k)


@dataclass(frozen=True)
class Pool:
    p: int | tuple  # p, or (pz, py, px) in a 3D net

    def __post_init__(self):
        if isinstance(self.p, list):
            object.__setattr__(self, "p", tuple(self.p))

    @property
    def p3(self) -> tuple:
        return triple(self.p)


@dataclass(frozen=True)
class FC:
    n: int
    act: str = "tanh"


@dataclass(frozen=True)
class ConvOp:
    """A convolution in dense mode (conv layers, and fc layers as e x e / 1 x 1 convolutions)."""
    name: str  # tensor prefix: "conv1", "fc2", ...
    k: int  # kernel size in y and x
    cin: int
    cout: int
    act: str
    is_fc: bool
    kz: int = 1  # kernel size in z (3D nets; 1 in 2D nets)


@dataclass(frozen=True)
class PoolOp:
    p: int  # pool size in y and x (1: a pool in z only)
    pz: int = 1  # pool size in z (3D nets)


def size_str(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


def layer_str(layer) -> str:
    if isinstance(layer, Conv):
        return f"conv({size_str(layer.k)}, {layer.maps}, {layer.act})"
    if isinstance(layer, Pool):
        return f"pool({size_str(layer.p)})"
    return f"fc({layer.n}, {layer.act})"


def project(layers, axis: int) -> tuple:
    """The layers' sizes along one axis (0 = z, 1 = y, 2 = x): what the 2D window arithmetic walks per axis."""
    out = []
    for layer in layers:
        if isinstance(layer, Conv):
            out.append(Conv(layer.k3[axis], layer.maps, layer.act))
        elif isinstance(layer, Pool):
            out.append(Pool(layer.p3[axis]))
        else:
            out.append(layer)
    return tuple(out)


def _check_triple(v, where: str, what: str) -> None:
    if len(v) != 3 or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in v):
        raise ArchitectureError(f"{where}: a 3D {what} is [z, y, x], three integers")
    if min(v) < 1:
        raise ArchitectureError(f"{where}: {what} sizes must be >= 1")
    if v[1] != v[2]:
        raise ArchitectureError(f"{where}: the {what}'s y and x sizes must be equal (the engine's kernels are "
                                f"square in y and x)")


def check_layers(layers, in_channels):
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ArchitectureError(f"in_channels must be a positive integer, got {in_channels!r}")
    if not layers:
        raise ArchitectureError("a network needs at least one fc layer (the class scores)")
    seen_fc = False
    for i, layer in enumerate(layers, 1):
        where = f"layer {i} ({layer_str(layer) if isinstance(layer, (Conv, Pool, FC)) else layer!r})"
        if isinstance(layer, Conv):
            if seen_fc:
                raise ArchitectureError(f"{where}: conv layers must come before the fc layers")
            if isinstance(layer.k, tuple):
                _check_triple(layer.k, where, "kernel")
            if min(layer.k3) < 1 or layer.maps < 1:
                raise ArchitectureError(f"{where}: kernel size and maps must be >= 1")
        elif isinstance(layer, Pool):
            if seen_fc:
                raise ArchitectureError(f"{where}: pool layers must come before the fc layers")
            if isinstance(layer.p, tuple):
                _check_triple(layer.p, where, "pool")
                if layer.p == (1, 1, 1):
                    raise ArchitectureError(f"{where}: a 1x1x1 pool does nothing")
            elif layer.p < 2:
                raise ArchitectureError(f"{where}: pool size must be >= 2")
        elif isinstance(layer, FC):
            seen_fc = True
            if layer.n < 1:
                raise ArchitectureError(f"{where}: fc size must be >= 1")
        else:
            raise ArchitectureError(f"{where}: unknown layer type")
        act = getattr(layer, "act", "linear")
        if act not in ACTIVATIONS:
            raise ArchitectureError(f"{where}: unknown activation {act!r} (choose from {', '.join(ACTIVATIONS)})")
    last = layers[-1]
    if not isinstance(last, FC):
        raise ArchitectureError("the last layer must be an fc layer giving the class scores")
    if last.n < 2:
        raise ArchitectureError("the last fc layer gives the class scores and needs n >= 2 classes")
    if last.act != "linear":
        raise ArchitectureError(f"the last fc layer feeds the softmax and must be linear, not {last.act!r}")
