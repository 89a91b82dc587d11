"""Network architectures: layers, window/stride derivation, exactness check, presets, YAML/JSON files.

A network is the patch classifier of Masci et al.: ``conv(k, maps, act)``, ``pool(p)`` (non-overlapping max) and
``fc(n, act)`` layers, then a softmax over the last fc layer's ``n`` outputs (the classes). The patch window ``w``
follows from the layers and from ``e``, the extent of the map that the first fc layer sees (``e x e x C``):
working back from ``e``, a conv k adds k-1 and a pool p multiplies by p. A net given with an explicit window is
*exact* when every pool input divides by its p; otherwise it is rejected with the nearest exact windows.

In dense (fragment) mode the first fc layer is a convolution with an ``e x e`` kernel and later fc layers are 1x1
convolutions, so the whole net compiles to a list of `ConvOp` / `PoolOp` (see `Net.ops`).
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArchitectureError

ACTIVATIONS = ("tanh", "stanh", "relu", "linear")


@dataclass(frozen=True)
class Conv:
    k: int
    maps: int
    act: str = "tanh"


@dataclass(frozen=True)
class Pool:
    p: int


@dataclass(frozen=True)
class FC:
    n: int
    act: str = "tanh"


@dataclass(frozen=True)
class ConvOp:
    """A convolution in dense mode (conv layers, and fc layers as e x e / 1 x 1 convolutions)."""
    name: str  # tensor prefix: "conv1", "fc2", ...
    k: int
    cin: int
    cout: int
    act: str
    is_fc: bool


@dataclass(frozen=True)
class PoolOp:
    p: int


def _layer_str(layer) -> str:
    if isinstance(layer, Conv):
        return f"conv({layer.k}, {layer.maps}, {layer.act})"
    if isinstance(layer, Pool):
        return f"pool({layer.p})"
    return f"fc({layer.n}, {layer.act})"


@dataclass(frozen=True)
class Net:
    """A validated patch network. ``layers`` end with an fc layer whose ``n`` is the number of classes (its
    activation is ``linear``: the softmax is applied by the output / loss)."""
    layers: tuple
    in_channels: int = 1
    window: int = 0  # 0: derive the smallest exact window (e = 1)
    name: str = "custom"
    ops: tuple = field(init=False, repr=False, compare=False)
    fc_extent: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        _check_layers(layers, self.in_channels)
        if self.window == 0:
            object.__setattr__(self, "window", window_for_extent(layers, 1))
        e = _check_exact(layers, self.window)
        object.__setattr__(self, "fc_extent", e)
        object.__setattr__(self, "ops", _compile(layers, self.in_channels, e))

    # -- derived geometry -------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return self.layers[-1].n

    @property
    def stride(self) -> int:
        s = 1
        for layer in self.layers:
            if isinstance(layer, Pool):
                s *= layer.p
        return s

    @property
    def pools(self) -> tuple:
        return tuple(layer.p for layer in self.layers if isinstance(layer, Pool))

    @property
    def halo(self) -> tuple[int, int]:
        """Context (before, after) the window needs around its centre pixel. The centre of a window of size w is
        at offset (w-1)//2, so an even window has one more pixel after the centre than before it."""
        before = (self.window - 1) // 2
        return before, self.window - 1 - before

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                out.append({"type": "conv", "k": layer.k, "maps": layer.maps, "act": layer.act})
            elif isinstance(layer, Pool):
                out.append({"type": "pool", "p": layer.p})
            else:
                out.append({"type": "fc", "n": layer.n, "act": layer.act})
        return {"name": self.name, "in_channels": self.in_channels, "window": self.window, "layers": out}

    def describe(self) -> str:
        body = ", ".join(_layer_str(layer) for layer in self.layers)
        return (f"{self.name}: {self.window}x{self.window} window, stride {self.stride}, "
                f"{self.in_channels} channel(s) -> {self.n_classes} classes: {body}")

    def with_channels(self, in_channels: int) -> "Net":
        return Net(self.layers, in_channels=in_channels, window=self.window, name=self.name)


def _check_layers(layers, in_channels):
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ArchitectureError(f"in_channels must be a positive integer, got {in_channels!r}")
    if not layers:
        raise ArchitectureError("a network needs at least one fc layer (the class scores)")
    seen_fc = False
    for i, layer in enumerate(layers, 1):
        where = f"layer {i} ({_layer_str(layer) if isinstance(layer, (Conv, Pool, FC)) else layer!r})"
        if isinstance(layer, Conv):
            if seen_fc:
                raise ArchitectureError(f"{where}: conv layers must come before the fc layers")
            if layer.k < 1 or layer.maps < 1:
                raise ArchitectureError(f"{where}: kernel size and maps must be >= 1")
        elif isinstance(layer, Pool):
            if seen_fc:
                raise ArchitectureError(f"{where}: pool layers must come before the fc layers")
            if layer.p < 2:
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


def window_for_extent(layers, e: int) -> int:
    """Input window size for which the first fc layer sees an e x e map (always exact)."""
    size = e
    for layer in reversed(layers):
        if isinstance(layer, Conv):
            size += layer.k - 1
        elif isinstance(layer, Pool):
            size *= layer.p
    return size


def _check_exact(layers, window: int) -> int:
    """Walk a window forward through the layers; return the fc extent e or raise naming the offending layer."""
    size = window
    for i, layer in enumerate(layers, 1):
        if isinstance(layer, Conv):
            size -= layer.k - 1
            if size < 1:
                break
        elif isinstance(layer, Pool):
            if size % layer.p:
                raise ArchitectureError(
                    f"window {window}x{window} is not exact: layer {i} ({_layer_str(layer)}) gets a "
                    f"{size}x{size} map, which does not divide by {layer.p}; {_suggest(layers, window)}")
            size //= layer.p
        else:
            break
    if size < 1:
        raise ArchitectureError(f"window {window}x{window} is too small for these layers; {_suggest(layers, window)}")
    return size


def _suggest(layers, window: int) -> str:
    exact = [window_for_extent(layers, e) for e in range(1, 64)]
    below = [w for w in exact if w < window]
    above = [w for w in exact if w > window]
    options = ([f"{below[-1]}"] if below else []) + ([f"{above[0]}"] if above else [])
    return "nearest exact window(s): " + " or ".join(options)


def _compile(layers, in_channels: int, e: int) -> tuple:
    ops, c, n_conv, n_fc = [], in_channels, 0, 0
    for layer in layers:
        if isinstance(layer, Conv):
            n_conv += 1
            ops.append(ConvOp(f"conv{n_conv}", layer.k, c, layer.maps, layer.act, False))
            c = layer.maps
        elif isinstance(layer, Pool):
            ops.append(PoolOp(layer.p))
        else:
            n_fc += 1
            k = e if n_fc == 1 else 1
            ops.append(ConvOp(f"fc{n_fc}", k, c, layer.n, layer.act, True))
            c = layer.n
    return tuple(ops)


# -- construction from dicts, files and presets ---------------------------------------------------------------
def _whole(value, what: str) -> int:
    """An integer as written (7, not 7.5 nor "7"): int() would silently turn k: 7.5 into 7."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArchitectureError(f"{what} = {value!r} must be an integer")
    return int(value)


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
                layers.append(Conv(_whole(spec["k"], f"layer {i}: k"), _whole(spec["maps"], f"layer {i}: maps"),
                                   spec.get("act", "tanh")))
            elif kind == "pool":
                layers.append(Pool(_whole(spec["p"], f"layer {i}: p")))
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
               window=_whole(d.get("window", 0), "window"),
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
