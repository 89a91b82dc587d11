"""Numba kernels of the fragment engine (no Dask, no I/O).

Tensors are channel-major, ``(C, F, h, w)``: channel, fragment (or patch), row, column. With that layout a
convolution is one GEMM per block, ``W (Cout, C*k*k) @ col (C*k*k, n)``, whose result is already the output's
``(Cout, F*h*w)`` view, and MPF pooling turns ``(C, F, h, w)`` into ``(C, F*p*p, m, n)`` without transposes.
"""
from ._act import ACT_CODES, act_backward, bias_act_forward
from ._conv import conv_backward, conv_forward
from ._pool import pool_backward, pool_forward

__all__ = ["ACT_CODES", "act_backward", "bias_act_forward", "conv_backward", "conv_forward", "pool_backward",
           "pool_forward"]
