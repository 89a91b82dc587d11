"""Parameters of a net: PyTorch-style names and layouts, seeded initialisation, flat vectors for optimisers.

Tensors follow the equivalent PyTorch patch network: ``convN.weight`` (out, in, k, k) used as cross-correlation,
``convN.bias`` (out,), ``fcN.weight`` (out, in) over the C-order flattened (C, e, e) input, ``fcN.bias`` (out,).
Internally an fc weight is the (out, in, e, e) convolution kernel of dense mode; `to_torch_layout` and
`from_torch_layout` convert. A 3D net's tensors are PyTorch's Conv3d layouts: ``convN.weight`` (out, in, kz, ky, kx),
``fcN.weight`` (out, in) over the C-order flattened (C, ez, ey, ex) input, internally (out, in, ez, ey, ex).
"""
from __future__ import annotations

import numpy as np

from .arch import ConvOp, Net


def param_specs(net: Net) -> list[tuple[str, tuple[int, ...]]]:
    """(name, internal shape) of every tensor, in the fixed order used by flat vectors."""
    specs = []
    for op in net.ops:
        if isinstance(op, ConvOp):
            kernel = (op.kz, op.k, op.k) if net.ndim == 3 else (op.k, op.k)
            specs.append((f"{op.name}.weight", (op.cout, op.cin, *kernel)))
            specs.append((f"{op.name}.bias", (op.cout,)))
    return specs


def n_params(net: Net) -> int:
    return sum(int(np.prod(shape)) for _, shape in param_specs(net))


def init_params(net: Net, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Seeded initialisation: weights uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot, suited to tanh nets;
    fan_out counts the kernel area as in PyTorch), biases zero."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_specs(net):
        if name.endswith(".weight"):
            cout, cin = shape[:2]
            area = int(np.prod(shape[2:]))  # k * k, or kz * k * k
            bound = np.sqrt(6.0 / (cin * area + cout * area))
            params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
    return params


def ravel(net: Net, params: dict[str, np.ndarray], dtype=np.float64) -> np.ndarray:
    """Concatenate the tensors into one flat vector (float64 by default: optimisers and reducers work in it)."""
    return np.concatenate([np.asarray(params[name], dtype=dtype).ravel() for name, _ in param_specs(net)])


def unravel(net: Net, vec: np.ndarray, dtype=np.float32) -> dict[str, np.ndarray]:
    """Inverse of `ravel`; each tensor is a contiguous copy in ``dtype``."""
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.size != n_params(net):
        raise ValueError(f"parameter vector has {vec.size} values, the net needs {n_params(net)}")
    out, at = {}, 0
    for name, shape in param_specs(net):
        size = int(np.prod(shape))
        out[name] = np.ascontiguousarray(vec[at:at + size].reshape(shape), dtype=dtype)
        at += size
    return out


def to_torch_layout(net: Net, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tensors as the PyTorch patch network holds them (fc weights flattened to (out, in*e*e))."""
    out = {}
    for name, value in params.items():
        if name.startswith("fc") and name.endswith(".weight"):
            value = value.reshape(value.shape[0], -1)
        out[name] = np.ascontiguousarray(value)
    return out


def from_torch_layout(net: Net, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of `to_torch_layout`; checks every tensor is present with the right size."""
    out = {}
    for name, shape in param_specs(net):
        if name not in tensors:
            raise KeyError(name)
        value = np.asarray(tensors[name])
        if value.size != int(np.prod(shape)):
            raise ValueError(f"tensor {name} has shape {value.shape}, expected {shape}")
        out[name] = value.reshape(shape)
    return out
