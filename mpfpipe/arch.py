"""Network architectures: layers, window/stride derivation, exactness check, presets, YAML/JSON files.

A network is the patch classifier of Masci et al.: ``conv(k, maps, act)``, ``pool(p)`` (non-overlapping max) and
``fc(n, act)`` layers, then a softmax over the last fc layer's ``n`` outputs (the classes). The patch window ``w``
follows from the layers and from ``e``, the extent of the map that the first fc layer sees (``e x e x C``):
working back from ``e``, a conv k adds k-1 and a pool p multiplies by p. A net given with an explicit window is
*exact* when every pool input divides by its p; otherwise it is rejected with the nearest exact windows.

In dense (fragment) mode the first fc layer is a convolution with an ``e x e`` kernel and later fc layers are 1x1
convolutions, so the whole net compiles to a list of `ConvOp` / `PoolOp` (see `Net.ops`).

Volumes (3D nets): a conv kernel or a pool may be a triple (z, y, x), e.g. ``conv((1, 6, 6), 20)``, ``pool((1, 2,
2))``; a bare integer keeps its 2D meaning, ``(1, k, k)`` inside a 3D net. Every axis is derived as above on its own
(window, stride, exactness), so ``net.window3`` / ``net.stride3`` / ``net.halo3`` are triples; for a 2D net they are
(1, w, w), (1, S, S) and ((0, 0), halo). y and x stay equal (the engine's kernels are square in y and x).
A net with any triple is 3D (``net.ndim == 3``): its ``window`` / ``stride`` / ``halo`` are then the triples too.
The layer types themselves are in `layer`.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArchitectureError
from .layer import (ACTIVATIONS, FC, Conv, ConvOp, Pool, PoolOp, check_layers as _check_layers,  # noqa: F401
                    layer_str as _layer_str, project as _project, size_str as _size_str)

PAD_MODE = "symmetric"  # the input outside an image or volume: recorded in model files, training and segmentation


@dataclass(frozen=True)
class Net:
    """A validated patch network. ``layers`` end with an fc layer whose ``n`` is the number of classes (its
    activation is ``linear``: the softmax is applied by the output / loss)."""
    layers: tuple
    in_channels: int = 1
    window: int | tuple = 0  # 0: derive the smallest exact window (e = 1); (wz, wy, wx) for a 3D net
    name: str = "custom"
    ops: tuple = field(init=False, repr=False, compare=False)
    fc_extent: int | tuple = field(init=False, repr=False, compare=False)  # (ez, ey, ex) for a 3D net

    def __post_init__(self):
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        _check_layers(layers, self.in_channels)
        if isinstance(self.window, (tuple, list)) or any(isinstance(getattr(layer, "k", getattr(layer, "p", 0)),
                                                                     tuple) for layer in layers):
            self._init3()
            return
        if self.window == 0:
            object.__setattr__(self, "window", window_for_extent(layers, 1))
        e = _check_exact(layers, self.window)
        object.__setattr__(self, "fc_extent", e)
        object.__setattr__(self, "ops", _compile(layers, self.in_channels, e))

    def _init3(self):
        window = self.window
        if window == 0:
            window = tuple(window_for_extent(_project(self.layers, a), 1) for a in range(3))
        if isinstance(window, int) or len(window) != 3:
            raise ArchitectureError(f"a 3D net's window must be [wz, wy, wx], got {window!r}")
        window = tuple(window)
        if window[1] != window[2]:
            raise ArchitectureError(f"window {_size_str(window)}: y and x must be equal (square kernels in y, x)")
        e = tuple(_check_exact(_project(self.layers, a), window[a], window, "zyx"[a], self.layers) for a in range(3))
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "fc_extent", e)
        object.__setattr__(self, "ops", _compile(self.layers, self.in_channels, e))

    @property
    def ndim(self) -> int:
        """3 for a volume net (any size given as a triple), else 2."""
        return 3 if isinstance(self.window, tuple) else 2

    @property
    def window3(self) -> tuple:
        return self.window if self.ndim == 3 else (1, self.window, self.window)

    @property
    def stride3(self) -> tuple:
        s = [1, 1, 1]
        for layer in self.layers:
            if isinstance(layer, Pool):
                s = [a * b for a, b in zip(s, layer.p3)]
        return tuple(s)

    @property
    def halo3(self) -> tuple:
        """(before, after) context per axis (z, y, x) around the centre voxel at offset (w-1)//2."""
        return tuple(((w - 1) // 2, w - 1 - (w - 1) // 2) for w in self.window3)

    @property
    def pools3(self) -> tuple:
        return tuple(layer.p3 for layer in self.layers if isinstance(layer, Pool))

    # -- derived geometry -------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return self.layers[-1].n

    @property
    def stride(self) -> int | tuple:
        if self.ndim == 3:
            return self.stride3
        s = 1
        for layer in self.layers:
            if isinstance(layer, Pool):
                s *= layer.p
        return s

    @property
    def pools(self) -> tuple:
        if self.ndim == 3:
            return self.pools3
        return tuple(layer.p for layer in self.layers if isinstance(layer, Pool))

    @property
    def halo(self) -> tuple[int, int]:
        """Context (before, after) the window needs around its centre pixel. The centre of a window of size w is
        at offset (w-1)//2, so an even window has one more pixel after the centre than before it. A 3D net: the
        (before, after) pair of every axis, `halo3`."""
        if self.ndim == 3:
            return self.halo3
        before = (self.window - 1) // 2
        return before, self.window - 1 - before

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                out.append({"type": "conv", "k": _listed(layer.k), "maps": layer.maps, "act": layer.act})
            elif isinstance(layer, Pool):
                out.append({"type": "pool", "p": _listed(layer.p)})
            else:
                out.append({"type": "fc", "n": layer.n, "act": layer.act})
        return {"name": self.name, "in_channels": self.in_channels, "window": _listed(self.window), "layers": out}

    def describe(self) -> str:
        body = ", ".join(_layer_str(layer) for layer in self.layers)
        window = _size_str(self.window) if self.ndim == 3 else f"{self.window}x{self.window}"
        return (f"{self.name}: {window} window, stride {_size_str(self.stride)}, "
                f"{self.in_channels} channel(s) -> {self.n_classes} classes: {body}")

    def with_channels(self, in_channels: int) -> "Net":
        return Net(self.layers, in_channels=in_channels, window=self.window, name=self.name)


def _listed(v):
    return list(v) if isinstance(v, tuple) else v


def window_for_extent(layers, e: int) -> int:
    """Input window size for which the first fc layer sees an e x e map (always exact)."""
    size = e
    for layer in reversed(layers):
        if isinstance(layer, Conv):
            size += layer.k - 1
        elif isinstance(layer, Pool):
            size *= layer.p
    return size


def _check_exact(layers, window: int, whole=None, axis: str = "", named=None) -> int:
    """Walk a window forward through the layers; return the fc extent e or raise naming the offending layer.
    For a 3D net ``layers`` are projected on ``axis`` (`layer.project`), ``whole`` is the (wz, wy, wx) window and
    ``named`` the layers as written, for the message."""
    name = f"{window}x{window}" if whole is None else _size_str(whole)
    where = "" if whole is None else f" in {axis}"
    size = window
    for i, layer in enumerate(layers, 1):
        if isinstance(layer, Conv):
            size -= layer.k - 1
            if size < 1:
                break
        elif isinstance(layer, Pool):
            if size % layer.p:
                got = f"{size}x{size} map" if whole is None else f"map {size} wide in {axis}"
                raise ArchitectureError(
                    f"window {name} is not exact{where}: layer {i} ({_layer_str((named or layers)[i - 1])}) gets a "
                    f"{got}, which does not divide by {layer.p}; {_suggest(layers, window)}{where}")
            size //= layer.p
        else:
            break
    if size < 1:
        raise ArchitectureError(f"window {name} is too small{where} for these layers; "
                                f"{_suggest(layers, window)}{where}")
    return size


def _suggest(layers, window: int) -> str:
    exact = [window_for_extent(layers, e) for e in range(1, 64)]
    below = [w for w in exact if w < window]
    above = [w for w in exact if w > window]
    options = ([f"{below[-1]}"] if below else []) + ([f"{above[0]}"] if above else [])
    return "nearest exact window(s): " + " or ".join(options)


def _compile(layers, in_channels: int, e) -> tuple:
    """The dense ops; a 2D net's ops have kz = pz = 1, exactly as before 3D nets existed."""
    ez, ey = (e[0], e[1]) if isinstance(e, tuple) else (1, e)
    ops, c, n_conv, n_fc = [], in_channels, 0, 0
    for layer in layers:
        if isinstance(layer, Conv):
            n_conv += 1
            kz, k, _ = layer.k3
            ops.append(ConvOp(f"conv{n_conv}", k, c, layer.maps, layer.act, False, kz))
            c = layer.maps
        elif isinstance(layer, Pool):
            pz, p, _ = layer.p3
            ops.append(PoolOp(p, pz))
        else:
            n_fc += 1
            first = n_fc == 1
            ops.append(ConvOp(f"fc{n_fc}", ey if first else 1, c, layer.n, layer.act, True, ez if first else 1))
            c = layer.n
    return tuple(ops)


# -- construction from dicts, files and presets ---------------------------------------------------------------
def _whole(value, what: str) -> int:
    """An integer as written (7, not 7.5 nor "7"): int() would silently turn k: 7.5 into 7."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArchitectureError(f"{what} = {value!r} must be an integer")
    return int(value)


def _size(value, what: str):
    """An integer (2D) or a list of three (z, y, x) integers (3D)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ArchitectureError(f"{what} = {value!r} must be an integer or [z, y, x]")
        return tuple(_whole(v, what) for v in value)
    return _whole(value, what)


def net_from_dict(d: dict) -> Net:
    if not isinstance(d, dict) or not isinstance(d.get("layers"), list):
        raise ArchitectureError("a network description needs a 'layers' list, e.g. [{type: conv, k: 5, maps: 8}, "
                                "{type: pool, p: 2}, {type: fc, n: 2}]")
    layers = []
    for i, spec in enumerate(d["layers"], 1):
        if not isinstance(spec, dict):
            raise ArchitectureError(f"layer {i}: {spec!r} is not a mapping such as {{type: conv, k: 5, maps: 8}}")
        try:
            kind = spec["type"]
            if kind == "conv":
                layers.append(Conv(_size(spec["k"], f"layer {i}: k"), _whole(spec["maps"], f"layer {i}: maps"),
                                   spec.get("act", "tanh")))
            elif kind == "pool":
                layers.append(Pool(_size(spec["p"], f"layer {i}: p")))
            elif kind == "fc":
                layers.append(FC(_whole(spec["n"], f"layer {i}: n"), spec.get("act", "tanh")))
            else:
                raise ArchitectureError(f"layer {i}: unknown type {kind!r} (conv, pool or fc)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchitectureError(f"layer {i}: malformed layer {spec!r} ({exc})") from None
    # the class layer is linear unless the file says otherwise (and then validation explains)
    if layers and isinstance(layers[-1], FC) and "act" not in d["layers"][-1]:
        layers[-1] = FC(layers[-1].n, "linear")
    return Net(tuple(layers), in_channels=_whole(d.get("in_channels", 1), "in_channels"),
               window=_size(d.get("window", 0), "window"),
               name=str(d.get("name", "custom")))


PRESETS = {
    # Ciresan et al. 2012 (ISBI 2012 winner), 95x95.
    "n4": dict(window=95, layers=[Conv(4, 48), Pool(2), Conv(5, 48), Pool(2), Conv(4, 48), Pool(2), Conv(4, 48),
                                  Pool(2), FC(200), FC(2, "linear")]),
    # Common reconstruction of Ciresan's N3, 65x65; exercises a 3x3 pool.
    "n3": dict(window=65, layers=[Conv(3, 48), Pool(3), Conv(4, 48), Pool(2), Conv(4, 48), Pool(2), FC(100),
                                  FC(2, "linear")]),
    # Masci et al. 2013 steel-defect net. The paper says 31x31, which is not exact for these layers
    # (conv 7 leaves 25x25 for a 2x2 pool); the smallest exact window is 34x34.
    "steel": dict(window=34, layers=[Conv(7, 8), Pool(2), Conv(5, 8), Pool(2), Conv(5, 8), FC(100),
                                     FC(2, "linear")]),
    # ZNNi's n337 benchmark net (Zlateski, Lee & Seung, SC16; seung-lab/ZNNi networks/337.znni): 3x3x3 convs of 80
    # maps with three 2x2x2 pools, 7 convs in all. Its last conv (3x3x3, one map per output) is our first fc layer
    # on a 3x3x3 extent, so the window is the net's 86^3 field of view.
    "n337": dict(window=(86, 86, 86),
                 layers=[Conv((3, 3, 3), 80), Pool((2, 2, 2)), Conv((3, 3, 3), 80), Pool((2, 2, 2)),
                         Conv((3, 3, 3), 80), Pool((2, 2, 2)), Conv((3, 3, 3), 80), Conv((3, 3, 3), 80),
                         Conv((3, 3, 3), 80), FC(3, "linear")]),
    # After ELEKTRONN2's neuro3d example (ELEKTRONN/ELEKTRONN2 examples/neuro3d.py, create_model): (1,6,6) and
    # (1,5,5) convs with (1,2,2) pools on the anisotropic sections first, then 3D convs with one (2,1,1) pool,
    # a 1x1x1 layer of 200 and the 2-class output; 15x105x105 window, stride 2x4x4.
    "aniso": dict(window=(15, 105, 105),
                  layers=[Conv((1, 6, 6), 20), Pool((1, 2, 2)), Conv((1, 5, 5), 30), Pool((1, 2, 2)),
                          Conv((1, 5, 5), 40), Conv((4, 4, 4), 80), Pool((2, 1, 1)), Conv((3, 4, 4), 100),
                          Conv((3, 4, 4), 100), Conv((2, 4, 4), 150), Conv((1, 4, 4), 200), Conv((1, 4, 4), 200),
                          FC(200), FC(2, "linear")]),
}


def preset(name: str, *, in_channels: int = 1, n_classes: int = 2, maps: int | None = None,
           hidden: int | None = None, act: str = "tanh") -> Net:
    """A preset net by name. ``maps`` overrides every conv layer's map count and ``hidden`` every hidden fc
    layer's size (small nets for tests), ``n_classes`` the class count and ``act`` the hidden activation."""
    if name not in PRESETS:
        raise ArchitectureError(f"unknown net {name!r}: presets are {', '.join(PRESETS)}, or give a YAML/JSON file")
    spec = PRESETS[name]
    layers = []
    for layer in spec["layers"][:-1]:
        if isinstance(layer, Conv):
            layers.append(Conv(layer.k, maps or layer.maps, act))
        elif isinstance(layer, FC):
            layers.append(FC(hidden or layer.n, act))
        else:
            layers.append(layer)
    layers.append(FC(n_classes, "linear"))
    return Net(tuple(layers), in_channels=in_channels, window=spec["window"], name=name)


def load_net(spec, *, in_channels: int | None = None, n_classes: int | None = None) -> Net:
    """A net from a preset name, a YAML/JSON file path, a dict or a Net. ``in_channels`` / ``n_classes``, when
    given, adapt the input and class layers (so a preset fits a dataset)."""
    if isinstance(spec, Net):
        net = spec
    elif isinstance(spec, dict):
        net = net_from_dict(spec)
    elif isinstance(spec, (str, Path)) and str(spec) in PRESETS:
        net = preset(str(spec))
    else:
        path = Path(spec)
        if not path.is_file():
            raise ArchitectureError(f"unknown net {str(spec)!r}: not a preset ({', '.join(PRESETS)}) nor a file")
        try:
            text = path.read_text()  # in the try: a binary file is the user's file too
            if path.suffix == ".json":
                d = json.loads(text)
            else:
                import yaml
                d = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
            raise ArchitectureError(f"{path}: cannot parse network description: {exc}") from None
        if isinstance(d, dict):
            d.setdefault("name", path.stem)
        net = net_from_dict(d)
    if n_classes is not None and n_classes != net.n_classes:
        layers = net.layers[:-1] + (FC(n_classes, "linear"),)
        net = Net(layers, in_channels=net.in_channels, window=net.window, name=net.name)
    if in_channels is not None and in_channels != net.in_channels:
        net = net.with_channels(in_channels)
    return net
