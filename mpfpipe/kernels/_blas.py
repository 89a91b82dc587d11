"""GEMM for Numba kernels, through scipy's BLAS, in kernels that Numba can cache.

Numba's own ``np.dot`` binds BLAS through a ctypes pointer baked into the compiled code, so no kernel calling it
can be cached: every process recompiled the blocked convolution kernels on first use (34 s for an n3 training
step on this machine, paid again by every Dask worker). Here the addresses of scipy.linalg.cython_blas's sgemm
and dgemm are registered with LLVM under fixed names at import, and the kernels call those names: the cached
machine code holds only the names, which each process binds to its own addresses. `gemm` also takes leading
dimensions, so a kernel can multiply a block in place inside a larger array (no copy in or out).

In reproducible mode (`mpfpipe._reproducible`) `gemm` runs `_rgemm.rgemm` instead, whose summation order does not
depend on the CPU. The switch is a process-wide flag read at run time (`set_reproducible`), registered with LLVM by
name like the BLAS functions: cached kernels serve both modes, and no kernel signature changes.
"""
import ctypes
import os

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic, overload

from ._rgemm import rgemm

for _name in ("sgemm", "dgemm"):
    llvm.add_symbol(f"mpfpipe_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name))
_FLAG = ctypes.c_int32(0)
llvm.add_symbol("mpfpipe_reproducible", ctypes.addressof(_FLAG))


def set_reproducible(on: bool) -> None:
    """Switch this process's kernels to the fixed-order GEMM (True) or to OpenBLAS (False)."""
    _FLAG.value = int(bool(on))


def reproducible_active() -> bool:
    """Whether this process's kernels run the fixed-order GEMMs now."""
    return bool(_FLAG.value)


# the mode's switch, MPFPIPE_REPRODUCIBLE (mpfpipe._reproducible.ENV), read here too: the kernels sit below it
set_reproducible(os.environ.get("MPFPIPE_REPRODUCIBLE", "") not in ("", "0"))


@intrinsic
def _reproducible(typingctx):
    """The flag's current value (a load of the external global ``mpfpipe_reproducible``)."""
    def codegen(context, builder, sig, args):
        mod = builder.module
        gv = mod.globals.get("mpfpipe_reproducible")
        if gv is None:
            gv = ir.GlobalVariable(mod, ir.IntType(32), "mpfpipe_reproducible")
            gv.linkage = "external"
        return builder.icmp_signed("!=", builder.load(gv), ir.Constant(ir.IntType(32), 0))
    return types.boolean(), codegen

# Fortran BLAS: every argument by pointer (transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
_P = types.voidptr
_sgemm = types.ExternalFunction("mpfpipe_sgemm", types.void(*([_P] * 13)))
_dgemm = types.ExternalFunction("mpfpipe_dgemm", types.void(*([_P] * 13)))
_N, _T = ord("N"), ord("T")


def _flat(a):
    """A C-contiguous array as 1D (a view), any other as it is: see `gemm`."""


@overload(_flat)
def _flat_impl(a):
    if isinstance(a, types.Array) and a.layout == "C":
        return lambda a: a.reshape(a.size)
    return lambda a: a


@njit(cache=True)
def gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Row-major C = alpha op(A) op(B) + beta C, C (m, n), op(A) (m, k), op(B) (k, n); op(X) = X.T if trans_X.

    a, b, c are arrays (any shape) whose first element is the matrix's first; lda, ldb, ldc their row strides in
    elements (A is (m, k) with stride lda, or (k, m) if trans_a). All three share one dtype, float32 or float64.
    Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the Fortran call swaps the operands."""
    if _reproducible():
        # one build of rgemm per dtype, not one per caller: flat arrays, and no literal arguments (callers pass
        # constants such as a block width, which Numba would otherwise compile a variant of rgemm for); each
        # variant cost about a second of compiling in every fresh worker
        rgemm(trans_a != 0, trans_b != 0, m + 0, n + 0, k + 0, alpha * 1.0, _flat(a), lda + 0, _flat(b), ldb + 0,
              beta * 1.0, _flat(c), ldc + 0)
        return
    ch = np.empty(2, np.uint8)
    ch[0] = _T if trans_b else _N
    ch[1] = _T if trans_a else _N
    iv = np.empty(6, np.int32)
    iv[0] = n
    iv[1] = m
    iv[2] = k
    iv[3] = ldb
    iv[4] = lda
    iv[5] = ldc
    sc = np.empty(2, c.dtype)
    sc[0] = alpha
    sc[1] = beta
    if c.itemsize == 4:  # float32 (a dtype comparison does not type in Numba)
        _sgemm(ch.ctypes, ch[1:].ctypes, iv.ctypes, iv[1:].ctypes, iv[2:].ctypes, sc.ctypes, b.ctypes, iv[3:].ctypes,
               a.ctypes, iv[4:].ctypes, sc[1:].ctypes, c.ctypes, iv[5:].ctypes)
    else:
        _dgemm(ch.ctypes, ch[1:].ctypes, iv.ctypes, iv[1:].ctypes, iv[2:].ctypes, sc.ctypes, b.ctypes, iv[3:].ctypes,
               a.ctypes, iv[4:].ctypes, sc[1:].ctypes, c.ctypes, iv[5:].ctypes)
