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
