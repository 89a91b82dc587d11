"""Activations, fused with the bias add (forward) and expressed through the output (backward)."""
import numpy as np
from numba import njit, prange

ACT_CODES = {"linear": 0, "tanh": 1, "stanh": 2, "relu": 3}
# Ciresan's scaled tanh: A * tanh(B * x)
_A = 1.7159
_B = 2.0 / 3.0


@njit(parallel=True, cache=True, fastmath=False)
def _bias_act(y, b, code):
    rows, n = y.shape
    for r in prange(rows):
        bias = b[r]
        for i in range(n):
            v = y[r, i] + bias
            if code == 1:
                v = np.tanh(v)
            elif code == 2:
                v = _A * np.tanh(_B * v)
            elif code == 3:
                v = v if v > 0 else 0.0 * v
            y[r, i] = v


@njit(parallel=True, cache=True, fastmath=False)
def _act_grad(dy, y, code):
    """dy *= f'(x), written with the output y = f(x) (tanh' = 1 - y^2, stanh' = B/A (A^2 - y^2), relu' = y > 0)."""
    rows, n = dy.shape
    for r in prange(rows):
        for i in range(n):
            v = y[r, i]
            if code == 1:
                dy[r, i] *= 1.0 - v * v
            elif code == 2:
                dy[r, i] *= (_B / _A) * (_A * _A - v * v)
            elif code == 3:
                if not v > 0:
                    dy[r, i] = 0.0 * dy[r, i]


def bias_act_forward(y2d: np.ndarray, bias: np.ndarray, act: str) -> None:
    """In place: y = act(y + bias[row]) on a (channels, positions) view."""
    _bias_act(y2d, bias, ACT_CODES[act])


def act_backward(dy2d: np.ndarray, y2d: np.ndarray, act: str) -> None:
    """In place: dy *= act'(x) given the activation output y."""
    if act != "linear":
        _act_grad(dy2d, y2d, ACT_CODES[act])
