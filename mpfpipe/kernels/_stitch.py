"""Stitch the fragments of the last layer into the dense map, and the inverse (unstitch) for the backward pass.

Fragment index after pools p_1..p_L is f = (((a_1 p_1 + b_1) p_2^2 + a_2 p_2 + b_2) ...), so a ``(K, F, h, w)``
tensor reshapes to axes (k, a_1, b_1, ..., a_L, b_L, i, j); the dense row is y = a_1 + p_1 a_2 + p_1 p_2 a_3 + ...
+ S i, i.e. the axes transpose to (k, i, a_L, ..., a_1, j, b_L, ..., b_1). Pure reshapes and one transpose copy:
cheap next to the convolutions, so numpy does it.
"""
import numpy as np


def _axes(pools):
    L = len(pools)
    # axis numbers in the (k, a1, b1, ..., aL, bL, i, j) view
    a = [1 + 2 * t for t in range(L)]
    b = [2 + 2 * t for t in range(L)]
    i, j = 1 + 2 * L, 2 + 2 * L
    return [0, i] + a[::-1] + [j] + b[::-1]


def stitch(frag: np.ndarray, pools) -> np.ndarray:
    """(K, S*S, h, w) fragments -> (K, S*h, S*w) dense map."""
    K, F, h, w = frag.shape
    S = int(np.prod(pools)) if pools else 1
    assert F == S * S, "fragment count does not match the pools"
    shape = [K] + [p for p in pools for _ in (0, 1)] + [h, w]
    return frag.reshape(shape).transpose(_axes(pools)).reshape(K, S * h, S * w)


def unstitch(dense: np.ndarray, pools) -> np.ndarray:
    """Inverse of `stitch`: (K, S*h, S*w) -> (K, S*S, h, w)."""
    K, H, W = dense.shape
    S = int(np.prod(pools)) if pools else 1
    h, w = H // S, W // S
    axes = _axes(pools)
    shape = [K] + [p for p in pools for _ in (0, 1)] + [h, w]
    transposed_shape = [shape[a] for a in axes]
    inverse = np.argsort(axes)
    return np.ascontiguousarray(dense.reshape(transposed_shape).transpose(inverse)).reshape(K, S * S, h, w)


def _axes3(pools3):
    """Axes of the (k, iz, [a_l, b_l, c_l] per pool, i, j) view of a volume's fragments in dense (z, y, x) order:
    a pool (pz, p, p) appends the y offset a, the x offset b (2D MPF) and then the z offset c (`_zpool`), so
    z = c_1 + pz_1 c_2 + ... + Sz iz and y, x as in 2D."""
    L = len(pools3)
    a = [2 + 3 * t for t in range(L)]
    b = [3 + 3 * t for t in range(L)]
    c = [4 + 3 * t for t in range(L)]
    i, j = 2 + 3 * L, 3 + 3 * L
    return [0, 1] + c[::-1] + [i] + a[::-1] + [j] + b[::-1]


def _shape3(K, D, pools3, h, w):
    return [K, D] + [s for pz, p, _ in pools3 for s in (p, p, pz)] + [h, w]


def stitch3(frag: np.ndarray, pools3) -> np.ndarray:
    """(K, D, F, h, w) volume fragments -> (K, Sz*D, S*h, S*w) dense map (``pools3``: the (pz, p, p) pools)."""
    K, D, F, h, w = frag.shape
    Sz = int(np.prod([q[0] for q in pools3])) if pools3 else 1
    S = int(np.prod([q[1] for q in pools3])) if pools3 else 1
    assert F == Sz * S * S, "fragment count does not match the pools"
    return frag.reshape(_shape3(K, D, pools3, h, w)).transpose(_axes3(pools3)).reshape(K, Sz * D, S * h, S * w)


def unstitch3(dense: np.ndarray, pools3) -> np.ndarray:
    """Inverse of `stitch3`: (K, Sz*D, S*h, S*w) -> (K, D, F, h, w)."""
    K, Z, H, W = dense.shape
    Sz = int(np.prod([q[0] for q in pools3])) if pools3 else 1
    S = int(np.prod([q[1] for q in pools3])) if pools3 else 1
    D, h, w = Z // Sz, H // S, W // S
    axes = _axes3(pools3)
    shape = _shape3(K, D, pools3, h, w)
    out = dense.reshape([shape[a] for a in axes]).transpose(np.argsort(axes))
    return np.ascontiguousarray(out).reshape(K, D, Sz * S * S, h, w)
