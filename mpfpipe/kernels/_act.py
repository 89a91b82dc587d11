"""Activations, fused with the bias add (forward) and expressed through the output (backward)."""
import numpy as np
from numba import njit, prange

from ._par import pjit
from ._simd import sfma

ACT_CODES = {"linear": 0, "tanh": 1, "stanh": 2, "relu": 3}
# Ciresan's scaled tanh: A * tanh(B * x)
_A = 1.7159
_B = 2.0 / 3.0


# float32 tanh as x P(u) / Q(u), u = (x / c)^2, clamped at |x| <= c (where tanh rounds to 1 in float32).
# Coefficients fitted for mpfpipe (iteratively reweighted least squares on [0, c], relative error): at most
# 6 ulp from the correctly rounded tanh (libm's tanhf: 1.4 ulp), and, unlike a libm call, only multiplies,
# adds and one divide, so LLVM vectorises the loop: the activation pass runs several times faster. The polynomials
# are evaluated with explicit fused multiply-adds (half the operations of a multiply and an add, exact on every CPU).
_TANH_C = np.float32(7.90531110763549805)
_TANH_P = (1.0, 8.205361366271973, 12.324049949645996, 2.857985496520996, -0.3448503613471985,
           0.06219210475683212, -0.0071707782335579395)
_TANH_Q = (1.0, 29.03667449951172, 96.46385192871094, 63.998294830322266)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(v) for v in _TANH_P)
_Q0, _Q1, _Q2, _Q3 = (np.float32(v) for v in _TANH_Q)
_INV_C = np.float32(1.0) / _TANH_C


@njit(cache=True, nogil=True, error_model="numpy")
def _act_row(r, code, fast, n):
    """r[:n] = act(r[:n]) in place, one row (code as ACT_CODES; fast: the float32 tanh approximation above). The
    code dispatch is outside the loops and division follows numpy's error model (no ZeroDivisionError check; q >= 1
    anyway): either one kept LLVM from vectorising the loop, ~15x slower."""
    if code == 0:
        return
    if code == 3:
        for i in range(n):
            v = r[i]
            r[i] = v if v > 0 else 0.0 * v
    elif fast:  # float32 tanh / stanh, all-float32 arithmetic
        s_in = np.float32(1.0) if code == 1 else np.float32(_B)
        s_out = np.float32(1.0) if code == 1 else np.float32(_A)
        for i in range(n):
            x = min(max(r[i] * s_in, -_TANH_C), _TANH_C)
            u = x * _INV_C
            u = u * u
            p = sfma(sfma(sfma(sfma(sfma(sfma(_P6, u, _P5), u, _P4), u, _P3), u, _P2), u, _P1), u, _P0)
            q = sfma(sfma(sfma(_Q3, u, _Q2), u, _Q1), u, _Q0)
            r[i] = s_out * (x * p / q)
    elif code == 1:
        for i in range(n):
            r[i] = np.tanh(r[i])
    else:
        for i in range(n):
            r[i] = _A * np.tanh(_B * r[i])


@njit(cache=True, nogil=True)
def _bias_act_row(r, bias, code, fast, n):
    """r[:n] = act(r[:n] + bias) in place, one row: the bias pass, then `_act_row` while the row is in cache
    (serial: for use inside other kernels' parallel loops)."""
    for i in range(n):
        r[i] += bias
    _act_row(r, code, fast, n)


@njit(cache=True, nogil=True)
def _act_grad_row(g, a, code, n):
    """g *= f'(x), written with the output a = f(x) (tanh' = 1 - a^2, stanh' = B/A (A^2 - a^2), relu' = a > 0)."""
    for i in range(n):
        v = a[i]
        if code == 1:
            g[i] *= 1.0 - v * v
        elif code == 2:
            g[i] *= (_B / _A) * (_A * _A - v * v)
        elif code == 3:
            if not v > 0:
                g[i] = 0.0 * g[i]


@njit(cache=True, nogil=True)
def _act_grad_rows(g, a, code, rows, n):
    """`_act_grad_row` over rows (serial: for use inside other kernels' parallel loops)."""
    for o in range(rows):
        _act_grad_row(g[o], a[o], code, n)


@pjit(cache=True)
def _bias_act(y, b, code, fast):
    rows, n = y.shape
    for r in prange(rows):
        _bias_act_row(y[r], b[r], code, fast, n)


@pjit(cache=True)
def _act_grad(dy, y, code):
    rows, n = dy.shape
    for r in prange(rows):
        _act_grad_row(dy[r], y[r], code, n)


def bias_act_forward(y2d: np.ndarray, bias: np.ndarray, act: str) -> None:
    """In place: y = act(y + bias[row]) on a (channels, positions) view. float32 tanh/stanh use the vectorised
    approximation above; float64 (the exactness tests) uses libm's tanh."""
    _bias_act(y2d, bias, ACT_CODES[act], y2d.dtype == np.float32)


def act_backward(dy2d: np.ndarray, y2d: np.ndarray, act: str) -> None:
    """In place: dy *= act'(x) given the activation output y."""
    if act != "linear":
        _act_grad(dy2d, y2d, ACT_CODES[act])
